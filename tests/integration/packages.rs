//! Issue 11: the packages `packaging/build` makes, inspected with the
//! distributions' own tools: the .deb with dpkg-deb (file list, conffiles,
//! triggers, maintainer scripts), the RPM with rpm (file list, scriptlets,
//! file triggers) and installed into a fixture root with `rpm --root`, the
//! Arch package built by makepkg (as nobody) and installed into a fixture
//! root with `pacman --root`; man pages rendered with `man -l`, completions
//! loaded by bash, zsh and fish. Installing the .deb on this host is in
//! `tests/host_install` (a test binary of its own, so that no other test
//! runs while /etc/guestfs-appliance/config.toml exists).

use std::path::PathBuf;
use std::process::Command;

use clap::CommandFactory;
use guestfs_appliance::cli::{Cli, MakeFixedCli};

use crate::packages_built::{built, one_file};
use crate::util::*;

/// Run `argv`, assert success, return stdout.
fn stdout_of(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Man page names for a clap command and its visible subcommands.
fn man_pages(cmd: clap::Command, prefix: &str, out: &mut Vec<String>) {
    let name =
        if prefix.is_empty() { cmd.get_name().to_string() } else { format!("{prefix}-{}", cmd.get_name()) };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub.clone(), &name, out);
    }
    out.push(format!("{name}.1.gz"));
}

/// Every file all three packages must install (paths that differ per
/// distribution are added by the callers).
fn common_files() -> Vec<String> {
    let mut pages = Vec::new();
    man_pages(Cli::command(), "", &mut pages);
    man_pages(MakeFixedCli::command(), "", &mut pages);
    assert!(pages.contains(&"guestfs-appliance-watch.1.gz".to_string()), "{pages:?}");
    assert!(!pages.iter().any(|p| p.contains("generate")), "hidden commands get no page: {pages:?}");
    let mut files: Vec<String> = pages.iter().map(|p| format!("/usr/share/man/man1/{p}")).collect();
    files.extend(
        [
            "/usr/bin/guestfs-appliance",
            "/usr/bin/make-fixed-appliance",
            "/etc/guestfs-appliance/config.toml",
            "/etc/profile.d/guestfs-appliance.sh",
            "/usr/lib/systemd/system/guestfs-appliance.service",
            "/usr/lib/systemd/system/guestfs-appliance.timer",
            "/usr/lib/systemd/system/guestfs-appliance-watch.service",
            "/usr/share/bash-completion/completions/guestfs-appliance",
            "/usr/share/bash-completion/completions/make-fixed-appliance",
            "/usr/share/fish/vendor_completions.d/guestfs-appliance.fish",
            "/usr/share/fish/vendor_completions.d/make-fixed-appliance.fish",
            "/usr/share/guestfs-appliance/status-schema.json",
            "/usr/share/doc/guestfs-appliance/README.md",
        ]
        .map(String::from),
    );
    files
}

fn assert_has_all(listed: &[String], want: &[String], what: &str) {
    let missing: Vec<&String> = want.iter().filter(|w| !listed.contains(w)).collect();
    assert!(missing.is_empty(), "{what} lacks {missing:#?}; it has {listed:#?}");
}

/// The hook command every scriptlet, trigger and hook must run.
const HOOK: &str = "/usr/bin/guestfs-appliance build --if-needed --hook";

