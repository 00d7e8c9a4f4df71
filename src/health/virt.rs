//! Facts and probes about virtualization: /dev/kvm (present, openable
//! read-write by us), the CPU's virtualization flags, whether we run inside
//! a VM, qemu (found, version) and libguestfs (version, from the dpkg
//! database); with `--probe`, test boots under KVM and, if KVM does not
//! come up, under TCG, each bounded by a timeout and by `--timeout`.
//!
//! `/dev/kvm` existing is not proof that KVM works (docs/machine-quirks.md,
//! "KVM is unusable": guests abort with "failed to set MSR 0x10a"), hence
//! the test boot. What boots ([`BootTarget`]):
//! - the fixed appliance, when one is built: it has "come up" when its init
//!   reaches the exec of libguestfs's `/init` (our init prints `init: exec
//!   /init`, supermin's `supermin: chroot`); the root disk is attached with
//!   `snapshot=on`, so the appliance files are never written;
//! - otherwise the host kernel (chosen as a build would,
//!   `kernel::select_kernel`) with a tiny initrd built in memory (a memfd)
//!   holding only our init and an empty module list: it has "come up" when
//!   the init prints its first line ([`INIT_STARTED`]), i.e. the kernel
//!   booted under that accelerator and ran a program as PID 1. (The init
//!   then stops for want of `root=`.)
//!
//! qemu runs through `process::Timed::watch`, which stops it once the
//! guest came up or at the timeout; [`kill_running_guests`] (the
//! `--timeout` watchdog) kills what is still running, so no guest outlives
//! the report. The appliance's content is `appliance.rs`'s business; this
//! file only boots.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::memfd::MemFdCreateFlag;

use serde::Serialize;

use super::appliance::ApplianceFacts;
use super::probe::{Finding, HealthError, ProbeInfo, ProbeResult, Severity};
use crate::config::HealthConfig;
use crate::host::HostRoots;
use crate::image::initrd;
use crate::kernel::{self, compare_versions, KernelEnv};
use crate::process;

/// qemu versions before this boot slowly (libguestfs performance guide:
/// fast boot needs qemu >= 2.7 and libguestfs >= 1.34).
pub(crate) const MIN_QEMU: &str = "2.7";
/// libguestfs versions before this boot slowly (same guide).
pub(crate) const MIN_LIBGUESTFS: &str = "1.34";

/// Serial-console lines that show the appliance's init handed over to
/// libguestfs's `/init`: ours, then supermin's.
const APPLIANCE_UP: [&str; 2] = ["init: exec /init", "supermin: chroot"];

/// The first line our init prints as PID 1, after mounting /proc
/// (src/bin/init/main.rs: `init: guestfs-appliance-init VERSION; cmdline:
/// ...`): what "came up" means for a host-kernel test boot.
pub(crate) const INIT_STARTED: &str = "init: guestfs-appliance-init ";

/// A boot with less time than this left is not started: it could prove
/// nothing.
const MIN_BOOT_TIME: Duration = Duration::from_secs(1);

/// What a test boot boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BootTarget {
    /// The fixed appliance (kernel, initrd, root).
    Appliance,
    /// The host kernel with an initrd holding only our init.
    HostKernel,
}

/// Whether the console output shows the guest came up (module docs).
pub(crate) fn came_up(console: &str, target: BootTarget) -> bool {
    match target {
        BootTarget::Appliance => APPLIANCE_UP.iter().any(|m| console.contains(m)),
        BootTarget::HostKernel => console.contains(INIT_STARTED),
    }
}

/// The KVM device node.
const KVM_DEVICE_PATH: &str = "/dev/kvm";

/// /dev/kvm as we found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct KvmFacts {
    /// The node exists.
    pub(crate) device_present: bool,
    /// We can open it read-write (what qemu needs).
    pub(crate) openable: bool,
    /// Why it could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Whether a guest came up under KVM (`None` until `--probe` tried).
    pub(crate) usable: Option<bool>,
}

/// CPU flags that matter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CpuFacts {
    /// The CPU model name.
    pub(crate) model: String,
    /// Intel VT-x.
    pub(crate) vmx: bool,
    /// AMD-V.
    pub(crate) svm: bool,
    /// Running under a hypervisor.
    pub(crate) hypervisor: bool,
}

/// What /sys/class/dmi/id says about the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct MachineFacts {
    /// The `hypervisor` CPU flag is set (or DMI names a hypervisor).
    pub(crate) in_vm: bool,
    /// `sys_vendor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) vendor: Option<String>,
    /// `product_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) product: Option<String>,
}

