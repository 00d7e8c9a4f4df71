//! `build`: the whole pipeline, wired in one place (as supermin's
//! `mode_build.ml`): inputs → packages → kernel → tree → kernel/initrd/root
//! in a staging directory → atomic swap. Only this file knows both the
//! package database and the writers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::appliance::{self, ComposeSources};
use crate::cli::{BuildArgs, SourceArgs};
use crate::config::Config;
use crate::digest::{self, HashingWriter};
use crate::hostdata;
use crate::image::scratch::Scratch;
use crate::image::{ext2, initrd, tarball};
use crate::input::{self, Inputs};
use crate::kernel::{self, KernelChoice, KernelEnv};
use crate::manifest::{
    self, InputChoice, Manifest, ManifestFile, ManifestInput, ManifestKernel, ManifestOptions,
    ManifestPackage,
};
use crate::output::{self, OutputLock, Staging};
use crate::package;
use crate::printer::{human_bytes, Printer};

/// The README.fixed template; see [`render_readme`].
const README_TEMPLATE: &str = include_str!("../../templates/README.fixed");

/// Space we keep free beyond the estimate, so a build never fills a disk
/// to the last block.
const SPACE_MARGIN: u64 = 64 << 20;

/// The reproducible-builds variable giving the time of invented entries.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// How long a build waits for another build of the same directory.
const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a finished build reports.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// Where the appliance went (directory), if any.
    pub dir: Option<PathBuf>,
    /// Tarball written, if any.
    pub tarball: Option<PathBuf>,
    /// The manifest as written.
    pub manifest: Manifest,
    /// Entries in the root image.
    pub files: usize,
    /// Bytes of file data in the root image.
    pub data_bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl BuildSummary {
    /// The one-line summary printed at the end.
    pub fn line(&self) -> String {
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

/// What to build, independent of how the command line said it.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Output directory (replaced atomically), if any.
    pub dir: Option<PathBuf>,
    /// Tarball to write, if any.
    pub tar: Option<PathBuf>,
    /// Explicit inputs (absolute); empty = default.
    pub inputs: Vec<PathBuf>,
    /// Force the embedded minimal appliance.
    pub minimal: bool,
    /// Root image size in bytes.
    pub size: u64,
    /// Missing packages are errors.
    pub strict: bool,
    /// Host root (absolute).
    pub root: PathBuf,
    /// Host CPU for kernel selection.
    pub host_cpu: String,
    /// Lock wait limit.
    pub lock_timeout: std::time::Duration,
    /// Packages added to the inputs' lists (config `extra_packages`).
    pub extra_packages: Vec<String>,
    /// Patterns added to the inputs' excludefiles (config `extra_excludes`).
    pub extra_excludes: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: the timestamp of invented and normalized
    /// entries; `None` = the newest input file's mtime.
    pub source_date_epoch: Option<i64>,
    /// Lock file to take instead of `.DIR.lock` beside DIR (e.g. libguestfs's
    /// `.guestfs-UID/lock`, which supermin's `--lock` uses).
    pub lock_path: Option<PathBuf>,
    /// uid and gid to give the output directory and its files before it is
    /// published (e.g. a user's libguestfs cache).
    pub owner: Option<(u32, u32)>,
}

impl BuildRequest {
    /// From the source options, with the config file filling what the
    /// command line leaves out: what a new build makes.
    pub fn from_source(
        dir: Option<PathBuf>,
        tar: Option<PathBuf>,
        src: &SourceArgs,
        config: &Config,
    ) -> Result<Self> {
        let app = &config.appliance;
        let dir = match (dir, &tar) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(app.dir.clone()),
        };
        let inputs = if src.inputs.is_empty() && !src.minimal { &app.inputs } else { &src.inputs };
        Ok(BuildRequest {
            dir,
            tar,
            inputs: inputs.iter().map(|p| absolute_lexical(p)).collect(),
            minimal: src.minimal,
            size: match src.size.as_deref() {
                Some(size) => parse_size(size)?,
                None => parse_size(&app.size).with_context(|| {
                    let file =
                        config.source.as_deref().map_or("defaults".into(), |p| p.display().to_string());
                    format!("config appliance.size ({file})")
                })?,
            },
            strict: src.strict || app.strict,
            root: absolute_lexical(src.root.as_deref().unwrap_or(Path::new("/"))),
            host_cpu: src.host_cpu.clone().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            extra_packages: app.extra_packages.clone(),
            extra_excludes: app.extra_excludes.clone(),
            source_date_epoch: source_date_epoch()?,
            lock_path: None,
            owner: None,
        })
    }

    /// What the appliance recorded in `m` was built from, with each source
    /// option given in `src` replacing the recorded one: inputs (including
    /// the built-in minimal appliance, and "libguestfs's default", which is
    /// looked for again), size, strictness, host root, host CPU, the config's
    /// extra packages and excludes, and `SOURCE_DATE_EPOCH` (the
    /// environment's, if set). The config file plays no part: it describes
    /// new builds, not this one.
    ///
    /// This is the one place that decides what an existing appliance is
    /// compared with; `check`, `build --if-needed`, `cache list` and
    /// `status` reach it through [`BuildRequest::for_appliance`], called by
    /// [`crate::check::evaluate_as_built`].
    pub fn from_manifest(dir: &Path, m: &Manifest, src: &SourceArgs) -> Result<Self> {
        let (mut choice, paths) = m.input_request();
        let root = match &src.root {
            Some(r) => absolute_lexical(r),
            None => PathBuf::from(&m.options.root),
        };
        if m.options.inputs.is_none()
            && choice == InputChoice::Given
            && paths == input::default_input_dirs(&root)
        {
            // A manifest older than format 2 does not say; libguestfs's own
            // supermin.d was most likely the default.
            choice = InputChoice::Default;
        }
        let (inputs, minimal) = if src.minimal {
            (Vec::new(), true)
        } else if !src.inputs.is_empty() {
            (src.inputs.iter().map(|p| absolute_lexical(p)).collect(), false)
        } else {
            match choice {
                InputChoice::Default => (Vec::new(), false),
                InputChoice::Minimal => (Vec::new(), true),
                InputChoice::Given => (paths, false),
            }
        };
        Ok(BuildRequest {
            dir: Some(dir.to_path_buf()),
            tar: None,
            inputs,
            minimal,
            size: match &src.size {
                Some(s) => parse_size(s)?,
                None => m.options.size,
            },
            strict: src.strict || m.options.strict,
            root,
            host_cpu: src.host_cpu.clone().unwrap_or_else(|| m.options.host_cpu.clone()),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            extra_packages: m.options.extra_packages.clone(),
            extra_excludes: m.options.extra_excludes.clone(),
            source_date_epoch: match source_date_epoch()? {
                Some(t) => Some(t),
                None => recorded_epoch(dir, m)?,
            },
            lock_path: None,
            owner: None,
        })
    }

    /// The request to judge (or refresh) the appliance in `dir` with: from
    /// its manifest ([`BuildRequest::from_manifest`]) when it has a readable
    /// one, else what a new build would make ([`BuildRequest::from_source`];
    /// the freshness check then reports the missing or broken manifest).
    pub fn for_appliance(dir: &Path, src: &SourceArgs, config: &Config) -> Result<Self> {
        match Manifest::read(dir) {
            Ok(m) => Self::from_manifest(dir, &m, src),
            Err(_) => Self::from_source(Some(dir.to_path_buf()), None, src, config),
        }
    }

    /// Defaults for a new build of `dir` from the default inputs.
    pub fn for_dir(dir: Option<PathBuf>, config: &Config) -> Result<Self> {
        Self::from_source(dir, None, &SourceArgs::default(), config)
    }
}

