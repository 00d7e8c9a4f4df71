//! The build pipeline as a library (as supermin's `mode_build` is a library
//! module under its CLI): a spec → a plan → files in a staging directory →
//! an atomic swap, and the one answer to "is this appliance fresh?".
//!
//! - [`spec`]: what to build ([`ApplianceSpec`]) and where to publish it
//!   ([`PublishOptions`]); built from a command's overrides and the config,
//!   or read back from an appliance's manifest.
//! - [`plan`]: inputs, packages and kernel resolved from the host, and the
//!   fingerprint ([`BuildPlan`]); writes nothing.
//! - [`write`]: the kernel, initrd, root image, README.fixed, manifest and
//!   tarball, into staging.
//! - [`fresh`]: fresh or stale, and what changed.
//!
//! This file is the only place that wires them together: it takes the
//! lock, plans (or reuses the plan a freshness check made under that
//! lock), writes, publishes and records the stamp. Commands (`build`,
//! `check`, `cache prime`, `make-fixed-appliance`) and reports (`status`,
//! `cache list`) call down into it; nothing here knows the command line.

pub mod fresh;
pub(crate) mod kernel_file;
pub(crate) mod plan;
pub(crate) mod spec;
pub(crate) mod write;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub use crate::manifest::KernelFormat;
pub(crate) use fresh::{fresh, EvalOptions, Evaluation, Freshness, OutputsChecked, Verdict};
pub use plan::{plan, BuildPlan};
pub(crate) use spec::PublishOptions;
pub use spec::{ApplianceSpec, SourceOverrides};

use crate::config::Config;
use crate::hashcache::HashCache;
use crate::manifest::Manifest;
use crate::output::{self, OutputLock};
use crate::printer::{human_bytes, Printer};

/// What a finished build reports.
#[derive(Debug, Clone)]
pub(crate) struct BuildSummary {
    /// Where the appliance went (directory), if any.
    pub(crate) dir: Option<PathBuf>,
    /// Tarball written, if any.
    pub(crate) tarball: Option<PathBuf>,
    /// The manifest as written.
    pub(crate) manifest: Manifest,
    /// Entries in the root image.
    pub(crate) files: usize,
    /// Bytes of file data in the root image.
    pub(crate) data_bytes: u64,
    /// Wall time in seconds.
    pub(crate) seconds: f64,
}

impl BuildSummary {
    /// The one-line summary printed at the end.
    pub(crate) fn line(&self) -> String {
        let what = match (&self.dir, &self.tarball) {
            (Some(d), Some(t)) => format!("{} and {}", d.display(), t.display()),
            (Some(d), None) => d.display().to_string(),
            (None, Some(t)) => t.display().to_string(),
            (None, None) => "nothing".into(),
        };
        format!(
            "built {what}: {} packages, {} files, {} in {:.1} s (kernel {})",
            self.manifest.packages.len(),
            self.files,
            human_bytes(self.data_bytes),
            self.seconds,
            self.manifest.kernel.version
        )
    }
}

/// What `build --if-needed` did.
pub(crate) enum IfNeeded {
    /// The appliance was fresh.
    Fresh(PathBuf),
    /// It was missing or stale and was rebuilt.
    Built {
        /// Why, in a few words ("3 changes: package upgraded: ...").
        why: String,
        /// The build.
        summary: Box<BuildSummary>,
    },
}

/// Build the appliance `spec` describes and publish it as `publish` says.
pub(crate) fn build(
    spec: &ApplianceSpec,
    publish: &PublishOptions,
    printer: &Printer,
) -> Result<BuildSummary> {
    build_locked(spec, publish, printer, None, None)
}

/// [`build`] under `lock`, which the caller took and keeps after we return
/// (`cache prime` holds it until the outputs are dated).
pub(crate) fn build_holding(
    spec: &ApplianceSpec,
    publish: &PublishOptions,
    lock: &OutputLock,
    printer: &Printer,
) -> Result<BuildSummary> {
    build_locked(spec, publish, printer, Some(lock), None)
}

/// Build `spec` only when `publish.dir` is missing or stale against `spec`
/// (`cache prime`: the appliance libguestfs needs, whatever was there),
/// under `lock`, which the caller took and keeps after we return (prime
/// holds it until the outputs are dated).
pub(crate) fn build_if_needed(
    spec: &ApplianceSpec,
    publish: &PublishOptions,
    lock: &OutputLock,
    printer: &Printer,
) -> Result<IfNeeded> {
    let dir = publish.dir.as_deref().context("--if-needed needs an appliance directory")?;
    if_needed(dir, publish, Some(lock), printer, |dir| {
        Ok((fresh::evaluate(dir, spec, printer), Some(spec.clone())))
    })
}

/// `build --if-needed DIR`: rebuild DIR, as it was built (the overrides in
/// `src` replacing the recorded options), only when it is missing or stale.
pub(crate) fn refresh_as_built(
    dir: &Path,
    src: &SourceOverrides,
    config: &Config,
    lock_timeout: Duration,
    printer: &Printer,
) -> Result<IfNeeded> {
    let publish = PublishOptions { lock_timeout, ..PublishOptions::dir(dir) };
    if_needed(dir, &publish, None, printer, |dir| {
        let opts = EvalOptions { record: true, verify: false };
        fresh::fresh(dir, src, config, printer, opts)
    })
}

