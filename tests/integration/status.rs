//! Issue 4: `status` on this machine's real file systems, checked with
//! other tools: the JSON against docs/status-schema.json (python3-jsonschema),
//! the Prometheus text with python3-prometheus-client's parser, Nagios exit
//! codes against the JSON's status; a nearly full tmpfs (root only), the
//! work disk's class, `--probe` leaving nothing behind, and the KVM test
//! boot (KVM present but broken here: it must say so and give a TCG time).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::util::*;

fn json_of(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("not JSON ({e})\n{}", run.shown_all()))
}

/// Run `status ARGS` with extra environment; any exit code.
fn status(cwd: &Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Run {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    run_in(cwd, &bin("guestfs-appliance"), &all, env)
}

/// A python3 that has `module` (Debian's /usr/bin/python3 first: a pyenv
/// shim on PATH may lack the Debian modules). Skips (fails under CI) if none.
pub(crate) fn python_with(module: &str) -> Option<PathBuf> {
    for py in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(PathBuf::from(py));
        }
    }
    assert!(!in_ci(), "python3 module {module} is required under CI (.ci/install-deps installs it)");
    eprintln!("skipping: python3 module {module} not installed");
    None
}

fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-schema.json")
}

/// Validate `json` text against the documented schema with python3-jsonschema.
fn validate_against_schema(json: &str) {
    validate_json(&schema_path(), json);
}

