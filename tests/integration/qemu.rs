//! Booting a kernel + initrd under qemu (TCG) and capturing the serial
//! console, for the initrd and appliance boot tests.
//!
//! KVM is present but unusable on the build machines (docs/machine-quirks.md,
//! "KVM is unusable"), so guests always run under TCG. The guest is expected
//! to power itself off; qemu runs with `-no-reboot` so that a guest reboot or
//! kernel panic (with `panic=1`) ends qemu too. A guest still running at the
//! timeout is killed and the log says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a boot printed and how it ended.
#[derive(Debug)]
pub struct BootLog {
    /// The qemu command line, for failure messages.
    pub argv: Vec<String>,
    /// Serial console output and qemu's own messages (stdout then stderr
    /// interleaved as they arrived), lossily decoded.
    pub output: String,
    /// True if qemu was killed at the timeout.
    pub timed_out: bool,
    /// qemu's exit status (`None` only if waiting for it failed).
    pub status: Option<ExitStatus>,
}

impl BootLog {
    /// Whether the output contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.output.contains(needle)
    }
}

impl std::fmt::Display for BootLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {}", self.argv.join(" "))?;
        writeln!(f, "timed out: {}, status: {:?}", self.timed_out, self.status)?;
        writeln!(f, "----- output -----\n{}\n------------------", self.output)
    }
}

/// Finds `name` in PATH, then /usr/sbin and /sbin (where mke2fs lives, and
/// which a non-root PATH may lack). Missing: prints why the test is skipped and returns
/// `None`, except under CI=true, where every tool is installed and a missing
/// one is a failure.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        skip(&format!("{name} is not installed"));
    }
    found
}

/// Prints a skip reason, or fails under CI=true.
pub fn skip(reason: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but the test cannot run: {reason}");
    eprintln!("skipping: {reason}");
}

/// Boots `kernel` with `initrd` under TCG with 512 MiB, the serial console
/// on stdio, and each of `disks` (raw images) as a scsi-hd on one
/// virtio-scsi controller, in order (`sda`, `sdb`, ...). Waits up to
/// `timeout` for qemu to exit, then kills it.
///
/// Panics (test helper) only if qemu cannot be started.
pub fn boot(kernel: &Path, initrd: &Path, disks: &[&Path], append: &str, timeout: Duration) -> BootLog {
    let mut argv: Vec<String> =
        ["qemu-system-x86_64", "-accel", "tcg", "-nographic", "-no-reboot", "-m", "512", "-kernel"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    argv.push(kernel.display().to_string());
    argv.push("-initrd".into());
    argv.push(initrd.display().to_string());
    if !disks.is_empty() {
        argv.extend(["-device".into(), "virtio-scsi-pci,id=scsi0".into()]);
    }
    for (i, disk) in disks.iter().enumerate() {
        argv.push("-drive".into());
        argv.push(format!("file={},format=raw,if=none,id=disk{i},cache=unsafe", disk.display()));
        argv.push("-device".into());
        argv.push(format!("scsi-hd,drive=disk{i},bus=scsi0.0"));
    }
    argv.extend(["-append".into(), append.to_owned()]);

    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", argv.join(" ")));

    // Both pipes are drained in threads so that qemu never blocks on a full
    // pipe while we wait for it.
    let output = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    })
    .collect();

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break None,
        }
    };
    for reader in readers {
        let _ = reader.join();
    }
    let output = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    BootLog { argv, output, timed_out, status }
}
