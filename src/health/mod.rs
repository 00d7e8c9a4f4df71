//! Health of the machine for libguestfs: facts, probes and the report
//! behind `guestfs-appliance status` (and the assessment `env` reuses).
//!
//! Gathering and judging are separate, as in bootc's lints
//! (`lib/src/lints.rs`): first [`gather`] collects [`Facts`] (file systems
//! of the appliance and cache locations, the appliance itself, KVM and
//! qemu), optionally measuring (`--probe`: a bounded write test per file
//! system and a test boot). Then the runner walks the probe table
//! ([`PROBES`]): each [`Probe`] has a name, a severity, a summary and a
//! function over the facts returning `Result<Result<(), Finding>>`: the
//! outer error means the probe could not run, the inner one is a
//! [`Finding`] with its remedy. The runner skips probes by name and counts.
//!
//! This module owns the probe types, the table, the runner and the
//! [`Report`] (whose JSON form is documented in docs/status-schema.json);
//! `location.rs`, `appliance.rs` and `virt.rs` own one group of facts and
//! probes each, `libguestfs.rs` what libguestfs uses in this environment
//! (and so which appliance is examined), `report.rs` the output formats. Thresholds come from
//! [`HealthConfig`]; the command glue (arguments, exit codes) is
//! `commands/status.rs`.

pub mod appliance;
pub mod libguestfs;
pub mod location;
pub mod report;
pub mod virt;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, HealthConfig};

pub use crate::host::HostRoots;
pub use appliance::ApplianceFacts;
pub use libguestfs::LibguestfsEnv;
pub use location::{Location, SpeedClass};
pub use virt::VirtFacts;

/// Version of the JSON report layout (`version` in the output). Bump it on
/// any incompatible change and update docs/status-schema.json.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors that keep a probe or the gathering from running.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
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
pub enum Severity {
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
pub struct Finding {
    /// The probe's name, e.g. `location.space`.
    pub probe: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What it is about: a path, `/dev/kvm`, `qemu`, ...
    pub subject: String,
    /// One line: what is wrong, with the numbers.
    pub message: String,
    /// One line: what to do.
    pub remedy: String,
}

/// What a probe function returns: outer error = could not run.
pub type ProbeResult = Result<Result<(), Finding>, HealthError>;

/// A probe's function: global, or run once per location.
#[derive(Clone, Copy)]
pub enum ProbeFn {
    /// Runs once over all facts.
    Global(fn(&Facts, &HealthConfig) -> ProbeResult),
    /// Runs once per location (the runner uses the location path as subject).
    PerLocation(fn(&Location, &Facts, &HealthConfig) -> ProbeResult),
}

impl std::fmt::Debug for ProbeFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeFn::Global(_) => "Global",
            ProbeFn::PerLocation(_) => "PerLocation",
        })
    }
}

/// One entry of the probe table.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Stable name, `group.what` (used by `--skip` and in the JSON).
    pub name: &'static str,
    /// The worst severity this probe reports.
    pub severity: Severity,
    /// One line for `--list-probes`.
    pub summary: &'static str,
    /// Only meaningful with `--probe` (skipped otherwise).
    pub needs_measurement: bool,
    /// The check.
    pub run: ProbeFn,
}

/// Every probe, in report order.
pub const PROBES: &[Probe] = &[
    location::CACHEDIR,
    location::SPACE,
    location::INODES,
    location::SPEED,
    location::WRITE_SPEED,
    appliance::SEARCH_PATH,
    appliance::PRESENT,
    appliance::ROOT,
    appliance::KERNEL,
    appliance::FRESH,
    appliance::AGE,
    virt::KVM_DEVICE,
    virt::CPU_FLAGS,
    virt::QEMU,
    virt::LIBGUESTFS,
    virt::BOOT,
];

