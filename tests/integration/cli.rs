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

#[test]
fn bad_size_is_a_one_line_error() {
    let tmp = scratch();
    let r = ga(tmp.path(), ["build", "--minimal", "--size", "4T", "out"]).expect_code(2);
    assert!(r.stderr().contains("--size"), "{}", r.shown_all());
    assert!(!tmp.path().join("out").exists());
}
