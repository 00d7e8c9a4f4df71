//! Issue 12: `bench` against real libguestfs. One short real run (every
//! section, one launch each: a bounded cost under TCG) checked with other
//! tools: the JSON against docs/bench-schema.json (python3-jsonschema), the
//! SVG as XML (roxmltree), the console logs with the stage parser; then the
//! failures a user meets, which cost no boot: no guestfish, DIR not an
//! appliance, a launch that fails, Ctrl-C in the middle of a launch.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use guestfs_appliance::bench::stages;

use crate::util::*;

/// KVM is unusable on the build machines (docs/machine-quirks.md, "KVM is
/// unusable"): measure under TCG.
const TCG: [(&str, &str); 2] =
    [("LIBGUESTFS_BACKEND", "direct"), ("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")];

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench-schema.json")
}

/// Entries of `dir` that look like our private cache (must not outlive a run).
fn leftover_caches(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("guestfs-appliance-bench."))
        .collect()
}

/// A tiny Debian-looking guest that libguestfs inspection recognises: an
/// ext4 file system (whole disk, no partition table) made by mke2fs from a
/// tree with /etc/os-release, /etc/fstab and /bin. No appliance boot
/// needed to make it.
fn make_guest(dir: &Path) -> PathBuf {
    let tree = dir.join("guest-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        "NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/fstab"), "/dev/sda / ext4 defaults 0 1\n").unwrap();
    std::fs::write(tree.join("etc/hostname"), "benchguest\n").unwrap();
    let image = dir.join("guest.img");
    let out = Command::new(crate::qemu::tool("mke2fs").unwrap())
        .args(["-q", "-t", "ext4", "-L", "benchroot", "-d"])
        .arg(&tree)
        .arg("-F")
        .arg(&image)
        .arg("16M")
        .output()
        .unwrap();
    assert!(out.status.success(), "mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    image
}

fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().into())
        .collect()
}