/// The environment libguestfs runs with here, and the appliance directory
/// examined because of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvironmentFacts {
    /// What libguestfs uses: search path, appliance found, cache base.
    #[serde(flatten)]
    pub libguestfs: LibguestfsEnv,
    /// The appliance directory examined (`appliance.dir` of the report).
    pub examined_dir: PathBuf,
    /// Why that one: `--dir`, `LIBGUESTFS_PATH`, `config` or `default`.
    pub examined_dir_source: libguestfs::Source,
}

impl EnvironmentFacts {
    /// Whether the examined directory is the appliance libguestfs boots.
    pub fn examined_is_in_use(&self) -> bool {
        self.libguestfs.appliance.as_ref().is_some_and(|a| {
            a.kind == libguestfs::ApplianceKind::Fixed && same_dir(&a.dir, &self.examined_dir)
        })
    }
}

/// Two spellings of one directory (`./a` and `/cwd/a`, symlinks).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// Everything gathered about the machine, input of the probes.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// What libguestfs uses here and why this appliance is examined.
    pub environment: EnvironmentFacts,
    /// Appliance and cache locations, deduplicated by path.
    pub locations: Vec<Location>,
    /// The fixed appliance.
    pub appliance: ApplianceFacts,
    /// KVM, CPU, qemu, libguestfs.
    pub virtualization: VirtFacts,
    /// Whether `--probe` measurements were taken.
    pub probed: bool,
}

/// What to gather.
#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// The fixed appliance directory.
    pub appliance_dir: PathBuf,
    /// Where it came from (see [`libguestfs::examined_dir`]).
    pub dir_source: libguestfs::Source,
    /// The environment libguestfs runs with.
    pub libguestfs: LibguestfsEnv,
    /// Take measurements (write test; test boots when `boots` is given).
    pub probe: bool,
    /// With `probe`: how to test-boot (`None`: no test boots, e.g.
    /// `--skip virt.boot`).
    pub boots: Option<virt::BootOptions>,
    /// The whole run's deadline (`--timeout`): measurements not started by
    /// then are skipped, boots are cut short at it.
    pub deadline: Option<std::time::Instant>,
    /// Compare the appliance with the host (costs a package resolution).
    pub freshness: bool,
    /// Where /proc and /sys are (tests pass fixtures).
    pub roots: HostRoots,
}

/// Gather the facts for `opts` with the thresholds and settings of `config`.
///
/// Never fails as a whole: a fact that cannot be read is recorded with its
/// error and the probes that need it report that they could not run.
pub fn gather(opts: &GatherOptions, config: &Config) -> Facts {
    let appliance = appliance::gather(&opts.appliance_dir, config, opts.freshness);
    let spec = location::LocationSpec::new(&opts.appliance_dir, &opts.libguestfs, appliance.need_bytes);
    let mut locations = location::assess(&spec, &opts.roots);
    if opts.probe {
        location::measure(&mut locations, config.health.probe_bytes, opts.deadline);
    }
    let mut virtualization = virt::gather(&opts.roots);
    match (&opts.boots, opts.probe) {
        (Some(boot), true) => virt::probe_boots(&mut virtualization, &appliance, &config.health, boot),
        (None, true) => virtualization.boot_skipped = Some("skipped by --skip".into()),
        _ => {}
    }
    let environment = EnvironmentFacts {
        libguestfs: opts.libguestfs.clone(),
        examined_dir: opts.appliance_dir.clone(),
        examined_dir_source: opts.dir_source,
    };
    Facts { environment, locations, appliance, virtualization, probed: opts.probe }
}

