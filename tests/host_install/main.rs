//! Issue 11: the .deb installed on this host with `dpkg -i` — the one test
//! allowed to change the host's package database. It runs the installed
//! tools, proves a dpkg file trigger (from a small package made here with
//! `dpkg-deb --build`) rebuilds the appliance (no systemd as PID 1 here: the
//! hook's inline path), then purges both packages and proves nothing of
//! ours is left. A guard purges them whatever happens.

#[path = "../integration/packages_built.rs"]
mod packages_built;

use std::path::Path;
use std::process::{Command, Output};

/// The test package that touches a watched path (/usr).
const TOUCHER: &str = "guestfs-appliance-trigger-test";

/// Paths that exist only while our package is installed (or were made by
/// its builds); none may exist before the install or after the purge.
const OURS: &[&str] = &[
    "/usr/bin/guestfs-appliance",
    "/usr/bin/make-fixed-appliance",
    "/etc/guestfs-appliance",
    "/etc/profile.d/guestfs-appliance.sh",
    "/etc/kernel/postinst.d/zz-guestfs-appliance",
    "/etc/kernel/postrm.d/zz-guestfs-appliance",
    "/usr/lib/kernel/install.d/95-guestfs-appliance.install",
    "/usr/lib/systemd/system/guestfs-appliance.service",
    "/usr/lib/systemd/system/guestfs-appliance.timer",
    "/usr/lib/systemd/system/guestfs-appliance-watch.service",
    "/etc/systemd/system/timers.target.wants/guestfs-appliance.timer",
    "/var/lib/systemd/deb-systemd-helper-enabled/guestfs-appliance.timer.dsh-also",
    "/var/lib/systemd/deb-systemd-helper-enabled/timers.target.wants/guestfs-appliance.timer",
    "/usr/share/man/man1/guestfs-appliance.1.gz",
    "/usr/share/doc/guestfs-appliance",
    "/usr/share/guestfs-appliance",
    "/var/lib/guestfs-appliance",
    "/usr/share/guestfs-appliance-trigger-test",
];

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn shown(argv: &[&str], out: &Output) -> String {
    format!(
        "{argv:?}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(out.status.success(), "{}", shown(argv, &out));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn is_installed(package: &str) -> bool {
    run(&["dpkg-query", "-W", "-f", "${db:Status-Status}", package]).stdout == b"installed"
}

/// Purges both packages when dropped, even after a failed assertion.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let out = run(&["dpkg", "--purge", TOUCHER, "guestfs-appliance"]);
        if !out.status.success() {
            eprintln!("cleanup: {}", shown(&["dpkg", "--purge"], &out));
        }
    }
}

/// A package holding one file below /usr, which activates our trigger.
fn make_toucher(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("toucher");
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join("usr/share").join(TOUCHER)).unwrap();
    std::fs::write(tree.join("usr/share").join(TOUCHER).join("marker"), "touched\n").unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {TOUCHER}\nVersion: 1.0\nArchitecture: all\nMaintainer: tests <t@localhost>\n\
             Description: touches a path guestfs-appliance's dpkg triggers watch\n"
        ),
    )
    .unwrap();
    let deb = dir.join(format!("{TOUCHER}_1.0_all.deb"));
    ok(&["dpkg-deb", "--root-owner-group", "--build", tree.to_str().unwrap(), deb.to_str().unwrap()]);
    deb
}

#[test]
fn issue11_deb_installs_runs_rebuilds_on_trigger_and_purges_clean() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let root = nix::unistd::geteuid().is_root();
    let have_dpkg = Path::new("/var/lib/dpkg/status").exists();
    if !root || !have_dpkg {
        assert!(!ci, "CI runs as root on Debian");
        eprintln!("skipping: needs root and dpkg");
        return;
    }
    let Some(out) = packages_built::built() else { return };
    let deb = packages_built::one_file(out, ".deb");
    if is_installed("guestfs-appliance") || OURS.iter().any(|p| Path::new(p).exists()) {
        let there: Vec<_> = OURS.iter().filter(|p| Path::new(p).exists()).collect();
        assert!(!ci, "guestfs-appliance is already installed here: {there:?}");
        eprintln!("skipping: guestfs-appliance already installed here ({there:?}); this test would purge it");
        return;
    }
    assert!(!Path::new("/run/systemd/system").exists() || !ci, "this test expects no systemd as PID 1");
    let tmp = tempfile::tempdir().unwrap();
    let toucher = make_toucher(tmp.path());

    let _purge = Purge;
    let install = ok(&["dpkg", "-i", deb.to_str().unwrap()]);
    let appliance = Path::new("/var/lib/guestfs-appliance/appliance");
    // postinst configure built the configured appliance inline.
    assert!(appliance.join("root").is_file(), "postinst built no appliance:\n{install}");
    assert!(install.contains("built /var/lib/guestfs-appliance/appliance"), "{install}");

    // The installed tools work from their installed paths.
    let mfa = tmp.path().join("mfa");
    ok(&["/usr/bin/make-fixed-appliance", mfa.to_str().unwrap()]);
    for f in ["kernel", "initrd", "root", "README.fixed"] {
        assert!(mfa.join(f).is_file(), "make-fixed-appliance wrote no {f}");
    }
    let argv = ["/usr/bin/guestfs-appliance", "status", "--format", "json", "--skip", "virt"];
    let status = run(&argv);
    assert!(matches!(status.status.code(), Some(0 | 1)), "{}", shown(&argv, &status));
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(report.contains("/var/lib/guestfs-appliance/appliance"), "status looked elsewhere:\n{report}");
    let check = run(&["/usr/bin/guestfs-appliance", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", shown(&["check"], &check));

    // A package touching /usr: dpkg runs our trigger, whose hook rebuilds
    // the (removed) appliance inline.
    std::fs::remove_dir_all(appliance).unwrap();
    let touched = ok(&["dpkg", "-i", toucher.to_str().unwrap()]);
    assert!(touched.contains("Processing triggers for guestfs-appliance"), "{touched}");
    assert!(touched.contains("built /var/lib/guestfs-appliance/appliance"), "{touched}");
    assert!(appliance.join("root").is_file(), "the trigger built nothing:\n{touched}");

    // Purge: nothing of ours is left, not even what builds made.
    ok(&["dpkg", "--purge", TOUCHER]);
    ok(&["dpkg", "--purge", "guestfs-appliance"]);
    let left: Vec<_> = OURS.iter().filter(|p| Path::new(p).symlink_metadata().is_ok()).collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    let query = run(&["dpkg-query", "-W", "guestfs-appliance"]);
    assert!(!query.status.success(), "still known to dpkg: {}", String::from_utf8_lossy(&query.stdout));
    let leftover = run(&["sh", "-c", "ls -d /etc/systemd/system/*/guestfs-appliance* /var/lib/dpkg/info/guestfs-appliance* /var/lib/dpkg/triggers/* 2>/dev/null | grep guestfs-appliance; true"]);
    assert!(leftover.stdout.is_empty(), "left behind: {}", String::from_utf8_lossy(&leftover.stdout));
}