/// Validate `json` text against the JSON schema in `schema` with
/// python3-jsonschema (the schema itself is checked first).
pub(crate) fn validate_json(schema: &Path, json: &str) {
    let Some(py) = python_with("jsonschema") else { return };
    let script = "import json,sys,jsonschema\n\
                  schema=json.load(open(sys.argv[1]))\n\
                  jsonschema.validators.validator_for(schema).check_schema(schema)\n\
                  jsonschema.validate(json.load(sys.stdin), schema, cls=jsonschema.validators.validator_for(schema))\n\
                  print('valid')";
    let mut child = Command::new(py)
        .args(["-c", script, schema.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "JSON does not match {}:\n{}\n--- json ---\n{json}",
        schema.display(),
        String::from_utf8_lossy(&out.stderr)
    );
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
fn json_validates_and_work_disk_is_classified() {
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let started = Instant::now();
    let run = status(tmp.path(), &["--json", "--dir", dir.to_str().unwrap()], &[]);
    let elapsed = started.elapsed();
    // Measured, not asserted: `status` without --probe should answer
    // within 200 ms.
    eprintln!("status --json took {:.0} ms", elapsed.as_secs_f64() * 1000.0);
    assert!(matches!(run.code(), Some(0 | 1)), "{}", run.shown_all());
    validate_against_schema(&run.stdout());
    let v = json_of(&run);
    assert_eq!(v["version"], 1);
    let app = location(&v, &dir);
    assert_eq!(app["exists"], false);
    assert_eq!(app["roles"][0], "appliance");
    assert_eq!(v["appliance"]["need_is_estimate"], true);
    // The scratch dir is on the work disk: a real block device with a
    // real file system, classified by its disks' rotational flag.
    assert_ne!(app["fs_type"], "unknown", "{app:#}");
    let class = app["class"].as_str().unwrap();
    let disks = app["disks"].as_array().unwrap();
    if class == "local-ssd" || class == "local-rotational" {
        assert!(!disks.is_empty(), "{app:#}");
        let rot = disks.iter().any(|d| d["rotational"] == true && d["virtual"] == false);
        assert_eq!(rot, class == "local-rotational", "{app:#}");
        for d in disks {
            let name = d["name"].as_str().unwrap();
            let flag = std::fs::read_to_string(format!("/sys/block/{name}/queue/rotational")).unwrap();
            assert_eq!(flag.trim() == "1", d["rotational"] == true, "{name}");
        }
    } else if disks.iter().any(|d| d["virtual"] == true) {
        // A VM's disk: its flag means nothing, the class is unknown.
        assert_eq!(class, "unknown", "{app:#}");
    } else {
        eprintln!("note: the work disk is classified {class} ({app:#})");
        assert!(["network", "fuse", "overlay", "memory"].contains(&class), "{app:#}");
    }
    // /dev/shm is memory.
    assert_eq!(location(&v, Path::new("/dev/shm"))["class"], "memory");
    // Exit code: 1 exactly when there are findings other than info.
    let findings = v["findings"].as_array().unwrap().iter().filter(|f| f["severity"] != "info").count();
    assert_eq!(run.code(), Some(i32::from(findings > 0)), "{}", run.shown_all());
}

#[test]
fn human_report_has_sections_and_fixes() {
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let run = status(tmp.path(), &["--dir", dir.to_str().unwrap()], &[]);
    let out = run.stdout();
    for section in ["Locations", "Appliance", "Virtualization"] {
        assert!(out.lines().any(|l| l.starts_with(section)), "{section}\n{}", run.shown_all());
    }
    assert!(!out.contains('\x1b'), "no colour off a terminal\n{out}");
    // No appliance there: a warning with the build command as its fix.
    assert!(out.contains("no fixed appliance at"), "{}", run.shown_all());
    assert!(
        out.contains(&format!("fix: build one with `guestfs-appliance build {}`", dir.display())),
        "{out}"
    );
    assert_eq!(run.code(), Some(1));
}

#[test]
fn prometheus_output_is_accepted_by_a_real_parser() {
    let Some(py) = python_with("prometheus_client") else { return };
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let run = status(tmp.path(), &["--format", "prometheus", "--dir", dir.to_str().unwrap()], &[]).success();
    let script = "import sys\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  for f in text_string_to_metric_families(sys.stdin.read()):\n\
                  \x20   for s in f.samples:\n\
                  \x20       print(f.name, f.type, s.name, s.value, ','.join(k+'='+v for k,v in sorted(s.labels.items())))";
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(run.stdout().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let parsed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "parser refused it: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.stdout()
    );
    assert!(
        parsed.lines().any(|l| l.starts_with("guestfs_appliance_status gauge guestfs_appliance_status ")),
        "{parsed}"
    );
    let free = format!("path={}", dir.display());
    assert!(
        parsed
            .lines()
            .any(|l| l.starts_with("guestfs_appliance_location_free_bytes gauge") && l.ends_with(&free)),
        "{parsed}"
    );
    // Every sample the exposition has was parsed (no silent drops).
    let samples = run.stdout().lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    assert_eq!(parsed.lines().count(), samples, "{parsed}");
}

#[test]
fn nagios_exit_code_matches_the_worst_finding() {
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let d = dir.to_str().unwrap();
    // A margin no disk meets: a space warning (or critical) on the
    // appliance location, whatever else this machine has.
    let cfg = tmp.path().join("config.toml");
    std::fs::write(&cfg, "[health]\nspace_margin = 1000000.0\n").unwrap();
    let c = cfg.to_str().unwrap();
    for extra in [&[][..], &["--config", c][..]] {
        let mut args = vec!["--dir", d];
        args.extend_from_slice(extra);
        let nagios = status(tmp.path(), &[&args[..], &["--format", "nagios"]].concat(), &[]);
        let json = json_of(&status(tmp.path(), &[&args[..], &["--json"]].concat(), &[]));
        let (word, code) = match json["status"].as_str().unwrap() {
            "ok" => ("OK", 0),
            "warning" => ("WARNING", 1),
            "critical" => ("CRITICAL", 2),
            _ => ("UNKNOWN", 3),
        };
        assert_eq!(nagios.code(), Some(code), "{}", nagios.shown_all());
        let first = nagios.stdout().lines().next().unwrap_or_default().to_string();
        assert!(first.starts_with(&format!("GUESTFS-APPLIANCE {word} - ")), "{first}");
        assert!(first.contains(" | ") && first.contains(&format!("'{d} free'=")), "{first}");
        if !extra.is_empty() {
            assert!(code >= 1, "{}", nagios.shown_all());
            let space = json["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["probe"] == "location.space" && f["subject"] == d);
            assert!(space, "{json:#}");
        }
    }
}

/// A tmpfs mounted for the test, unmounted on drop.
struct TmpfsMount(PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: could not unmount {}", self.0.display());
        }
    }
}

#[test]
fn nearly_full_tmpfs_cache_gives_the_low_space_finding() {
    if !is_root() {
        assert!(!in_ci(), "this test mounts a tmpfs and must run as root under CI");
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let tmp = scratch();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let out =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"]).arg(&mnt).output().unwrap();
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    let _guard = TmpfsMount(mnt.clone());
    // Fill it up to ~4 MiB free.
    std::fs::write(mnt.join("fill"), vec![0x5a; 28 << 20]).unwrap();
    let dir = tmp.path().join("appliance");
    let run = status(
        tmp.path(),
        &["--json", "--dir", dir.to_str().unwrap()],
        &[("LIBGUESTFS_CACHEDIR", mnt.as_os_str())],
    );
    let v = json_of(&run);
    let loc = location(&v, &mnt);
    assert_eq!(loc["class"], "memory", "{loc:#}");
    assert_eq!(loc["active_cache"], true, "{loc:#}");
    assert!(loc["free_bytes"].as_u64().unwrap() < 8 << 20, "{loc:#}");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["probe"] == "location.space" && f["subject"] == mnt.to_str().unwrap())
        .unwrap_or_else(|| panic!("no space finding for {}\n{v:#}", mnt.display()));
    assert_eq!(f["severity"], "critical");
    assert!(f["remedy"].as_str().unwrap().contains("LIBGUESTFS_CACHEDIR"), "{f:#}");
    assert_eq!(run.code(), Some(1));
    // The human report says the same, with the fix.
    let human =
        status(tmp.path(), &["--dir", dir.to_str().unwrap()], &[("LIBGUESTFS_CACHEDIR", mnt.as_os_str())]);
    assert!(
        human.stdout().contains(&format!("CRITICAL {} (location.space)", mnt.display())),
        "{}",
        human.shown_all()
    );
}

fn probe_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".guestfs-appliance-probe"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn probe_measures_and_leaves_no_file_behind() {
    let tmp = scratch();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let dir = tmp.path().join("appliance");
    let cfg = tmp.path().join("config.toml");
    std::fs::write(&cfg, "[health]\nprobe_bytes = 4194304\n").unwrap();
    let before: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let run = status(
        tmp.path(),
        &[
            "--probe",
            "--json",
            "--skip",
            "virt.boot",
            "--config",
            cfg.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
        ],
        &[("LIBGUESTFS_CACHEDIR", cache.as_os_str())],
    );
    let v = json_of(&run);
    validate_against_schema(&run.stdout());
    assert_eq!(v["probed"], true);
    let loc = location(&v, &cache);
    assert_eq!(loc["write_test"]["status"], "measured", "{loc:#}");
    assert_eq!(loc["write_test"]["bytes"], 4 << 20);
    assert!(loc["write_test"]["mb_per_s"].as_f64().unwrap() > 0.0);
    // --skip virt.boot: no test boot, and it says why.
    assert_eq!(v["virtualization"]["boot_skipped"], "skipped by --skip", "{v:#}");
    assert!(v["virtualization"]["boots"].as_array().unwrap().is_empty());
    let after: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
    for d in [cache.as_path(), tmp.path(), Path::new("/var/tmp"), Path::new("/dev/shm")] {
        assert!(probe_files(d).is_empty(), "probe file left in {}: {:?}", d.display(), probe_files(d));
    }
    assert!(std::fs::read_dir(&cache).unwrap().next().is_none(), "cache dir not empty");
}

#[test]
fn kvm_probe_boot_tells_broken_kvm_from_working_and_times_tcg() {
    if !crate::build::prerequisites_pub() || !have_tool("qemu-system-x86_64") {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    ga(tmp.path(), ["build", "-q", "--minimal", "--size", "1G", dir.to_str().unwrap()]).success();
    let cfg = tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[health]\nprobe_bytes = 1048576\nprobe_kvm_timeout_s = 20\nprobe_boot_timeout_s = 120\n",
    )
    .unwrap();
    let run = status(
        tmp.path(),
        &["--probe", "--json", "--config", cfg.to_str().unwrap(), "--dir", dir.to_str().unwrap()],
        &[],
    );
    validate_against_schema(&run.stdout());
    let v = json_of(&run);
    let virt = &v["virtualization"];
    let boots = virt["boots"].as_array().unwrap();
    eprintln!("boots: {boots:#?}");
    let kvm = boots.iter().find(|b| b["accel"] == "kvm");
    let tcg = boots.iter().find(|b| b["accel"] == "tcg");
    match virt["kvm"]["usable"].as_bool() {
        Some(true) => {
            // A machine where KVM works: it came up under KVM, no TCG boot.
            let k = kvm.expect("usable KVM without a KVM boot");
            assert_eq!(k["came_up"], true);
            assert!(tcg.is_none());
        }
        Some(false) => {
            // This machine: KVM unusable (missing, closed, or guests abort),
            // TCG came up, with its time.
            let t = tcg.unwrap_or_else(|| panic!("no TCG boot\n{}", run.shown_all()));
            assert_eq!(t["came_up"], true, "{t:#}");
            assert!(t["seconds"].as_f64().unwrap() > 0.0);
            if let Some(k) = kvm {
                assert_eq!(k["came_up"], false);
                assert!(k["error"].as_str().is_some_and(|e| !e.is_empty()), "{k:#}");
                // /dev/kvm opened but guests fail: libguestfs would fail.
                let f = v["findings"].as_array().unwrap().iter().find(|f| f["probe"] == "virt.boot").unwrap();
                assert_eq!(f["severity"], "critical");
                assert!(f["remedy"].as_str().unwrap().contains("force_tcg"));
            }
        }
        None => panic!("--probe did not decide about KVM\n{}", run.shown_all()),
    }
    // qemu was killed: no process is left running with this appliance.
    let needle = dir.join("root").display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(&needle), "{:?} still runs", entry.path());
    }
}

