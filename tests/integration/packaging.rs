//! Issue 7: what a fresh clone, `cargo install` or a package gets. Every
//! binary carries its static init (no `guestfs-appliance-init` to install
//! beside it), `$GUESTFS_APPLIANCE_INIT` still overrides it and must be
//! static, the tools themselves link normally (so user lookups go through
//! NSS), and the declared `rust-version` covers every locked dependency.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use guestfs_appliance::image::initrd::is_static_elf;
use guestfs_appliance::init::{EMBEDDED, INIT_ENV};

use crate::qemu::skip;
use crate::util::*;

/// Run `program build --minimal --size 1G DIR` in `cwd` with `init_env` as
/// `$GUESTFS_APPLIANCE_INIT` (removed when `None`).
fn build_minimal(program: &Path, cwd: &Path, dir: &str, init_env: Option<&Path>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(["build", "-v", "--minimal", "--size", "1G", dir]).current_dir(cwd);
    match init_env {
        Some(path) => cmd.env(INIT_ENV, path),
        None => cmd.env_remove(INIT_ENV),
    };
    run_fresh_executable(cmd)
}

fn shown(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Extract `init` from `initrd` with cpio into `into`, returning its path.
fn extract_init(initrd: &Path, into: &Path) -> PathBuf {
    fs::create_dir_all(into).unwrap();
    let out = Command::new("cpio")
        .args(["-i", "--quiet", "--no-absolute-filenames", "init"])
        .current_dir(into)
        .stdin(fs::File::open(initrd).unwrap())
        .output()
        .expect("run cpio");
    assert!(out.status.success(), "cpio -i: {}", String::from_utf8_lossy(&out.stderr));
    let init = into.join("init");
    assert!(init.is_file(), "no init in {}", initrd.display());
    init
}

/// `file -b PATH`.
fn file_kind(path: &Path) -> String {
    let out = Command::new("file").arg("-b").arg(path).output().expect("run file");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 7 item 1: a fresh clone's `cargo run --bin make-fixed-appliance`
/// built that one binary and then found no init. The binary alone, in an
/// otherwise empty directory and without the override, must build an
/// appliance whose initrd holds the statically linked init it embeds.
#[test]
fn issue7_binary_alone_builds_with_its_embedded_init() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let tmp = scratch();
    let bindir = tmp.path().join("bin");
    fs::create_dir(&bindir).unwrap();
    let alone = bindir.join("guestfs-appliance");
    fs::copy(bin("guestfs-appliance"), &alone).unwrap();
    assert_eq!(fs::read_dir(&bindir).unwrap().count(), 1);

    let out = build_minimal(&alone, tmp.path(), "appliance", None);
    assert!(out.status.success(), "{}", shown(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("initrd: using the built-in init"), "{stderr}");

    let init = extract_init(&tmp.path().join("appliance/initrd"), &tmp.path().join("extract"));
    assert!(fs::read(&init).unwrap() == EMBEDDED, "the initrd's init is not the embedded one");
    let kind = file_kind(&init);
    assert!(kind.contains("statically linked"), "{kind}");
    assert!(!kind.contains("dynamically linked") && !kind.contains("interpreter"), "{kind}");
}

/// `$GUESTFS_APPLIANCE_INIT` replaces the embedded init, and a dynamically
/// linked one is refused before anything is written.
#[test]
fn init_override_is_used_and_must_be_static() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let Some(busybox) = crate::qemu::tool("busybox") else { return };
    let tmp = scratch();
    let ga = bin("guestfs-appliance");

    let out = build_minimal(&ga, tmp.path(), "refused", Some(Path::new("/bin/sh")));
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/bin/sh") && stderr.contains(INIT_ENV), "{stderr}");
    assert!(stderr.contains("must be a statically linked executable"), "{stderr}");
    assert!(!tmp.path().join("refused").exists());

    let busybox_bytes = fs::read(&busybox).unwrap();
    if !is_static_elf(&busybox_bytes) {
        skip(&format!("{} is not static: install busybox-static", busybox.display()));
        return;
    }
    let out = build_minimal(&ga, tmp.path(), "appliance", Some(&busybox));
    assert!(out.status.success(), "{}", shown(&out));
    let init = extract_init(&tmp.path().join("appliance/initrd"), &tmp.path().join("extract"));
    assert!(fs::read(&init).unwrap() == busybox_bytes, "the initrd's init is not {}", busybox.display());
}

/// Issue 7 item 2: only the init is static. The tools link against libc
/// normally, which is what lets getpwuid_r reach NSS (see the nss_wrapper
/// test in `cache.rs`) and packagers split off debug info.
#[test]
fn issue7_tools_are_dynamically_linked() {
    for name in ["guestfs-appliance", "make-fixed-appliance"] {
        let path = bin(name);
        assert!(!is_static_elf(&fs::read(&path).unwrap()), "{} is statically linked", path.display());
        if have_tool("file") {
            let kind = file_kind(&path);
            assert!(kind.contains("dynamically linked"), "{}: {kind}", path.display());
        }
    }
}

/// A `major.minor[.patch]` Rust version as a comparable triple.
fn rust_version(text: &str) -> (u64, u64, u64) {
    let mut parts =
        text.split('.').map(|p| p.parse::<u64>().unwrap_or_else(|_| panic!("bad version {text:?}")));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Issue 7 item 9: `rust-version` must be at least what every locked
/// dependency declares (the lock once held clap 4.6, which needs 1.85,
/// under a declared 1.80). Asked of `cargo metadata` for this platform,
/// offline: the build that made this test fetched everything it lists.
#[test]
fn issue7_locked_dependencies_fit_the_declared_rust_version() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let version = Command::new(&cargo).arg("-vV").output().expect("run cargo -vV");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).expect("cargo -vV names the host");
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", host])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let members: Vec<&str> =
        doc["workspace_members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    let locked: Vec<&str> =
        doc["resolve"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    let mut declared = None;
    let mut needed = Vec::new();
    for package in doc["packages"].as_array().unwrap() {
        let id = package["id"].as_str().unwrap();
        let Some(rv) = package["rust_version"].as_str() else { continue };
        if members.contains(&id) {
            if package["name"] == "guestfs-appliance" {
                declared = Some(rv.to_string());
            }
        } else if locked.contains(&id) {
            needed.push((
                rust_version(rv),
                format!("{} {} needs Rust {rv}", package["name"], package["version"]),
            ));
        }
    }
    let declared = declared.expect("Cargo.toml declares rust-version");
    let too_new: Vec<&String> =
        needed.iter().filter(|(v, _)| *v > rust_version(&declared)).map(|(_, what)| what).collect();
    assert!(
        too_new.is_empty(),
        "Cargo.toml declares rust-version = {declared:?}, but the lock file needs more: {too_new:#?}; raise \
         rust-version in [workspace.package] to the highest of these"
    );
}
