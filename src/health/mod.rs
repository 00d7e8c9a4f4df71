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
//! This module owns the facts of the whole machine ([`Facts`]), the probe
//! table ([`PROBES`], which hands each probe its own group's part of the
//! facts) and the [`Report`] (whose JSON form is documented in
//! docs/status-schema.json). Below it: `probe.rs` holds the probe types and
//! the runner; `location.rs`, `appliance.rs` and `virt.rs` own one group of
//! facts and probes each, importing only from `probe.rs`, `libguestfs.rs`
//! and each other downwards (libguestfs <- location <- appliance <- virt);
//! `libguestfs.rs` works out what libguestfs uses in this environment (and
//! so which appliance is examined); `report/` renders the output formats.
//! Facts about the host itself (mounts, disks, statfs) come from
//! `crate::host`. Thresholds come from [`HealthConfig`]; the command glue
//! (arguments, exit codes) is `commands/status.rs`.

pub(crate) mod appliance;
pub(crate) mod libguestfs;
pub(crate) mod location;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod virt;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, HealthConfig};

pub(crate) use crate::host::HostRoots;
pub(crate) use appliance::ApplianceFacts;
pub(crate) use libguestfs::LibguestfsEnv;
pub(crate) use location::Location;
pub(crate) use probe::{
    is_skipped, summarize, CheckResult, CheckStatus, Finding, HealthError, Overall, Probe, ProbeFn, Severity,
    Summary,
};
pub(crate) use virt::VirtFacts;

/// Version of the JSON report layout (`version` in the output). Bump it on
/// any incompatible change and update docs/status-schema.json.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Every probe, in report order. Each group's function takes its own part
/// of the facts (`location_context`, `appliance_context`, `virt_context`).
pub(crate) const PROBES: &[Probe<Facts>] = &[
    Probe {
        info: location::CACHEDIR,
        run: ProbeFn::Global(|f, c| location::check_cachedir(&f.location_context(), c)),
    },
    Probe {
        info: location::SPACE,
        run: ProbeFn::PerItem(|l, f, c| location::check_space(l, &f.location_context(), c)),
    },
    Probe {
        info: location::INODES,
        run: ProbeFn::PerItem(|l, f, c| location::check_inodes(l, &f.location_context(), c)),
    },
    Probe {
        info: location::SPEED,
        run: ProbeFn::PerItem(|l, f, c| location::check_speed(l, &f.location_context(), c)),
    },
    Probe {
        info: location::WRITE_SPEED,
        run: ProbeFn::PerItem(|l, f, c| location::check_write_speed(l, &f.location_context(), c)),
    },
    Probe {
        info: appliance::SEARCH_PATH,
        run: ProbeFn::Global(|f, c| appliance::check_search_path(&f.appliance_context(), c)),
    },
    Probe {
        info: appliance::PRESENT,
        run: ProbeFn::Global(|f, c| appliance::check_present(&f.appliance_context(), c)),
    },
    Probe {
        info: appliance::ROOT,
        run: ProbeFn::Global(|f, c| appliance::check_root(&f.appliance_context(), c)),
    },
    Probe {
        info: appliance::KERNEL,
        run: ProbeFn::Global(|f, c| appliance::check_kernel(&f.appliance_context(), c)),
    },
    Probe {
        info: appliance::FRESH,
        run: ProbeFn::Global(|f, c| appliance::check_fresh(&f.appliance_context(), c)),
    },
    Probe {
        info: appliance::AGE,
        run: ProbeFn::Global(|f, c| appliance::check_age(&f.appliance_context(), c)),
    },
    Probe {
        info: virt::KVM_DEVICE,
        run: ProbeFn::Global(|f, c| virt::check_kvm_device(&f.virt_context(), c)),
    },
    Probe { info: virt::CPU_FLAGS, run: ProbeFn::Global(|f, c| virt::check_cpu_flags(&f.virt_context(), c)) },
    Probe { info: virt::QEMU, run: ProbeFn::Global(|f, c| virt::check_qemu(&f.virt_context(), c)) },
    Probe {
        info: virt::LIBGUESTFS,
        run: ProbeFn::Global(|f, c| virt::check_libguestfs(&f.virt_context(), c)),
    },
    Probe { info: virt::BOOT, run: ProbeFn::Global(|f, c| virt::check_boot(&f.virt_context(), c)) },
];