#[test]
fn short_real_run_measures_both_appliances() {
    if !crate::build::prerequisites_pub() || !have_tool("guestfish") || !have_tool("mke2fs") {
        return;
    }
    if guestfs_appliance::input::default_input_dirs(Path::new("/")).is_empty() {
        assert!(!in_ci(), "CI must install libguestfs (libguestfs-tools)");
        eprintln!("skipping: libguestfs's supermin.d is not installed");
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    ga(tmp.path(), ["build".as_ref(), dir.as_os_str()]).success();
    let image = make_guest(tmp.path());
    let cache_base = tmp.path().join("cache-base");
    std::fs::create_dir(&cache_base).unwrap();
    let svg = tmp.path().join("bench.svg");
    let logs = tmp.path().join("logs");
    let mut env: Vec<(&str, &OsStr)> = TCG.iter().map(|(k, v)| (*k, OsStr::new(v))).collect();
    env.push(("LIBGUESTFS_CACHEDIR", cache_base.as_os_str()));
    // Seven launches: 2 baseline, 2 inspection, 1 parallel, 2 verbose.
    let started = Instant::now();
    let run = run_in(
        tmp.path(),
        &bin("guestfs-appliance"),
        [
            "bench".as_ref(),
            "--runs".as_ref(),
            "1".as_ref(),
            "--warmup".as_ref(),
            "0".as_ref(),
            "--json".as_ref(),
            "--svg".as_ref(),
            svg.as_os_str(),
            "--inspect".as_ref(),
            image.as_os_str(),
            "--parallel".as_ref(),
            "1".as_ref(),
            "--stages".as_ref(),
            "--stages-log".as_ref(),
            logs.as_os_str(),
            dir.as_os_str(),
        ],
        &env,
    )
    .success();
    eprintln!("bench --runs 1 --warmup 0 with every section took {:.0} s", started.elapsed().as_secs_f64());
    crate::status::validate_json(&schema(), &run.stdout());
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["appliance_dir"], dir.to_str().unwrap());
    assert_eq!(v["environment"]["libguestfs_backend_settings"], "force_tcg");
    for section in ["launch", "inspect"] {
        for appliance in ["fixed", "supermin"] {
            let s = &v[section][appliance];
            assert_eq!(s["n"], 1, "{section} {appliance}: {s}");
            assert!(s["mean_s"].as_f64().unwrap() > 1.0, "{section} {appliance}: {s}");
            assert_eq!(s["sd_s"], serde_json::Value::Null);
        }
        assert!(v[section]["ratio"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(v["inspect"]["command"][1], "--ro");
    assert_eq!(v["parallel"][0]["launches"], 1);
    // The real consoles of both appliances have every marker.
    for appliance in ["fixed", "supermin"] {
        let st = &v["stages"][appliance];
        assert_eq!(st["missing"], serde_json::json!([]), "{appliance}: {st:#}");
        assert_eq!(st["accel"], "tcg");
    }
    assert!(!v["stages"]["fixed"]["events"][5]["at_s"].is_null(), "our init's modules-loaded line");
    // The private cache (holding the supermin appliance) is gone.
    assert_eq!(leftover_caches(&cache_base), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&cache_base).unwrap().count(), 0);
    // The SVG is XML and draws both appliances, parallel, stages.
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let t = texts(&doc);
    for want in ["launch: fixed", "launch: supermin", "inspect: fixed", "launches per minute", "shutdown"] {
        assert!(t.iter().any(|x| x == want), "no {want:?} in {t:?}");
    }
    // The logs read back and give the same stages.
    for appliance in ["fixed", "supermin"] {
        let path = logs.join(format!("{appliance}-console.log"));
        let (lines, exited) = stages::parse_log(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let report = stages::analyse(&lines, exited);
        let from_json: Vec<Option<f64>> = v["stages"][appliance]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["seconds"].as_f64())
            .collect();
        let from_log: Vec<Option<f64>> = report.stages.iter().map(|s| s.seconds).collect();
        for (a, b) in from_json.iter().zip(&from_log) {
            // The log keeps milliseconds.
            // Both absent (supermin has no modules-loaded line) or close.
            let same = match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => (a - b).abs() < 0.01,
                _ => false,
            };
            assert!(same, "{appliance}: {from_json:?} vs {from_log:?}");
        }
    }
}

/// A directory that looks like a fixed appliance to libguestfs's search
/// but whose root is not ext2: libguestfs refuses it before booting.
fn bogus_appliance(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["README.fixed", "kernel", "initrd", "root"] {
        std::fs::write(dir.join(f), vec![0u8; 4096]).unwrap();
    }
}

fn bench(cwd: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Run {
    let mut all: Vec<&OsStr> = vec!["bench".as_ref()];
    all.extend_from_slice(args);
    run_in(cwd, &bin("guestfs-appliance"), all, env)
}

fn one_line_error(run: &Run) -> String {
    let err = run.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(lines.len(), 1, "{}", run.shown_all());
    lines[0].to_string()
}

#[test]
fn dir_that_is_not_an_appliance_is_refused_before_any_launch() {
    let tmp = scratch();
    let dir = tmp.path().join("empty");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("kernel"), b"k").unwrap();
    let run = bench(tmp.path(), &[dir.as_os_str()], &[]).expect_code(2);
    let err = one_line_error(&run);
    assert!(err.contains("not a fixed appliance (missing README.fixed, initrd, root)"), "{err}");
    assert!(err.contains("guestfs-appliance build"), "{err}");
    assert!(run.stdout().is_empty());
}

#[test]
fn missing_guestfish_is_named() {
    let tmp = scratch();
    let dir = tmp.path().join("app");
    bogus_appliance(&dir);
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    // An empty PATH, and no guestfish in /usr/sbin or /sbin either.
    if ["/usr/sbin/guestfish", "/sbin/guestfish"].iter().any(|p| Path::new(p).exists()) {
        eprintln!("skipping: guestfish lives in an sbin directory here");
        return;
    }
    let run = bench(tmp.path(), &[dir.as_os_str()], &[("PATH", empty.as_os_str())]).expect_code(2);
    let err = one_line_error(&run);
    assert!(err.contains("guestfish not found on PATH") && err.contains("libguestfs-tools"), "{err}");
}

#[test]
fn failed_launch_shows_libguestfs_error_and_cleans_up() {
    if !have_tool("guestfish") || guestfs_appliance::input::default_input_dirs(Path::new("/")).is_empty() {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("app");
    bogus_appliance(&dir);
    let mut env: Vec<(&str, &OsStr)> = TCG.iter().map(|(k, v)| (*k, OsStr::new(v))).collect();
    env.push(("LIBGUESTFS_CACHEDIR", tmp.path().as_os_str()));
    let run = bench(tmp.path(), &["--runs".as_ref(), "1".as_ref(), dir.as_os_str()], &env).expect_code(2);
    let err = one_line_error(&run);
    assert!(err.contains("launch with the fixed appliance failed (`"), "{err}");
    assert!(err.contains("guestfish -a /dev/null run"), "{err}");
    // libguestfs's own reason, not its boilerplate.
    assert!(err.contains("not an extfs filesystem"), "{err}");
    assert!(!err.contains("LIBGUESTFS_DEBUG=1"), "{err}");
    assert_eq!(leftover_caches(tmp.path()), Vec::<String>::new());
}

#[test]
fn svg_into_a_missing_directory_fails_before_measuring() {
    let tmp = scratch();
    let dir = tmp.path().join("app");
    bogus_appliance(&dir);
    let svg = tmp.path().join("no/such/dir/b.svg");
    let run = bench(tmp.path(), &["--svg".as_ref(), svg.as_os_str(), dir.as_os_str()], &[]).expect_code(2);
    let err = one_line_error(&run);
    assert!(err.contains("--svg") && err.contains("does not exist"), "{err}");
}

/// Ctrl-C while guestfish runs: the launch (and what it started) is
/// stopped, the private cache removed, exit 2. guestfish is a stand-in
/// that starts a long sleep, as guestfish starts qemu.
#[test]
fn interrupt_stops_the_launch_and_removes_the_private_cache() {
    if guestfs_appliance::input::default_input_dirs(Path::new("/")).is_empty() {
        assert!(!in_ci(), "CI must install libguestfs (libguestfs-tools)");
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("app");
    bogus_appliance(&dir);
    let fake_bin = tmp.path().join("bin");
    std::fs::create_dir(&fake_bin).unwrap();
    let pidfile = tmp.path().join("qemu.pid");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in --version) echo 'guestfish 1.48.6'; exit 0;; esac\n\
         sleep 300 &\necho $! > {}\nwait\n",
        pidfile.display()
    );
    let fake = fake_bin.join("guestfish");
    std::fs::write(&fake, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Just written: exec it once ourselves, retrying while another test
    // thread's fork still holds it open for writing (ETXTBSY); after one
    // exec no such fd is left, so bench's exec cannot hit it.
    let mut version = Command::new(&fake);
    version.arg("--version");
    assert!(run_fresh_executable(version).status.success());
    let path = format!("{}:/usr/bin:/bin", fake_bin.display());
    let child = Command::new(bin("guestfs-appliance"))
        .args(["bench", "--runs", "1"])
        .arg(&dir)
        .env("PATH", &path)
        .env("LIBGUESTFS_CACHEDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the stand-in's "qemu" runs, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "the fake guestfish never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("interrupted: stopped the running launches and removed the private cache"),
        "{stderr}"
    );
    assert_eq!(leftover_caches(tmp.path()), Vec::<String>::new());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    assert!(gone, "the launch's child {pid} survived the interrupt");
}
