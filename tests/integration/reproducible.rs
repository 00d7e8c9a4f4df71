//! Issue 7, item 3: "same host state → same bytes" survives ordinary host
//! activity. Two builds of libguestfs's appliance with host noise in
//! between — entries created and removed in /tmp, /var/tmp and /etc, host
//! files read (atimes and ctimes move), ldconfig rewriting /etc/ld.so.cache,
//! a qemu boot of the first appliance — give byte-identical kernel, initrd
//! and root. Everything the test creates
//! on the host is removed when it ends, pass or fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use guestfs_appliance::manifest::Manifest;

use crate::qemu;
use crate::util::*;

/// Entries made on the host for one test; removed on drop.
struct HostNoise {
    made: Vec<PathBuf>,
}

impl HostNoise {
    /// In each of `dirs`: a directory and a file created and removed again
    /// (only the directory's times move, as when guestfish makes and
    /// removes its socket directory in /tmp), and a hidden file that stays
    /// until the noise is dropped.
    fn churn(dirs: &[&str]) -> HostNoise {
        let mut noise = HostNoise { made: Vec::new() };
        let tag = format!("guestfs-appliance-issue7-{}", std::process::id());
        for dir in dirs {
            let dir = Path::new(dir);
            let sub = dir.join(&tag);
            std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("mkdir {}: {e}", sub.display()));
            std::fs::write(sub.join("file"), b"noise").unwrap();
            std::fs::remove_file(sub.join("file")).unwrap();
            std::fs::remove_dir(&sub).unwrap();
            let stays = dir.join(format!(".{tag}"));
            std::fs::write(&stays, b"noise").unwrap_or_else(|e| panic!("writing {}: {e}", stays.display()));
            noise.made.push(stays);
        }
        noise
    }
}

impl Drop for HostNoise {
    fn drop(&mut self) {
        for path in &self.made {
            if let Err(e) = std::fs::remove_file(path) {
                eprintln!("warning: removing {}: {e}", path.display());
            }
        }
    }
}

/// Read `path` and set its atime to now, as a read does on a `strictatime`
/// mount (this machine's relatime may skip the update). The ctime moves
/// too, as with chmod or a reinstall.
fn read_and_access(path: &Path) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    utimensat(None, path, &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_OMIT, UtimensatFlags::FollowSymlink)
        .unwrap_or_else(|e| panic!("setting the atime of {}: {e}", path.display()));
}

fn hashes(dir: &Path) -> Vec<(String, String)> {
    ["kernel", "initrd", "root"].iter().map(|f| (f.to_string(), sha256(&dir.join(f)))).collect()
}

#[test]
fn issue7_host_activity_between_builds_keeps_bytes_identical() {
    if !crate::build::prerequisites_pub() || !have_tool("qemu-system-x86_64") {
        return;
    }
    let dirs = guestfs_appliance::input::default_input_dirs(Path::new("/"));
    if dirs.is_empty() {
        assert!(!in_ci(), "CI must install libguestfs (libguestfs-tools)");
        eprintln!("skipping: libguestfs's supermin.d is not installed");
        return;
    }
    // ldconfig first: on a host whose cache is out of date (a library
    // installed without its trigger running), the run between the builds
    // would change the cache's content, a real change of the host state.
    let ldconfig = || {
        let path = crate::qemu::tool("ldconfig").expect("ldconfig");
        let out = std::process::Command::new(&path).output().expect("run ldconfig");
        assert!(out.status.success(), "ldconfig: {}", String::from_utf8_lossy(&out.stderr));
    };
    ldconfig();
    let tmp = scratch();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    ga(tmp.path(), ["build", "-q", a.to_str().unwrap()]).success();
    let before = hashes(&a);
    let manifest = Manifest::read(&a).unwrap();
    assert!(
        !manifest.host_files.is_empty(),
        "libguestfs's hostfiles matched nothing: the test would prove little"
    );

    let _noise = HostNoise::churn(&["/tmp", "/var/tmp", "/etc"]);
    // Host files the appliance copies: hostfiles and a package file.
    let mut read: Vec<PathBuf> = manifest.host_files.iter().map(|h| PathBuf::from(&h.path)).collect();
    read.push(PathBuf::from("/usr/bin/bash"));
    for path in read.iter().filter(|p| p.is_file()) {
        read_and_access(path);
    }
    // Every apt run with a library in it runs ldconfig: /etc/ld.so.cache is
    // rewritten (new inode and times, same bytes).
    ldconfig();
    // Boot the first appliance (its root changes; its hashes were taken).
    let log = qemu::boot(
        &a.join("kernel"),
        &a.join("initrd"),
        &[&a.join("root")],
        &format!("console=ttyS0 panic=1 root=UUID={}", manifest.output.root_uuid),
        Duration::from_secs(600),
    );
    assert!(log.contains("guestfsd"), "the appliance did not reach libguestfs's daemon:\n{log}");

    ga(tmp.path(), ["build", "-q", b.to_str().unwrap()]).success();
    // Something else (apt, another test) changing what the fingerprint
    // covers would make this test meaningless: say what, rather than blame
    // the bytes.
    let after = Manifest::read(&b).unwrap();
    assert_eq!(
        after.fingerprint,
        manifest.fingerprint,
        "the host state changed under the test: {:?}",
        guestfs_appliance::build::fresh::diff(&manifest, &after)
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(hashes(&b), before, "same fingerprint, different bytes after ordinary host activity");
}

/// `SOURCE_DATE_EPOCH` is a build option like the others: recorded, used by
/// `check` without it in the environment, reported when it differs; the
/// image's normalized times are it. A malformed value is an error.
#[test]
fn issue7_source_date_epoch_is_recorded_and_checked() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    use std::ffi::OsStr;
    let tmp = scratch();
    let ga_env = |args: &[&str], epoch: &str| {
        run_in(tmp.path(), &bin("guestfs-appliance"), args, &[("SOURCE_DATE_EPOCH", OsStr::new(epoch))])
    };
    let run = ga_env(&["build", "-q", "--minimal", "--size", "64M", "bad"], "yesterday").expect_code(2);
    assert!(run.stderr().contains("SOURCE_DATE_EPOCH=\"yesterday\""), "{}", run.shown_all());
    assert!(!tmp.path().join("bad").exists(), "{}", run.shown_all());

    ga_env(&["build", "-q", "--minimal", "--size", "1G", "app"], "1000000000").success();
    let m = Manifest::read(&tmp.path().join("app")).unwrap();
    assert_eq!((m.options.source_date_epoch, m.options.timestamp), (Some(1_000_000_000), 1_000_000_000));
    // /usr comes from the host (a package directory): its time is the epoch.
    let out = std::process::Command::new("debugfs")
        .args(["-R", "stat /usr"])
        .arg(tmp.path().join("app/root"))
        .output()
        .expect("run debugfs");
    let stat = String::from_utf8_lossy(&out.stdout);
    assert!(stat.contains("mtime: 0x3b9aca00"), "{stat}");

    ga(tmp.path(), ["check", "app"]).success();
    let run = ga_env(&["check", "app"], "1000000001").expect_code(1);
    assert_eq!(
        run.stdout(),
        "option changed: source-date-epoch 1000000000 → 1000000001\n",
        "{}",
        run.shown_all()
    );
}
