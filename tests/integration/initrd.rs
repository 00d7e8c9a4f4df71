//! The appliance init and initrd, end to end: the embedded init refuses to
//! run outside a VM, and an initrd built from the host kernel's modules
//! boots (under qemu/TCG) into an ext2 root image made by mke2fs. That the
//! init in a built initrd is static is checked in `packaging.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use guestfs_appliance::image::initrd::{is_static_elf, select_modules, write_initrd, InitrdModule};
use guestfs_appliance::init::EMBEDDED as INIT;

use crate::qemu::{boot, skip, tool};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Printed by the root image's /init; never appears in the kernel command
/// line, so seeing it proves the switch into the root image worked.
const MARKER: &str = "GUESTFS-ROOT-INIT-REACHED";

#[test]
fn init_refuses_to_run_unless_pid_1() {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init");
    fs::write(&init, INIT).unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();
    let out = crate::util::run_fresh_executable(Command::new(&init));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only runs as PID 1"));
}

/// A host kernel and its modules directory of the same version.
struct HostKernel {
    vmlinuz: PathBuf,
    modules: PathBuf,
}

fn host_kernel() -> Option<HostKernel> {
    let mut found: Vec<HostKernel> = fs::read_dir("/lib/modules")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().into_owned();
            let vmlinuz = PathBuf::from(format!("/boot/vmlinuz-{version}"));
            let ok = vmlinuz.is_file() && e.path().join("modules.dep").is_file();
            ok.then(|| HostKernel { vmlinuz, modules: e.path() })
        })
        .collect();
    found.sort_by(|a, b| a.modules.cmp(&b.modules));
    let kernel = found.pop();
    if kernel.is_none() {
        skip("no /boot/vmlinuz-VERSION with a matching /lib/modules/VERSION/modules.dep");
    }
    kernel
}

fn build_initrd(path: &Path, modules: &[InitrdModule]) {
    let mut out = fs::File::create(path).unwrap();
    let stats = write_initrd(&mut out, INIT, modules, 0).unwrap();
    assert_eq!(stats.modules, modules.len());
}

/// A small ext2 image whose /init (busybox sh) checks the mount and prints
/// [`MARKER`], then powers off. Returns its UUID as text.
fn build_root(dir: &Path, mke2fs: &Path, busybox: &Path) -> (PathBuf, String) {
    let staging = dir.join("staging");
    fs::create_dir_all(staging.join("bin")).unwrap();
    fs::create_dir_all(staging.join("proc")).unwrap();
    fs::copy(busybox, staging.join("bin/busybox")).unwrap();
    let script = format!(
        "#!/bin/busybox sh\n\
         bb=/bin/busybox\n\
         $bb mount -t proc proc /proc\n\
         echo \"root mount: $($bb grep ' / ext' /proc/mounts)\"\n\
         echo \"loaded modules: $($bb cut -d' ' -f1 /proc/modules | $bb tr '\\n' ' ')\"\n\
         $bb touch /written && echo ROOT-IS-WRITABLE\n\
         echo {MARKER}\n\
         $bb poweroff -f\n"
    );
    fs::write(staging.join("init"), script).unwrap();
    fs::set_permissions(staging.join("init"), fs::Permissions::from_mode(0o755)).unwrap();

    let root = dir.join("root");
    let out = Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext2", "-d"])
        .arg(&staging)
        .arg(&root)
        .arg("32M")
        .output()
        .unwrap();
    assert!(out.status.success(), "mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    // The UUID as libguestfs reads it: 16 bytes at 0x468
    // (docs/libguestfs-side.md, "Root UUID").
    let image = fs::read(&root).unwrap();
    let hex: String = image[0x468..0x478].iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    (root, uuid)
}

#[test]
fn initrd_boots_into_the_root_image() {
    let (Some(_qemu), Some(mke2fs), Some(busybox)) =
        (tool("qemu-system-x86_64"), tool("mke2fs"), tool("busybox"))
    else {
        return;
    };
    let Some(kernel) = host_kernel() else { return };
    if !is_static_elf(&fs::read(&busybox).unwrap()) {
        skip(&format!("{} is not static: install busybox-static", busybox.display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let modules = select_modules(&kernel.modules).unwrap();
    assert!(modules.iter().any(|m| m.name == "virtio_scsi.ko"));
    let initrd = dir.path().join("initrd");
    build_initrd(&initrd, &modules);
    let (root, uuid) = build_root(dir.path(), &mke2fs, &busybox);

    // A zero-filled scratch disk comes first (the appliance disk comes last:
    // docs/traps.md, "Appliance disk comes last"), so the UUID scan has a
    // non-matching disk to skip.
    let scratch = dir.path().join("scratch");
    fs::write(&scratch, vec![0u8; 1 << 20]).unwrap();
    let append = format!("console=ttyS0 panic=1 root=UUID={uuid}");
    let log = boot(&kernel.vmlinuz, &initrd, &[&scratch, &root], &append, BOOT_TIMEOUT);

    assert!(log.contains(MARKER), "the root image's /init did not run\n{log}");
    assert!(!log.timed_out, "{log}");
    // SCSI probing is asynchronous, so which disk is sda varies between
    // boots; the mount line below shows the UUID match found the ext2 disk.
    assert!(log.contains("init: picked sd"), "{log}");
    assert!(log.contains(" modules loaded"), "{log}");
    let mount_line = log
        .output
        .lines()
        .find(|l| l.starts_with("root mount:"))
        .unwrap_or_else(|| panic!("no root mount line\n{log}"));
    assert!(
        mount_line.contains("/dev/root / ext2 rw,noatime"),
        "root must be ext2, read-write, noatime: {mount_line}\n{log}"
    );
    assert!(log.contains("ROOT-IS-WRITABLE"), "{log}");
    let loaded = log
        .output
        .lines()
        .find(|l| l.starts_with("loaded modules:"))
        .unwrap_or_else(|| panic!("no module list\n{log}"));
    for module in ["virtio_scsi", "sd_mod", "ext4"] {
        assert!(loaded.split_whitespace().any(|m| m == module), "{module} not loaded: {loaded}");
    }
    assert!(!log.contains("Kernel panic"), "{log}");
}

#[test]
fn init_without_root_parameter_powers_off_with_an_error() {
    let Some(_qemu) = tool("qemu-system-x86_64") else {
        return;
    };
    let Some(kernel) = host_kernel() else { return };
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd");
    // No modules: the init fails right after loading none of them.
    build_initrd(&initrd, &[]);
    let log = boot(&kernel.vmlinuz, &initrd, &[], "console=ttyS0 panic=1", BOOT_TIMEOUT);
    assert!(!log.timed_out, "the init should power off, not hang\n{log}");
    assert!(log.contains("init: error: no root= on the kernel command line"), "{log}");
    assert!(log.contains("init: powering off"), "{log}");
    // A clean power-off, not PID 1 exiting (which panics the kernel).
    assert!(!log.contains("Kernel panic"), "{log}");
    assert!(log.contains("reboot: Power down"), "{log}");
}