/// Whether sysfs shows the disk `name` on a virtio bus (what a KVM/QEMU
/// VM, like the CI machines, gives its guests): `/sys/block/NAME` resolves
/// through `.../virtioN/...`.
fn on_virtio(name: &str) -> bool {
    std::fs::canonicalize(format!("/sys/block/{name}"))
        .is_ok_and(|p| p.components().any(|c| c.as_os_str().to_string_lossy().starts_with("virtio")))
}

/// Issue 7 item 6: on a VM the work disk (here /dev/vda, virtio, which says
/// rotational=1 whatever backs it) is not "local-rotational" and gives no
/// speed warning: its speed is unknown, an info finding pointing at
/// --probe; `env` does not move the cache to /dev/shm because of it.
#[test]
fn virtual_disk_is_unknown_info_not_a_slow_disk_warning() {
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let d = dir.to_str().unwrap();
    let run = status(tmp.path(), &["--json", "--dir", d], &[]);
    validate_against_schema(&run.stdout());
    let v = json_of(&run);
    let app = location(&v, &dir);
    let disks = app["disks"].as_array().unwrap();
    let virtio: Vec<&str> =
        disks.iter().map(|d| d["name"].as_str().unwrap()).filter(|n| on_virtio(n)).collect();
    if virtio.is_empty() {
        eprintln!("skipping: the work disk is not a virtio disk here ({app:#})");
        return;
    }
    for disk in disks.iter().filter(|d| virtio.contains(&d["name"].as_str().unwrap())) {
        assert_eq!(disk["virtual"], true, "{disk:#}");
        assert!(disk["virtual_evidence"].as_str().unwrap().contains("virtio"), "{disk:#}");
    }
    assert_eq!(app["class"], "unknown", "{app:#}");
    let findings = v["findings"].as_array().unwrap();
    let speed: Vec<_> = findings.iter().filter(|f| f["probe"] == "location.speed").collect();
    assert!(speed.iter().all(|f| f["severity"] == "info"), "a speed warning on a virtual disk: {speed:#?}");
    let info = speed.iter().find(|f| f["subject"] == d).unwrap_or_else(|| panic!("no info finding\n{v:#}"));
    assert!(info["remedy"].as_str().unwrap().contains("--probe"), "{info:#}");
    // The human report shows it as a note, not a problem.
    let human = status(tmp.path(), &["--dir", d], &[]).stdout();
    assert!(human.contains(&format!("INFO     {d} (location.speed): speed unknown")), "{human}");
    assert!(!human.contains(&format!("WARNING  {d} (location.speed)")), "{human}");

    // env: /var/tmp is on the same kind of disk; with room there, the cache
    // is left alone.
    let var_tmp = location(&v, Path::new("/var/tmp"));
    if var_tmp["class"] == "unknown" && var_tmp["free_bytes"].as_u64().unwrap() > 4 << 30 {
        let out = run_in(
            tmp.path(),
            &bin("guestfs-appliance"),
            ["env", "--shell", "sh", "--dir", d],
            &[("LIBGUESTFS_CACHEDIR", "".as_ref()), ("TMPDIR", "".as_ref())],
        )
        .success()
        .stdout();
        assert!(!out.contains("export LIBGUESTFS_CACHEDIR"), "{out}");
        assert!(out.contains("LIBGUESTFS_CACHEDIR not changed"), "{out}");
    }
}