#[test]
fn issue11_deb_files_conffiles_triggers_and_maintainer_scripts() {
    let Some(out) = built() else { return };
    let deb = one_file(out, ".deb");
    let listing = stdout_of(&["dpkg-deb", "--contents", deb.to_str().unwrap()]);
    let files: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    let mut want = common_files();
    want.extend(
        [
            "/etc/kernel/postinst.d/zz-guestfs-appliance",
            "/etc/kernel/postrm.d/zz-guestfs-appliance",
            "/usr/lib/kernel/install.d/95-guestfs-appliance.install",
            "/usr/share/zsh/vendor-completions/_guestfs-appliance",
            "/usr/share/zsh/vendor-completions/_make-fixed-appliance",
        ]
        .map(String::from),
    );
    assert_has_all(&files, &want, "the .deb");
    assert!(!files.iter().any(|f| f.starts_with("/usr/local")), "{files:#?}");
    for exe in ["/usr/bin/guestfs-appliance", "/etc/kernel/postinst.d/zz-guestfs-appliance"] {
        let line = listing.lines().find(|l| l.ends_with(&format!(".{exe}"))).unwrap();
        assert!(line.starts_with("-rwxr-xr-x 0/0 "), "{line}");
    }

    let control = scratch();
    let dir = control.path().join("DEBIAN");
    stdout_of(&["dpkg-deb", "--control", deb.to_str().unwrap(), dir.to_str().unwrap()]);
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("DEBIAN/{name}: {e}"));
    let conffiles: Vec<String> = read("conffiles").lines().map(String::from).collect();
    for c in [
        "/etc/guestfs-appliance/config.toml",
        "/etc/profile.d/guestfs-appliance.sh",
        "/etc/kernel/postinst.d/zz-guestfs-appliance",
        "/etc/kernel/postrm.d/zz-guestfs-appliance",
    ] {
        assert!(conffiles.contains(&c.to_string()), "{c} is not a conffile: {conffiles:?}");
    }
    let triggers: Vec<String> = read("triggers")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(String::from)
        .collect();
    for path in ["/usr", "/lib", "/boot"] {
        assert!(triggers.contains(&format!("interest-noawait {path}")), "{triggers:?}");
    }
    assert!(
        triggers.iter().all(|t| t.starts_with("interest-noawait ")),
        "a trigger that makes dpkg wait: {triggers:?}"
    );
    let postinst = read("postinst");
    assert!(postinst.contains("triggered)") && postinst.contains(&format!("{HOOK} || true")), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper") && postinst.contains("guestfs-appliance.timer"),
        "{postinst}"
    );
    assert!(!postinst.contains("#DEBHELPER#"), "cargo-deb did not fill in the unit handling:\n{postinst}");
    let postrm = read("postrm");
    assert!(
        postrm.contains("rm -rf /var/lib/guestfs-appliance") && postrm.contains("deb-systemd-helper purge"),
        "{postrm}"
    );
    for script in ["postinst", "postrm", "prerm"] {
        if dir.join(script).exists() {
            let ok = Command::new("sh").arg("-n").arg(dir.join(script)).status().unwrap();
            assert!(ok.success(), "{script} is not valid sh:\n{}", read(script));
        }
    }
    // The timer is enabled and started on installation; the watch service
    // ships disabled (dh_installsystemd --no-enable: enabled again on
    // upgrade only if an admin had enabled it) and is not started.
    let first_enable: Vec<&str> = postinst.split("was-enabled defaults to true").skip(1).collect();
    assert_eq!(first_enable.len(), 1, "{postinst}");
    assert!(first_enable[0].contains("deb-systemd-helper enable guestfs-appliance.timer"), "{postinst}");
    assert!(!first_enable[0].split("# End").next().unwrap().contains("watch"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper debian-installed guestfs-appliance-watch.service"),
        "{postinst}"
    );
    let started: Vec<&str> =
        postinst.lines().filter(|l| l.contains("deb-systemd-invoke $_dh_action")).collect();
    assert!(!started.is_empty() && started.iter().all(|l| !l.contains("watch")), "{postinst}");
}

#[test]
fn issue11_man_pages_render_and_completions_load() {
    let Some(out) = built() else { return };
    if !have_tool("man") || !have_tool("bash") || !have_tool("zsh") || !have_tool("fish") {
        return;
    }
    let tmp = scratch();
    let root = tmp.path().join("root");
    stdout_of(&["dpkg-deb", "-x", one_file(out, ".deb").to_str().unwrap(), root.to_str().unwrap()]);
    let man1 = root.join("usr/share/man/man1");
    let mut pages = 0;
    for page in std::fs::read_dir(&man1).unwrap() {
        let page = page.unwrap().path();
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let stem = page.file_name().unwrap().to_string_lossy().trim_end_matches(".1.gz").to_string();
        assert!(
            out.status.success() && text.contains("NAME") && text.contains(&stem),
            "{}: {text}",
            page.display()
        );
        assert!(out.stderr.is_empty(), "{}: {}", page.display(), String::from_utf8_lossy(&out.stderr));
        pages += 1;
    }
    assert!(pages >= 10, "{pages} man pages");

    let bash = root.join("usr/share/bash-completion/completions/guestfs-appliance");
    let listed =
        stdout_of(&["bash", "-c", &format!("source {} && complete -p guestfs-appliance", bash.display())]);
    assert!(listed.contains("guestfs-appliance"), "{listed}");
    let zsh_dir = root.join("usr/share/zsh/vendor-completions");
    let zsh = stdout_of(&[
        "zsh",
        "-fc",
        &format!("fpath=({} $fpath); autoload -Uz compinit; compinit -u -D; print -r -- $_comps[guestfs-appliance] $_comps[make-fixed-appliance]", zsh_dir.display()),
    ]);
    assert_eq!(zsh.trim(), "_guestfs-appliance _make-fixed-appliance");
    let fish = root.join("usr/share/fish/vendor_completions.d/guestfs-appliance.fish");
    let offered = stdout_of(&[
        "fish",
        "--no-config",
        "-c",
        &format!("source {}; complete -C 'guestfs-appliance wa'", fish.display()),
    ]);
    assert!(offered.lines().any(|l| l.starts_with("watch")), "{offered}");
}

