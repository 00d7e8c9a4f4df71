//! Tests of the dpkg handler against the fixture database in
//! `tests/fixtures/dpkg/host` and against this host's own database.

use super::status::{parse_depends, parse_status, primary_arch};
use super::*;
use crate::package::{detect, Unsatisfied};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dpkg/host")
}

fn db() -> DpkgDb {
    open_dpkg(&fixture()).unwrap()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The closure as `name:arch` strings, in result order.
fn closure(db: &DpkgDb, request: &[&str]) -> (Vec<String>, Resolution) {
    let r = db.resolve(&names(request)).unwrap();
    (r.packages.iter().map(Package::qualified_name).collect(), r)
}

fn unsat(package: &str, dependency: &str) -> Unsatisfied {
    Unsatisfied { package: package.into(), dependency: dependency.into() }
}

#[test]
fn primary_arch_is_dpkgs_own() {
    assert_eq!(db().primary_arch(), "amd64");
}

#[test]
fn primary_arch_falls_back_to_the_most_common_arch() {
    let text = "Package: a\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1\n\n\
                Package: b\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1\n\n\
                Package: c\nStatus: install ok installed\nArchitecture: armhf\nVersion: 1\n\n\
                Package: d\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n";
    let installed = parse_status(text, Path::new("status")).unwrap();
    assert_eq!(primary_arch(&installed), "arm64");
}

#[test]
fn closure_follows_depends_pre_depends_and_virtual_awk() {
    let (got, r) = closure(&db(), &["bash"]);
    // base-files Pre-Depends on the virtual `awk`: gawk and mawk both
    // provide it and neither is requested, so the lexically first wins.
    assert_eq!(
        got,
        [
            "base-files:amd64",
            "bash:amd64",
            "debianutils:amd64",
            "gawk:amd64",
            "gcc-12-base:amd64",
            "libc6:amd64",
            "libgcc-s1:amd64",
            "libtinfo6:amd64",
        ]
    );
    assert!(r.missing.is_empty());
    assert!(r.unsatisfied.is_empty(), "{:?}", r.unsatisfied);
    let bash = r.packages.iter().find(|p| p.name == "bash").unwrap();
    assert_eq!(bash.version, "5.2.15-2+b8");
}

#[test]
fn a_requested_provider_is_preferred() {
    let (got, _) = closure(&db(), &["mawk", "base-files"]);
    assert_eq!(
        got,
        ["base-files:amd64", "gcc-12-base:amd64", "libc6:amd64", "libgcc-s1:amd64", "mawk:amd64"]
    );
}

#[test]
fn alternative_falls_through_to_an_installed_provider() {
    // `debconf (>= 0.5) | debconf-2.0`: debconf only has config files
    // left, cdebconf provides debconf-2.0. supermin would lose this.
    let (got, r) = closure(&db(), &["libpam-modules"]);
    assert_eq!(
        got,
        ["cdebconf:amd64", "gcc-12-base:amd64", "libc6:amd64", "libgcc-s1:amd64", "libpam-modules:amd64",]
    );
    assert!(r.unsatisfied.is_empty());
}

#[test]
fn versioned_provides_and_folded_depends() {
    let (got, r) = closure(&db(), &["liblocale-gettext-perl"]);
    assert_eq!(
        got,
        [
            "dpkg:amd64",
            "gcc-12-base:amd64",
            "libc6:amd64",
            "libgcc-s1:amd64",
            "liblocale-gettext-perl:amd64",
            "perl-base:amd64",
            "tar:amd64",
        ]
    );
    assert_eq!(r.unsatisfied, [unsat("dpkg:amd64", "libbz2-1.0")]);
}

#[test]
fn states_decide_what_is_installed() {
    let request = ["man-db", "udev", "debconf", "no-such-package", "udev"];
    let (got, r) = closure(&db(), &request);
    // man-db is triggers-pending: installed. udev (half-configured) and
    // debconf (config-files) are not; each missing name is listed once.
    assert!(got.contains(&"man-db:amd64".to_string()), "{got:?}");
    assert_eq!(r.missing, ["udev", "debconf", "no-such-package"]);
    assert_eq!(
        r.unsatisfied,
        [
            unsat("man-db:amd64", "bsdextrautils | bsdmainutils (<< 12.1.1~dfsg-1)"),
            unsat("dpkg:amd64", "libbz2-1.0"),
        ]
    );
}

#[test]
fn arch_qualified_requests() {
    let db = db();
    let (got, _) = closure(&db, &["libc6:i386"]);
    assert_eq!(got, ["gcc-12-base:i386", "libc6:i386", "libgcc-s1:i386"]);
    let (got, _) = closure(&db, &["libc6"]);
    assert_eq!(got, ["gcc-12-base:amd64", "libc6:amd64", "libgcc-s1:amd64"]);
    let (got, _) = closure(&db, &["libc6:native"]);
    assert_eq!(got, ["gcc-12-base:amd64", "libc6:amd64", "libgcc-s1:amd64"]);
    let (got, r) = closure(&db, &["libc6:arm64", "libc6:amd64", "libc6:i386"]);
    assert_eq!(r.missing, ["libc6:arm64"]);
    assert_eq!(got.len(), 6, "both Multi-Arch: same instances: {got:?}");
}

#[test]
fn foreign_arch_package_dependencies() {
    // hello:i386 is the only hello, so a plain request finds it.
    let (got, r) = closure(&db(), &["hello"]);
    assert_eq!(
        got,
        [
            "gcc-12-base:amd64", // gcc-12-base:amd64
            "gcc-12-base:i386",  // via libgcc-s1:i386
            "hello:i386",
            "libc6:amd64", // via tar and libtinfo6:amd64
            "libc6:i386",  // Pre-Depends: same arch
            "libgcc-s1:amd64",
            "libgcc-s1:i386",
            "libtinfo6:amd64", // libtinfo6:native
            "python3:amd64",   // python3:any, Multi-Arch: allowed
            "tar:amd64",       // plain, Multi-Arch: foreign
        ]
    );
    assert_eq!(
        r.unsatisfied,
        [
            // Plain libtinfo6 from i386 needs libtinfo6:i386 (M-A same).
            unsat("hello:i386", "libtinfo6 (>= 6)"),
            unsat("python3:amd64", "python3.11 (>= 3.11.2-1~)"),
        ]
    );
}

#[test]
fn arch_all_depends_like_the_primary_arch() {
    let (got, _) = closure(&db(), &["lsb-release"]);
    assert_eq!(got, ["lsb-release:all", "python3:amd64"]);
}

#[test]
fn every_requested_installed_package_is_in_the_closure() {
    let db = db();
    let all: Vec<String> = db.installed.iter().map(|p| p.pkg.qualified_name()).collect();
    let r = db.resolve(&all).unwrap();
    let got: Vec<String> = r.packages.iter().map(Package::qualified_name).collect();
    assert_eq!(got, all);
    assert!(r.missing.is_empty());
}

fn files_of(db: &DpkgDb, request: &[&str]) -> Vec<(String, String)> {
    let r = db.resolve(&names(request)).unwrap();
    let picked: Vec<Package> =
        r.packages.into_iter().filter(|p| request.contains(&p.name.as_str())).collect();
    db.files(&picked)
        .unwrap()
        .into_iter()
        .map(|f| (f.path.display().to_string(), f.source.display().to_string()))
        .collect()
}

fn same(paths: &[&str]) -> Vec<(String, String)> {
    paths.iter().map(|p| (p.to_string(), p.to_string())).collect()
}

#[test]
fn files_drop_root_sort_and_apply_foreign_diversions() {
    let got = files_of(&db(), &["bash"]);
    let mut want = same(&[
        "/bin",
        "/bin/bash",
        "/bin/sh",
        "/etc",
        "/etc/bash.bashrc",
        "/usr",
        "/usr/share",
        "/usr/share/doc",
        "/usr/share/doc/bash",
        "/usr/share/doc/bash/copyright",
    ]);
    // dash diverted /bin/sh: bash's copy lives at the diversion target.
    want[2].1 = "/bin/sh.distrib".into();
    assert_eq!(got, want);
}

#[test]
fn the_diverters_own_copy_is_not_diverted() {
    let got = files_of(&db(), &["bash", "dash"]);
    let sh: Vec<_> = got.iter().filter(|(p, _)| p == "/bin/sh").collect();
    assert_eq!(sh, [&("/bin/sh".to_string(), "/bin/sh".to_string())]);
    let got = files_of(&db(), &["dash"]);
    assert!(got.contains(&("/bin/sh".to_string(), "/bin/sh".to_string())), "{got:?}");
}

#[test]
fn local_diversions_apply() {
    let got = files_of(&db(), &["base-files"]);
    let mut want = same(&[
        "/etc",
        "/etc/debian_version",
        "/etc/issue",
        "/usr",
        "/usr/share",
        "/usr/share/base-files",
        "/usr/share/base-files/motd",
    ]);
    want[6].1 = "/usr/share/base-files/motd.orig".into();
    assert_eq!(got, want);
}

#[test]
fn multi_arch_same_lists_merge() {
    let got = files_of(&db(), &["libc6"]);
    assert_eq!(got.len(), 10, "libc6:amd64 only: {got:?}");
    let db = db();
    let both: Vec<Package> = db
        .resolve(&names(&["libc6:amd64", "libc6:i386"]))
        .unwrap()
        .packages
        .into_iter()
        .filter(|p| p.name == "libc6")
        .collect();
    let files = db.files(&both).unwrap();
    let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(
        paths,
        [
            "/lib64",
            "/lib64/ld-linux-x86-64.so.2",
            "/usr",
            "/usr/lib",
            "/usr/lib/i386-linux-gnu",
            "/usr/lib/i386-linux-gnu/libc.so.6",
            "/usr/lib/ld-linux.so.2",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/share",
            "/usr/share/doc",
            "/usr/share/doc/libc6",
            "/usr/share/doc/libc6/copyright",
        ]
    );
}

#[test]
fn a_missing_file_list_is_an_error_naming_package_and_file() {
    let debconf = Package { name: "debconf".into(), version: "1.5.82".into(), arch: "all".into() };
    let err = db().files(&[debconf]).unwrap_err();
    assert!(matches!(err, PackageError::MissingFileList { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("package debconf:all"), "{msg}");
    assert!(msg.contains("info/debconf.list"), "{msg}");
    assert!(msg.contains("dpkg --verify debconf"), "{msg}");
}

fn root_with_status(status: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("var/lib/dpkg");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("status"), status).unwrap();
    dir
}

fn corrupt_line(status: &str) -> (usize, String) {
    let dir = root_with_status(status);
    match open_dpkg(dir.path()) {
        Err(e @ PackageError::Corrupt { line, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&dir.path().join(STATUS_FILE).display().to_string()), "{msg}");
            assert!(msg.contains("hint:"), "{msg}");
            (line, msg)
        }
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn corrupt_status_files_are_refused_with_path_and_line() {
    let ok = "Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n\n";
    let (line, msg) = corrupt_line(&format!("{ok} continued\n"));
    assert_eq!(line, 6, "{msg}");
    let (line, msg) = corrupt_line(&format!("{ok}Package: b\nno colon here\n"));
    assert_eq!(line, 7);
    assert!(msg.contains("no colon here"), "{msg}");
    let (line, msg) = corrupt_line(&format!("{ok}Package: b\nVersion: 1\n"));
    assert_eq!(line, 6);
    assert!(msg.contains("b has no Status"), "{msg}");
    let (line, _) = corrupt_line(&format!("{ok}Package: b\nVersion: 1\nStatus: install ok\n"));
    assert_eq!(line, 8);
    let (line, _) = corrupt_line(&format!("{ok}Version: 1\nStatus: install ok installed\n"));
    assert_eq!(line, 6);
    let (line, msg) = corrupt_line(
        "Package: b\nStatus: install ok installed\nArchitecture: all\nVersion: 1\nDepends: a, | c\n",
    );
    assert_eq!(line, 5);
    assert!(msg.contains("malformed dependency"), "{msg}");
}

#[test]
fn unreadable_status_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_dpkg(dir.path()).unwrap_err();
    assert!(matches!(err, PackageError::Io { .. }));
    assert!(err.to_string().contains("var/lib/dpkg/status"), "{err}");
}

#[test]
fn diversions_must_come_in_threes_and_may_be_absent() {
    let dir = root_with_status("Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n");
    assert!(open_dpkg(dir.path()).is_ok(), "no diversions file is fine");
    std::fs::write(dir.path().join(DIVERSIONS_FILE), "/a\n/a.real\n").unwrap();
    let err = open_dpkg(dir.path()).unwrap_err();
    assert!(matches!(err, PackageError::Corrupt { line: 2, .. }), "{err:?}");
}

#[test]
fn path_order_matches_path_ord() {
    let mut paths: Vec<PathBuf> =
        ["/usr/lib-x", "/usr/lib/x", "/usr/lib", "/usr", "/usr/lib.d", "/u", "/usr/lib/x/y", "/usr0"]
            .iter()
            .map(PathBuf::from)
            .collect();
    let mut by_path = paths.clone();
    by_path.sort();
    paths.sort_by(|a, b| path_order(a, b));
    assert_eq!(paths, by_path);
}

#[test]
fn dependency_fields_parse() {
    let groups = parse_depends("a (>= 1:2), b:any | c (<< 3) [amd64] <!nocheck>, d:native,").unwrap();
    let shape: Vec<Vec<(String, Option<String>)>> = groups
        .iter()
        .map(|g| g.alternatives.iter().map(|a| (a.name.clone(), a.qualifier.clone())).collect())
        .collect();
    assert_eq!(
        shape,
        [
            vec![("a".to_string(), None)],
            vec![("b".to_string(), Some("any".to_string())), ("c".to_string(), None)],
            vec![("d".to_string(), Some("native".to_string()))],
        ]
    );
    assert_eq!(groups[1].raw, "b:any | c (<< 3) [amd64] <!nocheck>");
}

#[test]
fn detect_and_database_files() {
    let root = fixture();
    let db = detect(&root).unwrap();
    assert_eq!(db.handler(), "dpkg");
    assert_eq!(db.root(), root);
    assert_eq!(db.database_files(), [root.join("var/lib/dpkg/status"), root.join("var/lib/dpkg/diversions")]);
}

/// libguestfs's own package list on this host, resolved against the real
/// database: the end-to-end check that real stanzas parse and the
/// closure holds what an appliance cannot do without.
#[test]
fn real_host_resolves_libguestfs_packages() {
    let list = Path::new("/usr/lib/x86_64-linux-gnu/guestfs/supermin.d/packages");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !list.is_file() || !is_present(Path::new("/")) {
        assert!(!ci, "CI=true but {} or /var/lib/dpkg/status is missing", list.display());
        eprintln!("skipping: {} or /var/lib/dpkg/status not present", list.display());
        return;
    }
    let text = std::fs::read_to_string(list).unwrap();
    let request: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    let start = std::time::Instant::now();
    let db = open_dpkg(Path::new("/")).unwrap();
    let r = db.resolve(&request).unwrap();
    let files = db.files(&r.packages).unwrap();
    let elapsed = start.elapsed();
    let got: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
    for want in ["bash", "libc6", "coreutils", "util-linux", "dpkg"] {
        assert!(got.contains(&want), "{want} missing from {got:?}");
    }
    for name in &request {
        let installed = r.packages.iter().any(|p| &p.name == name);
        assert!(installed || r.missing.contains(name), "{name} neither resolved nor missing");
    }
    let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
    assert!(paths.windows(2).all(|w| w[0] < w[1]), "files sorted and unique");
    assert!(paths.contains(&Path::new("/bin/sh")) || paths.contains(&Path::new("/usr/bin/sh")));
    assert!(!paths.contains(&Path::new("/.")));
    eprintln!(
        "real host: {} requested, {} packages, {} missing, {} unsatisfied, {} files, open+resolve+files in {:?}",
        request.len(),
        r.packages.len(),
        r.missing.len(),
        r.unsatisfied.len(),
        files.len(),
        elapsed
    );
}

/// supermin's rule, now the handler's flag: regular files under `/etc/` on
/// the host are config files; `/etc` itself, directories, symlinks and paths
/// missing on the host are not.
#[test]
fn config_files_are_regular_files_under_etc() {
    let dir = root_with_status("Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n");
    let root = dir.path();
    let listed = ["/etc", "/etc/a.conf", "/etc/alternatives", "/etc/alternatives/a", "/etc/gone", "/usr/a"];
    std::fs::create_dir_all(root.join(INFO_DIR)).unwrap();
    std::fs::write(root.join(INFO_DIR).join("a.list"), listed.join("\n") + "\n").unwrap();
    std::fs::create_dir_all(root.join("etc/alternatives")).unwrap();
    std::fs::write(root.join("etc/a.conf"), "x").unwrap();
    std::os::unix::fs::symlink("/usr/a", root.join("etc/alternatives/a")).unwrap();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::write(root.join("usr/a"), "x").unwrap();
    let db = open_dpkg(root).unwrap();
    let a = db.resolve(&names(&["a"])).unwrap().packages;
    let flags: Vec<(String, bool)> =
        db.files(&a).unwrap().into_iter().map(|f| (f.path.display().to_string(), f.config)).collect();
    let want: Vec<(String, bool)> = listed.iter().map(|p| (p.to_string(), *p == "/etc/a.conf")).collect();
    assert_eq!(flags, want);
}