/// The environment libguestfs runs with here, and the appliance directory
/// examined because of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct EnvironmentFacts {
    /// What libguestfs uses: search path, appliance found, cache base.
    #[serde(flatten)]
    pub(crate) libguestfs: LibguestfsEnv,
    /// The appliance directory examined (`appliance.dir` of the report).
    pub(crate) examined_dir: PathBuf,
    /// Why that one: `--dir`, `LIBGUESTFS_PATH`, `config` or `default`.
    pub(crate) examined_dir_source: libguestfs::Source,
}

impl EnvironmentFacts {
    /// Whether the examined directory is the appliance libguestfs boots.
    pub(crate) fn examined_is_in_use(&self) -> bool {
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
pub(crate) struct Facts {
    /// What libguestfs uses here and why this appliance is examined.
    pub(crate) environment: EnvironmentFacts,
    /// Appliance and cache locations, deduplicated by path.
    pub(crate) locations: Vec<Location>,
    /// The fixed appliance.
    pub(crate) appliance: ApplianceFacts,
    /// KVM, CPU, qemu, libguestfs.
    pub(crate) virtualization: VirtFacts,
    /// Whether `--probe` measurements were taken.
    pub(crate) probed: bool,
}

impl Facts {
    /// What the location probes look at besides each location.
    pub(crate) fn location_context(&self) -> location::LocationContext<'_> {
        location::LocationContext { libguestfs: &self.environment.libguestfs, probed: self.probed }
    }

    /// What the appliance probes look at.
    pub(crate) fn appliance_context(&self) -> appliance::ApplianceContext<'_> {
        appliance::ApplianceContext {
            appliance: &self.appliance,
            libguestfs: &self.environment.libguestfs,
            examined_dir_source: self.environment.examined_dir_source,
            libguestfs_installed: self.virtualization.libguestfs.is_some(),
        }
    }

    /// What the virtualization probes look at.
    pub(crate) fn virt_context(&self) -> virt::VirtContext<'_> {
        virt::VirtContext { virt: &self.virtualization, appliance_dir: &self.appliance.dir }
    }
}

impl probe::ProbeFacts for Facts {
    type Item = Location;

    fn items(&self) -> &[Location] {
        &self.locations
    }

    fn item_subject(item: &Location) -> String {
        item.path.display().to_string()
    }

    /// The thing the probe's group is about: the appliance directory, or
    /// what the virt probe looks at.
    fn global_subject(&self, probe: &str) -> String {
        match probe.split('.').next() {
            Some("appliance") => self.appliance.dir.display().to_string(),
            Some("virt") => probe.strip_prefix("virt.").unwrap_or(probe).into(),
            _ => probe.into(),
        }
    }

    fn is_measured(&self) -> bool {
        self.probed
    }
}

/// What to gather.
#[derive(Debug, Clone)]
pub(crate) struct GatherOptions {
    /// The fixed appliance directory.
    pub(crate) appliance_dir: PathBuf,
    /// Where it came from (see [`libguestfs::examined_dir`]).
    pub(crate) dir_source: libguestfs::Source,
    /// The environment libguestfs runs with.
    pub(crate) libguestfs: LibguestfsEnv,
    /// Take measurements (write test; test boots when `boots` is given).
    pub(crate) probe: bool,
    /// With `probe`: how to test-boot (`None`: no test boots, e.g.
    /// `--skip virt.boot`).
    pub(crate) boots: Option<virt::BootOptions>,
    /// The whole run's deadline (`--timeout`): measurements not started by
    /// then are skipped, boots are cut short at it.
    pub(crate) deadline: Option<std::time::Instant>,
    /// Compare the appliance with the host (costs a package resolution).
    pub(crate) freshness: bool,
    /// Where /proc and /sys are (tests pass fixtures).
    pub(crate) roots: HostRoots,
}

