//! The plan: what an appliance built from a spec would hold, resolved from
//! the host without writing anything. Inputs are read (explicit, else
//! libguestfs's supermin.d, else the built-in minimal appliance), the
//! package closure resolved through [`crate::package::PackageDb`], the
//! kernel chosen, the hostfiles expanded, and the fingerprint computed
//! into a manifest. `fresh` compares that manifest with an appliance's;
//! `write` turns it into files. This module writes nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::spec::ApplianceSpec;
use crate::hashcache::HashCache;
use crate::hostdata;
use crate::input::{self, Inputs};
use crate::kernel::{self, KernelChoice, KernelEnv};
use crate::manifest::{
    self, InputChoice, Manifest, ManifestInput, ManifestKernel, ManifestOptions, ManifestPackage,
};
use crate::package;
use crate::printer::Printer;

/// Choose the inputs: explicit ones, else libguestfs's installed supermin.d,
/// else the embedded minimal appliance. Returns them with how they were
/// chosen and the paths read (none for the embedded appliance).
fn load_inputs(
    spec: &ApplianceSpec,
    printer: &Printer,
    hashes: &mut HashCache,
) -> Result<(Inputs, InputChoice, Vec<PathBuf>)> {
    if spec.minimal {
        printer.stage("inputs: built-in minimal appliance (--minimal)");
        return Ok((input::embedded_minimal(), InputChoice::Minimal, Vec::new()));
    }
    if !spec.inputs.is_empty() {
        printer.stage(format!("inputs: {} given on the command line", spec.inputs.len()));
        return Ok((input::read_inputs_with(&spec.inputs, hashes)?, InputChoice::Given, spec.inputs.clone()));
    }
    let defaults = input::default_input_dirs(&spec.root);
    if defaults.is_empty() {
        let install = match package::handler_for(&spec.root) {
            Some(h) => format!(" (install {} for the full one)", h.libguestfs_package),
            None => String::new(),
        };
        printer.info(format!(
            "no libguestfs supermin.d found on this host; building the built-in minimal appliance{install}"
        ));
        return Ok((input::embedded_minimal(), InputChoice::Default, Vec::new()));
    }
    printer.stage(format!("inputs: {} (libguestfs's installed supermin.d)", defaults[0].display()));
    Ok((input::read_inputs_with(&defaults, hashes)?, InputChoice::Default, defaults))
}

/// Time for entries the writers invent and for host entries whose own
/// times are volatile: `SOURCE_DATE_EPOCH` when set, else the newest
/// modification time among the input files (0 for the embedded appliance).
/// Either way it is recorded in the manifest and fingerprinted.
fn build_timestamp(spec: &ApplianceSpec, inputs: &Inputs) -> i64 {
    if let Some(t) = spec.source_date_epoch {
        return t;
    }
    use std::os::unix::fs::MetadataExt;
    inputs
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).ok())
        .map(|m| m.mtime())
        .max()
        .unwrap_or(0)
        .clamp(0, i64::from(u32::MAX))
}

fn input_kind_name(kind: &input::InputKind) -> &'static str {
    match kind {
        input::InputKind::Packages => "packages",
        input::InputKind::BaseArchive(input::Compression::None) => "base-tar",
        input::InputKind::BaseArchive(input::Compression::Gzip) => "base-tar.gz",
        input::InputKind::BaseArchive(input::Compression::Xz) => "base-tar.xz",
        input::InputKind::Hostfiles => "hostfiles",
        input::InputKind::Excludefiles => "excludefiles",
        input::InputKind::Empty => "empty",
    }
}

/// Everything that decides the appliance's content, resolved from the host.
pub struct BuildPlan {
    /// Parsed inputs.
    pub(crate) inputs: Inputs,
    /// The package database.
    pub(crate) db: Box<dyn package::PackageDb>,
    /// Resolved closure and missing names.
    pub resolution: package::Resolution,
    /// Chosen kernel.
    pub(crate) kernel: KernelChoice,
    /// What the hostfiles patterns matched (appliance paths).
    pub(crate) hostfiles: Vec<PathBuf>,
    /// Time of invented entries and of host entries with volatile times.
    pub(crate) timestamp: i64,
    /// The manifest (fingerprint filled, output part empty).
    pub manifest: Manifest,
    /// Host paths whose `stat` tells whether the fingerprint may have
    /// changed (see `stamp`): the package database, input files and
    /// directories, kernel, the modules directory and depmod's indexes, the
    /// kernel search directories, and every path the hostfiles expansion
    /// looked at (matches, listed directories, names tested).
    pub(crate) watched: Vec<PathBuf>,
}

impl BuildPlan {
    /// Warn once about packages named in the inputs but not installed.
    pub(crate) fn warn_missing(&self, printer: &Printer) {
        let missing = &self.resolution.missing;
        if !missing.is_empty() {
            printer.warn(format!(
                "{} package(s) named in the input are not installed and were left out: {} (use --strict to make this an error)",
                missing.len(),
                missing.join(", ")
            ));
        }
    }
}

/// Resolve inputs, packages and kernel, and compute the fingerprint.
/// Cheap relative to a build; `check` uses it too.
pub fn plan(spec: &ApplianceSpec, printer: &Printer) -> Result<BuildPlan> {
    plan_with(spec, printer, &mut HashCache::new())
}

