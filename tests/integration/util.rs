//! Shared helpers for the integration tests: run the real binaries in a
//! fresh directory and, on failure, show everything needed to debug it
//! (command, cwd, directory listing, exit status, stdout, stderr).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of one of our binaries.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "guestfs-appliance" => PathBuf::from(env!("CARGO_BIN_EXE_guestfs-appliance")),
        "make-fixed-appliance" => PathBuf::from(env!("CARGO_BIN_EXE_make-fixed-appliance")),
        other => panic!("unknown binary {other}"),
    }
}

/// Run a program this test process has just written. Another test thread
/// that forks while the file is still open for writing holds the write fd
/// until its exec, and the kernel then refuses ours with ETXTBSY ("text file
/// busy"); that window is short, so retry.
pub fn run_fresh_executable(mut cmd: Command) -> Output {
    for _ in 0..50 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            other => return other.unwrap_or_else(|e| panic!("running {cmd:?}: {e}")),
        }
    }
    panic!("running {cmd:?}: still text file busy after 5 s")
}

/// True when running under CI, where a missing tool is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `tool` is on PATH (then /usr/sbin, /sbin) or, given as an
/// absolute path, exists. Under CI a missing tool fails the test; elsewhere
/// the test prints why it skips. One lookup for all tests: `qemu::tool`.
pub fn have_tool(tool: &str) -> bool {
    if tool.starts_with('/') {
        let found = Path::new(tool).exists();
        if !found {
            crate::qemu::skip(&format!("{tool} is not installed"));
        }
        return found;
    }
    crate::qemu::tool(tool).is_some()
}

/// True when we run as root (some tests need it: tmpfs mounts, other users).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A finished command and enough context to explain a failure.
pub struct Run {
    pub output: Output,
    pub shown: String,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
    /// Panic with the full context unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        if self.code() != Some(code) {
            panic!("expected exit code {code}\n{}", self.shown_all());
        }
        self
    }
    pub fn success(self) -> Self {
        self.expect_code(0)
    }
    pub fn shown_all(&self) -> String {
        format!(
            "{}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.shown,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// Run `program args` in `cwd` with extra environment, capturing output.
pub fn run_in<I, S>(cwd: &Path, program: &Path, args: I, env: &[(&str, &OsStr)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new(program);
    cmd.args(&args).current_dir(cwd).stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let listing: Vec<String> = std::fs::read_dir(cwd)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let shown = format!(
        "command: {} {}\ncwd: {}\ncwd listing: {:?}",
        program.display(),
        args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
        cwd.display(),
        listing
    );
    Run { output, shown }
}

/// Run `guestfs-appliance ARGS` in `cwd`.
pub fn ga<I, S>(cwd: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in(cwd, &bin("guestfs-appliance"), args, &[])
}

/// sha256 of a file, via our library (streamed).
pub fn sha256(path: &Path) -> String {
    guestfs_appliance::digest::sha256_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A scratch directory on a real disk (not /tmp, which may be small or a
/// tmpfs): under the cargo target directory, removed on drop.
pub fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-scratch");
    std::fs::create_dir_all(&base).expect("create scratch base");
    tempfile::Builder::new().prefix("it-").tempdir_in(base).expect("scratch dir")
}

/// Allocated bytes of a file.
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}