/// qemu as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct QemuFacts {
    /// The binary.
    pub(crate) path: PathBuf,
    /// Its version (`10.0.2`), if `--version` answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    /// Why the version is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// One test boot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct BootResult {
    /// `kvm` or `tcg`.
    pub(crate) accel: &'static str,
    /// What was booted.
    pub(crate) target: BootTarget,
    /// The kernel booted (release, for the host kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kernel: Option<String>,
    /// Whether it came up (see [`came_up`]).
    pub(crate) came_up: bool,
    /// Seconds from starting qemu until it came up (or gave up).
    pub(crate) seconds: f64,
    /// Killed at the timeout.
    pub(crate) timed_out: bool,
    /// Ended (or never started) by `--timeout`, before its own timeout:
    /// it proves nothing either way.
    pub(crate) cut_short: bool,
    /// Why it did not come up (qemu's last line, or a start failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Everything known about virtualization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct VirtFacts {
    /// /dev/kvm.
    pub(crate) kvm: KvmFacts,
    /// CPU flags.
    pub(crate) cpu: CpuFacts,
    /// The machine.
    pub(crate) machine: MachineFacts,
    /// qemu, if found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) qemu: Option<QemuFacts>,
    /// libguestfs's version (from the host's package database), if installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) libguestfs: Option<String>,
    /// The host's package manager (`dpkg`, ...), for the names and commands
    /// in hints; not part of the report.
    #[serde(skip)]
    pub(crate) package_handler: Option<&'static str>,
    /// `--probe` test boots, in order (KVM, then TCG if KVM did not come up).
    pub(crate) boots: Vec<BootResult>,
    /// Why no test boot ran, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) boot_skipped: Option<String>,
}

/// Parse the CPU facts from /proc/cpuinfo text (the first processor).
pub(crate) fn parse_cpuinfo(text: &str) -> CpuFacts {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    CpuFacts {
        model: field("model name").unwrap_or_default(),
        vmx: has("vmx"),
        svm: has("svm"),
        hypervisor: has("hypervisor"),
    }
}

/// The version word of `qemu-system-* --version` output.
pub(crate) fn parse_qemu_version(text: &str) -> Option<String> {
    let rest = text.split("version ").nth(1)?;
    let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    (!v.is_empty()).then_some(v)
}

/// Whether `version` is at least `min` (supermin's version order).
pub(crate) fn at_least(version: &str, min: &str) -> bool {
    compare_versions(version, min) != std::cmp::Ordering::Less
}

/// `qemu-system-ARCH` on PATH ([`process::find_program`]), else RHEL's
/// `/usr/libexec/qemu-kvm`.
fn find_qemu() -> Option<PathBuf> {
    process::find_program(&format!("qemu-system-{}", std::env::consts::ARCH))
        .or_else(|| Some(PathBuf::from("/usr/libexec/qemu-kvm")).filter(|p| p.is_file()))
}

fn read_trimmed(path: &Path) -> Option<String> {
    crate::bounded::read_to_string(path, crate::bounded::PROC_MAX)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Gather the virtualization facts (no boots). Never fails.
pub(crate) fn gather(roots: &HostRoots) -> VirtFacts {
    let dev = Path::new(KVM_DEVICE_PATH);
    let (openable, error) = match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => (true, None),
        Err(e) => (false, Some(format!("{KVM_DEVICE_PATH}: {e}"))),
    };
    let cpu = crate::bounded::read_to_string(&roots.proc.join("cpuinfo"), crate::bounded::PROC_MAX)
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or_default();
    let dmi = roots.sys.join("class/dmi/id");
    let vendor = read_trimmed(&dmi.join("sys_vendor"));
    let product = read_trimmed(&dmi.join("product_name"));
    const HYPERVISOR_VENDORS: [&str; 7] =
        ["QEMU", "KVM", "VMware", "Xen", "Microsoft Corporation", "innotek", "Amazon EC2"];
    let dmi_vm = [&vendor, &product]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| HYPERVISOR_VENDORS.iter().any(|h| v.contains(h))));
    let qemu =
        find_qemu().map(|path| match crate::process::output(&[path.as_os_str(), "--version".as_ref()]) {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out);
                QemuFacts { version: parse_qemu_version(&text), error: None, path }
            }
            Err(e) => QemuFacts { version: None, error: Some(e.to_string()), path },
        });
    let libguestfs = crate::package::libguestfs_version(Path::new("/"));
    let package_handler = crate::package::handler_for(Path::new("/")).map(|h| h.name);
    VirtFacts {
        kvm: KvmFacts { device_present: dev.exists(), openable, error, usable: None },
        machine: MachineFacts { in_vm: cpu.hypervisor || dmi_vm, vendor, product },
        cpu,
        qemu,
        libguestfs,
        package_handler,
        boots: Vec::new(),
        boot_skipped: None,
    }
}

/// What `--probe` boots and how long it may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BootOptions {
    /// Supplies our init's bytes, for the host-kernel boot (the command
    /// passes `init::choose`).
    pub(crate) init: fn() -> Result<Vec<u8>, String>,
    /// The whole run's deadline (`--timeout`), if any.
    pub(crate) deadline: Option<Instant>,
}

/// The files of one test boot.
struct BootSpec {
    target: BootTarget,
    kernel: PathBuf,
    kernel_release: Option<String>,
    initrd: PathBuf,
    /// Root image and its UUID (appliance boots only).
    root: Option<(PathBuf, String)>,
    /// Keeps the in-memory initrd open while qemu reads it.
    _initrd_fd: Option<std::fs::File>,
}