/// Issue 7 item 6: without a built appliance, `--probe` still answers "does
/// KVM run a guest here?" by booting the host kernel with a test initrd
/// holding our init. Here /dev/kvm opens but KVM guests abort: the report
/// must say so, with the TCG time, instead of "not tested".
#[test]
fn probe_without_appliance_tells_whether_kvm_runs_a_guest() {
    if !crate::build::prerequisites_pub() || !have_tool("qemu-system-x86_64") {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("no-appliance");
    let cfg = tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[health]\nprobe_bytes = 1048576\nprobe_kvm_timeout_s = 20\nprobe_boot_timeout_s = 300\n",
    )
    .unwrap();
    let (c, d) = (cfg.to_str().unwrap(), dir.to_str().unwrap());
    let run = status(tmp.path(), &["--probe", "--json", "--config", c, "--dir", d], &[]);
    validate_against_schema(&run.stdout());
    let v = json_of(&run);
    let virt = &v["virtualization"];
    assert!(virt.get("boot_skipped").is_none(), "{}", run.shown_all());
    let boots = virt["boots"].as_array().unwrap();
    eprintln!("boots: {boots:#?}");
    for b in boots {
        assert_eq!(b["target"], "host-kernel", "{b:#}");
        assert!(b["kernel"].as_str().is_some_and(|k| !k.is_empty()), "{b:#}");
    }
    let kvm = boots.iter().find(|b| b["accel"] == "kvm");
    let tcg = boots.iter().find(|b| b["accel"] == "tcg");
    let boot_finding = v["findings"].as_array().unwrap().iter().find(|f| f["probe"] == "virt.boot");
    match (virt["kvm"]["openable"].as_bool().unwrap(), virt["kvm"]["usable"].as_bool()) {
        (true, Some(true)) => {
            assert_eq!(kvm.unwrap()["came_up"], true);
            assert!(tcg.is_none());
        }
        (true, Some(false)) => {
            // This machine: the device opens, the guest aborts.
            let k = kvm.unwrap();
            assert_eq!(k["came_up"], false);
            assert!(k["error"].as_str().is_some_and(|e| !e.is_empty()), "{k:#}");
            let t = tcg.unwrap_or_else(|| panic!("no TCG boot\n{}", run.shown_all()));
            assert_eq!(t["came_up"], true, "{t:#}");
            let f = boot_finding.unwrap_or_else(|| panic!("no virt.boot finding\n{v:#}"));
            assert_eq!(f["severity"], "critical");
            let m = f["message"].as_str().unwrap();
            assert!(
                m.starts_with("KVM unusable on this machine (the device opens, guests do not start)"),
                "{m}"
            );
            assert!(f["remedy"].as_str().unwrap().contains("force_tcg"), "{f:#}");
            // The people's report says the same, not "not tested".
            let human = status(tmp.path(), &["--probe", "--config", c, "--dir", d], &[]).stdout();
            assert!(human.contains("KVM unusable on this machine"), "{human}");
            assert!(human.contains("host kernel") && !human.contains("not tested"), "{human}");
        }
        (false, _) => {
            // No usable device: TCG only, and it came up.
            assert!(kvm.is_none());
            assert_eq!(tcg.unwrap()["came_up"], true);
        }
        other => panic!("--probe did not decide about KVM: {other:?}\n{}", run.shown_all()),
    }
    // No guest is left running.
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default())
                .into_owned();
        assert!(!cmdline.contains("guestfs-appliance-probe-initrd"), "{:?} still runs", entry.path());
    }
}