/// The lock is taken before the check (as supermin's `--lock` before
/// `--if-newer`), so concurrent callers wait for the one building and then
/// find it fresh; `held` is a lock the caller already took (then no other is
/// taken). `evaluate` judges the resolved directory and returns the spec to
/// build with (only a stamp's "fresh" may come without one).
fn if_needed(
    dir: &Path,
    publish: &PublishOptions,
    held: Option<&OutputLock>,
    printer: &Printer,
    evaluate: impl FnOnce(&Path) -> Result<(Evaluation, Option<ApplianceSpec>)>,
) -> Result<IfNeeded> {
    let dir = output::resolve_target(&spec::absolute(dir))?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating parent directory {}", parent.display()))?;
    }
    let own;
    let lock = match held {
        Some(lock) => lock,
        None => {
            own = lock_for(&dir, publish.lock_path.as_deref(), publish.lock_timeout, printer)?;
            &own
        }
    };
    let (eval, spec) = evaluate(&dir)?;
    let why = match &eval.verdict.freshness {
        Freshness::Fresh => return Ok(IfNeeded::Fresh(dir)),
        Freshness::Stale(changes) => {
            let first: Vec<String> = changes.iter().take(3).map(|c| c.to_string()).collect();
            let more =
                if changes.len() > 3 { format!(", and {} more", changes.len() - 3) } else { String::new() };
            format!("stale: {}{more}", first.join("; "))
        }
        Freshness::Unknown(why) => why.clone(),
    };
    let spec = spec.context("internal error: a stale appliance without a spec")?;
    let publish = PublishOptions { dir: Some(dir), tar: None, ..publish.clone() };
    let summary = build_locked(&spec, &publish, printer, Some(lock), eval.plan)?;
    Ok(IfNeeded::Built { why, summary: Box::new(summary) })
}

fn lock_for(
    dir: &Path,
    lock_path: Option<&Path>,
    timeout: Duration,
    printer: &Printer,
) -> Result<OutputLock> {
    let lock_path = match lock_path {
        Some(p) => p.to_path_buf(),
        None => output::lock_path_for(dir)?,
    };
    Ok(OutputLock::acquire(&lock_path, timeout, || {
        printer.info(format!("waiting for another build holding {}", lock_path.display()))
    })?)
}

/// Build, with the directory's lock already held (`held`) or taken here, and
/// with a plan already computed under that lock, if any.
fn build_locked(
    spec: &ApplianceSpec,
    publish: &PublishOptions,
    printer: &Printer,
    held: Option<&OutputLock>,
    plan_done: Option<BuildPlan>,
) -> Result<BuildSummary> {
    let started = Instant::now();
    let targets = write::resolve_targets(publish)?;
    // The lock serialises builds of one directory. A tarball-only build
    // takes none (the tarball is renamed into place atomically, and staging
    // names carry the PID), so it leaves no lock file in the user's cwd.
    let _lock = match (&targets.dir, held) {
        (_, Some(_)) => None,
        (Some(dir), None) => {
            Some(lock_for(dir, publish.lock_path.as_deref(), publish.lock_timeout, printer)?)
        }
        (None, None) => None,
    };
    write::clean_leftovers(&targets, printer)?;

    // Digests of host files are remembered beside the directory (a
    // tarball-only build has none), so the next `check` after a touch of the
    // package database reads none of them.
    let mut hashes = match &targets.dir {
        Some(_) => HashCache::load(&targets.lock_target),
        None => HashCache::new(),
    };
    let planned_here = plan_done.is_none();
    let plan = match plan_done {
        Some(p) => p,
        None => plan::plan_with(spec, printer, &mut hashes)?,
    };
    plan.warn_missing(printer);
    let staged = write::write_appliance(spec, &plan, &targets, printer, &mut hashes)?;

    if let Some((uid, gid)) = publish.owner {
        staged.staging.chown_all(uid, gid)?;
    }
    match &targets.dir {
        Some(_) => {
            printer.progress("publishing...");
            crate::stamp::clear(&targets.lock_target);
            let committed = staged.staging.commit()?;
            if let Some(why) = committed.leftover {
                // The swap happened: the build succeeded, with junk left.
                printer.warn(why);
            }
            // The new appliance is fresh by construction: record the stamp so
            // the next `check DIR` (which judges DIR as built, and its
            // manifest records `spec`) answers from stat alone.
            let key = fresh::as_built_key(&SourceOverrides::default());
            if let Err(e) =
                fresh::record_stamp(&targets.lock_target, &key, &staged.manifest.fingerprint, &plan.watched)
            {
                printer.stage(format!("check: could not record the stamp ({e})"));
            }
            if planned_here {
                fresh::report_hashes(&targets.lock_target, &hashes, true, printer);
            } else {
                // The freshness check that made the plan reported and saved
                // its digests (loaded again here); the build adds the
                // remembered vmlinux's when it checked it. Best effort.
                let _ = hashes.save(&targets.lock_target);
            }
        }
        None => drop(staged.staging),
    }
    printer.clear_progress();
    Ok(BuildSummary {
        dir: targets.dir,
        tarball: targets.tar,
        manifest: staged.manifest,
        files: staged.files,
        data_bytes: staged.data_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}