/// `--probe`: boot the appliance (or, without one, the host kernel with a
/// tiny initrd) under KVM when /dev/kvm opens and, when that does not come
/// up, under TCG; record the results in `virt`.
pub(crate) fn probe_boots(
    virt: &mut VirtFacts,
    appliance: &ApplianceFacts,
    cfg: &HealthConfig,
    opts: &BootOptions,
) {
    let Some(qemu) = virt.qemu.as_ref().map(|q| q.path.clone()) else {
        virt.boot_skipped = Some("qemu not found".into());
        return;
    };
    let spec = match boot_spec(appliance, opts) {
        Ok(spec) => spec,
        Err(why) => {
            virt.boot_skipped = Some(why);
            return;
        }
    };
    // The time a boot may take: its own timeout, or what is left before
    // --timeout (then a timeout means "cut short", not "did not come up").
    let budget = |own: u64| -> (Duration, bool) {
        let own = Duration::from_secs(own);
        match opts.deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            Some(left) if left < own => (left, true),
            _ => (own, false),
        }
    };
    let not_started = |accel| BootResult {
        accel,
        target: spec.target,
        kernel: spec.kernel_release.clone(),
        came_up: false,
        seconds: 0.0,
        timed_out: false,
        cut_short: true,
        error: Some("not started: no time left within --timeout".into()),
    };
    if virt.kvm.openable {
        let (timeout, limited) = budget(cfg.probe_kvm_timeout_s);
        let r = if timeout < MIN_BOOT_TIME {
            not_started("kvm")
        } else {
            boot(&qemu, &spec, "kvm", timeout, limited)
        };
        virt.kvm.usable = (!r.cut_short).then_some(r.came_up);
        let done = r.came_up || r.cut_short;
        virt.boots.push(r);
        if done {
            return;
        }
    } else {
        virt.kvm.usable = Some(false);
    }
    let (timeout, limited) = budget(cfg.probe_boot_timeout_s);
    let r = if timeout < MIN_BOOT_TIME {
        not_started("tcg")
    } else {
        boot(&qemu, &spec, "tcg", timeout, limited)
    };
    virt.boots.push(r);
}

/// What to boot: the appliance when it is bootable, else the host kernel
/// with an in-memory initrd holding our init. Errors: why nothing can be
/// booted.
fn boot_spec(appliance: &ApplianceFacts, opts: &BootOptions) -> Result<BootSpec, String> {
    let uuid = appliance.root.as_ref().and_then(|r| r.uuid.clone());
    if let Some(uuid) = uuid.filter(|_| appliance.bootable) {
        let dir = &appliance.dir;
        return Ok(BootSpec {
            target: BootTarget::Appliance,
            kernel: dir.join("kernel"),
            kernel_release: None,
            initrd: dir.join("initrd"),
            root: Some((dir.join("root"), uuid)),
            _initrd_fd: None,
        });
    }
    let no_appliance = format!("no bootable appliance at {}", appliance.dir.display());
    let kernel = kernel::select_kernel(&KernelEnv::from_env(), Path::new("/"), std::env::consts::ARCH)
        .map_err(|e| match crate::package::handler_for(Path::new("/")) {
            Some(h) => e.with_package_hints(h.kernel_package, h.keep_kernel_readable),
            None => e,
        })
        .map_err(|e| format!("{no_appliance}, and no host kernel to test with: {e}"))?;
    let init = (opts.init)().map_err(|e| format!("{no_appliance}, and no init for a test initrd: {e}"))?;
    let file =
        memory_initrd(&init).map_err(|e| format!("{no_appliance}, and the test initrd failed: {e}"))?;
    // qemu inherits the memfd (no close-on-exec) and opens it by this path.
    let initrd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok(BootSpec {
        target: BootTarget::HostKernel,
        kernel: kernel.path,
        kernel_release: Some(kernel.version),
        initrd,
        root: None,
        _initrd_fd: Some(file),
    })
}

/// A newc initrd holding `init` and an empty `/modules`, in a memfd (a
/// file only in memory: nothing to clean up, whatever happens).
fn memory_initrd(init: &[u8]) -> Result<std::fs::File, String> {
    // Not MFD_CLOEXEC: qemu must inherit it.
    let fd = nix::sys::memfd::memfd_create(c"guestfs-appliance-probe-initrd", MemFdCreateFlag::empty())
        .map_err(|e| format!("memfd_create: {}", e.desc()))?;
    let mut file = std::fs::File::from(fd);
    initrd::write_initrd(&mut file, init, &[], 0).map_err(|e| e.to_string())?;
    Ok(file)
}

/// The test-boot qemu processes running now, for [`kill_running_guests`].
static RUNNING: process::Running = process::Running::new();

/// Kill every test-boot qemu still running (the `--timeout` watchdog calls
/// this before it exits, when no destructor runs).
pub(crate) fn kill_running_guests() {
    RUNNING.kill_all();
}

