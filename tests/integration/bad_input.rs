//! Issue 2, item 9: each kind of bad input gets one clear error line naming
//! the path or package and what to do, exit code 2, and leaves the previous
//! appliance in DIR exactly as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::*;

/// A stand-in "previous appliance": the four files with known content,
/// each with the magic that makes it an appliance by content (issue 8
/// item 3): a bzImage header, a newc cpio, an ext2 superblock.
pub(crate) fn previous_appliance(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    let mut files = BTreeMap::new();
    for name in ["kernel", "initrd", "root", "README.fixed"] {
        let mut content = format!("previous {name}\n").into_bytes();
        match name {
            "kernel" => {
                content.resize(0x400, 0);
                content[0x202..0x206].copy_from_slice(b"HdrS");
            }
            "initrd" => content = [b"070701".as_slice(), &content].concat(),
            "root" => {
                content.resize(0x800, 0);
                content[0x438..0x43a].copy_from_slice(&[0x53, 0xef]);
            }
            _ => {}
        }
        std::fs::write(dir.join(name), &content).unwrap();
        files.insert(name.to_string(), content);
    }
    files
}

pub(crate) fn assert_unchanged(dir: &Path, before: &BTreeMap<String, Vec<u8>>) {
    let mut now = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        now.insert(e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap());
    }
    assert_eq!(&now, before, "{} changed", dir.display());
}

/// No staging or old directories left beside DIR.
pub(crate) fn assert_no_leftovers(parent: &Path) {
    let left: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".build-") || n.contains(".old-"))
        .collect();
    assert!(left.is_empty(), "leftovers in {}: {left:?}", parent.display());
}

/// The last stderr line is our one-line error and mentions every needle.
pub(crate) fn assert_error_line(run: &Run, needles: &[&str]) {
    let stderr = run.stderr();
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(last.starts_with("guestfs-appliance: error: "), "{}", run.shown_all());
    for n in needles {
        assert!(last.contains(n), "error line lacks {n:?}: {last}\n{}", run.shown_all());
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with("guestfs-appliance: "), "stray stderr line {line:?}\n{}", run.shown_all());
    }
}

/// An input dir holding a packages list plus the given extra file.
fn input_with(tmp: &Path, name: &str, content: &[u8]) -> PathBuf {
    let input = tmp.join("supermin.d");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("packages"), b"bash\n").unwrap();
    std::fs::write(input.join(name), content).unwrap();
    input
}

pub(crate) fn build_fails(tmp: &Path, args: &[&str], needles: &[&str]) {
    let dir = tmp.join("appliance");
    let before = previous_appliance(&dir);
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    all.push("appliance");
    let run = ga(tmp, &all).expect_code(2);
    assert_error_line(&run, needles);
    assert_unchanged(&dir, &before);
    assert_no_leftovers(tmp);
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = vec![b'x'; 20000];
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "etc/big", &data[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn truncated_tar_is_refused() {
    let tmp = scratch();
    let tar = small_tar();
    let truncated = gzip(&tar[..tar.len() / 2]);
    let input = input_with(tmp.path(), "base.tar.gz", &truncated);
    build_fails(tmp.path(), &["--input", input.to_str().unwrap()], &["base.tar.gz"]);
}

#[test]
fn bzip2_input_is_refused_not_misread_as_packages() {
    let tmp = scratch();
    let input = input_with(tmp.path(), "base.tar.bz2", b"BZh91AY&SY\x00\x01\x02garbage");
    build_fails(tmp.path(), &["--input", input.to_str().unwrap()], &["base.tar.bz2", "bzip2"]);
}

#[test]
fn empty_line_in_excludefiles_is_refused() {
    let tmp = scratch();
    let input = input_with(tmp.path(), "excludefiles", b"-/usr/share/doc/*\n\n-/usr/share/man/*\n");
    build_fails(tmp.path(), &["--input", input.to_str().unwrap()], &["excludefiles", "2"]);
}

#[test]
fn missing_package_under_strict_is_refused() {
    let tmp = scratch();
    let input = input_with(tmp.path(), "packages-extra", b"no-such-package-guestfs-appliance\n");
    build_fails(
        tmp.path(),
        &["--strict", "--input", input.to_str().unwrap()],
        &["no-such-package-guestfs-appliance", "--strict"],
    );
}

#[test]
fn missing_package_without_strict_is_one_warning() {
    // The warning path: checked through `plan` only, so no image is built.
    let tmp = scratch();
    let input = input_with(tmp.path(), "packages-extra", b"no-such-package-a\nno-such-package-b\n");
    let req = guestfs_appliance::build::ApplianceSpec {
        inputs: vec![input],
        minimal: false,
        size: 1 << 30,
        strict: false,
        root: "/".into(),
        host_cpu: std::env::consts::ARCH.into(),
        extra_packages: Vec::new(),
        extra_excludes: Vec::new(),
        source_date_epoch: None,
        kernel_format: guestfs_appliance::build::KernelFormat::Auto,
    };
    if host_kernel().is_none() {
        return;
    }
    let plan = guestfs_appliance::build::plan(&req, &guestfs_appliance::printer::Printer::quiet())
        .expect("plan succeeds without --strict");
    assert_eq!(plan.resolution.missing, vec!["no-such-package-a".to_string(), "no-such-package-b".into()]);
    assert!(plan.manifest.packages.iter().any(|p| p.name == "bash"));
}

#[test]
fn no_kernel_is_refused_with_where_we_looked() {
    let tmp = scratch();
    let root = tmp.path().join("fakeroot");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), b"").unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    let input = input_with(tmp.path(), "hostfiles", b"/etc/hostname\n");
    build_fails(
        tmp.path(),
        &["--root", root.to_str().unwrap(), "--input", input.to_str().unwrap()],
        &["kernel", "SUPERMIN_KERNEL"],
    );
}