/// Gather the facts for `opts` with the thresholds and settings of `config`.
///
/// Never fails as a whole: a fact that cannot be read is recorded with its
/// error and the probes that need it report that they could not run.
pub(crate) fn gather(opts: &GatherOptions, config: &Config) -> Facts {
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

/// The probe groups, which `--skip` also takes.
pub(crate) const GROUPS: [&str; 3] = ["location", "appliance", "virt"];

/// Check `--skip` values: each must name a probe or a group.
///
/// Errors: [`HealthError::Unavailable`] naming the unknown value and
/// listing the valid names.
pub(crate) fn validate_skip(skip: &[String]) -> Result<(), HealthError> {
    let known = |s: &str| GROUPS.contains(&s) || PROBES.iter().any(|p| p.info.name == s);
    match skip.iter().find(|s| !known(s)) {
        None => Ok(()),
        Some(bad) => {
            let names: Vec<&str> = GROUPS.iter().copied().chain(PROBES.iter().map(|p| p.info.name)).collect();
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
pub(crate) fn run_probes(
    facts: &Facts,
    config: &HealthConfig,
    skip: &[String],
) -> (Vec<CheckResult>, Vec<Finding>) {
    probe::run(PROBES, facts, config, skip)
}

/// The whole `status` answer: what `--json` prints (schema version
/// [`SCHEMA_VERSION`], docs/status-schema.json).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Schema version of this layout.
    pub(crate) version: u32,
    /// guestfs-appliance's version.
    pub(crate) tool_version: &'static str,
    /// When the report was made, seconds since the epoch.
    pub(crate) generated_at: i64,
    /// Seconds spent gathering and checking.
    pub(crate) duration_seconds: f64,
    /// Overall state.
    pub(crate) status: Overall,
    /// Counts per outcome.
    pub(crate) summary: Summary,
    /// Every finding with its remedy, worst first (info last).
    pub(crate) findings: Vec<Finding>,
    /// Every check that ran or was skipped.
    pub(crate) checks: Vec<CheckResult>,
    /// The facts the checks looked at.
    #[serde(flatten)]
    pub(crate) facts: Facts,
    /// `health.space_margin` the space checks used (for Nagios thresholds).
    #[serde(skip)]
    pub(crate) margin: f64,
}

impl Report {
    /// Run the probes over `facts` and assemble the report.
    pub(crate) fn new(
        facts: Facts,
        config: &HealthConfig,
        skip: &[String],
        started: std::time::Instant,
    ) -> Report {
        let (checks, mut findings) = run_probes(&facts, config, skip);
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let (summary, status) = summarize(&checks);
        Report {
            version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION"),
            generated_at: probe::now_secs(),
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
            locations: vec![location::tests::location(
                "/dev/shm/appliance",
                location::SpeedClass::Memory,
                10 << 30,
            )],
            appliance: appliance::tests::healthy(),
            virtualization: virt::tests::healthy(),
            probed: false,
        }
    }

    #[test]
    fn probe_names_are_unique_and_grouped() {
        let mut names: Vec<_> = PROBES.iter().map(|p| p.info.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
        for p in PROBES.iter().map(|p| p.info) {
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
        for name in GROUPS.iter().copied().chain(PROBES.iter().map(|p| p.info.name)) {
            assert!(err.contains(name), "{name} missing from {err}");
        }
        // A prefix that is not a whole group is not a group.
        assert!(validate_skip(&["vir".into()]).is_err());
    }
}