/// Boot `spec` with `accel` and wait up to `timeout` for it to come up;
/// `limited`: the timeout is what was left of `--timeout`, so hitting it
/// cuts the boot short rather than failing it.
fn boot(qemu: &Path, spec: &BootSpec, accel: &'static str, timeout: Duration, limited: bool) -> BootResult {
    let mut argv: Vec<String> = vec!["-accel".into(), accel.into()];
    if accel == "kvm" {
        // What libguestfs's direct backend passes with KVM.
        argv.extend(["-cpu".into(), "host".into()]);
    }
    argv.extend(["-nographic", "-no-reboot", "-m", "512"].map(String::from));
    argv.push("-kernel".into());
    argv.push(spec.kernel.display().to_string());
    argv.push("-initrd".into());
    argv.push(spec.initrd.display().to_string());
    // No `quiet`: the init's step lines are how we see it come up.
    let mut append = "console=ttyS0 panic=1".to_string();
    if let Some((root, uuid)) = &spec.root {
        argv.extend(
            ["-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=root,bus=scsi0.0"]
                .map(String::from),
        );
        argv.push("-drive".into());
        // snapshot=on: the guest mounts its root read-write; its writes go
        // to a throw-away overlay, never to the appliance.
        argv.push(format!("file={},format=raw,if=none,id=root,snapshot=on", root.display()));
        append.push_str(&format!(" root=UUID={uuid} guestfs_noreboot=1"));
    }
    argv.push("-append".into());
    argv.push(append);

    let mut cmd = vec![qemu.as_os_str().to_owned()];
    cmd.extend(argv.into_iter().map(std::ffi::OsString::from));
    // qemu stays in our process group, so a Ctrl-C that ends us ends it;
    // process.rs stops it once the guest came up or at the timeout, and the
    // watchdog kills what is on RUNNING.
    let watched = process::Timed::new(&cmd, timeout)
        .share_process_group()
        .track_in(&RUNNING)
        .watch(|line| came_up(line, spec.target));
    let result = |came_up: bool, timed_out: bool, seconds: f64, error: Option<String>| BootResult {
        accel,
        target: spec.target,
        kernel: spec.kernel_release.clone(),
        came_up,
        seconds,
        timed_out,
        cut_short: timed_out && limited,
        error,
    };
    let watched = match watched {
        Ok(w) => w,
        Err(process::ProcessError::Spawn { source, .. }) => {
            return result(false, false, 0.0, Some(format!("could not run {}: {source}", qemu.display())));
        }
        Err(e) => return result(false, false, 0.0, Some(e.to_string())),
    };
    let up = watched.end == process::WatchEnd::Matched;
    let timed_out = watched.end == process::WatchEnd::TimedOut;
    let error = (!up).then(|| {
        let text: Vec<&str> = watched.lines.iter().map(|l| l.text.as_str()).collect();
        let text = text.join("\n");
        let last =
            text.lines().map(str::trim).rev().find(|l| !l.is_empty()).unwrap_or("no output").to_string();
        match (timed_out, limited) {
            (true, true) => {
                format!("stopped after {:.0} s by --timeout (last output: {last})", timeout.as_secs_f64())
            }
            (true, false) => {
                format!("no sign of the guest's init after {} s (last output: {last})", timeout.as_secs())
            }
            // qemu's own "error:" line names the cause (e.g. "failed to set
            // MSR 0x10a"); the last line may be a consequence (an assertion).
            _ => match text.lines().map(str::trim).find(|l| l.contains("error:")).filter(|e| *e != last) {
                Some(cause) => format!("qemu exited: {cause}; {last}"),
                None => format!("qemu exited: {last}"),
            },
        }
    });
    result(up, timed_out, watched.elapsed.as_secs_f64(), error)
}

fn user_name() -> String {
    // No NSS in a static binary: $USER, else the uid.
    std::env::var("USER").unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()))
}

fn kvm_module(cpu: &CpuFacts) -> &'static str {
    if cpu.svm {
        "kvm_amd"
    } else {
        "kvm_intel"
    }
}

/// What the virtualization probes look at: the virtualization facts, and
/// the appliance directory a failed boot's remedy names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VirtContext<'a> {
    /// KVM, CPU, qemu, libguestfs, test boots.
    pub(crate) virt: &'a VirtFacts,
    /// The fixed appliance directory examined.
    pub(crate) appliance_dir: &'a Path,
}

/// `virt.kvm-device`: /dev/kvm exists and opens read-write.
pub(crate) const KVM_DEVICE: ProbeInfo = ProbeInfo {
    name: "virt.kvm-device",
    severity: Severity::Warning,
    summary: "/dev/kvm exists and the invoking user can open it read-write",
    needs_measurement: false,
};

pub(crate) fn check_kvm_device(ctx: &VirtContext, _: &HealthConfig) -> ProbeResult {
    let v = ctx.virt;
    let finding = |message: String, remedy: String| Finding {
        probe: KVM_DEVICE.name,
        severity: Severity::Warning,
        subject: KVM_DEVICE_PATH.into(),
        message,
        remedy,
    };
    if !v.kvm.device_present {
        let remedy = if v.cpu.vmx || v.cpu.svm {
            format!("load the KVM module: `modprobe {}`", kvm_module(&v.cpu))
        } else {
            "the CPU offers no virtualization; see virt.cpu-flags".into()
        };
        return Ok(Err(finding(
            "/dev/kvm does not exist: qemu runs the appliance under TCG emulation, several times slower"
                .into(),
            remedy,
        )));
    }
    if !v.kvm.openable {
        return Ok(Err(finding(
            format!(
                "cannot open /dev/kvm read-write ({}): libguestfs falls back to TCG emulation",
                v.kvm.error.as_deref().unwrap_or("permission denied")
            ),
            format!("add {} to the kvm group (`usermod -aG kvm USER`) and log in again", user_name()),
        )));
    }
    Ok(Ok(()))
}

