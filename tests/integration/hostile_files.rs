//! Issue 8, items 13 and 14: configuration and environment values are
//! validated and named; files we parse are read at a bounded cost (a
//! device, FIFO or huge file where a config or stamp should be is an
//! error at once, never a hang or an allocation the size of the input).
//! Commands run with a deadline so that a regression fails instead of
//! hanging the suite.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Run `guestfs-appliance ARGS` in `cwd` with `env`, killed after 20 s.
/// Returns (exit code, stderr); panics naming the command if it hung.
fn ga_deadline(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin("guestfs-appliance"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("guestfs-appliance {args:?} {env:?} still running after 20 s: it blocked or read without bound");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A config file named by `--config` that is a device, a FIFO or huge is
/// refused at once, naming the file.
#[test]
fn issue8_config_that_is_not_a_small_regular_file_is_refused_at_once() {
    let tmp = scratch();
    let cwd = tmp.path();
    let fifo = cwd.join("config.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let big = cwd.join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(17 << 20).unwrap();
    for (config, needle) in [
        ("/dev/zero", "not a regular file (a character device)"),
        (fifo.to_str().unwrap(), "not a regular file (a FIFO)"),
        (big.to_str().unwrap(), "larger than 16.0 MiB"),
    ] {
        let (code, err) = ga_deadline(cwd, &["--config", config, "check", "nowhere"], &[]);
        assert_eq!(code, Some(2), "{config}: {err}");
        assert!(err.contains(&format!("config file {config}")) && err.contains(needle), "{config}: {err}");
        let (code, err) = ga_deadline(cwd, &["check", "nowhere"], &[("GUESTFS_APPLIANCE_CONFIG", config)]);
        assert_eq!(code, Some(2), "{config}: {err}");
        assert!(err.contains(needle), "{config}: {err}");
    }
}

/// A FIFO or device planted as an appliance's stamp does not hang `check`:
/// the stamp is skipped and the answer computed.
#[test]
fn issue8_stamp_that_is_a_fifo_or_device_is_ignored() {
    let tmp = scratch();
    let cwd = tmp.path();
    let dir = cwd.join("appliance");
    std::fs::create_dir(&dir).unwrap();
    let stamp = guestfs_appliance::stamp::stamp_path(&dir);
    nix::unistd::mkfifo(&stamp, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (code, err) = ga_deadline(cwd, &["check", dir.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("manifest.toml"), "{err}");
    std::fs::remove_file(&stamp).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &stamp).unwrap();
    let (code, err) = ga_deadline(cwd, &["check", dir.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
}

/// Numeric config keys are validated (NaN, negative), naming key and file;
/// an empty GUESTFS_APPLIANCE_CONFIG means unset.
#[test]
fn issue8_config_values_and_environment_are_validated() {
    let tmp = scratch();
    let cwd = tmp.path();
    let config = cwd.join("config.toml");
    for value in ["nan", "-1.0"] {
        std::fs::write(&config, format!("[health]\nspace_margin = {value}\n")).unwrap();
        let (code, err) = ga_deadline(cwd, &["--config", config.to_str().unwrap(), "check", "nowhere"], &[]);
        assert_eq!(code, Some(2), "{value}: {err}");
        assert!(
            err.contains(&config.display().to_string()) && err.contains("health.space_margin"),
            "{value}: {err}"
        );
    }
    // Empty = unset: the default config (or none) is used, and check gets
    // as far as the missing appliance.
    let (code, err) = ga_deadline(cwd, &["check", "nowhere"], &[("GUESTFS_APPLIANCE_CONFIG", "")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no appliance at") && !err.contains("config file"), "{err}");
    // SOURCE_DATE_EPOCH that is not a number, or out of range: named.
    for value in ["abc", "-1", "4294967296"] {
        let (code, err) = ga_deadline(cwd, &["check", "nowhere"], &[("SOURCE_DATE_EPOCH", value)]);
        assert_eq!(code, Some(2), "{value}: {err}");
        assert!(err.contains("SOURCE_DATE_EPOCH"), "{value}: {err}");
    }
}

/// An out-of-range epoch recorded in a manifest is refused naming the
/// manifest and key (not blamed on the initrd writer), and DIR is left as
/// it was.
#[test]
fn issue8_recorded_epoch_out_of_range_names_the_manifest() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let tmp = scratch();
    let cwd = tmp.path();
    let dir = cwd.join("appliance");
    ga(cwd, ["build", "-q", "--minimal", "--size", "1G", dir.to_str().unwrap()]).success();
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("[options]\n", "[options]\nsource_date_epoch = 99999999999\n", 1);
    std::fs::write(&path, &text).unwrap();
    let run = ga(cwd, ["build", "--if-needed", dir.to_str().unwrap()]).expect_code(2);
    crate::bad_input::assert_error_line(&run, &[path.to_str().unwrap(), "source_date_epoch", "99999999999"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}