/// [`plan`], taking the digests of host files (kernel, depmod's indexes,
/// inputs, hostfiles) from `hashes` when it knows their signatures, and
/// leaving there those it computed (the caller saves them).
pub(crate) fn plan_with(
    spec: &ApplianceSpec,
    printer: &Printer,
    hashes: &mut HashCache,
) -> Result<BuildPlan> {
    let (mut inputs, input_choice, input_paths) = load_inputs(spec, printer, hashes)?;
    inputs.packages.extend(spec.extra_packages.iter().cloned());
    for pattern in &spec.extra_excludes {
        let line = format!("-{}", pattern.strip_prefix('-').unwrap_or(pattern));
        let parsed = input::ExcludePattern::parse(&line)
            .with_context(|| format!("config appliance.extra_excludes: invalid pattern {pattern:?}"))?;
        inputs.excludes.push(parsed);
    }
    let db = package::detect(&spec.root)?;
    for note in db.notes() {
        printer.stage(note);
    }
    let resolution = db.resolve(&inputs.packages)?;
    if !resolution.missing.is_empty() {
        let list = resolution.missing.join(", ");
        if spec.strict {
            bail!(
                "{} package(s) named in the input are not installed: {list}; install them, or build without --strict",
                resolution.missing.len()
            );
        }
    }
    for u in &resolution.unsatisfied {
        printer.stage(format!("packages: {} depends on {}: not installed, skipped", u.package, u.dependency));
    }
    for p in &resolution.packages {
        printer.detail(format!("packages: {}_{}_{}", p.name, p.version, p.arch));
    }
    printer.stage(format!(
        "packages: {} requested, {} in the closure ({})",
        inputs.packages.len(),
        resolution.packages.len(),
        db.handler()
    ));

    let hints = db.info();
    let kernel = kernel::select_kernel(&KernelEnv::from_env(), &spec.root, &spec.host_cpu)
        .map_err(|e| e.with_package_hints(hints.kernel_package, hints.keep_kernel_readable))?;
    printer.stage(format!("kernel: picked {} ({})", kernel.version, kernel.reason));
    let kernel_sha = hashes
        .sha256_hex(&kernel.path)
        .with_context(|| format!("reading kernel {}", kernel.path.display()))?;
    let dep = kernel.modules_dir.join("modules.dep");
    let dep_sha = hashes.sha256_hex(&dep).with_context(|| format!("reading {}", dep.display()))?;
    let modules_tree = hostdata::modules_tree_digest(&kernel.modules_dir, hashes)?;
    printer.detail(format!(
        "kernel: modules tree {} digest {}",
        kernel.modules_dir.display(),
        modules_tree.sha256
    ));

    let timestamp = build_timestamp(spec, &inputs);
    let (hostfiles, hostfile_probes) = input::expand_hostfiles_probed(&inputs.hostfiles, &spec.root);
    let host_files = hostdata::hostfile_records(&spec.root, &hostfiles, hashes);
    printer.stage(format!(
        "hostfiles: {} patterns matched {} paths; timestamp {timestamp}{}",
        inputs.hostfiles.len(),
        hostfiles.len(),
        if spec.source_date_epoch.is_some() { " (SOURCE_DATE_EPOCH)" } else { " (newest input file)" }
    ));
    for h in &host_files {
        printer.detail(format!("hostfiles: {} {} {}", h.path, h.kind, h.content));
    }

    let mut manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        fingerprint: String::new(),
        built_at: 0,
        package_handler: db.handler().to_string(),
        options: ManifestOptions {
            size: spec.size,
            host_cpu: spec.host_cpu.clone(),
            root: spec.root.display().to_string(),
            strict: spec.strict,
            extra_packages: spec.extra_packages.clone(),
            extra_excludes: spec.extra_excludes.clone(),
            inputs: Some(input_choice),
            input_paths: input_paths.iter().map(|p| p.display().to_string()).collect(),
            source_date_epoch: spec.source_date_epoch,
            timestamp,
            kernel_format: spec.kernel_format,
        },
        kernel: ManifestKernel {
            version: kernel.version.clone(),
            path: kernel.path.display().to_string(),
            sha256: kernel_sha,
            modules_dir: kernel.modules_dir.display().to_string(),
            modules_dep_sha256: dep_sha,
            modules_tree_sha256: modules_tree.sha256,
        },
        inputs: inputs
            .files
            .iter()
            .map(|f| ManifestInput {
                path: f.path.display().to_string(),
                kind: input_kind_name(&f.kind).to_string(),
                sha256: crate::digest::hex(&f.sha256),
            })
            .collect(),
        hostfiles: inputs.hostfiles.clone(),
        host_files,
        missing_packages: resolution.missing.clone(),
        packages: resolution
            .packages
            .iter()
            .map(|p| ManifestPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
            })
            .collect(),
        output: Default::default(),
        outputs: Vec::new(),
    };
    manifest.fingerprint = manifest.compute_fingerprint();

    let mut watched = db.database_files();
    watched.extend(spec.inputs.iter().cloned());
    for f in &inputs.files {
        if !f.path.starts_with("<embedded>") {
            watched.push(f.path.clone());
            if let Some(parent) = f.path.parent() {
                watched.push(parent.to_path_buf());
            }
        }
    }
    watched.push(kernel.path.clone());
    watched.extend(modules_tree.watched);
    watched.extend(hostfile_probes);
    watched.push(crate::paths::under_root(&spec.root, Path::new("/boot")));
    watched.push(crate::paths::under_root(&spec.root, Path::new("/lib/modules")));
    watched.sort();
    watched.dedup();
    Ok(BuildPlan { inputs, db, resolution, kernel, hostfiles, timestamp, manifest, watched })
}
