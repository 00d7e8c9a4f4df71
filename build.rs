//! Builds the appliance init (the `init/` workspace member) as a static
//! executable, so that the library can embed it with `include_bytes!` (see
//! `src/init.rs`) and every binary of this package carries its own init.
//!
//! Why a second cargo run: the init must be statically linked (it is PID 1
//! in an initramfs that holds no libc), while `guestfs-appliance` and
//! `make-fixed-appliance` link normally (user lookups through NSS, debug info
//! for packagers). Cargo applies rustflags to a whole build, not to one
//! binary, and `crt-static` breaks proc-macro crates unless the target is
//! explicit. So the init gets a build of its own: `$CARGO build --release
//! --locked` for the explicit target triple, with `-C target-feature=+crt-static
//! -C relocation-model=static` (a classic static executable, which file(1)
//! calls "statically linked"), into a target directory under `OUT_DIR`.
//!
//! The outer build's settings must not leak into it: its environment is
//! cleaned of RUSTFLAGS, CARGO_ENCODED_RUSTFLAGS, CARGO_TARGET_DIR,
//! CARGO_BUILD_*, CARGO_PROFILE_*, the build-script variables and wrappers
//! such as clippy's; the rustc, the target's linker, the jobserver, the
//! network and registry settings are passed on. The init depends only on
//! `nix` (and its dependencies), which the main package depends on too, so
//! the nested build finds every crate the outer one already fetched.

// Build scripts talk to cargo through stdout: `println!` is the protocol
// here, not data output (clippy.toml bans it in the crate itself).
#![allow(clippy::disallowed_macros)]

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The init's package and binary name.
const INIT: &str = "guestfs-appliance-init";

/// The environment variable through which the library finds the built init.
const INIT_BIN_ENV: &str = "GUESTFS_APPLIANCE_INIT_BIN";

/// Flags of the nested build: a static, non-PIE executable (see the facts
/// in the module docs).
const STATIC_RUSTFLAGS: [&str; 2] = ["-Ctarget-feature=+crt-static", "-Crelocation-model=static"];

fn main() {
    let manifest_dir = PathBuf::from(required_env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(required_env("OUT_DIR"));
    // The init runs on the machine the binaries run on (it boots that
    // machine's kernel), so it is built for TARGET, not for HOST.
    let target = required_env("TARGET").into_string().expect("TARGET is UTF-8");

    // Paths are relative to the package root; a directory is scanned as a
    // whole. Cargo.lock pins the init's dependencies.
    println!("cargo:rerun-if-changed=init");
    println!("cargo:rerun-if-changed=Cargo.lock");
    // The root manifest holds the release profile the nested build uses.
    println!("cargo:rerun-if-changed=Cargo.toml");

    let init_manifest = manifest_dir.join("init/Cargo.toml");
    if !init_manifest.is_file() {
        panic!(
            "{} is missing: the appliance init's sources (init/) are part of this repository; build from a \
             complete checkout",
            init_manifest.display()
        );
    }
    let target_dir = out_dir.join("init-target");
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&manifest_dir)
        .arg("build")
        .args(["--release", "--locked", "--quiet", "--bin", INIT, "--target", &target])
        .arg("--manifest-path")
        .arg(&init_manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    for (key, _) in env::vars_os() {
        if key.to_str().is_none_or(is_outer_build_setting) {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", STATIC_RUSTFLAGS.join("\x1f"))
        // The init goes into every initrd: symbols would only make it bigger.
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    if let Some(rustc) = env::var_os("RUSTC") {
        cmd.env("RUSTC", rustc);
    }
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        let key = format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace(['-', '.'], "_"));
        cmd.env(key, linker);
    }

    let output = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "building the static appliance init failed ({}):\n{cmd:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let binary = target_dir.join(&target).join("release").join(INIT);
    check_exists(&binary);
    println!("cargo:rustc-env={INIT_BIN_ENV}={}", binary.display());
}

fn required_env(key: &str) -> OsString {
    env::var_os(key).unwrap_or_else(|| panic!("{key} is not set: build.rs runs under cargo"))
}

fn check_exists(binary: &Path) {
    if !binary.is_file() {
        panic!("the nested cargo build succeeded but did not produce {}", binary.display());
    }
}

/// Whether an environment variable belongs to the outer build (and so must
/// not reach the nested one): cargo's and rustc's settings and the
/// build-script variables. Kept: where cargo lives (CARGO_HOME, RUSTUP_*),
/// how it reaches registries (CARGO_NET_*, CARGO_HTTP_*, CARGO_REGISTRY_*,
/// CARGO_REGISTRIES_*), and the jobserver (CARGO_MAKEFLAGS), so that the
/// nested build shares the outer build's job slots.
fn is_outer_build_setting(key: &str) -> bool {
    const KEEP_PREFIXES: [&str; 6] = [
        "CARGO_HOME",
        "CARGO_MAKEFLAGS",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRY_",
        "CARGO_REGISTRIES_",
    ];
    const BUILD_SCRIPT_VARS: [&str; 7] =
        ["TARGET", "HOST", "OUT_DIR", "OPT_LEVEL", "PROFILE", "DEBUG", "NUM_JOBS"];
    if KEEP_PREFIXES.iter().any(|p| key.starts_with(p)) || key.starts_with("RUSTUP_") {
        return false;
    }
    key.starts_with("CARGO")
        || key.starts_with("__CARGO")
        || key.starts_with("RUST")
        || BUILD_SCRIPT_VARS.contains(&key)
}