#[test]
fn issue11_rpm_files_scriptlets_file_triggers_and_fixture_root_install() {
    let Some(out) = built() else { return };
    if !have_tool("rpm") {
        return;
    }
    let rpm = one_file(out, ".rpm");
    let rpm = rpm.to_str().unwrap();
    let files: Vec<String> = stdout_of(&["rpm", "-qpl", rpm]).lines().map(String::from).collect();
    let mut want = common_files();
    want.extend(
        [
            "/usr/share/zsh/site-functions/_guestfs-appliance",
            "/usr/lib/systemd/system-preset/50-guestfs-appliance.preset",
            "/usr/lib/kernel/install.d/95-guestfs-appliance.install",
            "/var/lib/guestfs-appliance",
        ]
        .map(String::from),
    );
    assert_has_all(&files, &want, "the RPM");
    let config: Vec<String> = stdout_of(&["rpm", "-qpc", rpm]).lines().map(String::from).collect();
    assert!(config.contains(&"/etc/guestfs-appliance/config.toml".to_string()), "{config:?}");

    let scripts = stdout_of(&["rpm", "-qp", "--scripts", rpm]);
    for (scriptlet, needle) in [
        ("postinstall scriptlet", HOOK),
        ("postinstall scriptlet", "preset guestfs-appliance.timer"),
        ("preuninstall scriptlet", "disable --now guestfs-appliance.timer"),
        ("postuninstall scriptlet", "rm -rf /var/lib/guestfs-appliance"),
    ] {
        let body = scripts.split(scriptlet).nth(1).unwrap_or_else(|| panic!("no {scriptlet}:\n{scripts}"));
        let body = body.split(" scriptlet").next().unwrap();
        assert!(body.contains(needle), "{scriptlet} lacks {needle:?}:\n{scripts}");
    }
    let triggers = stdout_of(&["rpm", "-qp", "--filetriggers", rpm]);
    for kind in ["transfiletriggerin", "transfiletriggerpostun"] {
        let section = triggers.split(kind).nth(1).unwrap_or_else(|| panic!("no {kind}:\n{triggers}"));
        assert!(section.contains(HOOK), "{kind}:\n{triggers}");
    }
    for prefix in ["/usr", "/lib", "/boot"] {
        assert!(triggers.contains(prefix), "{prefix}:\n{triggers}");
    }

    // Into a fixture root (no shell in it: scriptlets and triggers are
    // checked above, not run), with the Fedora database layout.
    let tmp = scratch();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("usr/lib/sysimage/rpm")).unwrap();
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("../../usr/lib/sysimage/rpm", root.join("var/lib/rpm")).unwrap();
    let r = root.to_str().unwrap();
    let db = ["--root", r, "--dbpath", "/usr/lib/sysimage/rpm"];
    stdout_of(&[&["rpm"][..], &db, &["--initdb"]].concat());
    stdout_of(&[&["rpm"][..], &db, &["-i", "--nodeps", "--noscripts", "--notriggers", rpm]].concat());
    let installed: Vec<String> = stdout_of(&[&["rpm"][..], &db, &["-ql", "guestfs-appliance"]].concat())
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(installed, files, "the database's file list is the package's");
    for f in &files {
        assert!(root.join(f.trim_start_matches('/')).symlink_metadata().is_ok(), "{f} not in {r}");
    }
    let ga = root.join("usr/bin/guestfs-appliance");
    let version = stdout_of(&[ga.to_str().unwrap(), "--version"]);
    assert!(version.starts_with("guestfs-appliance "), "{version}");
    let verify = Command::new("rpm").args(db).args(["-V", "--nodeps", "guestfs-appliance"]).output().unwrap();
    assert!(verify.status.success(), "rpm -V: {}", String::from_utf8_lossy(&verify.stdout));
    stdout_of(
        &[&["rpm"][..], &db, &["-e", "--nodeps", "--noscripts", "--notriggers", "guestfs-appliance"]]
            .concat(),
    );
    assert!(!ga.exists() && !root.join("etc/guestfs-appliance/config.toml").exists());
}

