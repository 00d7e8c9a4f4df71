//! `bench`: the launch measurements of libguestfs's performance guide
//! (guestfs-performance(1), "Baseline measurements"), as one command, with
//! our fixed appliance and libguestfs's own supermin appliance measured in
//! the same run:
//!
//! - the appliance baseline `guestfish -a /dev/null run`, repeated, the
//!   first (warm-up) runs discarded, both appliances alternating round by
//!   round (ABBA order, so neither always goes first): mean, standard
//!   deviation, min, median, max, and the ratio fixed / supermin, like
//!   boot-benchmark;
//! - the inspection baseline `guestfish --ro -a IMAGE -i exit`, the same
//!   way (`--inspect`);
//! - P simultaneous launches of the fixed appliance: time until all are up
//!   and launches per minute (`--parallel`);
//! - one verbose launch per appliance split into boot stages, like
//!   boot-analysis (`--stages`, `stages.rs`).
//!
//! Wiring only: `launch.rs` runs guestfish, `stats.rs` summarises,
//! `stages.rs` reads consoles, `report.rs` and `svg.rs` render, and
//! `interrupt.rs` turns Ctrl-C into a clean stop. The command
//! (`commands/bench.rs`) turns options into [`BenchOptions`] and writes the
//! outputs.

pub(crate) mod interrupt;
pub(crate) mod launch;
pub(crate) mod report;
pub mod stages;
pub(crate) mod stats;
pub(crate) mod svg;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::health::libguestfs::{self, ApplianceKind, LibguestfsEnv, Source};
use crate::printer::Printer;

use launch::{Appliance, LaunchError, Launcher, LauncherOptions, ParallelBatch, Workload};
use report::{BenchReport, Comparison, Environment, StageComparison};
use stages::ConsoleLine;
use stats::Summary;

/// The report's format version (docs/bench-schema.json).
pub(crate) const REPORT_VERSION: u32 = 1;

/// Most simultaneous launches `--parallel` accepts: each appliance is a
/// qemu with libguestfs's default 1280 MiB of memory.
pub(crate) const MAX_PARALLEL: usize = 32;

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// The fixed appliance directory.
    pub(crate) dir: PathBuf,
    /// Where `dir` came from, for the report.
    pub(crate) dir_source: Source,
    /// Timed launches per appliance.
    pub(crate) runs: usize,
    /// Discarded launches per appliance before the timed ones.
    pub(crate) warmup: usize,
    /// A guest image for the inspection baseline.
    pub(crate) inspect: Option<PathBuf>,
    /// Batch sizes for simultaneous launches.
    pub(crate) parallel: Vec<usize>,
    /// One verbose launch per appliance, split into stages.
    pub(crate) stages: bool,
    /// Deadline of each launch.
    pub(crate) timeout: Duration,
}

