//! Command-line surface: help, version, usage errors.

use crate::util::*;

#[test]
fn help_fits_80_columns_and_lists_build() {
    let tmp = scratch();
    let run = ga(tmp.path(), ["--help"]).success();
    let out = run.stdout();
    assert!(out.contains("build"), "{out}");
    for line in out.lines() {
        assert!(line.chars().count() <= 80, "help line over 80 columns: {line:?}");
    }
}

#[test]
fn make_fixed_appliance_speaks_libguestfs_usage() {
    let tmp = scratch();
    let mfa = bin("make-fixed-appliance");
    let v = run_in(tmp.path(), &mfa, ["-V"], &[]).success();
    assert!(v.stdout().starts_with("make-fixed-appliance "), "{}", v.stdout());
    let h = run_in(tmp.path(), &mfa, ["--help"], &[]).success();
    assert!(h.stdout().contains("--xz"), "{}", h.stdout());
    // No OUTPUTDIR and no --xz is a usage error, as with libguestfs's script.
    let r = run_in(tmp.path(), &mfa, Vec::<&str>::new(), &[]);
    assert_ne!(r.code(), Some(0), "{}", r.shown_all());
    let r = run_in(tmp.path(), &mfa, ["--xz", "dir"], &[]);
    assert_ne!(r.code(), Some(0), "{}", r.shown_all());
}

/// Issue 7 item 9: make-fixed-appliance offered `--config` and ignored it.
/// It builds libguestfs's appliance with libguestfs's defaults, so it has no
/// such option (and `guestfs-appliance` keeps it).
#[test]
fn issue7_make_fixed_appliance_has_no_config_option() {
    let tmp = scratch();
    let mfa = bin("make-fixed-appliance");
    let h = run_in(tmp.path(), &mfa, ["--help"], &[]).success();
    assert!(!h.stdout().contains("--config"), "{}", h.stdout());
    let r = run_in(tmp.path(), &mfa, ["--config", "x.toml", "dir"], &[]).expect_code(2);
    assert!(r.stderr().contains("--config"), "{}", r.shown_all());
    assert!(!tmp.path().join("dir").exists());
    let g = ga(tmp.path(), ["build", "--help"]).success();
    assert!(g.stdout().contains("--config"), "{}", g.stdout());
}

#[test]
fn bad_size_is_a_one_line_error() {
    let tmp = scratch();
    let r = ga(tmp.path(), ["build", "--minimal", "--size", "4T", "out"]).expect_code(2);
    assert!(r.stderr().contains("--size"), "{}", r.shown_all());
    assert!(!tmp.path().join("out").exists());
}
