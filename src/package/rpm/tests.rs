//! Tests of the rpm handler: the output parsers and the join of the two
//! queries, rich dependencies, the closure and file lists on packages given
//! as data, and database lookup. Roots made by the real rpm are tested end
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
        instance: 0,
        requires: requires.iter().map(|r| req(r)).collect(),
        provides,
        owned: files.into_iter().map(|f| f.path).collect(),
    }
}

fn db(installed: Vec<Installed>) -> RpmDb {
    let location = Location { dbpath: "/var/lib/rpm".into(), main_file: "/nonexistent/rpmdb.sqlite".into() };
    RpmDb::new(Path::new("/nonexistent"), location, installed)
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

/// Query 1 with hostile names: quotes, spaces and newlines in shescaped
/// fields, raw base names with spaces, quotes, backslashes and a newline
/// (continued on the next line), a pseudo-package without an arch.
#[test]
fn headers_parse_with_hostile_names_and_index_required_paths() {
    let out = b"/P 7 'fx' '1:2.0-1' 'x86_64'\n/R 'rpmlib(X)' 16777226 '3.0'\n/R '/bin/sh' 0 ''\n\
/R '/usr/it'\\''s' 0 ''\n/R '(/usr/a b\nc or zsh)' 0 ''\n/V 'fx(x86-64)'\n\
/D '/usr/'\n/D '/bin/'\n/B 0 it's\n/B 0 a b\nc\n/B 1 sh\n/B 1 \\x y\n/B 0 a b\n\
/P 9 'gpg-pubkey' '1-2' (none)\n\
/P 3 'sh' '1-1' 'noarch'\n/D '/usr/bin/'\n/D '/bin/'\n/B 0 sh\n/B 1 sh\n";
    let got = query::parse_headers(out, Path::new("/db")).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].pkg, Package { name: "fx".into(), version: "1:2.0-1".into(), arch: "x86_64".into() });
    assert_eq!((got[0].instance, got[1].instance, got[2].instance), (7, 9, 3));
    assert_eq!(
        got[0].requires[0],
        Requirement { name: "rpmlib(X)".into(), flags: 16_777_226, version: "3.0".into() }
    );
    assert_eq!(got[0].requires[3].name, "(/usr/a b\nc or zsh)");
    assert_eq!(got[0].provides, ["fx(x86-64)"]);
    // Required: /bin/sh, /usr/it's and (in the rich one) /usr/a — the
    // word split of a rich dependency, as the closure sees it. `/usr/a b`
    // is no required path, nor is fx's `a b\nc` (a name with a newline):
    // only the required paths are kept.
    let owned = |i: usize| got[i].owned.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
    assert_eq!(owned(0), ["/usr/it's", "/bin/sh"]);
    assert!(owned(1).is_empty());
    assert_eq!(got[1].pkg.arch, "");
    assert_eq!(owned(2), ["/bin/sh"]);
}

/// A base name's newline keeps the rest of it, whatever that looks like,
/// in the base name: here a required path whose name holds a newline and
/// text shaped like a record.
#[test]
fn a_base_name_with_a_newline_cannot_make_a_record() {
    let out = b"/P 1 'a' '1' 'x'\n/R '/d/n\nB 0 evil' 0 ''\n/D '/d/'\n/B 0 n\nB 0 evil\n/B 0 m\n\
/P 2 'b' '1' 'x'\n";
    let got = query::parse_headers(out, Path::new("/db")).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].owned, [PathBuf::from("/d/n\nB 0 evil")]);
    assert!(got[1].owned.is_empty());
}

/// Query 2: hostile names, flags and modes, the instance that joins it to
/// query 1.
#[test]
fn file_lists_parse_with_hostile_names() {
    let out = b"/P 7 'fx' '1:2.0-1' 'x86_64'\n/F '/usr/it'\\''s' 0 33188\n/F '/usr/a b\nc' 64 33188\n\
/P 9 'gpg-pubkey' '1-2' (none)\n";
    let got = query::parse_files(out, Path::new("/db")).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].instance, got[0].line, got[1].instance, got[1].line), (7, 1, 9, 5));
    assert_eq!(got[0].files, [file("/usr/it's", 0, 33188), file("/usr/a b\nc", 64, 33188)]);
    assert!(got[1].files.is_empty());
    assert_eq!(got[1].pkg.arch, "");
}