#[test]
fn issue11_arch_package_builds_with_makepkg_and_installs_with_pacman() {
    let Some(out) = built() else { return };
    if !have_tool("makepkg") || !have_tool("pacman") || !have_tool("setpriv") || !is_root() {
        return;
    }
    let tmp = scratch();
    // makepkg refuses to run as root: build as nobody in a directory it may
    // write, from copies of the files packaging/build wrote.
    let work = tmp.path().join("makepkg");
    std::fs::create_dir(&work).unwrap();
    for entry in std::fs::read_dir(out.join("arch")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, work.join(path.file_name().unwrap())).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for dir in [tmp.path(), work.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let pkgbuild = std::fs::read_to_string(work.join("PKGBUILD")).unwrap();
    assert!(!pkgbuild.contains('@'), "unrendered placeholder:\n{pkgbuild}");
    let run = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["env", "HOME=/tmp"])
        .arg(format!("PKGDEST={}", work.display()))
        .arg(format!("SRCDEST={}", work.display()))
        .arg(format!("BUILDDIR={}", work.display()))
        .args(["makepkg", "--nodeps", "--noconfirm"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "makepkg: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let pkg = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".pkg.tar"))
        .expect("makepkg made a package");

    let root = tmp.path().join("root");
    let dbpath = root.join("var/lib/pacman");
    std::fs::create_dir_all(&dbpath).unwrap();
    let pacman = Command::new("pacman")
        .arg("--root")
        .arg(&root)
        .arg("--dbpath")
        .arg(&dbpath)
        .args(["--noconfirm", "--noscriptlet", "--nodeps", "--nodeps", "-U"])
        .arg(&pkg)
        .output()
        .unwrap();
    let said =
        format!("{}\n{}", String::from_utf8_lossy(&pacman.stdout), String::from_utf8_lossy(&pacman.stderr));
    assert!(pacman.status.success(), "pacman -U: {said}");
    // pacman ran our ALPM hook after the transaction (inside the fixture
    // root, which has no libc for our binary: its failure is pacman's
    // report, not the transaction's).
    assert!(
        said.contains("Rebuilding the libguestfs fixed appliance if needed"),
        "the hook did not run: {said}"
    );
    let local: Vec<PathBuf> =
        std::fs::read_dir(dbpath.join("local")).unwrap().map(|e| e.unwrap().path()).collect();
    let entry = local
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("guestfs-appliance-"))
        .unwrap();
    let listed = std::fs::read_to_string(entry.join("files")).unwrap();
    let mut want = common_files();
    want.extend(
        [
            "/usr/share/libalpm/hooks/guestfs-appliance.hook",
            "/usr/share/zsh/site-functions/_guestfs-appliance",
        ]
        .map(String::from),
    );
    for f in &want {
        let rel = f.trim_start_matches('/');
        // makepkg compresses man pages itself; ours are gzipped already.
        assert!(listed.lines().any(|l| l == rel), "{rel} not in the pacman database:\n{listed}");
        assert!(root.join(rel).exists(), "{rel} not installed under {}", root.display());
    }
    let hook = std::fs::read_to_string(root.join("usr/share/libalpm/hooks/guestfs-appliance.hook")).unwrap();
    assert!(hook.contains("When = PostTransaction") && hook.contains(&format!("Exec = {HOOK}")), "{hook}");
    assert!(
        hook.contains("# /usr/share/libalpm/hooks/guestfs-appliance.hook"),
        "header names its path:\n{hook}"
    );
    let backup = listed.split("%BACKUP%").nth(1).unwrap_or("");
    assert!(
        backup.lines().any(|l| l.starts_with("etc/guestfs-appliance/config.toml")),
        "config.toml is not a backup file:\n{listed}"
    );
}
