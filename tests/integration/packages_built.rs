//! Runs `packaging/build` once per test binary and hands its OUTDIR to the
//! tests that check the packages (shared by `tests/integration` and
//! `tests/host_install`). The release binaries are the ones cargo has just
//! built for the tests (same profile, same target directory), so the build
//! step inside packaging/build finds them fresh.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// OUTDIR of a successful `packaging/build`, or `None` (after printing
/// why) when a packaging tool is missing outside CI. A failing
/// packaging/build fails every caller.
pub fn built() -> Option<&'static Path> {
    static OUT: OnceLock<Option<PathBuf>> = OnceLock::new();
    OUT.get_or_init(|| {
        let missing: Vec<&str> = ["rpmbuild", "dpkg-deb", "gzip"]
            .into_iter()
            .filter(|t| {
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {t}"))
                    .output()
                    .map_or(true, |o| !o.status.success())
            })
            .collect();
        let cargo_deb =
            Command::new("cargo").args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
        if !missing.is_empty() || !cargo_deb {
            let what = format!("missing {missing:?}{}", if cargo_deb { "" } else { " and cargo-deb" });
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "packaging tools are required under CI: {what}"
            );
            eprintln!("skipping: {what} (.ci/install-deps installs them)");
            return None;
        }
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_guestfs-appliance"));
        let target = exe.parent().and_then(Path::parent).expect("target/release/guestfs-appliance");
        let out = target.join(format!("packaging-test-{}", env!("CARGO_CRATE_NAME")));
        let _ = std::fs::remove_dir_all(&out);
        let top = Path::new(env!("CARGO_MANIFEST_DIR"));
        let run = Command::new(top.join("packaging/build"))
            .arg("--no-build")
            .arg(&out)
            .current_dir(top)
            .env("CARGO_TARGET_DIR", target)
            .output()
            .expect("run packaging/build");
        assert!(
            run.status.success(),
            "packaging/build {} failed ({}):\n{}\n{}",
            out.display(),
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        Some(out)
    })
    .as_deref()
}

/// The one file in `dir` whose name ends with `suffix`.
pub fn one_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "want one *{suffix} in {}: {found:?}", dir.display());
    found.into_iter().next().unwrap()
}
