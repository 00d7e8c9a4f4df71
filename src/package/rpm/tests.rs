//! Tests of the rpm handler: the output parser, rich dependencies, the
//! closure and file lists on packages given as data or as rpm output, and
//! database lookup. Roots made by the real rpm are tested end
//! to end in `tests/integration/pkgdb.rs`.

use super::*;

fn req(name: &str) -> Requirement {
    Requirement { name: name.into(), flags: 0, version: String::new() }
}

fn file(path: &str, flags: u32, mode: u32) -> RpmFile {
    RpmFile { path: path.into(), flags, mode }
}

fn pkg(name: &str, arch: &str, requires: &[&str], provides: &[&str], files: Vec<RpmFile>) -> Installed {
    let mut provides: Vec<String> = provides.iter().map(|s| s.to_string()).collect();
    provides.push(name.to_string());
    Installed {
        pkg: Package { name: name.into(), version: "1.0-1".into(), arch: arch.into() },
        requires: requires.iter().map(|r| req(r)).collect(),
        provides,
        owned: files.into_iter().map(|f| f.path).collect(),
        dirs: Vec::new(),
        files: 0..0,
    }
}

fn db(installed: Vec<Installed>) -> RpmDb {
    let location = Location { dbpath: "/var/lib/rpm".into(), main_file: "/nonexistent/rpmdb.sqlite".into() };
    RpmDb::new(Path::new("/nonexistent"), location, installed, query::FileTable::default())
}