#[test]
fn garbage_output_is_refused_with_line_and_hint() {
    // (output, line of the error); both parsers get every case of theirs.
    type Cases<'a> = &'a [(&'a [u8], usize)];
    let headers: Cases = &[
        (b"/R 'x' 0 ''\n", 1),
        (b"/P 1 'a' '1' 'x'\n/R 'x' nine ''\n", 2),
        (b"/P 1 'a' '1' 'x'\nQ\n", 2),
        (b"/P 1 'a' '1' 'x'\n/Q\n", 2),
        (b"/P 1 'a' '1\n", 1),
        (b"/P 1 'a' '1'x 'y'\n", 1),
        (b"/P 1 'a' '1'\n", 1),
        (b"/P 'a' '1' 'x'\n", 1),
        (b"/P 1 'a' '1' 'x'\n/P 1 'b' '1' 'x'\n", 2),
        (b"/P 1 'a' '1' 'x' extra\n", 1),
        (b"/P 1 'a' '1' 'x'\n/B 0\n", 2),
        (b"/P 1 'a' '1' 'x'\n/R '/d/f' 0 ''\n/D '/d/'\n/B 1 f\n", 4),
    ];
    let files: Cases = &[
        (b"/F '/a' 0 0\n", 1),
        (b"/P 1 'a' '1' 'x'\n/F 'relative' 0 0\n", 2),
        (b"/P 1 'a' '1' 'x'\n/F '/a' 0\n", 2),
        (b"/P 1 'a' '1' 'x'\nF '/a' 0 0\n", 2),
    ];
    let check = |err: PackageError, line: usize| {
        let msg = err.to_string();
        assert!(matches!(err, PackageError::Corrupt { .. }), "{msg}");
        assert!(msg.contains(&format!("rpm output line {line}")), "{msg}");
        assert!(msg.contains("rpm --verifydb"), "{msg}");
    };
    let db = Path::new("/r/var/lib/rpm/rpmdb.sqlite");
    for &(bad, line) in headers {
        check(query::parse_headers(bad, db).unwrap_err(), line);
    }
    for &(bad, line) in files {
        check(query::parse_files(bad, db).unwrap_err(), line);
    }
}

/// The join of the two queries: a header listed must be one asked for,
/// with the name, version and arch read before; each asked for is listed.
#[test]
fn file_lists_must_match_the_headers_read_first() {
    let mut installed = vec![pkg("a", "noarch", &[], &[], vec![]), pkg("b", "x86_64", &[], &[], vec![])];
    installed[0].instance = 11;
    installed[1].instance = 12;
    let db = db(installed);
    let listing = |instance: u32, name: &str, version: &str, path: &str| query::Listed {
        instance,
        pkg: Package {
            name: name.into(),
            version: version.into(),
            arch: if name == "a" { "noarch" } else { "x86_64" }.into(),
        },
        files: vec![file(path, 0, 0o100_644)],
        line: 1,
    };
    let both =
        db.join(&[0, 1], vec![listing(11, "a", "1.0-1", "/a"), listing(12, "b", "1.0-1", "/b")]).unwrap();
    assert_eq!(both, [file("/a", 0, 0o100_644), file("/b", 0, 0o100_644)]);
    for (listed, what) in [
        (
            vec![listing(11, "a", "2.0-1", "/a"), listing(12, "b", "1.0-1", "/b")],
            "header 11 is a-2.0-1.noarch, not a-1.0-1.noarch as read before",
        ),
        (vec![listing(11, "b", "1.0-1", "/a"), listing(12, "b", "1.0-1", "/b")], "header 11 is b-1.0-1"),
        (vec![listing(11, "a", "1.0-1", "/a")], "header 12 (b.x86_64) was not listed"),
        (
            vec![listing(11, "a", "1.0-1", "/a"), listing(13, "c", "1.0-1", "/c")],
            "header 13 was not asked for",
        ),
        (vec![listing(11, "a", "1.0-1", "/a"), listing(11, "a", "1.0-1", "/a")], "header 11 listed twice"),
    ] {
        let msg = db.join(&[0, 1], listed).unwrap_err().to_string();
        assert!(msg.contains(what), "{msg}");
        assert!(msg.contains("changed while it was read"), "{msg}");
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
