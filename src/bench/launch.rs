//! Real libguestfs launches, timed: the guestfish command lines of the
//! libguestfs performance guide, run with either appliance, in the user's
//! environment except for what selects the appliance.
//!
//! - The fixed appliance: `LIBGUESTFS_PATH=DIR`.
//! - libguestfs's own supermin appliance: `LIBGUESTFS_PATH` as libguestfs
//!   would find its supermin.d (unset, unless the user's path leads to a
//!   supermin appliance), built by libguestfs into its per-user cache. That
//!   cache is a private `LIBGUESTFS_CACHEDIR` we create (mode 0700, under
//!   libguestfs's cache base, since the appliance is ~700 MB) and remove at
//!   the end, so a benchmark neither uses nor disturbs the user's cache.
//!   The fixed-appliance launches use it too: libguestfs also caches its
//!   qemu feature test there, and both sides should pay for that alike.
//!
//! `LIBGUESTFS_BACKEND`, `LIBGUESTFS_BACKEND_SETTINGS`, `LIBGUESTFS_HV`,
//! `LIBGUESTFS_MEMSIZE` and the like are passed through untouched: the
//! benchmark measures the environment the user runs in (on a machine where
//! KVM is broken that means `LIBGUESTFS_BACKEND=direct
//! LIBGUESTFS_BACKEND_SETTINGS=force_tcg`; a failed launch says so when it
//! looks like a KVM failure). `LIBGUESTFS_DEBUG` and `LIBGUESTFS_TRACE` are
//! removed from timed launches (a verbose console slows the boot) and
//! `LIBGUESTFS_DEBUG=1` is set for the `--stages` launch.
//!
//! Every launch goes through `process::Timed`: a deadline, and a cancel
//! flag raised by Ctrl-C (`interrupt.rs`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::process::{ProcessError, Stream, Timed, TimedOutput};

/// Which appliance a launch boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Appliance {
    /// Ours: `LIBGUESTFS_PATH=DIR`.
    Fixed,
    /// libguestfs's supermin appliance from its (private) cache.
    Supermin,
}

impl Appliance {
    /// The name used in tables, JSON and the SVG.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Appliance::Fixed => "fixed",
            Appliance::Supermin => "supermin",
        }
    }
}

/// What a launch does once the appliance is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Workload {
    /// `guestfish -a /dev/null run`: launch and shut down (the guide's
    /// appliance baseline).
    Null,
    /// `guestfish --ro -a IMAGE -i exit`: launch and inspect a guest (the
    /// guide's inspection baseline).
    Inspect(PathBuf),
    /// `guestfish -a /dev/null run : echo ready`: the launch, with a line
    /// on stdout the moment the appliance is up (guestfish flushes stdout
    /// after each command), for the parallel test's time to ready.
    Ready,
}

/// The word `Workload::Ready` prints.
const READY: &str = "ready";

impl Workload {
    /// The guestfish arguments.
    pub(crate) fn args(&self) -> Vec<OsString> {
        let words: Vec<&OsStr> = match self {
            Workload::Null => vec!["-a".as_ref(), "/dev/null".as_ref(), "run".as_ref()],
            Workload::Inspect(image) => {
                vec!["--ro".as_ref(), "-a".as_ref(), image.as_os_str(), "-i".as_ref(), "exit".as_ref()]
            }
            Workload::Ready => {
                vec![
                    "-a".as_ref(),
                    "/dev/null".as_ref(),
                    "run".as_ref(),
                    ":".as_ref(),
                    "echo".as_ref(),
                    READY.as_ref(),
                ]
            }
        };
        words.into_iter().map(OsStr::to_owned).collect()
    }
}

/// A launch that could not be measured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    /// guestfish could not run, ran too long, or was interrupted.
    #[error("launch with the {appliance} appliance: {source}")]
    Process {
        /// Which appliance.
        appliance: &'static str,
        /// What went wrong.
        source: ProcessError,
    },
    /// guestfish ran and failed.
    #[error("launch with the {appliance} appliance failed (`{argv}`, {status}): {tail}{hint}")]
    Failed {
        /// Which appliance.
        appliance: &'static str,
        /// The command line.
        argv: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The lines that explain it (module docs of [`explain`]).
        tail: String,
        /// What to try, if we recognise the failure (starts with "; ").
        hint: String,
    },
    /// The ready marker never came although guestfish succeeded.
    #[error("launch with the {appliance} appliance: `{argv}` succeeded but never printed `{READY}`")]
    NoReady {
        /// Which appliance.
        appliance: &'static str,
        /// The command line.
        argv: String,
    },
    /// The private cache directory could not be created.
    #[error("creating a private LIBGUESTFS_CACHEDIR in {base}: {source}; set TMPDIR to a directory with ~1 GB free")]
    CacheDir {
        /// Where we tried.
        base: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One measured launch.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// guestfish spawn to exit, seconds.
    pub(crate) seconds: f64,
    /// Spawn to the `ready` line ([`Workload::Ready`] only).
    pub(crate) ready_s: Option<f64>,
    /// Everything guestfish printed.
    pub(crate) output: TimedOutput,
}