fn closure(db: &RpmDb, names: &[&str]) -> (Vec<String>, Resolution) {
    let r = db.resolve(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    (r.packages.iter().map(|p| format!("{}.{}", p.name, p.arch)).collect(), r)
}

/// A small Fedora-like host: requirements by name, by path, by soname and
/// arch-qualified provide, a virtual provide, rpmlib() and a rich one.
fn host() -> RpmDb {
    let sh = file("/usr/bin/sh", 0, 0o120_777);
    db(vec![
        pkg("rpm", "x86_64", &[], &[], vec![]),
        pkg(
            "app",
            "x86_64",
            &["rpmlib(PayloadIsZstd)", "/usr/bin/sh", "libfx.so.1()(64bit)", "virt", "(fx-tools or zsh)"],
            &[],
            vec![],
        ),
        pkg("bash", "x86_64", &[], &[], vec![sh, file("/usr/bin/bash", 0, 0o100_755)]),
        pkg("fx-lib", "x86_64", &[], &["libfx.so.1()(64bit)", "fx-lib(x86-64)"], vec![]),
        pkg("fx-lib", "i686", &[], &["libfx.so.1"], vec![]),
        pkg("longer-provider", "noarch", &[], &["virt"], vec![]),
        pkg("short", "noarch", &[], &["virt"], vec![]),
        pkg("zsh", "x86_64", &[], &[], vec![]),
        pkg("glibc", "i686", &[], &[], vec![]),
        pkg("glibc", "x86_64", &[], &[], vec![]),
        pkg("user", "x86_64", &["glibc", "fx-lib(x86-64)", "nothere >= 2"], &[], vec![]),
    ])
}

#[test]
fn closure_resolves_paths_sonames_virtuals_and_rich_deps() {
    let (got, r) = closure(&host(), &["app"]);
    // /usr/bin/sh → bash (file index); the soname → fx-lib.x86_64; `virt`
    // → the shortest provider's name; `(fx-tools or zsh)` → zsh.
    assert_eq!(got, ["app.x86_64", "bash.x86_64", "fx-lib.x86_64", "short.noarch", "zsh.x86_64"]);
    assert!(r.unsatisfied.is_empty(), "{:?}", r.unsatisfied);
}

#[test]
fn providers_in_the_closure_and_of_the_same_arch_win() {
    let (got, _) = closure(&host(), &["app", "longer-provider"]);
    assert!(
        got.contains(&"longer-provider.noarch".to_string()) && !got.contains(&"short.noarch".to_string())
    );
    let (got, r) = closure(&host(), &["user"]);
    assert_eq!(got, ["fx-lib.x86_64", "glibc.x86_64", "user.x86_64"]);
    assert_eq!(
        r.unsatisfied,
        [Unsatisfied { package: "user.x86_64".into(), dependency: "nothere >= 2".into() }]
    );
}

#[test]
fn requested_names_prefer_native_arch_then_a_unique_provider() {
    let (got, r) = closure(&host(), &["glibc", "libfx.so.1", "virt", "nosuch"]);
    // glibc: x86_64 over i686; libfx.so.1 has one provider; virt has two.
    assert_eq!(got, ["fx-lib.i686", "glibc.x86_64"]);
    assert_eq!(r.missing, ["virt", "nosuch"]);
}

#[test]
fn versioned_requirements_display_like_rpm() {
    let r = Requirement { name: "fx-lib".into(), flags: 12, version: "1.0".into() };
    assert_eq!(r.display(), "fx-lib >= 1.0");
    assert_eq!(req("fx-lib").display(), "fx-lib");
}

#[test]
fn files_flag_config_and_leave_out_ghost_regular_files() {
    let records = vec![
        file("/usr/bin/ld", RPMFILE_GHOST, 0o120_777),
        file("/var/log/fx.log", RPMFILE_GHOST, 0o100_644),
        file("/etc/fx.conf", RPMFILE_CONFIG | 16, 0o100_644),
        file("/run/fx", RPMFILE_GHOST, 0o040_755),
        file("/usr/lib/fx", 0, 0o040_755),
        // fy's copy of the shared directory.
        file("/usr/lib/fx", 0, 0o040_755),
        file("/usr/bin/fx-suid", 0, 0o104_755),
    ];
    let got: Vec<(String, bool)> =
        package_files(records).into_iter().map(|f| (f.path.display().to_string(), f.config)).collect();
    let want = [
        ("/etc/fx.conf", true),
        ("/run/fx", false),
        ("/usr/bin/fx-suid", false),
        ("/usr/bin/ld", false),
        ("/usr/lib/fx", false),
    ];
    assert_eq!(got, want.map(|(p, c)| (p.to_string(), c)));
}

/// The database of `out` (rpm's output for [`query::QUERY_FORMAT`]).
fn parsed(out: &[u8]) -> RpmDb {
    let location = Location { dbpath: "/var/lib/rpm".into(), main_file: "/nonexistent/rpmdb.sqlite".into() };
    let (installed, table) = query::parse(out.to_vec(), &location.main_file).unwrap();
    RpmDb::new(Path::new("/nonexistent"), location, installed, table)
}

/// What `files` lists for the closure of `names`: (path, config).
fn listed(db: &RpmDb, names: &[&str]) -> Vec<(String, bool)> {
    let (_, r) = closure(db, names);
    db.files(&r.packages)
        .unwrap()
        .into_iter()
        .map(|f| (f.path.to_string_lossy().into_owned(), f.config))
        .collect()
}

/// Hostile names: quotes, spaces and newlines in shescaped fields; raw
/// base names with spaces, quotes, backslashes and a newline (continued on
/// the next line); a pseudo-package without an arch.
#[test]
fn query_output_parses_with_hostile_names() {
    let out = b"/P 'fx' '1:2.0-1' 'x86_64'\n/R 'rpmlib(X)' 16777226 '3.0'\n/R '/bin/sh' 0 ''\n\
/R '/usr/it'\\''s' 0 ''\n/R '(/usr/a b\nc or zsh)' 0 ''\n/V 'fx(x86-64)'\n\
/D '/usr/'\n/D '/bin/'\n/D '/etc/a '\\''b/'\n\
/F 0 0 33188 it's\n/F 0 64 33188 a b\nc\n/F 1 0 41471 sh\n/F 1 0 33261 \\x y\n/F 0 0 33188 a b\n/F 2 1 33188 c\n\
/P 'gpg-pubkey' '1-2' (none)\n\
/P 'sh' '1-1' 'noarch'\n/D '/usr/bin/'\n/D '/bin/'\n/F 0 0 33261 sh\n/F 1 0 33261 sh\n";
    let (got, table) = query::parse(out.to_vec(), Path::new("/db")).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].pkg, Package { name: "fx".into(), version: "1:2.0-1".into(), arch: "x86_64".into() });
    assert_eq!(
        got[0].requires[0],
        Requirement { name: "rpmlib(X)".into(), flags: 16_777_226, version: "3.0".into() }
    );
    assert_eq!(got[0].requires[3].name, "(/usr/a b\nc or zsh)");
    assert_eq!(got[0].provides, ["fx(x86-64)"]);
    assert_eq!(
        table.records(&got[0]).collect::<Vec<_>>(),
        [
            file("/usr/it's", 0, 33188),
            file("/usr/a b\nc", 64, 33188),
            file("/bin/sh", 0, 41471),
            file("/bin/\\x y", 0, 33261),
            file("/usr/a b", 0, 33188),
            file("/etc/a 'b/c", 1, 33188),
        ]
    );
    // Required: /bin/sh, /usr/it's and (in the rich one) /usr/a — the
    // word split of a rich dependency, as the closure sees it. Only the
    // required paths are put together for the owners index.
    let owned = |i: usize| got[i].owned.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
    assert_eq!(owned(0), ["/usr/it's", "/bin/sh"]);
    assert!(owned(1).is_empty() && table.records(&got[1]).next().is_none());
    assert_eq!(got[1].pkg.arch, "");
    assert_eq!(owned(2), ["/bin/sh"]);
}

