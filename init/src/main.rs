//! `guestfs-appliance-init`: the appliance's PID 1 inside the initrd.
//!
//! It does what supermin's `init/init.c` does (docs/supermin-compat.md, "The
//! init"): mount the
//! kernel file systems, load the kernel modules listed in `/modules`, find
//! the root disk named by `root=`, mount it as ext2 read-write, switch into
//! it and exec its `/init` (libguestfs's script). Differences, on purpose:
//! the root wait is bounded (~60 s, where supermin's waits ~524 s:
//! docs/traps.md, "Missing disk drivers look like a hang"), any fatal failure
//! prints the call, path and errno and powers the VM off (qemu runs with
//! `-no-reboot`, so it exits) instead of hanging or panicking the kernel,
//! and the switch uses `MS_MOVE` like `switch_root`.
//!
//! The initrd's layout is the main crate's business (`image::initrd`,
//! which also embeds this binary: see its `build.rs`); the command line
//! parsing and disk scan live in `cmdline.rs` and `rootdev.rs` so that they
//! can be unit-tested. std + nix only, no proc macros: the main crate's
//! build.rs builds this crate a second time, statically, and the binary must
//! not panic, since a PID 1 panic is a kernel panic.

mod cmdline;
mod rootdev;

use std::ffi::CString;
use std::fmt::Arguments;
use std::io::Write;

use nix::errno::Errno;
use nix::mount::{mount, umount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::unistd::{chdir, chroot, execv, getpid, sync};

use cmdline::RootSpec;

/// Where the root file system is mounted before the switch.
const NEW_ROOT: &str = "/root";
/// Block node created for the root disk; its name is what `/proc/mounts`
/// shows, as with supermin.
const ROOT_NODE: &str = "/dev/root";

fn main() {
    // Run on a host by mistake, this program would mount over /dev and
    // power the machine off: refuse unless we are PID 1.
    if getpid().as_raw() != 1 {
        let _ = writeln!(std::io::stderr(), "guestfs-appliance-init: this is the appliance's init; it only runs as PID 1 inside the appliance VM");
        std::process::exit(2);
    }
    let cmdline = mount_proc_and_read_cmdline();
    let out = Console { quiet: cmdline::is_quiet(&cmdline) };
    out.step(format_args!("guestfs-appliance-init {}; cmdline: {cmdline}", env!("CARGO_PKG_VERSION")));
    mount_kernel_filesystems(&out);
    load_modules(&out);
    let spec = cmdline::parse_root(&cmdline).unwrap_or_else(|e| die(format_args!("{e}")));
    mount_root(&out, &spec);
    delete_initramfs_files(&out);
    unmount_kernel_filesystems(&out);
    switch_root(&out);
    exec_init(&out);
}

/// Console output. Steps are hidden by `quiet`; problems never are. Write
/// errors are ignored: there is nowhere else to report them.
struct Console {
    quiet: bool,
}

impl Console {
    fn step(&self, msg: Arguments) {
        if !self.quiet {
            say(msg);
        }
    }
}

fn say(msg: Arguments) {
    let _ = writeln!(std::io::stderr(), "init: {msg}");
}

/// Prints a fatal error, then syncs and powers off. Never returns.
fn die(msg: Arguments) -> ! {
    say(format_args!("error: {msg}"));
    say(format_args!("powering off"));
    sync();
    let err = reboot(RebootMode::RB_POWER_OFF).err();
    // Only reached if power-off failed; exiting PID 1 then panics the
    // kernel, which with panic=1 and -no-reboot still ends qemu.
    say(format_args!("reboot(RB_POWER_OFF) failed: {err:?}"));
    std::process::exit(1)
}

/// `die` for a failed system call on `path`.
fn die_call(call: &str, path: &str, errno: Errno) -> ! {
    die(format_args!("{call} {path}: {} ({})", errno.desc(), errno))
}

fn mkdir(path: &str) {
    // Errors (mostly EEXIST) are ignored: the mount that follows reports
    // the real problem with its path.
    let _ = std::fs::create_dir(path);
}

fn mount_fs(fstype: &str, target: &str) -> Result<(), Errno> {
    mkdir(target);
    match mount(Some(fstype), target, Some(fstype), MsFlags::empty(), None::<&str>) {
        // Already mounted (e.g. by a kernel option): fine.
        Err(Errno::EBUSY) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

fn mount_proc_and_read_cmdline() -> String {
    if let Err(e) = mount_fs("proc", "/proc") {
        die_call("mount proc on", "/proc", e);
    }
    match std::fs::read_to_string("/proc/cmdline") {
        Ok(line) => line.trim_end().to_owned(),
        Err(e) => die(format_args!("reading /proc/cmdline: {e}")),
    }
}

fn mount_kernel_filesystems(out: &Console) {
    out.step(format_args!("mounting /sys and /dev"));
    if let Err(e) = mount_fs("sysfs", "/sys") {
        die_call("mount sysfs on", "/sys", e);
    }
    // Not fatal: the disk scan and the root node use mknod, which works on
    // the initramfs's own /dev too.
    if let Err(e) = mount_fs("devtmpfs", "/dev") {
        say(format_args!("warning: mount devtmpfs on /dev: {} ({e}); continuing without it", e.desc()));
    }
    mkdir(NEW_ROOT);
}

/// Loads every module named in `/modules`, in order. Failures are printed
/// and ignored, as supermin does: a module may be built in (EEXIST) or not
/// apply to this machine (ENODEV).
fn load_modules(out: &Console) {
    let list = std::fs::read_to_string("/modules").unwrap_or_else(|e| {
        die(format_args!("reading /modules: {e}; the initrd is incomplete: rebuild the appliance"))
    });
    let (mut loaded, mut failed) = (0, 0);
    for name in list.lines().filter(|l| !l.is_empty()) {
        let path = format!("/{name}");
        let image = match std::fs::read(&path) {
            Ok(image) => image,
            Err(e) => {
                say(format_args!("skipped {path}: module is missing ({e})"));
                failed += 1;
                continue;
            }
        };
        out.step(format_args!("insmod {path}"));
        match nix::kmod::init_module(&image, c"") {
            Ok(()) => loaded += 1,
            Err(e) => {
                say(format_args!("insmod {path}: init_module: {} ({e})", e.desc()));
                failed += 1;
            }
        }
    }
    out.step(format_args!("{loaded} modules loaded, {failed} not loaded"));
}

fn mount_root(out: &Console, spec: &RootSpec) {
    out.step(format_args!("looking for the root disk root={spec}"));
    let found = rootdev::wait_for_root(spec, |waited, disks| {
        say(format_args!(
            "still waiting for root={spec} after {}s; disks present: [{}]. Hint: are the disk and its driver \
             modules (virtio_scsi, sd_mod, virtio_blk) in the initrd, and does the UUID match the root image?",
            waited.as_secs(),
            disks.join(", ")
        ));
    });
    let (name, dev) = found.unwrap_or_else(|nf| {
        die(format_args!(
            "root disk root={spec} not found after {}s; disks present: [{}]; check the -drive options and the \
             initrd's modules (virtio_scsi, sd_mod)",
            nf.waited.as_secs(),
            nf.disks.join(", ")
        ))
    });
    out.step(format_args!("picked {name} ({dev}) as root device"));
    if let Err(e) = rootdev::make_block_node(ROOT_NODE, dev) {
        die_call("mknod", ROOT_NODE, e);
    }
    // Read-write with noatime, as supermin: libguestfs's /init writes to it.
    let data = if spec.is_pmem() { Some("dax") } else { None };
    out.step(format_args!("mounting {ROOT_NODE} on {NEW_ROOT} (ext2)"));
    let result = match mount(Some(ROOT_NODE), NEW_ROOT, Some("ext2"), MsFlags::MS_NOATIME, data) {
        // ENODEV = no driver registered for "ext2" (a kernel built without
        // CONFIG_EXT4_USE_FOR_EXT2); the ext4 driver reads ext2 as well.
        // Any other error is about the disk or its features, where retrying
        // as ext4 would only hide the cause (docs/traps.md, "Root must mount
        // as ext2").
        Err(Errno::ENODEV) => {
            say(format_args!("mount as ext2 failed with ENODEV (no ext2 driver); retrying as ext4"));
            mount(Some(ROOT_NODE), NEW_ROOT, Some("ext4"), MsFlags::MS_NOATIME, data)
        }
        other => other,
    };
    if let Err(e) = result {
        die_call(&format!("mount {ROOT_NODE} ({name}) on"), NEW_ROOT, e);
    }
}

/// Deletes the regular files of the initramfs root (init, modules, *.ko) to
/// give their memory back; the rootfs stays underneath the new root.
fn delete_initramfs_files(out: &Console) {
    out.step(format_args!("deleting initramfs files"));
    let Ok(entries) = std::fs::read_dir("/") else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                say(format_args!("warning: deleting {}: {e}", entry.path().display()));
            }
        }
    }
}