/// `SOURCE_DATE_EPOCH` from the environment: whole seconds since 1970, or
/// an error saying so (reproducible-builds.org asks tools to fail rather
/// than guess).
fn source_date_epoch() -> Result<Option<i64>> {
    let value = match std::env::var(SOURCE_DATE_EPOCH) {
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Ok(v) if v.trim().is_empty() => return Ok(None),
        Ok(v) => v,
        Err(std::env::VarError::NotUnicode(v)) => v.to_string_lossy().into_owned(),
    };
    match value.trim().parse::<u32>() {
        Ok(t) => Ok(Some(i64::from(t))),
        Err(_) => bail!(
            "{SOURCE_DATE_EPOCH}={value:?} is not a whole number of seconds since 1970 (at most {}, what the image formats hold); fix or unset it",
            u32::MAX
        ),
    }
}

/// The `SOURCE_DATE_EPOCH` a manifest records, checked as the variable is:
/// an edited or foreign manifest must not reach the writers with a time the
/// image formats cannot hold (the error would then blame the initrd).
fn recorded_epoch(dir: &Path, m: &Manifest) -> Result<Option<i64>> {
    match m.options.source_date_epoch {
        Some(t) if !(0..=i64::from(u32::MAX)).contains(&t) => bail!(
            "{}: options.source_date_epoch = {t} is outside 0..={} (what the image formats hold); set {SOURCE_DATE_EPOCH} to override it, or rebuild without --if-needed",
            dir.join(manifest::MANIFEST_NAME).display(),
            u32::MAX
        ),
        other => Ok(other),
    }
}

