//! The probe machinery of `status`, after bootc's lints
//! (`lib/src/lints.rs`): a [`Probe`] has a name, a severity, a summary and
//! a function returning `Result<Result<(), Finding>>` (outer error: the
//! probe could not run; inner: a [`Finding`] with its remedy), and the
//! runner ([`run`]) walks a table of them, skips by name or group, counts
//! outcomes and derives the [`Overall`] state.
//!
//! This file is the bottom of `health/`: the probe groups (`location.rs`,
//! `appliance.rs`, `virt.rs`) import their types from here and declare
//! each probe's [`ProbeInfo`] with a function over their own group's
//! facts; `mod.rs` owns the facts of the whole machine and the table
//! ([`super::PROBES`]) that hands each probe its group's part. The runner
//! is generic over those facts ([`ProbeFacts`]) so that it needs nothing
//! from above.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::HealthConfig;

/// Errors that keep a probe or the gathering from running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HealthError {
    /// A file or directory could not be inspected or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A fact the probe needs is not available (with why).
    #[error("{0}")]
    Unavailable(String),
}

impl HealthError {
    /// Build an [`HealthError::Io`] mapper for `?`.
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> HealthError + 'a {
        move |source| HealthError::Io { action, path: path.to_owned(), source }
    }
}

/// How bad a finding is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// Worth knowing, nothing wrong: does not change the overall state or
    /// the exit code (e.g. a virtual disk's speed cannot be told without
    /// `--probe`).
    Info,
    /// libguestfs works, but slower or less reliably than it could.
    Warning,
    /// libguestfs launches will fail or are about to (no space, KVM broken).
    Critical,
}

/// A problem a probe found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Finding {
    /// The probe's name, e.g. `location.space`.
    pub(crate) probe: &'static str,
    /// How bad it is.
    pub(crate) severity: Severity,
    /// What it is about: a path, `/dev/kvm`, `qemu`, ...
    pub(crate) subject: String,
    /// One line: what is wrong, with the numbers.
    pub(crate) message: String,
    /// One line: what to do.
    pub(crate) remedy: String,
}

/// What a probe function returns: outer error = could not run.
pub(crate) type ProbeResult = Result<Result<(), Finding>, HealthError>;

/// A probe as its group declares it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeInfo {
    /// Stable name, `group.what` (used by `--skip` and in the JSON).
    pub(crate) name: &'static str,
    /// The worst severity this probe reports.
    pub(crate) severity: Severity,
    /// One line for `--list-probes`.
    pub(crate) summary: &'static str,
    /// Only meaningful with `--probe` (skipped otherwise).
    pub(crate) needs_measurement: bool,
}

/// What a probe table runs over: the facts, the items that per-item probes
/// visit one by one (locations), and how results name their subject.
pub(crate) trait ProbeFacts {
    /// What a per-item probe looks at.
    type Item;

    /// The items, in report order.
    fn items(&self) -> &[Self::Item];

    /// The subject a per-item probe's result is about (a path).
    fn item_subject(item: &Self::Item) -> String;

    /// The subject a global probe named `probe` is about.
    fn global_subject(&self, probe: &str) -> String;

    /// Whether `--probe` measurements were taken.
    fn is_measured(&self) -> bool;
}

/// A probe's function over facts `F`: global, or run once per item.
pub(crate) enum ProbeFn<F: ProbeFacts> {
    /// Runs once over all facts.
    Global(fn(&F, &HealthConfig) -> ProbeResult),
    /// Runs once per item (the runner uses the item's subject).
    PerItem(fn(&F::Item, &F, &HealthConfig) -> ProbeResult),
}

impl<F: ProbeFacts> Clone for ProbeFn<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: ProbeFacts> Copy for ProbeFn<F> {}

impl<F: ProbeFacts> std::fmt::Debug for ProbeFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeFn::Global(_) => "Global",
            ProbeFn::PerItem(_) => "PerItem",
        })
    }
}

/// One entry of a probe table: the declared probe and how it runs.
pub(crate) struct Probe<F: ProbeFacts> {
    /// Name, severity, summary.
    pub(crate) info: ProbeInfo,
    /// The check.
    pub(crate) run: ProbeFn<F>,
}

impl<F: ProbeFacts> Clone for Probe<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: ProbeFacts> Copy for Probe<F> {}

impl<F: ProbeFacts> std::fmt::Debug for Probe<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("info", &self.info).field("run", &self.run).finish()
    }
}

/// The result of one probe on one subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CheckResult {
    /// The probe's name.
    pub(crate) probe: &'static str,
    /// What it looked at (a path for location probes, else a short name).
    pub(crate) subject: String,
    /// `pass`, `info`, `warning`, `critical`, `error` (could not run),
    /// `skipped`.
    pub(crate) result: CheckStatus,
    /// For errors and skips: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckStatus {
    /// Nothing wrong.
    Pass,
    /// Nothing wrong, with an info finding.
    Info,
    /// A warning finding.
    Warning,
    /// A critical finding.
    Critical,
    /// The probe could not run.
    Error,
    /// Skipped (by name, or needs `--probe`).
    Skipped,
}