/// A base name's newline keeps the rest of it, whatever that looks like,
/// in the base name: here text shaped like a record.
#[test]
fn a_base_name_with_a_newline_cannot_make_a_record() {
    let out = b"/P 'a' '1' 'x'\n/R '/d/n\nP '\\''b'\\'' 0' 0 ''\n/D '/d/'\n/F 0 0 33188 n\nP 'b' 0\n/F 0 0 33188 m\n\
/P 'b' '1' 'x'\n";
    let db = parsed(out);
    assert_eq!(db.installed.len(), 2);
    assert_eq!(db.installed[0].owned, [PathBuf::from("/d/n\nP 'b' 0")]);
    assert_eq!(listed(&db, &["a"]), [("/d/m".to_string(), false), ("/d/n\nP 'b' 0".to_string(), false)]);
}

/// Files from rpm's output through the closure: exact paths from directory
/// index and base name, `%config` flagged, ghost regular files left out,
/// and a package pulled in only by a path requirement (its file in another
/// package's directory, a decoy with the same base name elsewhere and
/// a shorter name).
#[test]
fn files_come_from_the_query_output_by_closure() {
    let out = b"/P 'app' '1-1' 'noarch'\n/R '/usr/share/d/marker' 0 ''\n/D '/usr/bin/'\n/F 0 0 33261 app\n\
/P 'data' '1-1' 'noarch'\n/D '/usr/share/d/'\n/D '/etc/d/'\n/D '/var/log/'\n\
/F 0 0 33188 marker\n/F 1 17 33188 d.conf\n/F 2 64 33188 d.log\n/F 2 64 16877 d\n/F 0 0 41471 link\n\
/P 'dc' '1-1' 'noarch'\n/D '/usr/share/d/'\n/D '/usr/share/e/'\n/F 0 0 33188 other\n/F 1 0 33188 marker\n";
    let db = parsed(out);
    let (got, r) = closure(&db, &["app"]);
    assert_eq!(got, ["app.noarch", "data.noarch"]);
    assert!(r.unsatisfied.is_empty(), "{:?}", r.unsatisfied);
    let want = [
        ("/etc/d/d.conf", true),
        ("/usr/bin/app", false),
        ("/usr/share/d/link", false),
        ("/usr/share/d/marker", false),
        ("/var/log/d", false),
    ];
    assert_eq!(listed(&db, &["app"]), want.map(|(p, c)| (p.to_string(), c)));
}

#[test]
fn garbage_output_is_refused_with_line_and_hint() {
    for (bad, line) in [
        (&b"/R 'x' 0 ''\n"[..], 1),
        (b"/P 'a' '1' 'x'\n/R 'x' nine ''\n", 2),
        (b"/P 'a' '1' 'x'\nQ\n", 2),
        (b"/P 'a' '1' 'x'\n/Q\n", 2),
        (b"/P 'a' '1\n", 1),
        (b"/P 'a' '1'x 'y'\n", 1),
        (b"/P 'a' '1'\n", 1),
        (b"/P 'a' '1' 'x' extra\n", 1),
        (b"/P 'a' '1' 'x'\n/D '/d/'\n/F 0 0 0\n", 3),
        (b"/P 'a' '1' 'x'\n/D '/d/'\n/F 1 0 0 f\n", 3),
        (b"/P 'a' '1' 'x'\n/F 0 0 0 f\n", 2),
        (b"/P 'a' '1' 'x'\n/D '/d/'\n/F 0 0 99999999999 f\n", 3),
        (b"/P 'a' '1' 'x'\n/D '/d/'\n/F 0 -1 0 f\n", 3),
    ] {
        let err = query::parse(bad.to_vec(), Path::new("/r/var/lib/rpm/rpmdb.sqlite")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PackageError::Corrupt { .. }), "{msg}");
        assert!(msg.contains(&format!("rpm output line {line}")), "{msg}");
        assert!(msg.contains("rpm --verifydb"), "{msg}");
    }
}