/// Why a benchmark could not run or finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// No guestfish on PATH.
    #[error("guestfish not found on PATH: bench measures real libguestfs launches; install libguestfs's tools (Debian: libguestfs-tools)")]
    NoGuestfish,
    /// DIR is not a fixed appliance.
    #[error("{dir}: not a fixed appliance ({reason}); build one with `guestfs-appliance build {dir}` or name another DIR")]
    NotAnAppliance {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// libguestfs's own appliance is not there to compare with.
    #[error("libguestfs's supermin appliance (supermin.d with base.tar.gz and packages) not found in {searched}: bench compares the fixed appliance with it; is libguestfs fully installed?")]
    NoSupermin {
        /// Where we looked.
        searched: String,
    },
    /// The `--inspect` image is unusable.
    #[error("--inspect {path}: {reason}")]
    Image {
        /// The image.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `--parallel` asks for an impossible batch.
    #[error("--parallel: {0}")]
    Parallel(String),
    /// A launch failed.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// Ctrl-C or a signal stopped the benchmark.
    #[error("interrupted: stopped the running launches and removed the private cache {0}")]
    Interrupted(PathBuf),
}

/// A finished benchmark: the report, and the consoles of the `--stages`
/// launches (fixed, then supermin) for `--stages-log`.
#[derive(Debug)]
pub(crate) struct BenchOutcome {
    /// What was measured.
    pub(crate) report: BenchReport,
    /// The verbose launches' output, per appliance: lines and exit time.
    pub(crate) consoles: Vec<(Appliance, Vec<ConsoleLine>, f64)>,
}

/// Check that `dir` is a fixed appliance libguestfs will boot in place.
fn check_appliance(dir: &Path) -> Result<(), BenchError> {
    let not = |reason: String| BenchError::NotAnAppliance { dir: dir.to_path_buf(), reason };
    if dir.to_string_lossy().contains(':') {
        return Err(not("its path contains ':', which LIBGUESTFS_PATH cannot hold".into()));
    }
    if !dir.is_dir() {
        return Err(not("no such directory".into()));
    }
    match libguestfs::search(&[dir.to_path_buf()], std::env::consts::ARCH) {
        Some(found) if found.kind == ApplianceKind::Fixed => Ok(()),
        Some(found) => Err(not(format!("libguestfs would see {} there", found.kind.describe()))),
        None => {
            let missing: Vec<&str> = ["README.fixed", "kernel", "initrd", "root"]
                .into_iter()
                .filter(|f| !dir.join(f).exists())
                .collect();
            Err(not(format!("missing {}", missing.join(", "))))
        }
    }
}

/// Where libguestfs finds its supermin appliance in this environment:
/// `Ok(Some(path))` keeps the user's `LIBGUESTFS_PATH` (it leads to a
/// supermin appliance), `Ok(None)` unsets it (libguestfs's built-in path
/// holds one).
fn supermin_path(lg: &LibguestfsEnv) -> Result<(Option<String>, PathBuf), BenchError> {
    if let (Source::LibguestfsPath, Some(found)) = (lg.search_path_source, &lg.appliance) {
        if found.kind == ApplianceKind::Supermin {
            return Ok((lg.path_var.clone(), found.dir.clone()));
        }
    }
    let default = libguestfs::default_path();
    match default.as_ref().and_then(|d| libguestfs::search(std::slice::from_ref(d), std::env::consts::ARCH)) {
        Some(found) if found.kind == ApplianceKind::Supermin => Ok((None, found.dir)),
        _ => Err(BenchError::NoSupermin {
            searched: default
                .map_or("libguestfs's default path (not installed)".into(), |d| d.display().to_string()),
        }),
    }
}

fn check_image(path: &Path) -> Result<(), BenchError> {
    use std::os::unix::fs::FileTypeExt;
    let bad = |reason: String| BenchError::Image { path: path.to_path_buf(), reason };
    // Only the type is checked (a FIFO would block guestfish); guestfish
    // opens the image itself, read-only (--ro).
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    let t = meta.file_type();
    if !(t.is_file() || t.is_block_device()) {
        return Err(bad("not a regular file or block device".into()));
    }
    Ok(())
}

/// The first three fields of /proc/loadavg.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Counts launches for the progress line.
struct Progress<'a> {
    printer: &'a Printer,
    done: usize,
    total: usize,
}

impl Progress<'_> {
    fn start(&self, what: &str) {
        self.printer.progress(format!("bench: {}/{} {what}...", self.done + 1, self.total));
    }

    fn finish(&mut self, what: &str, seconds: f64) {
        self.done += 1;
        self.printer.stage(format!("bench: {what}: {seconds:.2} s"));
    }
}

