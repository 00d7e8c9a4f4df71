//! Issue 7 item 5: `status` and `env` report on what libguestfs uses in
//! the environment they run in: an exported `LIBGUESTFS_PATH` (a colon
//! list searched element by element) and `LIBGUESTFS_CACHEDIR`/`TMPDIR`
//! win over the config file, and the output says where each came from.
//! The cache base and search path are checked against real libguestfs
//! (`guestfish get-cachedir`, `get-path`) in the same environments.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::fake_appliance;
use crate::util::*;

/// The variables this file controls; removed before each run so the
/// caller's environment does not leak in.
const VARS: [&str; 4] = ["LIBGUESTFS_PATH", "LIBGUESTFS_CACHEDIR", "TMPDIR", "GUESTFS_APPLIANCE_CONFIG"];

/// Run `program args` in `cwd` with only `env` of [`VARS`] set.
fn run_env(cwd: &Path, program: &Path, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd).stdin(std::process::Stdio::null());
    for v in VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let shown = format!("command: {env:?} {} {}", program.display(), args.join(" "));
    Run { output, shown }
}

fn status_json(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> serde_json::Value {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    let run = run_env(cwd, &bin("guestfs-appliance"), &all, env);
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("not JSON ({e})\n{}", run.shown_all()))
}

fn location<'a>(v: &'a serde_json::Value, path: &Path) -> &'a serde_json::Value {
    v["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == path.to_str().unwrap())
        .unwrap_or_else(|| panic!("no location {} in {v:#}", path.display()))
}

#[test]
fn exported_path_and_cachedir_are_what_status_and_env_report() {
    let tmp = scratch();
    let app = tmp.path().join("shm-appliance");
    fake_appliance(&app);
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let configured = tmp.path().join("configured-appliance");
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, format!("[appliance]\ndir = {:?}\n", configured.display())).unwrap();
    let env: &[(&str, &Path)] =
        &[("LIBGUESTFS_PATH", &app), ("LIBGUESTFS_CACHEDIR", &cache), ("GUESTFS_APPLIANCE_CONFIG", &config)];
    let v = status_json(tmp.path(), &[], env);
    let e = &v["environment"];
    // The exported path wins over the config's appliance.dir.
    assert_eq!(v["appliance"]["dir"], app.to_str().unwrap(), "{e:#}");
    assert_eq!(e["examined_dir_source"], "LIBGUESTFS_PATH");
    assert_eq!(e["appliance"]["kind"], "fixed");
    assert_eq!(e["cachedir"], cache.to_str().unwrap());
    assert_eq!(e["cachedir_source"], "LIBGUESTFS_CACHEDIR");
    // The cache in use is the exported one, not /var/tmp; with a fixed
    // appliance booted in place it only needs room for qemu probe files.
    assert_eq!(location(&v, &cache)["active_cache"], true);
    assert_eq!(location(&v, Path::new("/var/tmp"))["active_cache"], false);
    assert_eq!(location(&v, &cache)["need_bytes"], 4 << 20);
    assert!(
        !v["findings"].as_array().unwrap().iter().any(|f| f["probe"] == "appliance.search-path"),
        "{v:#}"
    );

    // The human report says where each came from.
    let human = run_env(tmp.path(), &bin("guestfs-appliance"), &["status"], env).stdout();
    for want in [
        format!("Appliance {} (from LIBGUESTFS_PATH)", app.display()),
        format!("boots this fixed appliance (LIBGUESTFS_PATH={})", app.display()),
        format!(
            "{}/.guestfs-{} (from LIBGUESTFS_CACHEDIR), qemu probe files only",
            cache.display(),
            nix::unistd::geteuid()
        ),
    ] {
        assert!(human.contains(&want), "missing {want:?} in:\n{human}");
    }

    // env keeps the exported LIBGUESTFS_PATH (never "not set").
    let out =
        run_env(tmp.path(), &bin("guestfs-appliance"), &["env", "--shell", "sh"], env).success().stdout();
    assert!(out.contains(&format!("export LIBGUESTFS_PATH='{}'", app.display())), "{out}");
    assert!(out.contains("kept from your environment"), "{out}");
    assert!(!out.contains("LIBGUESTFS_PATH not set"), "{out}");
    assert!(!out.contains("export LIBGUESTFS_CACHEDIR"), "{out}");

    // --dir is what the user asked about; the report says libguestfs uses
    // another one.
    let v = status_json(tmp.path(), &["--dir", configured.to_str().unwrap()], env);
    assert_eq!(v["appliance"]["dir"], configured.to_str().unwrap());
    assert_eq!(v["environment"]["examined_dir_source"], "--dir");
    let human = run_env(
        tmp.path(),
        &bin("guestfs-appliance"),
        &["status", "--dir", configured.to_str().unwrap()],
        env,
    )
    .stdout();
    assert!(
        human.contains(&format!("uses a fixed appliance (booted in place) in {}", app.display())),
        "{human}"
    );
    // Without LIBGUESTFS_PATH: the config's appliance.dir.
    let v = status_json(tmp.path(), &[], &[("GUESTFS_APPLIANCE_CONFIG", &config)]);
    assert_eq!(v["appliance"]["dir"], configured.to_str().unwrap());
    assert_eq!(v["environment"]["examined_dir_source"], "config");
}

