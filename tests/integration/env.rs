//! Issue 3 item 4: `env` prints settings a real shell accepts and that set
//! the variables (`eval "$(guestfs-appliance env)"` in sh, `| source` in
//! fish), and `env --install` writes a profile.d snippet that `sh -n`
//! accepts and sources, and an environment.d file of KEY=VALUE lines.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// A directory libguestfs's search accepts as a fixed appliance
/// (README.fixed, kernel, initrd, root) whose root has an ext2 superblock.
pub fn fake_appliance(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut root = vec![0u8; 4096];
    root[1024 + 0x38] = 0x53;
    root[1024 + 0x39] = 0xEF;
    std::fs::write(dir.join("root"), &root).unwrap();
    std::fs::write(dir.join("kernel"), b"k").unwrap();
    std::fs::write(dir.join("initrd"), b"i").unwrap();
    std::fs::write(dir.join("README.fixed"), b"fixed appliance\n").unwrap();
}

fn sh(script: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_in_sh_sets_the_variables() {
    let tmp = scratch();
    let dir = tmp.path().join("my appliance");
    fake_appliance(&dir);
    let ga = bin("guestfs-appliance");
    let (ok, out, err) = sh(
        r#"unset LIBGUESTFS_PATH LIBGUESTFS_CACHEDIR; eval "$("$GA" env --shell sh --dir "$DIR")" || exit 9; printf '%s\n%s\n' "$LIBGUESTFS_PATH" "${LIBGUESTFS_CACHEDIR-unset}""#,
        &[("GA", ga.to_str().unwrap()), ("DIR", dir.to_str().unwrap())],
    );
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(dir.to_str().unwrap()), "{out}{err}");
    // When env moves the cache, it moves it somewhere that exists.
    let cachedir = lines.next().unwrap();
    if cachedir != "unset" {
        assert!(Path::new(cachedir).is_dir(), "{cachedir}");
    }
    // Each variable comes with a comment saying why.
    let text = ga_env(tmp.path(), &["--shell", "sh", "--dir", dir.to_str().unwrap()]);
    assert!(text.contains("# LIBGUESTFS_PATH: boot the fixed appliance"), "{text}");
}

fn ga_env(cwd: &Path, args: &[&str]) -> String {
    let mut all = vec!["env"];
    all.extend_from_slice(args);
    ga(cwd, &all).success().stdout()
}

#[test]
fn missing_appliance_is_explained_not_exported() {
    let tmp = scratch();
    let dir = tmp.path().join("none");
    let text = ga_env(tmp.path(), &["--shell", "sh", "--dir", dir.to_str().unwrap()]);
    assert!(!text.contains("export LIBGUESTFS_PATH"), "{text}");
    assert!(
        text.contains(&format!("# LIBGUESTFS_PATH not set: no bootable appliance at {}", dir.display())),
        "{text}"
    );
    let (ok, _, err) = sh(&format!("{text}\ntrue"), &[]);
    assert!(ok, "{err}");
}

#[test]
fn fish_syntax_is_accepted_by_fish() {
    if !have_tool("fish") {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    fake_appliance(&dir);
    let text = run_in(
        tmp.path(),
        &bin("guestfs-appliance"),
        ["env", "--dir", dir.to_str().unwrap()],
        &[("SHELL", "/usr/bin/fish".as_ref())],
    )
    .success()
    .stdout();
    assert!(text.contains("set -gx LIBGUESTFS_PATH"), "default shell from $SHELL: {text}");
    let file = tmp.path().join("env.fish");
    std::fs::write(&file, &text).unwrap();
    let n = Command::new("fish").arg("-n").arg(&file).output().unwrap();
    assert!(n.status.success(), "fish -n: {}", String::from_utf8_lossy(&n.stderr));
    let out = Command::new("fish")
        .args(["--no-config", "-c", "source $argv[1]; echo $LIBGUESTFS_PATH"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), dir.to_str().unwrap());
}

#[test]
fn install_writes_a_profile_snippet_and_an_environment_d_file() {
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    fake_appliance(&dir);
    let root = tmp.path().join("root");
    let run = ga(
        tmp.path(),
        ["env", "--install", "--root", root.to_str().unwrap(), "--dir", dir.to_str().unwrap()],
    )
    .success();
    assert!(run.stdout().is_empty(), "--install prints nothing on stdout");
    let profile = root.join("etc/profile.d/guestfs-appliance.sh");
    let envd = root.join("etc/environment.d/50-guestfs-appliance.conf");
    // sh -n accepts it, and sourcing it sets LIBGUESTFS_PATH.
    let (ok, _, err) = sh(&format!("sh -n '{}'", profile.display()), &[]);
    assert!(ok, "sh -n: {err}");
    let (ok, out, err) = sh(
        r#"unset LIBGUESTFS_PATH; . "$P"; printf %s "$LIBGUESTFS_PATH""#,
        &[("P", profile.to_str().unwrap())],
    );
    assert!(ok, "{err}");
    assert_eq!(out, dir.to_str().unwrap());
    // The guard: once the appliance is gone, a new login does not point
    // libguestfs at nothing.
    std::fs::remove_file(dir.join("root")).unwrap();
    let (_, out, _) = sh(
        r#"unset LIBGUESTFS_PATH; . "$P"; printf %s "${LIBGUESTFS_PATH-unset}""#,
        &[("P", profile.to_str().unwrap())],
    );
    assert_eq!(out, "unset");
    // environment.d has no verifier: every line is a comment, blank, or
    // KEY=VALUE with a valid name and an absolute path.
    let text = std::fs::read_to_string(&envd).unwrap();
    let mut keys = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        assert!(k.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !k.is_empty(), "{line}");
        assert!(v.starts_with('/') && !v.contains(char::is_whitespace), "{line}");
        keys.push(k.to_string());
    }
    assert!(keys.contains(&"LIBGUESTFS_PATH".to_string()), "{text}");
    // Written atomically: no temp files beside them.
    for d in [profile.parent().unwrap(), envd.parent().unwrap()] {
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 1, "{}", d.display());
    }
}