#[test]
fn dir_that_is_a_regular_file_is_refused() {
    let tmp = scratch();
    std::fs::write(tmp.path().join("appliance"), b"i am a file").unwrap();
    let run = ga(tmp.path(), ["build", "--minimal", "appliance"]).expect_code(2);
    assert_error_line(&run, &["appliance", "not a directory"]);
    assert_eq!(std::fs::read(tmp.path().join("appliance")).unwrap(), b"i am a file");
}

#[test]
fn dir_inside_an_input_directory_is_refused() {
    let tmp = scratch();
    let input = input_with(tmp.path(), "hostfiles", b"/etc/hostname\n");
    let dir = input.join("out");
    let run =
        ga(tmp.path(), ["build", "--input", input.to_str().unwrap(), dir.to_str().unwrap()]).expect_code(2);
    assert_error_line(&run, &["inside the input directory"]);
    assert!(!dir.exists());
}

#[test]
fn unreadable_kernel_is_refused_with_a_fix() {
    if !is_root() || !have_tool("setpriv") {
        eprintln!("skipping: needs root to run the build as an unprivileged user");
        return;
    }
    let Some(kernel) = host_kernel() else { return };
    // Under /tmp, not the checkout: the unprivileged user must be able to
    // reach the binaries, whatever the permissions above the checkout are.
    let tmp = tempfile::Builder::new().prefix("ga-unreadable-").tempdir_in("/tmp").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let ga_copy = tmp.path().join("guestfs-appliance");
    std::fs::copy(bin("guestfs-appliance"), &ga_copy).unwrap();
    let k = tmp.path().join("vmlinuz-test");
    std::fs::copy(&kernel.0, &k).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir = tmp.path().join("appliance");
    let before = previous_appliance(&dir);
    std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(&dir).status().unwrap();
    let run = run_in(
        tmp.path(),
        Path::new("/usr/bin/setpriv"),
        [
            "--reuid=65534".as_ref(),
            "--regid=65534".as_ref(),
            "--clear-groups".as_ref(),
            ga_copy.as_os_str(),
            "build".as_ref(),
            "--minimal".as_ref(),
            "appliance".as_ref(),
        ],
        &[("SUPERMIN_KERNEL", k.as_os_str()), ("SUPERMIN_KERNEL_VERSION", kernel.1.as_ref())],
    )
    .expect_code(2);
    assert_error_line(&run, &["vmlinuz-test", "chmod"]);
    assert_unchanged(&dir, &before);
}

#[test]
fn too_little_space_is_refused_before_writing() {
    if !is_root() {
        eprintln!("skipping: needs root to mount a small tmpfs");
        return;
    }
    let tmp = scratch();
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&small)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(!in_ci(), "cannot mount a tmpfs under CI");
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(small.clone());
    let dir = small.join("appliance");
    let before = previous_appliance(&dir);
    let run = ga(&small, ["build", "--minimal", "appliance"]).expect_code(2);
    assert_error_line(&run, &["space", "small"]);
    assert_unchanged(&dir, &before);
    assert_no_leftovers(&small);
}

/// The host's newest /boot kernel and its version, if any.
pub fn host_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<_> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .collect();
    found.sort();
    let k = found.pop();
    if k.is_none() {
        assert!(!in_ci(), "CI must install a kernel (linux-image-amd64)");
        eprintln!("skipping: no /boot/vmlinuz-*");
    }
    let k = k?;
    let version = k.file_name()?.to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    Some((k, version))
}
