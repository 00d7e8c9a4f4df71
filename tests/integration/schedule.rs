//! Issue 3 item 6 and issue 7 item 8: the scheduling files, checked with
//! the real tools (systemd-analyze, apt-config, sh) and run with stand-ins
//! for our binary and systemctl.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

fn install_all(tmp: &std::path::Path) -> std::path::PathBuf {
    let dest = tmp.join("dest");
    ga(
        tmp,
        [
            "schedule",
            "--install",
            "--kind",
            "cron",
            "--kind",
            "systemd",
            "--kind",
            "apt",
            "--dest-root",
            dest.to_str().unwrap(),
        ],
    )
    .success();
    dest
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have_tool("systemd-analyze") {
        return;
    }
    let tmp = scratch();
    let dest = install_all(tmp.path());
    let unit_dir = dest.join("etc/systemd/system");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_dir.join("guestfs-appliance.service"))
        .arg(unit_dir.join("guestfs-appliance.timer"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Only complaints about our own units count (a container may lack
    // other units the verifier looks at).
    let ours: Vec<_> = text.lines().filter(|l| l.contains("guestfs-appliance")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify complained:\n{text}");
    let service = std::fs::read_to_string(unit_dir.join("guestfs-appliance.service")).unwrap();
    let exec = service.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    assert!(exec.ends_with("build --if-needed"), "{exec}");
    assert!(std::path::Path::new(exec.split_whitespace().next().unwrap()).is_file(), "{exec}");
}

/// systemd.timer(5): `Persistent=` only applies to `OnCalendar=` timers;
/// with monotonic triggers alone a run missed while the machine was off is
/// never made up. The timer must use a calendar expression systemd accepts.
#[test]
fn timer_catches_up_missed_runs() {
    if !have_tool("systemd-analyze") {
        return;
    }
    let tmp = scratch();
    let dest = install_all(tmp.path());
    let timer = std::fs::read_to_string(dest.join("etc/systemd/system/guestfs-appliance.timer")).unwrap();
    let value = |key: &str| timer.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::trim);
    assert_eq!(value("Persistent"), Some("true"), "{timer}");
    let calendar =
        value("OnCalendar").unwrap_or_else(|| panic!("Persistent=true without OnCalendar=:\n{timer}"));
    assert!(value("RandomizedDelaySec").is_some(), "{timer}");
    let out =
        Command::new("systemd-analyze").args(["calendar", "--iterations=2", calendar]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{calendar}: {}", String::from_utf8_lossy(&out.stderr));
    // Hourly: the next two elapses are one hour apart.
    let elapses: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("Next elapse:")).collect();
    let iter: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("Iter. #2:")).collect();
    assert!(!elapses.is_empty() && !iter.is_empty(), "{text}");
    assert!(text.contains("Normalized form: *-*-* *:00:00"), "not hourly: {text}");
}

/// The shell command apt runs for our `DPkg::Post-Invoke` entry, as apt
/// itself parses the file.
fn apt_hook_command(tmp: &Path) -> String {
    let dest = install_all(tmp);
    let conf = dest.join("etc/apt/apt.conf.d/80guestfs-appliance");
    let out = Command::new("apt-config").arg("-c").arg(&conf).arg("dump").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8_lossy(&out.stdout);
    let line = dump
        .lines()
        .find(|l| l.starts_with("DPkg::Post-Invoke::") && l.contains("guestfs-appliance"))
        .unwrap_or_else(|| panic!("no DPkg::Post-Invoke entry in:\n{dump}"));
    let start = line.find('"').unwrap() + 1;
    let end = line.rfind('"').unwrap();
    line[start..end].replace("\\\"", "\"")
}

/// An executable shell script at `path` that appends its arguments to
/// `log` and then runs `rest`.
fn fake_tool(path: &Path, log: &Path, rest: &str) {
    std::fs::write(path, format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\n{rest}\n", log.display())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Run the hook's `command` with our binary replaced by `fake_bin`,
/// /run/systemd/system by `systemd_dir`, the timeout by `timeout_s` and
/// `fake_path` first on PATH (for a fake `systemctl`).
fn run_hook(command: &str, fake_bin: &Path, systemd_dir: &Path, timeout_s: u32, fake_path: &Path) -> Output {
    let bin = bin("guestfs-appliance").display().to_string();
    assert!(command.contains("/run/systemd/system"), "the hook does not look for systemd: {command}");
    assert!(command.contains("timeout -k 10 900 "), "the inline build is not bounded: {command}");
    let command = command
        .replace(&bin, fake_bin.to_str().unwrap())
        .replace("/run/systemd/system", systemd_dir.to_str().unwrap())
        .replace("timeout -k 10 900 ", &format!("timeout -k 1 {timeout_s} "));
    let path = format!("{}:{}", fake_path.display(), std::env::var("PATH").unwrap_or_default());
    Command::new("sh").arg("-c").arg(&command).env("PATH", path).output().unwrap()
}

#[test]
fn apt_hook_starts_the_service_without_blocking_under_systemd() {
    if !have_tool("apt-config") || !have_tool("timeout") {
        return;
    }
    let tmp = scratch();
    let command = apt_hook_command(tmp.path());
    let syntax = Command::new("sh").arg("-n").arg("-c").arg(&command).status().unwrap();
    assert!(syntax.success(), "{command}");
    let fake_dir = tmp.path().join("fakebin");
    std::fs::create_dir(&fake_dir).unwrap();
    let log = tmp.path().join("calls.log");
    let fake_bin = tmp.path().join("fake-ga");
    fake_tool(&fake_bin, &log, "exit 0");
    // A fixture root where systemd runs: /run/systemd/system exists.
    let systemd = tmp.path().join("root/run/systemd/system");
    std::fs::create_dir_all(&systemd).unwrap();

    // systemd: the service is started with --no-block, nothing is built here.
    fake_tool(&fake_dir.join("systemctl"), &log, "exit 0");
    let out = run_hook(&command, &fake_bin, &systemd, 900, &fake_dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [format!("{} start --no-block guestfs-appliance.service", fake_dir.join("systemctl").display())],
        "{command}"
    );

    // systemctl refuses (service not installed): build here instead, and
    // still never fail the transaction.
    std::fs::remove_file(&log).unwrap();
    fake_tool(
        &fake_dir.join("systemctl"),
        &log,
        "echo 'Unit guestfs-appliance.service not found.' >&2; exit 5",
    );
    let out = run_hook(&command, &fake_bin, &systemd, 900, &fake_dir);
    assert!(out.status.success());
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.lines().any(|l| l == format!("{} build --if-needed --quiet", fake_bin.display())),
        "{calls}"
    );
}

#[test]
fn apt_hook_builds_inline_with_a_bound_without_systemd_and_never_fails() {
    if !have_tool("apt-config") || !have_tool("timeout") {
        return;
    }
    let tmp = scratch();
    let command = apt_hook_command(tmp.path());
    let fake_dir = tmp.path().join("fakebin");
    std::fs::create_dir(&fake_dir).unwrap();
    let log = tmp.path().join("calls.log");
    // A systemctl that must not be called.
    fake_tool(&fake_dir.join("systemctl"), &log, "exit 0");
    let no_systemd = tmp.path().join("root/run/systemd/system");

    // Without systemd: the build runs inline.
    let fake_bin = tmp.path().join("fake-ga");
    fake_tool(&fake_bin, &log, "exit 0");
    let out = run_hook(&command, &fake_bin, &no_systemd, 900, &fake_dir);
    assert!(out.status.success());
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [format!("{} build --if-needed --quiet", fake_bin.display())]
    );

    // A failing build: reported, the transaction goes on.
    fake_tool(&fake_bin, &log, "echo simulated failure >&2; exit 2");
    let out = run_hook(&command, &fake_bin, &no_systemd, 900, &fake_dir);
    assert!(out.status.success(), "hook failed the transaction: {command}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rebuild failed"), "{command}");

    // A build that hangs is ended by the bound (shortened here to 1 s).
    fake_tool(&fake_bin, &log, "exec sleep 600");
    let started = std::time::Instant::now();
    let out = run_hook(&command, &fake_bin, &no_systemd, 1, &fake_dir);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"), "{command}");
    eprintln!("hung build ended after {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains("systemctl"),
        "systemctl called without systemd"
    );

    // Not installed (binary gone): nothing runs, success.
    let out = run_hook(&command, &tmp.path().join("gone"), &no_systemd, 900, &fake_dir);
    assert!(out.status.success());
}