/// Run the benchmark (module docs). `cancel` stops it (Ctrl-C).
///
/// Errors: [`BenchError`]; the private cache is removed in every case.
pub(crate) fn run(
    opts: &BenchOptions,
    printer: &Printer,
    cancel: Arc<AtomicBool>,
) -> Result<BenchOutcome, BenchError> {
    let guestfish = crate::process::find_program("guestfish").ok_or(BenchError::NoGuestfish)?;
    check_appliance(&opts.dir)?;
    if let Some(image) = &opts.inspect {
        check_image(image)?;
    }
    if let Some(p) = opts.parallel.iter().find(|p| **p == 0 || **p > MAX_PARALLEL) {
        return Err(BenchError::Parallel(format!("{p} launches: give counts from 1 to {MAX_PARALLEL}")));
    }
    let lg = LibguestfsEnv::from_env();
    let (supermin_path, supermin_dir) = supermin_path(&lg)?;
    let load_before = load_average();
    let libguestfs_version = crate::process::output(&[guestfish.as_os_str(), "--version".as_ref()])
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out).split_whitespace().nth(1).map(str::to_string));
    let launcher = Launcher::new(LauncherOptions {
        guestfish,
        fixed_dir: opts.dir.clone(),
        supermin_path: supermin_path.clone(),
        cache_base: lg.cachedir.clone(),
        timeout: opts.timeout,
        cancel: Arc::clone(&cancel),
    })?;
    printer.stage(format!(
        "bench: fixed appliance {} ({}); supermin appliance from {} (LIBGUESTFS_PATH {}); private cache {}",
        opts.dir.display(),
        if opts.dir_source == Source::Flag { "given" } else { opts.dir_source.phrase() },
        supermin_dir.display(),
        supermin_path.as_deref().unwrap_or("unset"),
        launcher.cachedir().display()
    ));
    if opts.warmup == 0 {
        printer.warn(
            "--warmup 0: the first launches include building libguestfs's supermin appliance into the \
             private cache and libguestfs's qemu feature test",
        );
    }
    let cachedir = launcher.cachedir().to_path_buf();
    let result = measure(opts, &launcher, printer);
    printer.clear_progress();
    let closed = launcher.close();
    if cancel.load(Ordering::SeqCst) {
        return Err(BenchError::Interrupted(cachedir));
    }
    if let Err(e) = closed {
        printer.warn(format!("removing the private cache {}: {e}", cachedir.display()));
    }
    let (launch, inspect, parallel, stage_runs) = result?;
    let stages = (!stage_runs.is_empty())
        .then(|| StageComparison { fixed: stage_runs[0].1.clone(), supermin: stage_runs[1].1.clone() });
    let report = BenchReport {
        version: REPORT_VERSION,
        tool: format!("guestfs-appliance {}", env!("CARGO_PKG_VERSION")),
        appliance_dir: opts.dir.clone(),
        supermin_dir,
        environment: Environment {
            libguestfs_backend: std::env::var("LIBGUESTFS_BACKEND").ok().filter(|v| !v.is_empty()),
            libguestfs_backend_settings: std::env::var("LIBGUESTFS_BACKEND_SETTINGS")
                .ok()
                .filter(|v| !v.is_empty()),
            libguestfs_version,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_before,
            load_after: load_average(),
        },
        runs: opts.runs,
        warmup: opts.warmup,
        launch,
        inspect,
        parallel,
        stages,
    };
    let consoles = stage_runs.into_iter().map(|(a, _, lines, exited)| (a, lines, exited)).collect();
    Ok(BenchOutcome { report, consoles })
}

type StageRun = (Appliance, stages::StageReport, Vec<ConsoleLine>, f64);
type Measured = (Comparison, Option<Comparison>, Vec<ParallelBatch>, Vec<StageRun>);

fn measure(opts: &BenchOptions, launcher: &Launcher, printer: &Printer) -> Result<Measured, BenchError> {
    let rounds = opts.warmup + opts.runs;
    let total = 2 * rounds * (1 + usize::from(opts.inspect.is_some()))
        + opts.parallel.len()
        + if opts.stages { 2 } else { 0 };
    let mut progress = Progress { printer, done: 0, total };
    let launch = compare(opts, launcher, &Workload::Null, &mut progress)?;
    let inspect = match &opts.inspect {
        Some(image) => Some(compare(opts, launcher, &Workload::Inspect(image.clone()), &mut progress)?),
        None => None,
    };
    let mut parallel = Vec::new();
    for &count in &opts.parallel {
        progress.start(&format!("{count} simultaneous launches"));
        let batch = launcher.launch_parallel(count)?;
        progress.finish(&format!("{count} simultaneous launches, all ready"), batch.all_ready_s);
        parallel.push(batch);
    }
    let mut stage_runs = Vec::new();
    if opts.stages {
        for appliance in [Appliance::Fixed, Appliance::Supermin] {
            progress.start(&format!("verbose {} launch for --stages", appliance.name()));
            let l = launcher.launch(appliance, &Workload::Null, true)?;
            progress.finish(&format!("verbose {} launch", appliance.name()), l.seconds);
            let lines: Vec<ConsoleLine> = l
                .output
                .stream(crate::process::Stream::Stderr)
                .map(|t| ConsoleLine { at: t.at.as_secs_f64(), text: t.text.clone() })
                .collect();
            let analysis = stages::analyse(&lines, Some(l.seconds));
            if !analysis.missing.is_empty() {
                let names: Vec<&str> = analysis.missing.iter().map(|e| e.name()).collect();
                printer.warn(format!(
                    "--stages: markers not found in the {} appliance's console: {} (see --stages-log)",
                    appliance.name(),
                    names.join(", ")
                ));
            }
            stage_runs.push((appliance, analysis, lines, l.seconds));
        }
    }
    Ok((launch, inspect, parallel, stage_runs))
}