#[test]
fn rich_dependencies_parse() {
    use rich::{parse, Expr};
    let atom = |s: &str| Expr::Atom(s.into());
    assert_eq!(
        parse("(a or b >= 2 or (c and d))").unwrap(),
        Expr::Or(vec![atom("a"), atom("b"), Expr::And(vec![atom("c"), atom("d")])])
    );
    assert_eq!(
        parse("(a if b else c)").unwrap(),
        Expr::If {
            then: Box::new(atom("a")),
            cond: Box::new(atom("b")),
            otherwise: Some(Box::new(atom("c"))),
            negate: false
        }
    );
    assert_eq!(parse("(a without b)").unwrap(), atom("a"));
    for bad in ["(a or", "(a xor b)", "a", "(a or b) c"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn rich_conditions_test_what_is_installed() {
    let db = db(vec![
        pkg("a", "noarch", &["(b if c else d)", "(e unless c)", "(f if nothere)"], &[], vec![]),
        pkg("b", "noarch", &[], &[], vec![]),
        pkg("c", "noarch", &[], &[], vec![]),
        pkg("d", "noarch", &[], &[], vec![]),
        pkg("e", "noarch", &[], &[], vec![]),
        pkg("f", "noarch", &[], &[], vec![]),
    ]);
    let (got, r) = closure(&db, &["a"]);
    assert_eq!(got, ["a.noarch", "b.noarch"]);
    assert!(r.unsatisfied.is_empty());
}

#[test]
fn the_database_is_found_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert_eq!(locate(root), None);
    std::fs::create_dir_all(root.join("usr/lib/sysimage/rpm")).unwrap();
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    // An absolute link, as some images have it: resolved inside the root.
    std::os::unix::fs::symlink("/usr/lib/sysimage/rpm", root.join("var/lib/rpm")).unwrap();
    assert_eq!(locate(root), None, "no backend file yet");
    std::fs::write(root.join("usr/lib/sysimage/rpm/Packages"), "").unwrap();
    let loc = locate(root).unwrap();
    assert_eq!(loc.dbpath, Path::new("/usr/lib/sysimage/rpm"));
    assert_eq!(loc.main_file, root.join("usr/lib/sysimage/rpm/Packages"));
    assert_eq!(date_file(root), root.join("usr/lib/sysimage/rpm/Packages"), "var/lib/rpm/Packages, resolved");
    std::fs::write(root.join("usr/lib/sysimage/rpm/rpmdb.sqlite"), "").unwrap();
    assert_eq!(locate(root).unwrap().main_file, root.join("usr/lib/sysimage/rpm/rpmdb.sqlite"));
    assert_eq!(date_file(root), root.join("usr/lib/sysimage/rpm/rpmdb.sqlite"));
    // A link escaping the root stays inside it.
    std::fs::remove_dir_all(root.join("usr")).unwrap();
    std::fs::remove_file(root.join("var/lib/rpm")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../etc", root.join("var/lib/rpm")).unwrap();
    assert_eq!(resolve_in_root(root, Path::new("var/lib/rpm")), None, "ROOT/etc does not exist");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    assert_eq!(resolve_in_root(root, Path::new("var/lib/rpm")), Some(PathBuf::from("etc")));
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    assert_eq!(resolve_in_root(root, Path::new("loop")), None);
}

/// An sqlite database under a temporary root holding `blobs`.
fn sqlite_root(blobs: &[&[u8]]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("usr/lib/sysimage/rpm");
    std::fs::create_dir_all(&dir).unwrap();
    let conn = rusqlite::Connection::open(dir.join("rpmdb.sqlite")).unwrap();
    conn.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        .unwrap();
    for blob in blobs {
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob]).unwrap();
    }
    tmp
}

#[test]
fn the_direct_reader_names_the_package_it_refuses() {
    // hnum 1 a well-formed empty-ish header (NAME only), hnum 2 truncated.
    let good = [&[0, 0, 0, 1, 0, 0, 0, 3][..], &[0, 0, 3, 232, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1], b"fx\0"]
        .concat();
    let tmp = sqlite_root(&[&good, &good[..10]]);
    let main = locate(tmp.path()).unwrap().main_file;
    let err = sqlite::read(&main).unwrap_err();
    assert!(err.starts_with("package #2: header of 10 bytes"), "{err}");
    let tmp = sqlite_root(&[&good]);
    let (installed, _) = sqlite::read(&locate(tmp.path()).unwrap().main_file).unwrap();
    assert_eq!((installed[0].pkg.name.as_str(), installed[0].pkg.version.as_str()), ("fx", ""));
}

#[test]
fn a_database_without_a_packages_table_is_refused_by_the_direct_reader() {
    let tmp = sqlite_root(&[]);
    let main = locate(tmp.path()).unwrap().main_file;
    rusqlite::Connection::open(&main).unwrap().execute_batch("DROP TABLE Packages").unwrap();
    let err = sqlite::read(&main).unwrap_err();
    assert!(err.contains("no such table"), "{err}");
}