/// `virt.cpu-flags`: the CPU exposes VT-x or AMD-V.
pub(crate) const CPU_FLAGS: ProbeInfo = ProbeInfo {
    name: "virt.cpu-flags",
    severity: Severity::Warning,
    summary: "the CPU exposes hardware virtualization (vmx or svm in /proc/cpuinfo)",
    needs_measurement: false,
};

pub(crate) fn check_cpu_flags(ctx: &VirtContext, _: &HealthConfig) -> ProbeResult {
    let v = ctx.virt;
    if v.cpu.model.is_empty() && !v.cpu.hypervisor && !v.cpu.vmx && !v.cpu.svm {
        return Err(HealthError::Unavailable("could not read /proc/cpuinfo".into()));
    }
    if v.cpu.vmx || v.cpu.svm {
        return Ok(Ok(()));
    }
    let (message, remedy) = if v.machine.in_vm {
        (
            "this machine is a VM whose CPU has no vmx/svm flag: nested virtualization looks off, so KVM guests \
             are unlikely to work (see virt.boot with --probe)",
            "enable nested virtualization on the host (kvm_intel/kvm_amd `nested=1`) and give this VM the host CPU model",
        )
    } else {
        (
            "the CPU has no vmx/svm flag: hardware virtualization is off or missing, so guests run under TCG",
            "enable Intel VT-x or AMD-V (SVM) in the firmware setup",
        )
    };
    Ok(Err(Finding {
        probe: CPU_FLAGS.name,
        severity: Severity::Warning,
        subject: "cpu".into(),
        message: message.into(),
        remedy: remedy.into(),
    }))
}

/// `virt.qemu`: qemu is installed and new enough.
pub(crate) const QEMU: ProbeInfo = ProbeInfo {
    name: "virt.qemu",
    severity: Severity::Critical,
    summary: "qemu-system-ARCH (or /usr/libexec/qemu-kvm) is installed, version >= 2.7",
    needs_measurement: false,
};

/// The host package manager's names and commands, for hints.
fn host_handler(virt: &VirtFacts) -> Option<&'static crate::package::Handler> {
    virt.package_handler.and_then(crate::package::handler_named)
}

pub(crate) fn check_qemu(ctx: &VirtContext, _: &HealthConfig) -> ProbeResult {
    let Some(q) = &ctx.virt.qemu else {
        return Ok(Err(Finding {
            probe: QEMU.name,
            severity: Severity::Critical,
            subject: "qemu".into(),
            message: format!(
                "qemu-system-{} is not installed: libguestfs cannot launch",
                std::env::consts::ARCH
            ),
            remedy: match host_handler(ctx.virt) {
                Some(h) => format!("install qemu ({}: `{}`)", h.distro, h.install_qemu),
                None => "install qemu with the distribution's package manager".into(),
            },
        }));
    };
    let Some(version) = &q.version else {
        return Err(HealthError::Unavailable(
            q.error.clone().unwrap_or_else(|| "qemu version unknown".into()),
        ));
    };
    if at_least(version, MIN_QEMU) {
        return Ok(Ok(()));
    }
    Ok(Err(Finding {
        probe: QEMU.name,
        severity: Severity::Warning,
        subject: q.path.display().to_string(),
        message: format!("qemu {version} is older than {MIN_QEMU}: appliance boots are slow"),
        remedy: format!("upgrade qemu to {MIN_QEMU} or later"),
    }))
}

/// `virt.libguestfs`: libguestfs is installed and new enough.
pub(crate) const LIBGUESTFS: ProbeInfo = ProbeInfo {
    name: "virt.libguestfs",
    severity: Severity::Warning,
    summary: "libguestfs (its distribution package) is installed, version >= 1.34",
    needs_measurement: false,
};

pub(crate) fn check_libguestfs(ctx: &VirtContext, _: &HealthConfig) -> ProbeResult {
    let finding = |message: String, remedy: &str| Finding {
        probe: LIBGUESTFS.name,
        severity: Severity::Warning,
        subject: "libguestfs".into(),
        message,
        remedy: remedy.into(),
    };
    match &ctx.virt.libguestfs {
        None => {
            let handler = host_handler(ctx.virt);
            let package = handler.map(|h| format!(" ({})", h.libguestfs_package)).unwrap_or_default();
            let remedy = match handler {
                Some(h) => format!("install it ({}: `{}`)", h.distro, h.install_libguestfs),
                None => "install it with the distribution's package manager".into(),
            };
            Ok(Err(finding(
                format!("libguestfs{package} is not installed: nothing on this host will use the appliance"),
                &remedy,
            )))
        }
        Some(v) if !at_least(v, MIN_LIBGUESTFS) => Ok(Err(finding(
            format!("libguestfs {v} is older than {MIN_LIBGUESTFS}: appliance boots are slow"),
            "upgrade libguestfs to 1.34 or later",
        ))),
        Some(_) => Ok(Ok(())),
    }
}