/// The command of the cron.d entry: the text after the five time fields
/// and the user.
fn cron_command(cron: &str) -> String {
    let entry = cron
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .expect("an entry");
    let mut rest = entry.trim_start();
    for _ in 0..6 {
        let end = rest.find(char::is_whitespace).expect("six fields");
        rest = rest[end..].trim_start();
    }
    assert!(entry.split_whitespace().nth(5) == Some("root"), "{entry}");
    rest.to_string()
}

/// Its comment promises mail (cron mails any output) only when something
/// was rebuilt or failed: run the entry's command as cron would, on a small
/// appliance, and look at what it prints.
#[test]
fn cron_entry_prints_only_when_it_rebuilt() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let tmp = scratch();
    let dest = install_all(tmp.path());
    let cron = std::fs::read_to_string(dest.join("etc/cron.d/guestfs-appliance")).unwrap();
    let comment: Vec<&str> = cron.lines().filter_map(|l| l.strip_prefix("# ")).collect();
    assert!(comment.join(" ").contains("mails only when something was rebuilt or failed"), "{cron}");
    let command = cron_command(&cron);
    assert!(
        command.contains(&format!("{} build --if-needed", bin("guestfs-appliance").display())),
        "{command}"
    );
    let syntax = Command::new("sh").arg("-n").arg("-c").arg(&command).status().unwrap();
    assert!(syntax.success(), "{command}");
    let dir = tmp.path().join("appliance");
    let config = tmp.path().join("config.toml");
    let inputs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/supermin.d");
    std::fs::write(
        &config,
        format!("[appliance]\ndir = {:?}\ninputs = [{:?}]\nsize = \"1G\"\n", dir.display(), inputs.display()),
    )
    .unwrap();
    // cron's environment: SHELL and PATH from the file, no terminal.
    let cron_run = || {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("GUESTFS_APPLIANCE_CONFIG", &config)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    // Nothing built yet: it builds and says so (cron mails that line).
    let (ok, mail) = cron_run();
    assert!(ok && dir.join("root").is_file(), "{mail}");
    assert!(mail.contains("built "), "a rebuild must produce mail, got: {mail:?}");
    // Fresh: silence (no mail).
    let (ok, mail) = cron_run();
    assert!(ok, "{mail}");
    assert_eq!(mail, "", "a fresh appliance must not produce mail");
}