/// libguestfs's /init mounts its own /proc, /sys and /dev; ours would be
/// invisible after the switch anyway, so they are unmounted (not moved).
fn unmount_kernel_filesystems(out: &Console) {
    out.step(format_args!("unmounting /dev, /sys, /proc"));
    for path in ["/dev", "/sys", "/proc"] {
        if let Err(e) = umount(path) {
            say(format_args!("warning: umount {path}: {} ({e})", e.desc()));
        }
    }
}

/// `switch_root` without the deletion: make the new root the namespace's `/`.
fn switch_root(out: &Console) {
    out.step(format_args!("switching root to {NEW_ROOT}"));
    if let Err(e) = chdir(NEW_ROOT) {
        die_call("chdir", NEW_ROOT, e);
    }
    if let Err(e) = mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>) {
        die_call("mount --move", NEW_ROOT, e);
    }
    if let Err(e) = chroot(".") {
        die_call("chroot", NEW_ROOT, e);
    }
    if let Err(e) = chdir("/") {
        die_call("chdir", "/ (new root)", e);
    }
}

fn exec_init(out: &Console) -> ! {
    out.step(format_args!("exec /init"));
    let (path, arg0) = (CString::from(c"/init"), CString::from(c"init"));
    // execv keeps the environment the kernel gave us (HOME, TERM, ...).
    let err = execv(&path, &[arg0]).err().unwrap_or(Errno::UnknownErrno);
    say(format_args!("exec /init: {} ({err})", err.desc()));
    for dir in ["/", "/bin", "/lib", "/lib64"] {
        list_dir(dir);
    }
    die_call("execv", "/init", err)
}

fn list_dir(dir: &str) {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            say(format_args!("contents of {dir}: {}", names.join(" ")));
        }
        Err(e) => say(format_args!("contents of {dir}: {e}")),
    }
}