/// Warm-up and timed rounds of `workload` with both appliances, ABBA.
fn compare(
    opts: &BenchOptions,
    launcher: &Launcher,
    workload: &Workload,
    progress: &mut Progress,
) -> Result<Comparison, BenchError> {
    let mut times: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    let what = match workload {
        Workload::Inspect(_) => "inspection",
        _ => "launch",
    };
    for round in 0..opts.warmup + opts.runs {
        let warm = round < opts.warmup;
        let order = if round % 2 == 0 {
            [Appliance::Fixed, Appliance::Supermin]
        } else {
            [Appliance::Supermin, Appliance::Fixed]
        };
        for appliance in order {
            let label = format!(
                "{what} {} ({} {})",
                appliance.name(),
                if warm { "warm-up" } else { "run" },
                if warm { round + 1 } else { round - opts.warmup + 1 }
            );
            progress.start(&label);
            let l = launcher.launch(appliance, workload, false)?;
            progress.finish(&label, l.seconds);
            let (warmups, timed) = &mut times[appliance as usize];
            let series = if warm { warmups } else { timed };
            series.push(l.seconds);
        }
    }
    let [(warm_fixed, fixed), (warm_supermin, supermin)] = times;
    let fixed = Summary::of(&fixed).expect("runs >= 1");
    let supermin = Summary::of(&supermin).expect("runs >= 1");
    let mut command = vec!["guestfish".to_string()];
    command.extend(workload.args().iter().map(|a| a.to_string_lossy().into_owned()));
    Ok(Comparison {
        command,
        ratio: stats::ratio(fixed.mean_s, supermin.mean_s),
        fixed,
        supermin,
        warmup_fixed_s: warm_fixed,
        warmup_supermin_s: warm_supermin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appliance_dir_is_checked_before_any_launch() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        let msg = |d: &Path| check_appliance(d).unwrap_err().to_string();
        assert!(msg(&dir).contains("no such directory"), "{}", msg(&dir));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("kernel"), b"k").unwrap();
        let m = msg(&dir);
        assert!(
            m.contains("missing README.fixed, initrd, root") && m.contains("guestfs-appliance build"),
            "{m}"
        );
        for f in ["README.fixed", "initrd", "root"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        check_appliance(&dir).unwrap();
        let colon = tmp.path().join("a:b");
        assert!(msg(&colon).contains("contains ':'"), "{}", msg(&colon));
    }

    #[test]
    fn inspect_image_must_be_a_file_or_block_device() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(check_image(&fifo).unwrap_err().to_string().contains("not a regular file or block device"));
        assert!(check_image(tmp.path()).is_err());
        assert!(check_image(&tmp.path().join("missing")).is_err());
        let img = tmp.path().join("disk.img");
        std::fs::write(&img, b"").unwrap();
        check_image(&img).unwrap();
    }

    #[test]
    fn supermin_appliance_follows_libguestfs_search() {
        let tmp = tempfile::tempdir().unwrap();
        let sm = tmp.path().join("guestfs");
        std::fs::create_dir_all(sm.join("supermin.d")).unwrap();
        for f in ["base.tar.gz", "packages"] {
            std::fs::write(sm.join("supermin.d").join(f), b"").unwrap();
        }
        // A LIBGUESTFS_PATH leading to a supermin appliance is kept.
        let path = sm.display().to_string();
        let lg = LibguestfsEnv::new(Some(path.clone().into()), None, None, None);
        assert_eq!(supermin_path(&lg).unwrap(), (Some(path), sm.clone()));
    }

    #[test]
    fn load_average_reads_proc() {
        let [one, five, fifteen] = load_average().unwrap();
        assert!(one >= 0.0 && five >= 0.0 && fifteen >= 0.0);
    }
}