/// Nagios plugin guidelines: whatever keeps the plugin from reporting
/// still gives one UNKNOWN line on stdout and exit 3.
#[test]
fn nagios_errors_are_unknown_with_a_status_line() {
    let tmp = scratch();
    let d = tmp.path().join("appliance");
    let d = d.to_str().unwrap();
    let bad_config = tmp.path().join("bad.toml");
    std::fs::write(&bad_config, "[health]\nno_such_key = 1\n").unwrap();
    let b = bad_config.to_str().unwrap();
    for (args, why) in [
        (vec!["--format", "nagios", "--bogus"], "usage error: unexpected argument '--bogus'"),
        (vec!["--format=nagios", "--timeout", "0"], "usage error: invalid value '0'"),
        (vec!["--format", "nagios", "--config", "/nonexistent/config.toml"], "/nonexistent/config.toml"),
        (vec!["--format", "nagios", "--config", b], "no_such_key"),
        (vec!["--format", "nagios", "--dir", d, "--skip", "virt.kvm"], "--skip virt.kvm: no probe or group"),
    ] {
        let run = status(tmp.path(), &args, &[]);
        assert_eq!(run.code(), Some(3), "{}", run.shown_all());
        let out = run.stdout();
        assert_eq!(out.lines().count(), 1, "{}", run.shown_all());
        assert!(out.starts_with("GUESTFS-APPLIANCE UNKNOWN - ") && out.contains(why), "{}", run.shown_all());
        assert!(!run.stderr().is_empty(), "the details go to stderr\n{}", run.shown_all());
    }
    // The same mistakes without Nagios: exit 2, nothing on stdout.
    let run = status(tmp.path(), &["--dir", d, "--skip", "virt.kvm"], &[]);
    assert_eq!(run.code(), Some(2), "{}", run.shown_all());
    assert!(run.stdout().is_empty());
    assert!(
        run.stderr().contains("valid names: location, appliance, virt, location.cachedir"),
        "{}",
        run.shown_all()
    );
    assert!(run.stderr().contains("virt.kvm-device"), "{}", run.shown_all());
    // Help is not an error.
    let run = status(tmp.path(), &["--format", "nagios", "--help"], &[]).success();
    assert!(run.stdout().contains("--timeout"), "{}", run.shown_all());
}