/// Launches guestfish with either appliance (module docs).
#[derive(Debug)]
pub(crate) struct Launcher {
    guestfish: PathBuf,
    fixed_dir: PathBuf,
    supermin_path: Option<String>,
    cachedir: tempfile::TempDir,
    timeout: Duration,
    cancel: Arc<AtomicBool>,
    force_tcg: bool,
}

/// How the launcher is set up.
#[derive(Debug, Clone)]
pub(crate) struct LauncherOptions {
    /// The guestfish binary.
    pub(crate) guestfish: PathBuf,
    /// The fixed appliance directory.
    pub(crate) fixed_dir: PathBuf,
    /// `LIBGUESTFS_PATH` for supermin launches (`None`: unset).
    pub(crate) supermin_path: Option<String>,
    /// Where the private cache directory goes.
    pub(crate) cache_base: PathBuf,
    /// The deadline of each launch.
    pub(crate) timeout: Duration,
    /// Raised to stop running launches.
    pub(crate) cancel: Arc<AtomicBool>,
}

impl Launcher {
    /// Create the private cache directory.
    ///
    /// Errors: [`LaunchError::CacheDir`].
    pub(crate) fn new(opts: LauncherOptions) -> Result<Launcher, LaunchError> {
        use std::os::unix::fs::PermissionsExt;
        let cachedir = tempfile::Builder::new()
            .prefix("guestfs-appliance-bench.")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&opts.cache_base)
            .map_err(|source| LaunchError::CacheDir { base: opts.cache_base.clone(), source })?;
        let force_tcg = std::env::var("LIBGUESTFS_BACKEND_SETTINGS").is_ok_and(|s| s.contains("force_tcg"));
        Ok(Launcher {
            guestfish: opts.guestfish,
            fixed_dir: opts.fixed_dir,
            supermin_path: opts.supermin_path,
            cachedir,
            timeout: opts.timeout,
            cancel: opts.cancel,
            force_tcg,
        })
    }

    /// The private `LIBGUESTFS_CACHEDIR`.
    pub(crate) fn cachedir(&self) -> &Path {
        self.cachedir.path()
    }

    /// Remove the private cache directory now (it is removed on drop too,
    /// but silently).
    pub(crate) fn close(self) -> std::io::Result<()> {
        self.cachedir.close()
    }

    /// The command a launch runs, with its environment.
    pub(crate) fn command(&self, appliance: Appliance, workload: &Workload, verbose: bool) -> Timed {
        let mut argv: Vec<OsString> = vec![self.guestfish.clone().into_os_string()];
        argv.extend(workload.args());
        let mut cmd = Timed::new(&argv, self.timeout)
            .cancel_on(Arc::clone(&self.cancel))
            .env("LIBGUESTFS_CACHEDIR", self.cachedir.path())
            .env_remove("LIBGUESTFS_TRACE");
        cmd = if verbose { cmd.env("LIBGUESTFS_DEBUG", "1") } else { cmd.env_remove("LIBGUESTFS_DEBUG") };
        match (appliance, &self.supermin_path) {
            (Appliance::Fixed, _) => cmd.env("LIBGUESTFS_PATH", &self.fixed_dir),
            (Appliance::Supermin, Some(path)) => cmd.env("LIBGUESTFS_PATH", path),
            (Appliance::Supermin, None) => cmd.env_remove("LIBGUESTFS_PATH"),
        }
    }

    /// Launch once and time it.
    ///
    /// Errors: [`LaunchError::Process`] (could not run, deadline,
    /// interrupted), [`LaunchError::Failed`] (non-zero exit, with the lines
    /// that explain it), [`LaunchError::NoReady`].
    pub(crate) fn launch(
        &self,
        appliance: Appliance,
        workload: &Workload,
        verbose: bool,
    ) -> Result<Launch, LaunchError> {
        let output = self
            .command(appliance, workload, verbose)
            .run()
            .map_err(|source| LaunchError::Process { appliance: appliance.name(), source })?;
        if !output.status.success() {
            let stderr: Vec<&str> = output.stream(Stream::Stderr).map(|l| l.text.as_str()).collect();
            let (tail, hint) = explain(&stderr, self.force_tcg);
            return Err(LaunchError::Failed {
                appliance: appliance.name(),
                argv: output.argv.clone(),
                status: output.status,
                tail,
                hint: hint.map(|h| format!("; hint: {h}")).unwrap_or_default(),
            });
        }
        let ready_s =
            output.stream(Stream::Stdout).find(|l| l.text.trim() == READY).map(|l| l.at.as_secs_f64());
        if *workload == Workload::Ready && ready_s.is_none() {
            return Err(LaunchError::NoReady { appliance: appliance.name(), argv: output.argv.clone() });
        }
        Ok(Launch { seconds: output.elapsed.as_secs_f64(), ready_s, output })
    }

    /// Start `count` launches of the fixed appliance at once (threads
    /// released together by a barrier) and time them.
    ///
    /// Errors: the first launch that failed.
    pub(crate) fn launch_parallel(&self, count: usize) -> Result<ParallelBatch, LaunchError> {
        let barrier = Barrier::new(count);
        let results: Vec<Result<Launch, LaunchError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..count)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        self.launch(Appliance::Fixed, &Workload::Ready, false)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a launch thread panicked")).collect()
        });
        let launches = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(ParallelBatch::from_launches(&launches))
    }
}