/// The result of one probe on one subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The probe's name.
    pub probe: &'static str,
    /// What it looked at (a path for location probes, else a short name).
    pub subject: String,
    /// `pass`, `info`, `warning`, `critical`, `error` (could not run),
    /// `skipped`.
    pub result: CheckStatus,
    /// For errors and skips: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
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
pub enum Overall {
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
pub struct Summary {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that passed with an info finding.
    pub info: usize,
    /// Warning findings.
    pub warnings: usize,
    /// Critical findings.
    pub critical: usize,
    /// Checks that could not run.
    pub errors: usize,
    /// Checks skipped.
    pub skipped: usize,
}

/// The probe groups, which `--skip` also takes.
pub const GROUPS: [&str; 3] = ["location", "appliance", "virt"];

/// Whether `--skip` values `skip` leave out probe `name` (named, or its
/// group).
pub fn is_skipped(name: &str, skip: &[String]) -> bool {
    skip.iter().any(|s| name == s || name.strip_prefix(s.as_str()).is_some_and(|r| r.starts_with('.')))
}

/// Check `--skip` values: each must name a probe or a group.
///
/// Errors: [`HealthError::Unavailable`] naming the unknown value and
/// listing the valid names.
pub fn validate_skip(skip: &[String]) -> Result<(), HealthError> {
    let known = |s: &str| GROUPS.contains(&s) || PROBES.iter().any(|p| p.name == s);
    match skip.iter().find(|s| !known(s)) {
        None => Ok(()),
        Some(bad) => {
            let names: Vec<&str> = GROUPS.iter().copied().chain(PROBES.iter().map(|p| p.name)).collect();
            Err(HealthError::Unavailable(format!(
                "--skip {bad}: no probe or group of that name; valid names: {}",
                names.join(", ")
            )))
        }
    }
}

/// Run every probe of [`PROBES`] not named in `skip` (a name, or a group
/// prefix such as `virt`) over `facts`.
///
/// Returns the per-check results and the findings, in table order.
pub fn run_probes(facts: &Facts, config: &HealthConfig, skip: &[String]) -> (Vec<CheckResult>, Vec<Finding>) {
    let mut checks = Vec::new();
    let mut findings = Vec::new();
    for probe in PROBES {
        let skipped_by_name = is_skipped(probe.name, skip);
        let skip_reason = if skipped_by_name {
            Some("skipped by --skip".to_string())
        } else if probe.needs_measurement && !facts.probed {
            Some("needs --probe".to_string())
        } else {
            None
        };
        let subjects: Vec<(String, ProbeResult)> = match (probe.run, &skip_reason) {
            (ProbeFn::Global(_), Some(_)) => vec![(global_subject(probe.name, facts), Ok(Ok(())))],
            (ProbeFn::PerLocation(_), Some(_)) => {
                facts.locations.iter().map(|l| (l.path.display().to_string(), Ok(Ok(())))).collect()
            }
            (ProbeFn::Global(f), None) => vec![(global_subject(probe.name, facts), f(facts, config))],
            (ProbeFn::PerLocation(f), None) => {
                facts.locations.iter().map(|l| (l.path.display().to_string(), f(l, facts, config))).collect()
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
            checks.push(CheckResult { probe: probe.name, subject, result, reason });
        }
    }
    (checks, findings)
}

/// The subject shown for a global probe: the thing its group is about
/// (the appliance directory, or what the virt probe looks at).
fn global_subject(name: &str, facts: &Facts) -> String {
    match name.split('.').next() {
        Some("appliance") => facts.appliance.dir.display().to_string(),
        Some("virt") => name.strip_prefix("virt.").unwrap_or(name).into(),
        _ => name.into(),
    }
}

/// Count outcomes and derive the overall state.
pub fn summarize(checks: &[CheckResult]) -> (Summary, Overall) {
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

/// The whole `status` answer: what `--json` prints (schema version
/// [`SCHEMA_VERSION`], docs/status-schema.json).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Schema version of this layout.
    pub version: u32,
    /// guestfs-appliance's version.
    pub tool_version: &'static str,
    /// When the report was made, seconds since the epoch.
    pub generated_at: i64,
    /// Seconds spent gathering and checking.
    pub duration_seconds: f64,
    /// Overall state.
    pub status: Overall,
    /// Counts per outcome.
    pub summary: Summary,
    /// Every finding with its remedy, worst first (info last).
    pub findings: Vec<Finding>,
    /// Every check that ran or was skipped.
    pub checks: Vec<CheckResult>,
    /// The facts the checks looked at.
    #[serde(flatten)]
    pub facts: Facts,
    /// `health.space_margin` the space checks used (for Nagios thresholds).
    #[serde(skip)]
    pub margin: f64,
}

impl Report {
    /// Run the probes over `facts` and assemble the report.
    pub fn new(facts: Facts, config: &HealthConfig, skip: &[String], started: std::time::Instant) -> Report {
        let (checks, mut findings) = run_probes(&facts, config, skip);
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let (summary, status) = summarize(&checks);
        Report {
            version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION"),
            generated_at: now_secs(),
            duration_seconds: started.elapsed().as_secs_f64(),
            status,
            summary,
            findings,
            checks,
            facts,
            margin: config.space_margin,
        }
    }
}

/// Seconds since the epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Facts for a healthy-looking machine, for probe tests to modify.
    pub(crate) fn healthy_facts() -> Facts {
        let dir = PathBuf::from("/dev/shm/appliance");
        let mut lg = LibguestfsEnv::new(None, None, None, None);
        lg.path_var = Some(dir.display().to_string());
        lg.search_path = vec![dir.clone()];
        lg.search_path_source = libguestfs::Source::LibguestfsPath;
        lg.appliance =
            Some(libguestfs::FoundAppliance { kind: libguestfs::ApplianceKind::Fixed, dir: dir.clone() });
        Facts {
            environment: EnvironmentFacts {
                libguestfs: lg,
                examined_dir: dir,
                examined_dir_source: libguestfs::Source::LibguestfsPath,
            },
            locations: vec![location::tests::location("/dev/shm/appliance", SpeedClass::Memory, 10 << 30)],
            appliance: appliance::tests::healthy(),
            virtualization: virt::tests::healthy(),
            probed: false,
        }
    }

    #[test]
    fn probe_names_are_unique_and_grouped() {
        let mut names: Vec<_> = PROBES.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
        for p in PROBES {
            let group = p.name.split('.').next().unwrap();
            assert!(GROUPS.contains(&group), "{}", p.name);
            assert!(!p.summary.is_empty());
        }
    }

    #[test]
    fn healthy_machine_passes_everything() {
        let facts = healthy_facts();
        let (checks, findings) = run_probes(&facts, &HealthConfig::default(), &[]);
        assert!(findings.is_empty(), "{findings:#?}");
        let (summary, overall) = summarize(&checks);
        assert_eq!(overall, Overall::Ok, "{checks:#?}");
        // Measurement probes are skipped without --probe.
        assert!(summary.skipped >= 2, "{summary:?}");
    }

    #[test]
    fn skip_by_name_and_group() {
        let mut facts = healthy_facts();
        facts.virtualization.kvm.device_present = false;
        let cfg = HealthConfig::default();
        let (_, findings) = run_probes(&facts, &cfg, &[]);
        assert!(findings.iter().any(|f| f.probe == "virt.kvm-device"));
        for skip in ["virt.kvm-device", "virt"] {
            let (checks, findings) = run_probes(&facts, &cfg, &[skip.to_string()]);
            assert!(findings.is_empty(), "{skip}: {findings:?}");
            let c = checks.iter().find(|c| c.probe == "virt.kvm-device").unwrap();
            assert_eq!(c.result, CheckStatus::Skipped);
        }
        // A prefix that is not a whole group does not skip.
        let (_, findings) = run_probes(&facts, &cfg, &["vir".to_string()]);
        assert!(!findings.is_empty());
    }

    #[test]
    fn unknown_skip_names_are_refused_with_the_list() {
        assert!(validate_skip(&["virt".into(), "location.speed".into()]).is_ok());
        let err = validate_skip(&["location.sped".into()]).unwrap_err().to_string();
        assert!(err.starts_with("--skip location.sped: no probe or group"), "{err}");
        for name in GROUPS.iter().copied().chain(PROBES.iter().map(|p| p.name)) {
            assert!(err.contains(name), "{name} missing from {err}");
        }
        // A prefix that is not a whole group is not a group.
        assert!(validate_skip(&["vir".into()]).is_err());
    }

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