/// `--timeout` bounds the whole `--probe` run: here the KVM boot fails at
/// once and the TCG boot of the host kernel (about 7 s of emulated time to
/// our init, tests/fixtures/health/console) gets what is left of 6 s. The
/// report still comes: KVM unusable (critical, as it failed before the time
/// was up), TCG either finished or "not tested to the end".
#[test]
fn timeout_bounds_the_probe_and_still_reports() {
    if !crate::build::prerequisites_pub() || !have_tool("qemu-system-x86_64") {
        return;
    }
    let tmp = scratch();
    let d = tmp.path().join("appliance");
    let cfg = tmp.path().join("config.toml");
    std::fs::write(&cfg, "[health]\nprobe_bytes = 1048576\n").unwrap();
    let (c, d) = (cfg.to_str().unwrap(), d.to_str().unwrap());
    let started = Instant::now();
    let json_run =
        status(tmp.path(), &["--probe", "--json", "--timeout", "6", "--config", c, "--dir", d], &[]);
    eprintln!("status --probe --timeout 6 took {:.1} s", started.elapsed().as_secs_f64());
    validate_against_schema(&json_run.stdout());
    let json = json_of(&json_run);
    let boots = json["virtualization"]["boots"].as_array().unwrap();
    eprintln!("boots: {boots:#?}");
    let boot_check = json["checks"].as_array().unwrap().iter().find(|c| c["probe"] == "virt.boot").unwrap();
    let finding = json["findings"].as_array().unwrap().iter().find(|f| f["probe"] == "virt.boot");
    let kvm = boots.iter().find(|b| b["accel"] == "kvm");
    let tcg = boots.iter().find(|b| b["accel"] == "tcg");
    match kvm {
        Some(k) if k["came_up"] == true => assert!(tcg.is_none()),
        Some(k) if k["cut_short"] == false => {
            // This machine: KVM failed on its own, well within the time.
            let t = tcg.unwrap_or_else(|| panic!("no TCG entry\n{}", json_run.shown_all()));
            let m = finding.unwrap()["message"].as_str().unwrap().to_string();
            assert!(m.starts_with("KVM unusable on this machine"), "{m}");
            if t["cut_short"] == true {
                assert_eq!(t["came_up"], false);
                assert!(m.contains("TCG was not tested to the end"), "{m}");
            } else {
                assert!(m.contains("came up in"), "{m}");
            }
            // Nagios says the same, in time, as CRITICAL.
            let run = status(
                tmp.path(),
                &["--probe", "--format", "nagios", "--timeout", "6", "--config", c, "--dir", d],
                &[],
            );
            assert_eq!(run.code(), Some(2), "{}", run.shown_all());
            assert!(run.stdout().contains("KVM unusable on this machine"), "{}", run.shown_all());
        }
        // Cut short (a very slow machine): it decides nothing.
        Some(_) => {
            assert_eq!(boot_check["result"], "error", "{boot_check:#}");
            assert_eq!(json["virtualization"]["kvm"]["usable"], serde_json::Value::Null);
        }
        None => assert!(tcg.is_some()),
    }
}