#[test]
fn a_path_that_leads_nowhere_is_critical_as_libguestfs_fails() {
    let tmp = scratch();
    let nowhere = tmp.path().join("appliance");
    let env: &[(&str, &Path)] = &[("LIBGUESTFS_PATH", &nowhere)];
    let v = status_json(tmp.path(), &[], env);
    assert_eq!(v["appliance"]["dir"], nowhere.to_str().unwrap());
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["probe"] == "appliance.search-path")
        .unwrap_or_else(|| panic!("no search-path finding\n{v:#}"));
    assert_eq!(f["severity"], "critical");
    let nagios = run_env(tmp.path(), &bin("guestfs-appliance"), &["status", "--format", "nagios"], env);
    assert_eq!(nagios.code(), Some(2), "{}", nagios.shown_all());
    assert!(nagios.stdout().starts_with("GUESTFS-APPLIANCE CRITICAL - "), "{}", nagios.shown_all());
    let out = run_env(tmp.path(), &bin("guestfs-appliance"), &["env"], env).success().stdout();
    assert!(out.contains("(from your environment) leads to no bootable appliance"), "{out}");
    assert!(!out.contains("export LIBGUESTFS_PATH"), "{out}");
    // Real libguestfs agrees: it cannot launch.
    if !have_tool("guestfish") {
        return;
    }
    let run = run_env(
        tmp.path(),
        Path::new("guestfish"),
        &["-a", "/dev/null", "run"],
        &[("LIBGUESTFS_PATH", &nowhere), ("LIBGUESTFS_BACKEND", Path::new("direct"))],
    );
    assert_ne!(run.code(), Some(0), "{}", run.shown_all());
    assert!(run.stderr().contains("cannot find any suitable libguestfs supermin"), "{}", run.shown_all());
}

/// The cache base and search path we report equal what libguestfs itself
/// says in the same environment, including the values it refuses.
#[test]
fn cache_base_and_search_path_match_real_libguestfs() {
    if !have_tool("guestfish") {
        return;
    }
    let tmp = scratch();
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    let bad = tmp.path().join("missing");
    let app = tmp.path().join("app");
    fake_appliance(&app);
    let list = PathBuf::from(format!("{}:{}", bad.display(), app.display()));
    let cases: Vec<Vec<(&str, &Path)>> = vec![
        vec![],
        vec![("TMPDIR", &good)],
        vec![("LIBGUESTFS_CACHEDIR", &good), ("TMPDIR", Path::new("/tmp"))],
        vec![("LIBGUESTFS_CACHEDIR", &bad), ("TMPDIR", &good)],
        vec![("TMPDIR", &bad)],
        vec![("LIBGUESTFS_PATH", &list)],
        vec![("LIBGUESTFS_PATH", Path::new(""))],
    ];
    for env in &cases {
        let lg = run_env(tmp.path(), Path::new("guestfish"), &["get-cachedir", ":", "get-path"], env);
        let mut lines = lg.stdout().lines().map(str::to_string).collect::<Vec<_>>().into_iter();
        let (cachedir, path) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
        let complained = lg.stderr().contains("libguestfs: error");
        let v = status_json(tmp.path(), &["--dir", app.to_str().unwrap()], env);
        let e = &v["environment"];
        let ours = std::fs::canonicalize(e["cachedir"].as_str().unwrap()).unwrap();
        assert_eq!(ours, std::fs::canonicalize(&cachedir).unwrap(), "{env:?}: {e:#}\n{}", lg.shown_all());
        let errors = !e["cachedir_errors"].as_array().unwrap().is_empty();
        assert_eq!(errors, complained, "{env:?}: {e:#}\n{}", lg.shown_all());
        let search: Vec<&str> =
            e["search_path"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(search.join(":"), path, "{env:?}: {e:#}");
    }
}
