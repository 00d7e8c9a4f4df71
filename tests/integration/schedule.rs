//! Issue 3 item 6: the scheduling files, checked with the real tools.

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

#[test]
fn apt_hook_parses_and_never_fails_the_transaction() {
    if !have_tool("apt-config") {
        return;
    }
    let tmp = scratch();
    let dest = install_all(tmp.path());
    let conf = dest.join("etc/apt/apt.conf.d/80guestfs-appliance");
    let out = std::process::Command::new("apt-config").arg("-c").arg(&conf).arg("dump").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8_lossy(&out.stdout);
    let line = dump
        .lines()
        .find(|l| l.starts_with("DPkg::Post-Invoke::") && l.contains("guestfs-appliance"))
        .unwrap_or_else(|| panic!("no DPkg::Post-Invoke entry in:\n{dump}"));
    // Extract the shell command apt would run and run it with a failing
    // stand-in for our binary: the hook must still succeed.
    let start = line.find('"').unwrap() + 1;
    let end = line.rfind('"').unwrap();
    let command = line[start..end].replace("\\\"", "\"");
    let bin = bin("guestfs-appliance").display().to_string();
    let failing = tmp.path().join("failing-ga");
    std::fs::write(&failing, "#!/bin/sh\necho simulated failure >&2\nexit 2\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let command = command.replace(&bin, failing.to_str().unwrap());
    let run = std::process::Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(run.status.success(), "hook failed the transaction: {command}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("rebuild failed"), "{command}");
    // sh -n agrees it is valid shell.
    let syntax = std::process::Command::new("sh").arg("-n").arg("-c").arg(&command).status().unwrap();
    assert!(syntax.success());
}

#[test]
fn cron_entry_runs_the_if_needed_build() {
    let tmp = scratch();
    let dest = install_all(tmp.path());
    let cron = std::fs::read_to_string(dest.join("etc/cron.d/guestfs-appliance")).unwrap();
    let entry = cron.lines().find(|l| l.contains(" root ")).expect("an entry run as root");
    let command = entry.splitn(7, char::is_whitespace).filter(|f| !f.is_empty()).collect::<Vec<_>>();
    assert!(entry.contains(&format!("{} build --if-needed", bin("guestfs-appliance").display())), "{entry}");
    let syntax = std::process::Command::new("sh").arg("-n").arg("-c").arg(command.last().unwrap()).status().unwrap();
    assert!(syntax.success(), "{entry}");
}