/// `path` made absolute against the current directory, without resolving
/// symlinks, so a manifest's paths mean the same from any directory.
fn absolute_lexical(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Run `build` and print its summary. With `--if-needed`, a fresh
/// appliance is left alone silently (one line with `-v`).
pub fn run(args: &BuildArgs, config: &Config, printer: &Printer) -> Result<()> {
    if !args.if_needed {
        let mut req = BuildRequest::from_source(args.dir.clone(), args.tar.clone(), &args.source, config)?;
        req.lock_timeout = std::time::Duration::from_secs(args.lock_timeout);
        let summary = build(&req, printer)?;
        printer.info(summary.line());
        return Ok(());
    }
    // Refresh DIR as it was built: options not given come from its manifest.
    let dir = args.dir.clone().unwrap_or_else(|| config.appliance.dir.clone());
    let timeout = std::time::Duration::from_secs(args.lock_timeout);
    match refresh_as_built(&dir, &args.source, config, timeout, printer)? {
        IfNeeded::Fresh(dir) => printer.stage(format!("{} is fresh: nothing to do", dir.display())),
        IfNeeded::Built { why, summary } => {
            printer.info(format!("{} ({why})", summary.line()));
        }
    }
    Ok(())
}

/// What `build --if-needed` did.
pub enum IfNeeded {
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

/// Build `req` only when its directory is missing or stale against `req`
/// (`cache prime`: the appliance libguestfs needs, whatever was there),
/// under `lock`, which the caller took and keeps after we return (prime
/// holds it until the outputs are dated).
pub fn build_if_needed(req: &BuildRequest, lock: &OutputLock, printer: &Printer) -> Result<IfNeeded> {
    let dir = req.dir.as_deref().context("--if-needed needs an appliance directory")?;
    if_needed(dir, Some(lock), req.lock_timeout, printer, |dir| {
        Ok((crate::check::evaluate(dir, req, printer), Some(req.clone())))
    })
}

/// `build --if-needed DIR`: rebuild DIR, as it was built (source options
/// in `src` replacing the recorded ones), only when it is missing or stale.
pub fn refresh_as_built(
    dir: &Path,
    src: &SourceArgs,
    config: &Config,
    lock_timeout: std::time::Duration,
    printer: &Printer,
) -> Result<IfNeeded> {
    if_needed(dir, None, lock_timeout, printer, |dir| {
        let opts = crate::check::EvalOptions { record: true, verify: false };
        let (eval, req) = crate::check::evaluate_as_built(dir, src, config, printer, opts)?;
        Ok((eval, req.map(|r| BuildRequest { lock_timeout, ..r })))
    })
}

/// The lock is taken before the check (as supermin's `--lock` before
/// `--if-newer`), so concurrent callers wait for the one building and then
/// find it fresh; `held` is a lock the caller already took (then no other is
/// taken). `evaluate` judges the resolved directory and returns the
/// request to build with (only a stamp's "fresh" may come without one).
fn if_needed(
    dir: &Path,
    held: Option<&OutputLock>,
    lock_timeout: std::time::Duration,
    printer: &Printer,
    evaluate: impl FnOnce(&Path) -> Result<(crate::check::Evaluation, Option<BuildRequest>)>,
) -> Result<IfNeeded> {
    let dir = output::resolve_target(&absolute(dir))?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating parent directory {}", parent.display()))?;
    }
    let own;
    let lock = match held {
        Some(lock) => lock,
        None => {
            own = lock_for(&dir, None, lock_timeout, printer)?;
            &own
        }
    };
    let (eval, req) = evaluate(&dir)?;
    let why = match &eval.freshness {
        crate::check::Freshness::Fresh => return Ok(IfNeeded::Fresh(dir)),
        crate::check::Freshness::Stale(changes) => {
            let first: Vec<String> = changes.iter().take(3).map(|c| c.to_string()).collect();
            let more =
                if changes.len() > 3 { format!(", and {} more", changes.len() - 3) } else { String::new() };
            format!("stale: {}{more}", first.join("; "))
        }
        crate::check::Freshness::Unknown(why) => why.clone(),
    };
    let req = req.context("internal error: a stale appliance without a build request")?;
    let summary = build_locked(&req, printer, Some(lock), eval.plan)?;
    Ok(IfNeeded::Built { why, summary: Box::new(summary) })
}

fn lock_for(
    dir: &Path,
    lock_path: Option<&Path>,
    timeout: std::time::Duration,
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

/// Parse a size in supermin's syntax: digits (and a decimal point) followed
/// by `b`, `K`, `M` or `G` (binary multiples), e.g. `4G`, `1.5G`, `800M`.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad =
        || anyhow::anyhow!("invalid --size {text:?}: use a number followed by b, K, M or G, e.g. 4G or 1.5G");
    let (num, unit) = text.split_at(text.len().saturating_sub(1));
    let mult: u64 = match unit {
        "b" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(bad()),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = (value * mult as f64) as u64;
    if bytes < (16 << 20) {
        bail!("--size {text} is too small: the root image needs at least 16M");
    }
    Ok(bytes)
}

/// Choose the inputs: explicit ones, else libguestfs's installed supermin.d,
/// else the embedded minimal appliance. Returns them with how they were
/// chosen and the paths read (none for the embedded appliance).
fn load_inputs(req: &BuildRequest, printer: &Printer) -> Result<(Inputs, InputChoice, Vec<PathBuf>)> {
    if req.minimal {
        printer.stage("inputs: built-in minimal appliance (--minimal)");
        return Ok((input::embedded_minimal(), InputChoice::Minimal, Vec::new()));
    }
    if !req.inputs.is_empty() {
        printer.stage(format!("inputs: {} given on the command line", req.inputs.len()));
        return Ok((input::read_inputs(&req.inputs)?, InputChoice::Given, req.inputs.clone()));
    }
    let defaults = input::default_input_dirs(&req.root);
    if defaults.is_empty() {
        let install = match package::handler_for(&req.root) {
            Some(h) => format!(" (install {} for the full one)", h.libguestfs_package),
            None => String::new(),
        };
        printer.info(format!(
            "no libguestfs supermin.d found on this host; building the built-in minimal appliance{install}"
        ));
        return Ok((input::embedded_minimal(), InputChoice::Default, Vec::new()));
    }
    printer.stage(format!("inputs: {} (libguestfs's installed supermin.d)", defaults[0].display()));
    Ok((input::read_inputs(&defaults)?, InputChoice::Default, defaults))
}

/// Refuse an output directory that sits inside one of the input directories:
/// the next build would read our own output as input.
fn check_not_inside_inputs(dir: &Path, inputs: &Inputs) -> Result<()> {
    let dir_abs = absolute(dir);
    for f in &inputs.files {
        let Some(parent) = f.path.parent() else { continue };
        if parent.as_os_str().is_empty() || f.path.starts_with("<embedded>") {
            continue;
        }
        let parent_abs = absolute(parent);
        if dir_abs.starts_with(&parent_abs) {
            bail!(
                "output directory {} is inside the input directory {}: choose an output directory outside the inputs",
                dir.display(),
                parent_abs.display()
            );
        }
    }
    Ok(())
}

/// Physical form of a path that may not exist yet (its existing ancestor
/// resolved, the rest appended), following only symlinks owned by us or
/// root ([`crate::safefs::real_path`]); a path through someone else's link
/// is kept as given, and is refused when we come to write there.
fn absolute(path: &Path) -> PathBuf {
    crate::safefs::real_path(path).unwrap_or_else(|_| absolute_lexical(path))
}

/// Time for entries the writers invent and for host entries whose own
/// times are volatile: `SOURCE_DATE_EPOCH` when set, else the newest
/// modification time among the input files (0 for the embedded appliance).
/// Either way it is recorded in the manifest and fingerprinted.
fn build_timestamp(req: &BuildRequest, inputs: &Inputs) -> i64 {
    if let Some(t) = req.source_date_epoch {
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
pub struct Plan {
    /// Parsed inputs.
    pub inputs: Inputs,
    /// The package database.
    pub db: Box<dyn package::PackageDb>,
    /// Resolved closure and missing names.
    pub resolution: package::Resolution,
    /// Chosen kernel.
    pub kernel: KernelChoice,
    /// What the hostfiles patterns matched (appliance paths).
    pub hostfiles: Vec<PathBuf>,
    /// Time of invented entries and of host entries with volatile times.
    pub timestamp: i64,
    /// The manifest (fingerprint filled, output part empty).
    pub manifest: Manifest,
    /// Host paths whose `stat` tells whether the fingerprint may have
    /// changed (see `stamp`): the package database, input files and
    /// directories, kernel, the modules directory and depmod's indexes, the
    /// kernel search directories, and every path the hostfiles expansion
    /// looked at (matches, listed directories, names tested).
    pub watched: Vec<PathBuf>,
}

impl Plan {
    /// Warn once about packages named in the inputs but not installed.
    pub fn warn_missing(&self, printer: &Printer) {
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
pub fn plan(req: &BuildRequest, printer: &Printer) -> Result<Plan> {
    let (mut inputs, input_choice, input_paths) = load_inputs(req, printer)?;
    inputs.packages.extend(req.extra_packages.iter().cloned());
    for pattern in &req.extra_excludes {
        let line = format!("-{}", pattern.strip_prefix('-').unwrap_or(pattern));
        let parsed = input::ExcludePattern::parse(&line)
            .with_context(|| format!("config appliance.extra_excludes: invalid pattern {pattern:?}"))?;
        inputs.excludes.push(parsed);
    }
    let db = package::detect(&req.root)?;
    let resolution = db.resolve(&inputs.packages)?;
    if !resolution.missing.is_empty() {
        let list = resolution.missing.join(", ");
        if req.strict {
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
    let kernel = kernel::select_kernel(&KernelEnv::from_env(), &req.root, &req.host_cpu)
        .map_err(|e| e.with_package_hints(hints.kernel_package, hints.keep_kernel_readable))?;
    printer.stage(format!("kernel: picked {} ({})", kernel.version, kernel.reason));
    let kernel_sha = manifest::sha256_file(&kernel.path)
        .with_context(|| format!("reading kernel {}", kernel.path.display()))?;
    let dep = kernel.modules_dir.join("modules.dep");
    let dep_sha = manifest::sha256_file(&dep).with_context(|| format!("reading {}", dep.display()))?;
    let modules_tree = hostdata::modules_tree_digest(&kernel.modules_dir)?;
    printer.detail(format!(
        "kernel: modules tree {} digest {}",
        kernel.modules_dir.display(),
        modules_tree.sha256
    ));

    let timestamp = build_timestamp(req, &inputs);
    let (hostfiles, hostfile_probes) = input::expand_hostfiles_probed(&inputs.hostfiles, &req.root);
    let host_files = hostdata::hostfile_records(&req.root, &hostfiles);
    printer.stage(format!(
        "hostfiles: {} patterns matched {} paths; timestamp {timestamp}{}",
        inputs.hostfiles.len(),
        hostfiles.len(),
        if req.source_date_epoch.is_some() { " (SOURCE_DATE_EPOCH)" } else { " (newest input file)" }
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
            size: req.size,
            host_cpu: req.host_cpu.clone(),
            root: req.root.display().to_string(),
            strict: req.strict,
            extra_packages: req.extra_packages.clone(),
            extra_excludes: req.extra_excludes.clone(),
            inputs: Some(input_choice),
            input_paths: input_paths.iter().map(|p| p.display().to_string()).collect(),
            source_date_epoch: req.source_date_epoch,
            timestamp,
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
                sha256: manifest::hex(&f.sha256),
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
    watched.extend(req.inputs.iter().cloned());
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
    watched.push(appliance::host_path(&req.root, Path::new("/boot")));
    watched.push(appliance::host_path(&req.root, Path::new("/lib/modules")));
    watched.sort();
    watched.dedup();
    Ok(Plan { inputs, db, resolution, kernel, hostfiles, timestamp, manifest, watched })
}

/// Build the appliance described by `req`.
pub fn build(req: &BuildRequest, printer: &Printer) -> Result<BuildSummary> {
    build_locked(req, printer, None, None)
}

/// [`build`] under `lock`, which the caller took and keeps after we return
/// (`cache prime` holds it until the outputs are dated).
pub fn build_holding(req: &BuildRequest, lock: &OutputLock, printer: &Printer) -> Result<BuildSummary> {
    build_locked(req, printer, Some(lock), None)
}

/// Build, with the directory's lock already held (`held`) or taken here, and
/// with a plan already computed under that lock, if any.
fn build_locked(
    req: &BuildRequest,
    printer: &Printer,
    held: Option<&OutputLock>,
    plan_done: Option<Plan>,
) -> Result<BuildSummary> {
    let started = Instant::now();
    // Absolute paths from here on, so every message names a real place.
    let target = match &req.dir {
        Some(d) => Some(output::resolve_target(&absolute(d))?),
        None => None,
    };
    let tar_path = req.tar.as_deref().map(absolute);
    if let Some(dir) = &target {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating parent directory {}", parent.display()))?;
        }
        // Before anything is created beside DIR: a parent others can write
        // without the sticky bit is refused, and DIR must be an appliance.
        output::pin_parent(dir)?;
        output::check_target(dir)?;
    }
    if let Some(tar) = &tar_path {
        if tar.is_dir() {
            bail!("--tar {}: is a directory; give a file name such as appliance.tar.gz", tar.display());
        }
    }
    // The lock serialises builds of one directory. A tarball-only build
    // takes none (the tarball is renamed into place atomically, and staging
    // names carry the PID), so it leaves no lock file in the user's cwd.
    let lock_target =
        target.clone().or_else(|| tar_path.clone()).context("nothing to build: give DIR or --tar FILE")?;
    let _lock = match (&target, held) {
        (_, Some(_)) => None,
        (Some(dir), None) => Some(lock_for(dir, req.lock_path.as_deref(), req.lock_timeout, printer)?),
        (None, None) => None,
    };
    let leftovers = output::clean_leftovers(&lock_target)?;
    for old in leftovers.removed {
        printer.stage(format!("output: removed leftover {} (from an interrupted build)", old.display()));
    }
    for why in leftovers.kept {
        printer.warn(why);
    }

    let plan = match plan_done {
        Some(p) => p,
        None => plan(req, printer)?,
    };
    plan.warn_missing(printer);
    // Host secrets in the hostfiles: say so once, and let no one but the
    // owner read the image (and tarball) that holds them.
    let private = hostdata::private_hostfiles(&req.root, &plan.manifest.host_files);
    let image_mode = if private.is_empty() { 0o644 } else { 0o600 };
    if !private.is_empty() {
        printer.warn(format!(
            "hostfiles copy {} file(s) into the root image that not everyone may read on this host: {}; the root image (and tarball) get mode 0600, so only their owner can boot them",
            private.len(),
            private.join(", ")
        ));
    }
    if let Some(dir) = &target {
        check_not_inside_inputs(dir, &plan.inputs)?;
    }
    let timestamp = plan.timestamp;
    let mut manifest = plan.manifest;

    // Base archives are unpacked here, once: member data is streamed into an
    // unnamed scratch file beside the output (never into memory), sizes are
    // checked against the image first, and holes stay holes.
    printer.progress("unpacking base archives...");
    let scratch_dir = match lock_target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut scratch = Scratch::create_in(&scratch_dir)
        .with_context(|| format!("creating a scratch file in {}", scratch_dir.display()))?;
    let base = plan.inputs.extract_base(&mut scratch, req.size)?;
    printer.stage(format!(
        "base: {} members, {} of file data kept in a scratch file in {}",
        base.member_count(),
        human_bytes(scratch.stored_bytes()),
        scratch_dir.display()
    ));

    printer.progress("listing package files...");
    let package_files = plan.db.files(&plan.resolution.packages)?;
    printer.progress("composing the appliance tree...");
    let (tree, stats) = appliance::compose(&ComposeSources {
        root: &req.root,
        inputs: &plan.inputs,
        base: &base,
        package_files: &package_files,
        hostfiles: &plan.hostfiles,
        kernel: &plan.kernel,
        timestamp,
    })?;
    printer.stage(format!(
        "tree: {} package paths, {} config files dropped, {} excluded, {} hostfiles, {} missing on host, {} module files -> {} entries, {}",
        stats.package_paths,
        stats.config_files,
        stats.excluded,
        stats.hostfiles,
        stats.missing_on_host,
        stats.module_files,
        stats.entries,
        human_bytes(stats.data_bytes)
    ));

    let staging = Staging::create(&lock_target)?;
    let kernel_len = std::fs::metadata(&plan.kernel.path).map(|m| m.len()).unwrap_or(0);
    let need = estimate_bytes(stats.data_bytes, stats.entries as u64) + kernel_len + SPACE_MARGIN;
    let have = output::available_bytes(staging.path())?;
    if have < need {
        bail!(
            "not enough free space in {}: the appliance needs about {}, {} is available; free some space or choose a directory on another filesystem",
            staging.path().parent().unwrap_or(staging.path()).display(),
            human_bytes(need),
            human_bytes(have)
        );
    }

    // Kernel: copied, never symlinked, so the appliance survives kernel
    // removal from /boot.
    printer.progress("copying kernel...");
    let kernel_out = staging.path().join("kernel");
    let kernel_record = copy_hashed(&plan.kernel.path, &staging, "kernel").with_context(|| {
        format!("copying kernel {} to {}", plan.kernel.path.display(), kernel_out.display())
    })?;

    // Initrd.
    printer.progress("writing initrd...");
    let init = crate::init::choose()?;
    printer.stage(format!("initrd: using {}", init.source));
    let modules = initrd::select_modules(&plan.kernel.modules_dir)?;
    let initrd_out = staging.path().join("initrd");
    let (initrd_stats, initrd_record) = {
        let file = staging.create_file("initrd", 0o644)?;
        // Hashed on the way to the buffer: every byte the file gets.
        let mut w = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let s = initrd::write_initrd(&mut w, &init.bytes, &modules, timestamp)?;
        let (_, size, hash) = w.finish().with_context(|| format!("writing {}", initrd_out.display()))?;
        (s, ManifestFile { name: "initrd".into(), size, algorithm: digest::SHA256.into(), hash })
    };
    printer.stage(format!("initrd: {} modules, {}", initrd_stats.modules, human_bytes(initrd_stats.bytes)));

    // Root image.
    printer.progress(format!("writing root image ({} of files)...", human_bytes(stats.data_bytes)));
    let root_out = staging.path().join("root");
    let uuid = manifest.root_uuid();
    let (ext2_stats, root_record) = {
        // The mode follows the most private source (see `image_mode`).
        let file = staging.create_file("root", image_mode)?;
        let s = ext2::write_image(
            &tree,
            &file,
            &ext2::Ext2Options { size: req.size, uuid, timestamp, label: None },
        )
        .with_context(|| format!("writing root image {}", root_out.display()))?;
        // The data went through copy_file_range, not through us: hash the
        // image's data regions now, from the page cache (crate::digest).
        let hash = digest::sparse_sha256(&file)
            .with_context(|| format!("hashing root image {}", root_out.display()))?;
        (
            s,
            ManifestFile {
                name: "root".into(),
                size: req.size,
                algorithm: digest::SPARSE_SHA256.into(),
                hash,
            },
        )
    };
    for (path, err) in &ext2_stats.unreadable {
        printer.warn(format!("{}: {err} (copied as an empty file, as supermin does)", path.display()));
    }
    printer.stage(format!(
        "root: {} inodes, {} blocks of {} bytes, UUID {}",
        ext2_stats.inodes,
        ext2_stats.blocks_used,
        ext2_stats.block_size,
        ext2::format_uuid(&uuid)
    ));

    use std::os::unix::fs::MetadataExt;
    manifest.built_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    manifest.output = manifest::ManifestOutput {
        root_uuid: ext2::format_uuid(&uuid),
        files: stats.entries as u64,
        root_allocated_bytes: std::fs::metadata(&root_out).map(|m| m.blocks() * 512).unwrap_or(0),
        initrd_bytes: initrd_stats.bytes,
        initrd_modules: initrd_stats.modules as u64,
    };
    manifest.outputs = vec![kernel_record, initrd_record, root_record];
    let readme = render_readme(&manifest, target.as_deref().unwrap_or(Path::new("DIR")));
    write_file(&staging, "README.fixed", readme.as_bytes())?;
    write_file(&staging, manifest::MANIFEST_NAME, manifest.to_toml().as_bytes())?;

    if let Some(tar) = &tar_path {
        printer.progress("compressing tarball...");
        let compression = if tar.extension().is_some_and(|e| e == "xz") {
            tarball::Compression::Xz
        } else {
            tarball::Compression::Gzip
        };
        let files = ["kernel", "initrd", "root", "README.fixed", manifest::MANIFEST_NAME];
        let t = tarball::write_tarball(
            staging.dir(),
            &files,
            tar,
            &tarball::TarballOptions {
                compression,
                prefix: "appliance".into(),
                mtime: timestamp,
                threads: 0,
                mode: image_mode,
            },
        )?;
        printer.stage(format!("tarball: {} ({})", tar.display(), human_bytes(t.compressed_bytes)));
    }

    if let Some((uid, gid)) = req.owner {
        staging.chown_all(uid, gid)?;
    }
    match &target {
        Some(_) => {
            printer.progress("publishing...");
            crate::stamp::clear(&lock_target);
            let committed = staging.commit()?;
            if let Some(why) = committed.leftover {
                // The swap happened: the build succeeded, with junk left.
                printer.warn(why);
            }
            // The new appliance is fresh by construction: record the stamp so
            // the next `check DIR` (which judges DIR as built, and its
            // manifest records `req`) answers from stat alone.
            let key = crate::check::as_built_key(&SourceArgs::default());
            if let Err(e) =
                crate::check::record_stamp(&lock_target, &key, &manifest.fingerprint, &plan.watched)
            {
                printer.stage(format!("check: could not record the stamp ({e})"));
            }
        }
        None => drop(staging),
    }
    printer.clear_progress();
    Ok(BuildSummary {
        dir: target,
        tarball: tar_path,
        manifest,
        files: stats.entries,
        data_bytes: stats.data_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Bytes the root image will allocate: data rounded to blocks plus inode
/// tables and directory blocks, with slack for indirect blocks.
fn estimate_bytes(data: u64, entries: u64) -> u64 {
    data + data / 64 + entries * (4096 + 256) + (8 << 20)
}

/// Copy `from` to a new file `name` in the staging directory, hashing the
/// bytes on the way (the kernel: a plain stream, recorded with its sha256).
fn copy_hashed(from: &Path, staging: &Staging, name: &str) -> Result<ManifestFile> {
    let mut src = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let dst = staging.create_file(name, 0o644)?;
    let to = staging.path().join(name);
    let mut w = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, dst));
    std::io::copy(&mut src, &mut w).with_context(|| format!("writing {}", to.display()))?;
    let (_, size, hash) = w.finish().with_context(|| format!("writing {}", to.display()))?;
    Ok(ManifestFile { name: name.into(), size, algorithm: digest::SHA256.into(), hash })
}

fn write_file(staging: &Staging, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    staging
        .create_file(name, 0o644)?
        .write_all(bytes)
        .with_context(|| format!("writing {}", staging.path().join(name).display()))
}

/// Fill the README.fixed template.
pub fn render_readme(m: &Manifest, dir: &Path) -> String {
    let inputs: String = m.inputs.iter().map(|i| format!("  {} ({})\n", i.path, i.kind)).collect();
    README_TEMPLATE
        .replace("@VERSION@", &m.tool_version)
        .replace("@KERNEL_VERSION@", &m.kernel.version)
        .replace("@KERNEL_PATH@", &m.kernel.path)
        .replace("@INITRD_MODULES@", &m.output.initrd_modules.to_string())
        .replace("@ROOT_SIZE@", &human_bytes(m.options.size))
        .replace("@ROOT_UUID@", &m.output.root_uuid)
        .replace("@PACKAGE_COUNT@", &m.packages.len().to_string())
        .replace("@PACKAGE_HANDLER@", &m.package_handler)
        .replace("@INPUTS@", inputs.trim_end_matches('\n'))
        .replace("@FINGERPRINT@", &m.fingerprint)
        .replace("@DIR@", &dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_supermin_syntax() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("800M").unwrap(), 800 << 20);
        for bad in ["4", "4T", "4g", "G", "-1G", "1M"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    /// Issue 8, item 13: an out-of-range epoch in a manifest is refused
    /// naming the manifest and the key, before any writer sees it.
    #[test]
    fn issue8_recorded_epoch_out_of_range_names_the_manifest() {
        let mut m = crate::manifest::tests::sample();
        m.options.source_date_epoch = Some(99_999_999_999);
        if std::env::var_os(SOURCE_DATE_EPOCH).is_none() {
            let err = BuildRequest::from_manifest(Path::new("/srv/app"), &m, &SourceArgs::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("/srv/app/manifest.toml") && err.contains("source_date_epoch"), "{err}");
        }
        m.options.source_date_epoch = Some(-1);
        assert!(recorded_epoch(Path::new("/srv/app"), &m).is_err());
        m.options.source_date_epoch = Some(i64::from(u32::MAX));
        assert_eq!(recorded_epoch(Path::new("/srv/app"), &m).unwrap(), Some(i64::from(u32::MAX)));
    }

    #[test]
    fn readme_has_no_placeholders_left() {
        let mut m = crate::manifest::tests::sample();
        m.fingerprint = m.compute_fingerprint();
        let text = render_readme(&m, Path::new("/dev/shm/appliance"));
        assert!(!text.contains('@'), "{text}");
        assert!(text.contains("export LIBGUESTFS_PATH=/dev/shm/appliance"));
        assert!(text.contains("6.1.0-56-amd64"));
    }

    /// The recipe comes from the manifest; each explicit option replaces
    /// its part of it; the config file plays no part.
    #[test]
    fn from_manifest_takes_the_recipe_and_explicit_options_win() {
        let mut m = crate::manifest::tests::sample();
        m.options.inputs = Some(InputChoice::Minimal);
        m.options.input_paths.clear();
        m.options.strict = true;
        m.options.extra_packages = vec!["vim".into()];
        m.options.source_date_epoch = Some(5);
        let dir = Path::new("/srv/app");
        let req = BuildRequest::from_manifest(dir, &m, &SourceArgs::default()).unwrap();
        assert!(req.minimal && req.inputs.is_empty());
        assert_eq!((req.size, req.strict, req.root.as_path()), (4 << 30, true, Path::new("/")));
        assert_eq!((req.host_cpu.as_str(), req.extra_packages.clone()), ("x86_64", vec!["vim".to_string()]));
        if std::env::var_os(SOURCE_DATE_EPOCH).is_none() {
            assert_eq!(req.source_date_epoch, Some(5));
        }

        let src = SourceArgs {
            inputs: vec![PathBuf::from("/in")],
            size: Some("1G".into()),
            root: Some(PathBuf::from("/r")),
            host_cpu: Some("aarch64".into()),
            ..Default::default()
        };
        let req = BuildRequest::from_manifest(dir, &m, &src).unwrap();
        assert!(!req.minimal);
        assert_eq!(req.inputs, vec![PathBuf::from("/in")]);
        assert_eq!(
            (req.size, req.root.as_path(), req.host_cpu.as_str()),
            (1 << 30, Path::new("/r"), "aarch64")
        );

        m.options.inputs = Some(InputChoice::Default);
        m.options.input_paths = vec!["/usr/lib/x86_64-linux-gnu/guestfs/supermin.d".into()];
        let req = BuildRequest::from_manifest(dir, &m, &SourceArgs::default()).unwrap();
        assert!(!req.minimal && req.inputs.is_empty(), "default inputs are looked for again");
    }

    /// A format-1 manifest whose inputs were libguestfs's supermin.d under
    /// its root is taken as built from the default inputs.
    #[test]
    fn format_1_manifest_from_the_default_dir_means_default_inputs() {
        let root = tempfile::tempdir().unwrap();
        // The last of libguestfs's candidate locations, on every arch.
        let supermin_d = root.path().join("usr/lib/guestfs/supermin.d");
        std::fs::create_dir_all(&supermin_d).unwrap();
        let mut m = crate::manifest::tests::sample();
        m.format_version = 1;
        m.options.inputs = None;
        m.options.root = root.path().display().to_string();
        m.inputs[0].path = supermin_d.join("packages").display().to_string();
        let req = BuildRequest::from_manifest(Path::new("/srv/app"), &m, &SourceArgs::default()).unwrap();
        assert!(!req.minimal && req.inputs.is_empty(), "{:?}", req.inputs);
        m.inputs[0].path = "/elsewhere/packages".into();
        let req = BuildRequest::from_manifest(Path::new("/srv/app"), &m, &SourceArgs::default()).unwrap();
        assert_eq!(req.inputs, vec![PathBuf::from("/elsewhere")]);
    }

    #[test]
    fn absolute_handles_missing_tails() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a/b");
        let abs = absolute(&p);
        assert!(abs.ends_with("a/b"));
        assert!(abs.is_absolute());
    }
}