/// One batch of simultaneous launches, timed from the first spawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ParallelBatch {
    /// Launches started together.
    pub(crate) launches: usize,
    /// Until every appliance was up (its `ready` line), seconds.
    pub(crate) all_ready_s: f64,
    /// Until every guestfish had exited (shut its appliance down).
    pub(crate) all_exited_s: f64,
    /// Appliances up per minute: launches × 60 / all_ready_s.
    pub(crate) launches_per_minute: f64,
    /// Each launch's time to ready, from the batch start, sorted.
    pub(crate) ready_s: Vec<f64>,
}

impl ParallelBatch {
    fn from_launches(launches: &[Launch]) -> ParallelBatch {
        let start: Instant = launches.iter().map(|l| l.output.started).min().expect("at least one launch");
        let since = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
        let mut ready: Vec<f64> = launches
            .iter()
            .map(|l| since(l.output.started) + l.ready_s.expect("checked by launch()"))
            .collect();
        ready.sort_by(f64::total_cmp);
        let exited =
            launches.iter().map(|l| since(l.output.started + l.output.elapsed)).fold(0.0f64, f64::max);
        ParallelBatch::new(ready, exited)
    }

    /// From the launches' times to ready and the last exit.
    pub(crate) fn new(mut ready_s: Vec<f64>, all_exited_s: f64) -> ParallelBatch {
        ready_s.sort_by(f64::total_cmp);
        let all_ready_s = ready_s.last().copied().unwrap_or(0.0);
        let launches = ready_s.len();
        let launches_per_minute = if all_ready_s > 0.0 { launches as f64 * 60.0 / all_ready_s } else { 0.0 };
        ParallelBatch { launches, all_ready_s, all_exited_s, launches_per_minute, ready_s }
    }
}