/// `virt.boot`: `--probe` test boots.
pub(crate) const BOOT: ProbeInfo = ProbeInfo {
    name: "virt.boot",
    severity: Severity::Critical,
    summary: "--probe: the appliance comes up under KVM (else: under TCG) within the timeouts",
    needs_measurement: true,
};

pub(crate) fn check_boot(ctx: &VirtContext, cfg: &HealthConfig) -> ProbeResult {
    let v = ctx.virt;
    if let Some(why) = &v.boot_skipped {
        return Err(HealthError::Unavailable(format!("no test boot: {why}")));
    }
    let kvm = v.boots.iter().find(|b| b.accel == "kvm");
    let tcg = v.boots.iter().find(|b| b.accel == "tcg");
    let Some(first) = kvm.or(tcg) else {
        return Err(HealthError::Unavailable("no test boot ran".into()));
    };
    let what = match (first.target, &first.kernel) {
        (BootTarget::Appliance, _) => "the appliance".to_string(),
        (BootTarget::HostKernel, k) => {
            format!("a guest (host kernel {} with a test initrd)", k.as_deref().unwrap_or("?"))
        }
    };
    let finding = |severity, message: String, remedy: String| Finding {
        probe: BOOT.name,
        severity,
        subject: "boot".into(),
        message,
        remedy,
    };
    let error = |b: &BootResult| b.error.clone().unwrap_or_else(|| "unknown".into());
    if let Some(k) = kvm.filter(|k| k.came_up) {
        if k.seconds > cfg.max_kvm_boot_s {
            return Ok(Err(finding(
                Severity::Warning,
                format!(
                    "{what} took {:.1} s to come up under KVM (threshold {} s)",
                    k.seconds, cfg.max_kvm_boot_s
                ),
                "see the location findings: the appliance or cache may be on slow storage".into(),
            )));
        }
        return Ok(Ok(()));
    }
    if let Some(k) = kvm.filter(|k| k.cut_short) {
        return Err(HealthError::Unavailable(format!("the KVM test boot did not finish: {}", error(k))));
    }
    let kvm_broken = |tcg_part: String| {
        let k = kvm.expect("only called with a failed KVM boot");
        finding(
            Severity::Critical,
            format!(
                "KVM unusable on this machine (the device opens, guests do not start): {}; {tcg_part}. \
                 libguestfs uses KVM whenever /dev/kvm opens, so its launches fail",
                error(k)
            ),
            "run libguestfs under TCG (`export LIBGUESTFS_BACKEND_SETTINGS=force_tcg`), and fix KVM on the host \
             (nested virtualization, host kernel messages)"
                .into(),
        )
    };
    match (kvm, tcg) {
        (Some(_), Some(t)) if t.came_up => {
            Ok(Err(kvm_broken(format!("under TCG {what} came up in {:.1} s", t.seconds))))
        }
        (Some(_), Some(t)) if t.cut_short => {
            Ok(Err(kvm_broken(format!("TCG was not tested to the end ({})", error(t)))))
        }
        (Some(_), None) => Ok(Err(kvm_broken("TCG was not tested".into()))),
        (None, Some(t)) if t.came_up => Ok(Ok(())),
        (None, Some(t)) if t.cut_short => {
            Err(HealthError::Unavailable(format!("the TCG test boot did not finish: {}", error(t))))
        }
        // Neither came up.
        (_, Some(t)) if t.target == BootTarget::Appliance => Ok(Err(finding(
            Severity::Critical,
            format!("the appliance does not boot, even under TCG: {}", error(t)),
            format!("rebuild it with `guestfs-appliance build {}`", ctx.appliance_dir.display()),
        ))),
        (_, Some(t)) => Ok(Err(finding(
            Severity::Critical,
            format!("no guest starts here, even under TCG: {}", error(t)),
            "check the qemu installation (Debian: qemu-system-x86) and the host kernel; \
             `guestfs-appliance status --probe --json` shows each boot's last console line"
                .into(),
        ))),
        (_, None) => Err(HealthError::Unavailable("no TCG test boot ran".into())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn healthy() -> VirtFacts {
        VirtFacts {
            kvm: KvmFacts { device_present: true, openable: true, error: None, usable: None },
            cpu: CpuFacts { model: "Test CPU".into(), vmx: true, svm: false, hypervisor: false },
            machine: MachineFacts::default(),
            qemu: Some(QemuFacts {
                path: "/usr/bin/qemu-system-x86_64".into(),
                version: Some("10.0.2".into()),
                error: None,
            }),
            libguestfs: Some("1.48.6".into()),
            package_handler: Some("dpkg"),
            boots: vec![],
            boot_skipped: None,
        }
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/health")
    }

    fn facts_with(f: impl FnOnce(&mut VirtFacts)) -> crate::health::Facts {
        let mut facts = crate::health::tests::healthy_facts();
        f(&mut facts.virtualization);
        facts
    }

    #[test]
    fn cpuinfo_flags() {
        let text = std::fs::read_to_string(fixtures().join("proc/cpuinfo")).unwrap();
        let c = parse_cpuinfo(&text);
        assert_eq!(c.model, "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz");
        assert!(c.vmx && !c.svm && c.hypervisor);
        let text = std::fs::read_to_string(fixtures().join("cpuinfo-amd-nonested")).unwrap();
        let c = parse_cpuinfo(&text);
        assert!(!c.vmx && !c.svm && c.hypervisor, "{c:?}");
    }

    #[test]
    fn gather_uses_the_given_roots() {
        let v = gather(&HostRoots { proc: fixtures().join("proc"), sys: fixtures().join("sys") });
        assert!(v.cpu.vmx);
        assert!(v.machine.in_vm);
        assert_eq!(v.machine.vendor.as_deref(), Some("QEMU"));
        assert_eq!(v.machine.product.as_deref(), Some("Standard PC (Q35 + ICH9, 2009)"));
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)\nCopyright")
                .as_deref(),
            Some("10.0.2")
        );
        assert_eq!(parse_qemu_version("garbage"), None);
        assert!(at_least("10.0.2", MIN_QEMU) && at_least("2.7", MIN_QEMU) && !at_least("2.6.2", MIN_QEMU));
        assert!(at_least("1.48.6", MIN_LIBGUESTFS) && !at_least("1.32.10", MIN_LIBGUESTFS));
    }

    #[test]
    fn kvm_and_cpu_remedies() {
        let cfg = HealthConfig::default();
        let f = check_kvm_device(&facts_with(|v| v.kvm.device_present = false).virt_context(), &cfg)
            .unwrap()
            .unwrap_err();
        assert!(f.remedy.contains("modprobe kvm_intel"), "{}", f.remedy);
        let f = check_kvm_device(&facts_with(|v| v.kvm.openable = false).virt_context(), &cfg)
            .unwrap()
            .unwrap_err();
        assert!(f.remedy.contains("kvm group"), "{}", f.remedy);
        let f = check_cpu_flags(
            &facts_with(|v| {
                v.cpu.vmx = false;
                v.machine.in_vm = true
            })
            .virt_context(),
            &cfg,
        )
        .unwrap()
        .unwrap_err();
        assert!(f.remedy.contains("nested"), "{}", f.remedy);
        let f =
            check_cpu_flags(&facts_with(|v| v.cpu.vmx = false).virt_context(), &cfg).unwrap().unwrap_err();
        assert!(f.remedy.contains("firmware"), "{}", f.remedy);
    }

    #[test]
    fn qemu_and_libguestfs_versions() {
        let cfg = HealthConfig::default();
        assert_eq!(
            check_qemu(&facts_with(|v| v.qemu = None).virt_context(), &cfg).unwrap().unwrap_err().severity,
            Severity::Critical
        );
        let old = facts_with(|v| v.qemu.as_mut().unwrap().version = Some("2.6.0".into()));
        assert_eq!(check_qemu(&old.virt_context(), &cfg).unwrap().unwrap_err().severity, Severity::Warning);
        let old = facts_with(|v| v.libguestfs = Some("1.32.0".into()));
        assert!(check_libguestfs(&old.virt_context(), &cfg).unwrap().is_err());
        assert!(check_libguestfs(&facts_with(|_| {}).virt_context(), &cfg).unwrap().is_ok());
    }

    fn boot_result(accel: &'static str, came_up: bool, seconds: f64) -> BootResult {
        BootResult {
            accel,
            target: BootTarget::Appliance,
            kernel: None,
            came_up,
            seconds,
            timed_out: false,
            cut_short: false,
            error: (!came_up).then(|| "failed to set MSR".into()),
        }
    }

    fn host_kernel(mut b: BootResult) -> BootResult {
        b.target = BootTarget::HostKernel;
        b.kernel = Some("6.1.0-57-amd64".into());
        b
    }

    fn console(name: &str) -> String {
        std::fs::read_to_string(fixtures().join("console").join(name)).unwrap()
    }

    /// Recorded on this kind of machine (tests/fixtures/health/console):
    /// the TCG boot of the host kernel reaches our init's first line; the
    /// KVM one aborts in qemu before the guest runs.
    #[test]
    fn came_up_on_recorded_consoles() {
        let tcg = console("host-kernel-tcg.log");
        assert!(came_up(&tcg, BootTarget::HostKernel));
        // It is not an appliance boot: no hand-over to libguestfs's /init.
        assert!(!came_up(&tcg, BootTarget::Appliance));
        // Everything before the init's first line is the kernel alone.
        let before = &tcg[..tcg.find(INIT_STARTED).unwrap()];
        assert!(!came_up(before, BootTarget::HostKernel));
        let kvm = console("host-kernel-kvm-abort.log");
        assert!(!came_up(&kvm, BootTarget::HostKernel) && kvm.contains("failed to set MSR"), "{kvm}");
    }

    #[test]
    fn host_kernel_boots_judge_kvm_without_an_appliance() {
        let cfg = HealthConfig::default();
        let kvm_fails = host_kernel(boot_result("kvm", false, 0.2));
        let facts =
            facts_with(|v| v.boots = vec![kvm_fails.clone(), host_kernel(boot_result("tcg", true, 7.4))]);
        let f = check_boot(&facts.virt_context(), &cfg).unwrap().unwrap_err();
        assert_eq!(f.severity, Severity::Critical);
        assert!(
            f.message.starts_with("KVM unusable on this machine (the device opens, guests do not start)")
                && f.message.contains("host kernel 6.1.0-57-amd64")
                && f.message.contains("7.4 s"),
            "{}",
            f.message
        );
        // TCG cut short by --timeout: KVM's failure still stands.
        let mut cut = host_kernel(boot_result("tcg", false, 3.0));
        cut.cut_short = true;
        let facts = facts_with(|v| v.boots = vec![kvm_fails.clone(), cut.clone()]);
        let f = check_boot(&facts.virt_context(), &cfg).unwrap().unwrap_err();
        assert!(f.message.contains("KVM unusable") && f.message.contains("not tested to the end"), "{f:?}");
        // KVM cut short: nothing is known (unknown, not critical).
        let mut kvm_cut = kvm_fails.clone();
        kvm_cut.cut_short = true;
        assert!(check_boot(&facts_with(|v| v.boots = vec![kvm_cut.clone()]).virt_context(), &cfg).is_err());
        // Only TCG, cut short: unknown.
        assert!(check_boot(&facts_with(|v| v.boots = vec![cut.clone()]).virt_context(), &cfg).is_err());
        // Nothing starts at all: not the appliance's fault.
        let facts =
            facts_with(|v| v.boots = vec![kvm_fails.clone(), host_kernel(boot_result("tcg", false, 120.0))]);
        let f = check_boot(&facts.virt_context(), &cfg).unwrap().unwrap_err();
        assert!(f.message.contains("no guest starts here") && !f.remedy.contains("rebuild"), "{f:?}");
        // Working KVM.
        let facts = facts_with(|v| v.boots = vec![host_kernel(boot_result("kvm", true, 1.5))]);
        assert!(check_boot(&facts.virt_context(), &cfg).unwrap().is_ok());
    }

    #[test]
    fn memory_initrd_holds_the_init_and_an_empty_module_list() {
        let mut init = crate::image::initrd::tests::fake_elf(false, None);
        init.resize(1 << 20, 0x90);
        let file = memory_initrd(&init).unwrap();
        let bytes = std::fs::read(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        let entries = crate::image::cpio::read_newc(&bytes).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"init") && names.contains(&"modules"), "{names:?}");
        let modules = entries.iter().find(|e| e.name == "modules").unwrap();
        assert!(modules.data.is_empty());
        assert_eq!(entries.iter().find(|e| e.name == "init").unwrap().data, init);
        // The init plus a few headers: nothing else goes in.
        assert!(bytes.len() < init.len() + 4096, "{} vs {}", bytes.len(), init.len());
    }

    #[test]
    fn broken_kvm_is_critical_with_the_tcg_time() {
        let cfg = HealthConfig::default();
        let facts =
            facts_with(|v| v.boots = vec![boot_result("kvm", false, 0.1), boot_result("tcg", true, 5.4)]);
        let f = check_boot(&facts.virt_context(), &cfg).unwrap().unwrap_err();
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.message.contains("5.4 s") && f.message.contains("MSR"), "{}", f.message);
        assert!(f.remedy.contains("force_tcg"));
        let facts = facts_with(|v| v.boots = vec![boot_result("kvm", true, 1.0)]);
        assert!(check_boot(&facts.virt_context(), &cfg).unwrap().is_ok());
        let facts = facts_with(|v| v.boots = vec![boot_result("kvm", true, 30.0)]);
        assert_eq!(check_boot(&facts.virt_context(), &cfg).unwrap().unwrap_err().severity, Severity::Warning);
        let facts = facts_with(|v| v.boots = vec![boot_result("tcg", false, 120.0)]);
        assert!(check_boot(&facts.virt_context(), &cfg)
            .unwrap()
            .unwrap_err()
            .message
            .contains("even under TCG"));
        let facts = facts_with(|v| v.boot_skipped = Some("qemu not found".into()));
        assert!(check_boot(&facts.virt_context(), &cfg).is_err());
    }

    #[test]
    fn boot_of_a_missing_qemu_fails_cleanly() {
        let spec = BootSpec {
            target: BootTarget::Appliance,
            kernel: "/nonexistent/kernel".into(),
            kernel_release: None,
            initrd: "/nonexistent/initrd".into(),
            root: Some(("/nonexistent/root".into(), "x".into())),
            _initrd_fd: None,
        };
        let r = boot(Path::new("/nonexistent/qemu"), &spec, "tcg", Duration::from_secs(1), false);
        assert!(!r.came_up && r.error.unwrap().contains("could not run"));
        assert!(RUNNING.is_empty());
    }
}