/// Overall state, as monitoring systems know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Overall {
    /// No findings, every probe ran.
    Ok,
    /// Some probe could not run; no findings.
    Unknown,
    /// At least one warning, no critical finding.
    Warning,
    /// At least one critical finding.
    Critical,
}

/// Counts per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    /// Checks that passed.
    pub(crate) passed: usize,
    /// Checks that passed with an info finding.
    pub(crate) info: usize,
    /// Warning findings.
    pub(crate) warnings: usize,
    /// Critical findings.
    pub(crate) critical: usize,
    /// Checks that could not run.
    pub(crate) errors: usize,
    /// Checks skipped.
    pub(crate) skipped: usize,
}

/// Whether `--skip` values `skip` leave out probe `name` (named, or its
/// group).
pub(crate) fn is_skipped(name: &str, skip: &[String]) -> bool {
    skip.iter().any(|s| name == s || name.strip_prefix(s.as_str()).is_some_and(|r| r.starts_with('.')))
}

/// Run every probe of `table` not named in `skip` (a name, or a group
/// prefix such as `virt`) over `facts`.
///
/// Returns the per-check results and the findings, in table order.
pub(crate) fn run<F: ProbeFacts>(
    table: &[Probe<F>],
    facts: &F,
    config: &HealthConfig,
    skip: &[String],
) -> (Vec<CheckResult>, Vec<Finding>) {
    let mut checks = Vec::new();
    let mut findings = Vec::new();
    for probe in table {
        let name = probe.info.name;
        let skip_reason = if is_skipped(name, skip) {
            Some("skipped by --skip".to_string())
        } else if probe.info.needs_measurement && !facts.is_measured() {
            Some("needs --probe".to_string())
        } else {
            None
        };
        let subjects: Vec<(String, ProbeResult)> = match (probe.run, &skip_reason) {
            (ProbeFn::Global(_), Some(_)) => vec![(facts.global_subject(name), Ok(Ok(())))],
            (ProbeFn::PerItem(_), Some(_)) => {
                facts.items().iter().map(|i| (F::item_subject(i), Ok(Ok(())))).collect()
            }
            (ProbeFn::Global(f), None) => vec![(facts.global_subject(name), f(facts, config))],
            (ProbeFn::PerItem(f), None) => {
                facts.items().iter().map(|i| (F::item_subject(i), f(i, facts, config))).collect()
            }
        };
        for (subject, outcome) in subjects {
            let (result, reason) = match (&skip_reason, outcome) {
                (Some(why), _) => (CheckStatus::Skipped, Some(why.clone())),
                (None, Ok(Ok(()))) => (CheckStatus::Pass, None),
                (None, Ok(Err(finding))) => {
                    let status = match finding.severity {
                        Severity::Info => CheckStatus::Info,
                        Severity::Warning => CheckStatus::Warning,
                        Severity::Critical => CheckStatus::Critical,
                    };
                    findings.push(finding);
                    (status, None)
                }
                (None, Err(e)) => (CheckStatus::Error, Some(e.to_string())),
            };
            checks.push(CheckResult { probe: name, subject, result, reason });
        }
    }
    (checks, findings)
}

/// Count outcomes and derive the overall state.
pub(crate) fn summarize(checks: &[CheckResult]) -> (Summary, Overall) {
    let mut s = Summary::default();
    for c in checks {
        match c.result {
            CheckStatus::Pass => s.passed += 1,
            CheckStatus::Info => s.info += 1,
            CheckStatus::Warning => s.warnings += 1,
            CheckStatus::Critical => s.critical += 1,
            CheckStatus::Error => s.errors += 1,
            CheckStatus::Skipped => s.skipped += 1,
        }
    }
    let overall = if s.critical > 0 {
        Overall::Critical
    } else if s.warnings > 0 {
        Overall::Warning
    } else if s.errors > 0 {
        Overall::Unknown
    } else {
        Overall::Ok
    };
    (s, overall)
}

/// Seconds since the epoch (0 if the clock is before it): the clock of
/// the report and of the appliance's age.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_is_the_worst_outcome() {
        let check = |result| CheckResult { probe: "x", subject: "y".into(), result, reason: None };
        assert_eq!(summarize(&[check(CheckStatus::Pass)]).1, Overall::Ok);
        assert_eq!(summarize(&[check(CheckStatus::Pass), check(CheckStatus::Error)]).1, Overall::Unknown);
        assert_eq!(summarize(&[check(CheckStatus::Warning), check(CheckStatus::Error)]).1, Overall::Warning);
        assert_eq!(
            summarize(&[check(CheckStatus::Warning), check(CheckStatus::Critical)]).1,
            Overall::Critical
        );
    }
}