/// The lines of a failed guestfish's stderr that explain it, on one line:
/// libguestfs's `error:` lines (the boilerplate after them, "This usually
/// means...", "Do: export LIBGUESTFS_DEBUG=1", is dropped), else the last
/// three lines; and a hint when it looks like broken KVM (qemu aborted or
/// a KVM error, and TCG was not forced).
pub(crate) fn explain(stderr: &[&str], force_tcg: bool) -> (String, Option<String>) {
    let mut picked: Vec<&str> = Vec::new();
    for line in stderr.iter().map(|l| l.trim()).filter(|l| l.contains("error:")) {
        if !picked.contains(&line) {
            picked.push(line);
        }
    }
    if picked.is_empty() {
        picked = stderr.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    }
    let start = picked.len().saturating_sub(3);
    let mut tail = picked[start..].join("; ");
    if tail.len() > 1024 {
        let cut = (0..=1024).rev().find(|i| tail.is_char_boundary(*i)).unwrap_or(0);
        tail.truncate(cut);
        tail.push_str("...");
    }
    if tail.is_empty() {
        tail = "no output on stderr".into();
    }
    let text = stderr.join("\n");
    let kvm = text.contains("killed by signal 6")
        || text.contains("failed to set MSR")
        || text.contains("kvm_")
        || text.contains("KVM");
    let hint = (kvm && !force_tcg).then(|| {
        "KVM may be unusable on this machine (`guestfs-appliance status --probe` test-boots it); measure under \
         TCG with LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg"
            .to_string()
    });
    (tail, hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What guestfish printed on this machine when KVM aborted qemu
    /// (without force_tcg), abridged.
    const KVM_ABORT: &[&str] = &[
        "*stdin*:0: libguestfs: error: appliance closed the connection unexpectedly.",
        "This usually means the libguestfs appliance crashed.",
        "Do:",
        "  export LIBGUESTFS_DEBUG=1 LIBGUESTFS_TRACE=1",
        "*stdin*:0: libguestfs: error: /usr/bin/qemu-system-x86_64 killed by signal 6 (Aborted).",
        "To see full error messages you may need to enable debugging.",
        "*stdin*:0: libguestfs: error: guestfs_launch failed.",
        "This usually means the libguestfs appliance failed to start or crashed.",
    ];

    #[test]
    fn failure_keeps_the_error_lines_and_hints_at_kvm() {
        let (tail, hint) = explain(KVM_ABORT, false);
        assert_eq!(
            tail,
            "*stdin*:0: libguestfs: error: appliance closed the connection unexpectedly.; \
             *stdin*:0: libguestfs: error: /usr/bin/qemu-system-x86_64 killed by signal 6 (Aborted).; \
             *stdin*:0: libguestfs: error: guestfs_launch failed."
        );
        assert!(hint.unwrap().contains("LIBGUESTFS_BACKEND_SETTINGS=force_tcg"));
        // Already under TCG: the hint would be wrong.
        assert_eq!(explain(KVM_ABORT, true).1, None);
    }

    #[test]
    fn failure_without_error_lines_shows_the_last_lines() {
        let (tail, hint) = explain(&["a", "", "b", "c", "d  "], false);
        assert_eq!(tail, "b; c; d");
        assert_eq!(hint, None);
        assert_eq!(explain(&[], false).0, "no output on stderr");
    }

    #[test]
    fn workloads_are_the_guides_command_lines() {
        let words =
            |w: &Workload| w.args().iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
        assert_eq!(words(&Workload::Null), ["-a", "/dev/null", "run"]);
        assert_eq!(
            words(&Workload::Inspect("/x/disk.img".into())),
            ["--ro", "-a", "/x/disk.img", "-i", "exit"]
        );
        assert_eq!(words(&Workload::Ready), ["-a", "/dev/null", "run", ":", "echo", "ready"]);
    }

    #[test]
    fn parallel_batch_rates() {
        let b = ParallelBatch::new(vec![20.0, 15.0], 21.0);
        assert_eq!(b.ready_s, [15.0, 20.0]);
        assert_eq!((b.launches, b.all_ready_s, b.all_exited_s), (2, 20.0, 21.0));
        assert!((b.launches_per_minute - 6.0).abs() < 1e-9);
    }

    /// The environment each launch gets, with a fake guestfish that prints
    /// it: the appliance selection and the private cache, the user's
    /// backend settings untouched, debug variables only for --stages.
    #[test]
    fn launch_environment_selects_the_appliance() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = tmp.path().join("guestfish");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"PATH=${LIBGUESTFS_PATH-unset} CACHE=$LIBGUESTFS_CACHEDIR \
             DEBUG=${LIBGUESTFS_DEBUG-unset} TRACE=${LIBGUESTFS_TRACE-unset} ARGS=$*\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let opts = |supermin_path: Option<String>| LauncherOptions {
            guestfish: fake.clone(),
            fixed_dir: "/app".into(),
            supermin_path,
            cache_base: tmp.path().to_path_buf(),
            timeout: Duration::from_secs(30),
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let launcher = Launcher::new(opts(None)).unwrap();
        let cache = launcher.cachedir().to_path_buf();
        assert!(cache.starts_with(tmp.path()) && cache.is_dir());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o700);
        // The script was just written: another test thread that forked
        // meanwhile may still hold it open for writing (ETXTBSY) until its
        // exec. Once one exec has worked, no such fd is left.
        for _ in 0..50 {
            match launcher.command(Appliance::Fixed, &Workload::Null, false).run() {
                Err(ProcessError::Spawn { source, .. }) if source.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                other => {
                    other.unwrap();
                    break;
                }
            }
        }
        let line = |a: Appliance, w: &Workload, v: bool| {
            let run = launcher.command(a, w, v).run().unwrap();
            run.lines[0].text.clone()
        };
        let c = cache.display();
        assert_eq!(
            line(Appliance::Fixed, &Workload::Null, false),
            format!("PATH=/app CACHE={c} DEBUG=unset TRACE=unset ARGS=-a /dev/null run")
        );
        assert_eq!(
            line(Appliance::Supermin, &Workload::Null, true),
            format!("PATH=unset CACHE={c} DEBUG=1 TRACE=unset ARGS=-a /dev/null run")
        );
        // Fake ready line: launch() finds it.
        let ready = launcher.launch(Appliance::Fixed, &Workload::Ready, false);
        assert!(matches!(ready, Err(LaunchError::NoReady { .. })), "{ready:?}");
        launcher.close().unwrap();
        assert!(!cache.exists());
        let launcher = Launcher::new(opts(Some("/custom".into()))).unwrap();
        let run = launcher.command(Appliance::Supermin, &Workload::Null, false).run().unwrap();
        assert!(run.lines[0].text.starts_with("PATH=/custom "), "{:?}", run.lines);
    }
}
