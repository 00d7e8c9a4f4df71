//! Is an appliance fresh? The exact answer, and what changed.
//!
//! Fresh means: recomputing the fingerprint from the host now (the resolved
//! package set with versions and architectures, the inputs' content, the
//! kernel and its modules tree, what the hostfiles match and their content,
//! the options, our format version) gives the fingerprint recorded in the
//! appliance's manifest. Host file dates play no part, so `touch`ing the
//! dpkg status file or reinstalling a package keeps an appliance fresh,
//! while an upgrade inside the closure or a new `/etc/ld.so.cache` makes it
//! stale. What "now" is built from (inputs, options, host root) is the
//! caller's [`ApplianceSpec`]: normally the appliance's own recipe, from
//! [`ApplianceSpec::for_appliance`].
//!
//! When nothing the fingerprint depends on changed since the last exact
//! answer (see [`crate::stamp`]), the answer comes from `stat` alone; for an
//! appliance judged as built, without even parsing its manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::plan::{self, BuildPlan};
use super::spec::{ApplianceSpec, SourceOverrides, SOURCE_DATE_EPOCH};
use crate::config::Config;
use crate::hashcache::HashCache;
use crate::manifest::{self, Manifest};
use crate::printer::Printer;
use crate::stamp;

/// One difference between the appliance and the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// A package joined the closure.
    PackageAdded {
        /// `name:arch`.
        package: String,
        /// Its version.
        version: String,
    },
    /// A package left the closure.
    PackageRemoved {
        /// `name:arch`.
        package: String,
        /// The version the appliance has.
        version: String,
    },
    /// A package's version changed.
    PackageUpgraded {
        /// `name:arch`.
        package: String,
        /// In the appliance.
        old: String,
        /// On the host.
        new: String,
    },
    /// Another kernel would be used, or the same one changed.
    KernelChanged {
        /// In the appliance.
        old: String,
        /// On the host.
        new: String,
    },
    /// An input file's content changed.
    InputChanged {
        /// The input file.
        path: String,
    },
    /// An input file appeared.
    InputAdded {
        /// The input file.
        path: String,
    },
    /// An input file disappeared.
    InputRemoved {
        /// The input file.
        path: String,
    },
    /// A path a hostfiles pattern matches changed content, kind, mode or
    /// owner.
    HostfileChanged {
        /// The path in the appliance.
        path: String,
    },
    /// A hostfiles pattern matches a new path.
    HostfileAdded {
        /// The path in the appliance.
        path: String,
    },
    /// A path the hostfiles patterns matched is gone.
    HostfileRemoved {
        /// The path in the appliance.
        path: String,
    },
    /// A build option differs.
    OptionChanged {
        /// Which option.
        option: String,
        /// In the appliance.
        old: String,
        /// Requested now.
        new: String,
    },
    /// The appliance was written by a tool with another output format.
    FormatChanged {
        /// In the appliance.
        old: u32,
        /// Ours.
        new: u32,
    },
    /// A file the manifest records (kernel, initrd, root) is gone.
    OutputMissing {
        /// The file.
        path: String,
    },
    /// A file the manifest records differs from what was written: another
    /// size (truncated, grown), not a regular file, or (`check --verify`)
    /// other content.
    OutputDamaged {
        /// The file.
        path: String,
        /// How it differs.
        what: String,
    },
    /// The fingerprints differ for a reason not itemised above.
    Other {
        /// What differs.
        what: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::PackageAdded { package, version } => write!(f, "package added: {package} {version}"),
            Change::PackageRemoved { package, version } => write!(f, "package removed: {package} {version}"),
            Change::PackageUpgraded { package, old, new } => {
                write!(f, "package upgraded: {package} {old} → {new}")
            }
            Change::KernelChanged { old, new } => write!(f, "kernel changed: {old} → {new}"),
            Change::InputChanged { path } => write!(f, "input changed: {path}"),
            Change::InputAdded { path } => write!(f, "input added: {path}"),
            Change::InputRemoved { path } => write!(f, "input removed: {path}"),
            Change::HostfileChanged { path } => write!(f, "hostfile changed: {path}"),
            Change::HostfileAdded { path } => write!(f, "hostfile added: {path}"),
            Change::HostfileRemoved { path } => write!(f, "hostfile removed: {path}"),
            Change::OptionChanged { option, old, new } => write!(f, "option changed: {option} {old} → {new}"),
            Change::FormatChanged { old, new } => write!(f, "format changed: {old} → {new}"),
            Change::OutputMissing { path } => write!(f, "output missing: {path}"),
            Change::OutputDamaged { path, what } => write!(f, "output damaged: {path} ({what})"),
            Change::Other { what } => write!(f, "changed: {what}"),
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// The appliance matches the host.
    Fresh,
    /// It does not; the changes, one per line when printed.
    Stale(Vec<Change>),
    /// We cannot tell (no appliance, unreadable manifest, broken host).
    Unknown(String),
}

/// How the answer was reached, for `-v` and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Method {
    /// From the stat-level stamp.
    Stamp,
    /// By recomputing the fingerprint.
    Computed,
    /// No comparison was possible.
    None,
}

/// How the appliance's own files were compared with the manifest's
/// records of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OutputsChecked {
    /// The stamp holds, and it covers their `lstat` signatures.
    Stamp,
    /// Present, regular, with the recorded sizes (`stat` only).
    Stat,
    /// Also re-hashed against the recorded digests (`--verify`).
    Hashed,
    /// The manifest records no outputs (written before format 3): damage
    /// cannot be detected.
    NotRecorded,
    /// Not compared (no readable manifest).
    No,
}

/// What an evaluation may do besides judging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EvalOptions {
    /// Record the stamp when the appliance is found fresh (reports that
    /// only look leave this off: they write nothing).
    pub(crate) record: bool,
    /// Re-hash the outputs against the manifest (`check --verify`): reads
    /// every data block, so never the default, and never from the stamp.
    pub(crate) verify: bool,
}

/// The one answer to "is this appliance fresh?": what [`fresh`] returns,
/// and all that `check`, `build --if-needed`, `cache list` and `status`
/// render. Serialized as `check --json` shows it (after its `version` and
/// `dir`): `status` (`fresh`, `stale`, `unknown`), `reason`, `method`,
/// `outputs`, both fingerprints and `changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Fresh, stale (with the changes) or unknown (with why).
    pub(crate) freshness: Freshness,
    /// How it was reached.
    pub(crate) method: Method,
    /// How the outputs were compared with their records.
    pub(crate) outputs: OutputsChecked,
    /// The appliance's recorded fingerprint, if readable.
    pub(crate) appliance_fingerprint: Option<String>,
    /// The host's fingerprint, if computed (or confirmed by the stamp).
    pub(crate) host_fingerprint: Option<String>,
}

impl Verdict {
    /// "Cannot tell", for `why`, with nothing compared.
    pub(crate) fn unknown(why: String) -> Self {
        Verdict {
            freshness: Freshness::Unknown(why),
            method: Method::None,
            outputs: OutputsChecked::No,
            appliance_fingerprint: None,
            host_fingerprint: None,
        }
    }

    /// `fresh`, `stale` or `unknown`: the label every report uses.
    pub(crate) fn status(&self) -> &'static str {
        match self.freshness {
            Freshness::Fresh => "fresh",
            Freshness::Stale(_) => "stale",
            Freshness::Unknown(_) => "unknown",
        }
    }

    /// The changes (stale only; empty otherwise).
    pub(crate) fn changes(&self) -> &[Change] {
        match &self.freshness {
            Freshness::Stale(changes) => changes,
            _ => &[],
        }
    }

    /// Why it cannot be told (unknown only).
    pub(crate) fn reason(&self) -> Option<&str> {
        match &self.freshness {
            Freshness::Unknown(why) => Some(why),
            _ => None,
        }
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Verdict", 7)?;
        st.serialize_field("status", self.status())?;
        st.serialize_field("reason", &self.reason())?;
        st.serialize_field("method", &self.method)?;
        st.serialize_field("outputs", &self.outputs)?;
        st.serialize_field("appliance_fingerprint", &self.appliance_fingerprint)?;
        st.serialize_field("host_fingerprint", &self.host_fingerprint)?;
        st.serialize_field("changes", self.changes())?;
        st.end()
    }
}

/// The full result of an evaluation: the verdict, and the plan a build
/// under the same lock can reuse.
pub(crate) struct Evaluation {
    /// The verdict.
    pub(crate) verdict: Verdict,
    /// The plan, when the host was examined (a build can reuse it).
    pub(crate) plan: Option<BuildPlan>,
}

/// Digest of everything in the request that could change the answer
/// without changing a watched file: options, `SOURCE_DATE_EPOCH`,
/// `SUPERMIN_*` variables and our own version.
pub(crate) fn request_digest(spec: &ApplianceSpec) -> String {
    let mut h = Sha256::new();
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let text = format!(
        "{}\n{}\n{:?}\n{}\n{}\n{}\n{}\n{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}\n",
        env!("CARGO_PKG_VERSION"),
        manifest::FORMAT_VERSION,
        spec.inputs,
        spec.minimal,
        spec.size,
        spec.strict,
        spec.root.display(),
        spec.host_cpu,
        spec.extra_packages,
        spec.extra_excludes,
        spec.source_date_epoch,
        env("SUPERMIN_KERNEL"),
        env("SUPERMIN_MODULES"),
        env("SUPERMIN_KERNEL_VERSION"),
        spec.kernel_format.name(),
    );
    h.update(text.as_bytes());
    crate::digest::hex(&h.finalize())
}

/// The stamp key of "the appliance as built, with these source options
/// given": everything that, with the manifest file (whose `stat` the stamp
/// also checks), decides the spec [`ApplianceSpec::for_appliance`] makes.
/// So the stamp answers without parsing the manifest.
pub(crate) fn as_built_key(src: &SourceOverrides) -> String {
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let text = format!(
        "as built\n{}\n{}\n{:?}\n{}\n{:?}\n{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
        env!("CARGO_PKG_VERSION"),
        manifest::FORMAT_VERSION,
        src.inputs.iter().map(|p| abs(p)).collect::<Vec<_>>(),
        src.minimal,
        src.size,
        src.strict,
        src.root.as_deref().map(abs),
        src.host_cpu,
        env(SOURCE_DATE_EPOCH),
        env("SUPERMIN_KERNEL"),
        env("SUPERMIN_MODULES"),
        env("SUPERMIN_KERNEL_VERSION"),
        src.kernel_format.map(|k| k.name()),
    );
    crate::digest::sha256_hex(text.as_bytes())
}

/// The verdict on `dir` for a report (`status`, `cache list`): [`fresh`]
/// with no overrides, quietly and writing nothing (reports must not leave
/// files, possibly root-owned, beside appliances they only look at); an
/// error becomes an unknown verdict.
pub(crate) fn report(dir: &Path, config: &Config) -> Verdict {
    match fresh(dir, &SourceOverrides::default(), config, &Printer::quiet(), EvalOptions::default()) {
        Ok((eval, _)) => eval.verdict,
        Err(e) => Verdict::unknown(crate::error_line(&e)),
    }
}

/// Is the appliance in `dir` fresh? The one answer, for every caller:
/// `dir` is judged against what it was built from (the spec read back from
/// its own manifest, [`ApplianceSpec::for_appliance`]), with the overrides
/// in `src` replacing the recorded options; a `--minimal` appliance is
/// therefore judged as minimal. Stamp first (no manifest parsing; not with
/// `verify`), then the exact computation, stamped when fresh and
/// `opts.record`. Returns the evaluation and the spec when it was made
/// (always, unless the stamp answered). Errors: a bad option in `src`.
pub(crate) fn fresh(
    dir: &Path,
    src: &SourceOverrides,
    config: &Config,
    printer: &Printer,
    opts: EvalOptions,
) -> anyhow::Result<(Evaluation, Option<ApplianceSpec>)> {
    let key = as_built_key(src);
    if let Some(eval) = from_stamp(dir, &key, printer, opts) {
        return Ok((eval, None));
    }
    // Read once: it is both the recipe and the record compared with.
    let recorded = Manifest::read(dir);
    let spec = ApplianceSpec::for_recorded(dir, &recorded, src, config)?;
    let eval = evaluate_exact(dir, &spec, &key, printer, opts, Some(recorded));
    Ok((eval, Some(spec)))
}

/// Evaluate `dir` against `spec`: stamp first, then the exact computation.
/// Records a new stamp when the computation finds it fresh.
pub(crate) fn evaluate(dir: &Path, spec: &ApplianceSpec, printer: &Printer) -> Evaluation {
    let key = request_digest(spec);
    let opts = EvalOptions { record: true, verify: false };
    from_stamp(dir, &key, printer, opts)
        .unwrap_or_else(|| evaluate_exact(dir, spec, &key, printer, opts, None))
}

/// Record that `dir` was found fresh (or built) with `fingerprint` after
/// reading `watched`: the stamp also watches the appliance's boot files,
/// so a deleted, truncated or rewritten one sends the next check back to
/// the exact computation, which compares them with the manifest.
pub(crate) fn record_stamp(
    dir: &Path,
    key: &str,
    fingerprint: &str,
    watched: &[PathBuf],
) -> std::io::Result<()> {
    let mut all = watched.to_vec();
    all.extend(RECORDED_OUTPUTS.iter().map(|n| dir.join(n)));
    stamp::record(dir, key, fingerprint, &all)
}

/// The files whose size and digest a build records in the manifest.
pub(crate) const RECORDED_OUTPUTS: [&str; 3] = ["kernel", "initrd", "root"];

/// "Fresh" when the stamp recorded under `key` still holds (never when
/// verifying: that must read the outputs).
fn from_stamp(dir: &Path, key: &str, printer: &Printer, opts: EvalOptions) -> Option<Evaluation> {
    if opts.verify {
        return None;
    }
    let fp = stamp::still_fresh(dir, key)?;
    printer.stage("check: nothing changed since the last check (stat-level stamp)");
    Some(Evaluation {
        verdict: Verdict {
            freshness: Freshness::Fresh,
            method: Method::Stamp,
            outputs: OutputsChecked::Stamp,
            appliance_fingerprint: Some(fp.clone()),
            host_fingerprint: Some(fp),
        },
        plan: None,
    })
}

/// Compare `dir`'s outputs with the records in its manifest `m`: each must
/// be a regular file of the recorded size (`stat` only) and, with
/// `verify`, have the recorded digest. Returns the damage found (empty when
/// none) and how far the comparison went.
pub(crate) fn output_damage(dir: &Path, m: &Manifest, verify: bool) -> (Vec<Change>, OutputsChecked) {
    if m.outputs.is_empty() {
        return (Vec::new(), OutputsChecked::NotRecorded);
    }
    let mut damage = Vec::new();
    for rec in &m.outputs {
        let path = dir.join(&rec.name);
        let shown = path.display().to_string();
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                damage.push(Change::OutputMissing { path: shown });
                continue;
            }
            Err(e) => {
                damage.push(Change::OutputDamaged { path: shown, what: format!("cannot stat it: {e}") });
                continue;
            }
        };
        if !md.is_file() {
            damage.push(Change::OutputDamaged { path: shown, what: "not a regular file".into() });
        } else if md.len() != rec.size {
            damage.push(Change::OutputDamaged {
                path: shown,
                what: format!("{} bytes, built as {}", md.len(), rec.size),
            });
        } else if verify {
            match rehash(&path, &rec.algorithm) {
                Ok(hash) if hash == rec.hash => {}
                Ok(_) => damage.push(Change::OutputDamaged {
                    path: shown,
                    what: format!("content differs from its recorded {}", rec.algorithm),
                }),
                Err(e) => {
                    damage.push(Change::OutputDamaged { path: shown, what: format!("cannot read it: {e}") })
                }
            }
        }
    }
    (damage, if verify { OutputsChecked::Hashed } else { OutputsChecked::Stat })
}

/// The digest of `path` by the manifest's `algorithm`.
fn rehash(path: &Path, algorithm: &str) -> std::io::Result<String> {
    if let Some(hash) = crate::digest::ChunkHash::from_algorithm(algorithm) {
        return crate::digest::sparse_digest(&crate::bounded::open_regular(path)?, hash);
    }
    match algorithm {
        crate::digest::SHA256 => crate::digest::sha256_file(path),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unknown digest algorithm {other:?} (written by a newer version?)"),
        )),
    }
}

/// Compare the outputs with their records, recompute the fingerprint for
/// `spec` and compare; stamp under `key` when fresh and `opts.record`.
/// `recorded` is `dir`'s manifest if the caller already read it.
fn evaluate_exact(
    dir: &Path,
    spec: &ApplianceSpec,
    key: &str,
    printer: &Printer,
    opts: EvalOptions,
    recorded: Option<Result<Manifest, manifest::ManifestError>>,
) -> Evaluation {
    let unknown = |why: String, fp: Option<String>| Evaluation {
        verdict: Verdict { appliance_fingerprint: fp, ..Verdict::unknown(why) },
        plan: None,
    };
    if !dir.join(manifest::MANIFEST_NAME).exists() {
        let why = if dir.is_dir() {
            format!("{} has no {} (not built by guestfs-appliance)", dir.display(), manifest::MANIFEST_NAME)
        } else {
            format!("no appliance at {}", dir.display())
        };
        return unknown(why, None);
    }
    let old = match recorded.unwrap_or_else(|| Manifest::read(dir)) {
        Ok(m) => m,
        Err(e) => return unknown(e.to_string(), None),
    };
    let (damage, outputs) = output_damage(dir, &old, opts.verify);
    let mut hashes = HashCache::load(dir);
    let plan = match plan::plan_with(spec, printer, &mut hashes) {
        Ok(p) => p,
        Err(e) => {
            return unknown(
                format!("cannot examine the host: {}", crate::error_line(&e)),
                Some(old.fingerprint.clone()),
            )
        }
    };
    report_hashes(dir, &hashes, opts.record, printer);
    let new = &plan.manifest;
    let freshness = if new.fingerprint == old.fingerprint && damage.is_empty() {
        if !opts.record {
            // Reports look without writing.
        } else if let Err(e) = record_stamp(dir, key, &new.fingerprint, &plan.watched) {
            printer.stage(format!("check: could not record the stamp beside {} ({e})", dir.display()));
        }
        Freshness::Fresh
    } else {
        // Damage first: it is what a rebuild repairs even when nothing
        // else changed.
        let mut changes = damage;
        if new.fingerprint != old.fingerprint {
            changes.extend(diff(&old, new));
        }
        Freshness::Stale(changes)
    };
    Evaluation {
        verdict: Verdict {
            freshness,
            method: Method::Computed,
            outputs,
            appliance_fingerprint: Some(old.fingerprint.clone()),
            host_fingerprint: Some(new.fingerprint.clone()),
        },
        plan: Some(plan),
    }
}

/// Say at `-v` how many host files were read and hashed and how many
/// digests were known by signature ([`crate::hashcache`]), and, when
/// `save`, write the digests used beside `dir` for the next computation
/// (best effort, as the stamp).
pub(crate) fn report_hashes(dir: &Path, hashes: &HashCache, save: bool, printer: &Printer) {
    let stats = hashes.stats();
    printer.stage(format!(
        "hashes: {} files hashed, {} known by signature ({})",
        stats.hashed,
        stats.reused,
        HashCache::path(dir).display()
    ));
    if save {
        if let Err(e) = hashes.save(dir) {
            printer.stage(format!("check: could not save the file digests beside {} ({e})", dir.display()));
        }
    }
}

/// What differs between the appliance's manifest and the host's.
///
/// Options come first. When the inputs or the host root differ, the
/// packages, inputs, hostfiles and kernel follow from that one change and
/// are not itemised (`check --minimal` on a libguestfs appliance is one
/// option change, not a list of 200 packages "removed"). Parts that the
/// old manifest's format did not record are not compared (its format
/// change says it is stale).
pub fn diff(old: &Manifest, new: &Manifest) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.format_version != new.format_version {
        changes.push(Change::FormatChanged { old: old.format_version, new: new.format_version });
    }
    let recorded_v2 = old.format_version >= 2;
    let mut opt = |option: &str, o: String, n: String| {
        if o != n {
            changes.push(Change::OptionChanged { option: option.into(), old: o, new: n });
            true
        } else {
            false
        }
    };
    let inputs_changed = opt("inputs", old.inputs_label(), new.inputs_label());
    let root_changed = opt("root", old.options.root.clone(), new.options.root.clone());
    opt("size", old.options.size.to_string(), new.options.size.to_string());
    opt("host-cpu", old.options.host_cpu.clone(), new.options.host_cpu.clone());
    opt("strict", old.options.strict.to_string(), new.options.strict.to_string());
    opt("kernel-format", old.options.kernel_format.name().into(), new.options.kernel_format.name().into());
    opt("extra-packages", old.options.extra_packages.join(","), new.options.extra_packages.join(","));
    opt("extra-excludes", old.options.extra_excludes.join(","), new.options.extra_excludes.join(","));
    opt("package-handler", old.package_handler.clone(), new.package_handler.clone());
    let epoch = |e: Option<i64>| e.map_or_else(|| "unset".to_string(), |t| t.to_string());
    let epoch_changed = recorded_v2
        && opt(
            "source-date-epoch",
            epoch(old.options.source_date_epoch),
            epoch(new.options.source_date_epoch),
        );
    if inputs_changed || root_changed {
        return changes;
    }

    let (ok, nk) = (&old.kernel, &new.kernel);
    let tree_changed = recorded_v2 && ok.modules_tree_sha256 != nk.modules_tree_sha256;
    if ok.version != nk.version || ok.path != nk.path {
        changes.push(Change::KernelChanged {
            old: format!("{} ({})", ok.version, ok.path),
            new: format!("{} ({})", nk.version, nk.path),
        });
    } else if ok.sha256 != nk.sha256
        || ok.modules_dep_sha256 != nk.modules_dep_sha256
        || ok.modules_dir != nk.modules_dir
        || tree_changed
    {
        changes.push(Change::KernelChanged {
            old: format!("{} (rebuilt or modules changed)", ok.version),
            new: nk.version.clone(),
        });
    }

    let old_inputs: BTreeMap<_, _> = old.inputs.iter().map(|i| (&i.path, i)).collect();
    let new_inputs: BTreeMap<_, _> = new.inputs.iter().map(|i| (&i.path, i)).collect();
    for (path, n) in &new_inputs {
        match old_inputs.get(path) {
            None => changes.push(Change::InputAdded { path: path.to_string() }),
            Some(o) if o.sha256 != n.sha256 || o.kind != n.kind => {
                changes.push(Change::InputChanged { path: path.to_string() })
            }
            _ => {}
        }
    }
    for path in old_inputs.keys().filter(|p| !new_inputs.contains_key(*p)) {
        changes.push(Change::InputRemoved { path: path.to_string() });
    }
    let input_changed = changes.iter().any(|c| {
        matches!(c, Change::InputChanged { .. } | Change::InputAdded { .. } | Change::InputRemoved { .. })
    });
    if recorded_v2 && !epoch_changed && !input_changed && old.options.timestamp != new.options.timestamp {
        // Without SOURCE_DATE_EPOCH the timestamp is the newest input
        // file's mtime: an input edited shows as that, a touched one as this.
        changes.push(Change::OptionChanged {
            option: "timestamp".into(),
            old: old.options.timestamp.to_string(),
            new: new.options.timestamp.to_string(),
        });
    }
    if old.hostfiles != new.hostfiles && changes.iter().all(|c| !matches!(c, Change::InputChanged { .. })) {
        changes.push(Change::Other { what: "hostfiles patterns".into() });
    }
    if recorded_v2 {
        let old_files: BTreeMap<_, _> = old.host_files.iter().map(|h| (&h.path, h)).collect();
        let new_files: BTreeMap<_, _> = new.host_files.iter().map(|h| (&h.path, h)).collect();
        for (path, n) in &new_files {
            match old_files.get(path) {
                None => changes.push(Change::HostfileAdded { path: path.to_string() }),
                Some(o) if o != n => changes.push(Change::HostfileChanged { path: path.to_string() }),
                _ => {}
            }
        }
        for path in old_files.keys().filter(|p| !new_files.contains_key(*p)) {
            changes.push(Change::HostfileRemoved { path: path.to_string() });
        }
    }

    let old_pkgs = old.package_map(new);
    let new_pkgs = new.package_map(old);
    for (name, version) in &new_pkgs {
        match old_pkgs.get(name) {
            None => {
                changes.push(Change::PackageAdded { package: name.clone(), version: version.to_string() })
            }
            Some(o) if o != version => changes.push(Change::PackageUpgraded {
                package: name.clone(),
                old: o.to_string(),
                new: version.to_string(),
            }),
            _ => {}
        }
    }
    for (name, version) in old_pkgs.iter().filter(|(n, _)| !new_pkgs.contains_key(*n)) {
        changes.push(Change::PackageRemoved { package: name.clone(), version: version.to_string() });
    }
    if changes.is_empty() {
        changes.push(Change::Other { what: "fingerprint (the appliance was built from other facts)".into() });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ManifestInput, ManifestPackage};

    #[test]
    fn diff_itemises_packages_kernel_inputs_options() {
        let old = crate::manifest::tests::sample();
        let mut new = old.clone();
        new.packages[0].version = "5.3".into();
        new.packages.push(ManifestPackage { name: "zsh".into(), version: "1".into(), arch: "amd64".into() });
        new.kernel.version = "6.1.0-57-amd64".into();
        new.inputs[0].sha256 = "dd".into();
        new.inputs.push(ManifestInput {
            path: "/x/new".into(),
            kind: "packages".into(),
            sha256: "ee".into(),
        });
        new.options.size = 1 << 30;
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert!(lines.contains(&"package upgraded: bash:amd64 5.2 → 5.3".to_string()), "{lines:?}");
        assert!(lines.contains(&"package added: zsh:amd64 1".to_string()), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("kernel changed: 6.1.0-56-amd64")), "{lines:?}");
        assert!(lines.contains(&"input changed: /x/packages".to_string()), "{lines:?}");
        assert!(lines.contains(&"input added: /x/new".to_string()), "{lines:?}");
        assert!(lines.contains(&"option changed: size 4294967296 → 1073741824".to_string()), "{lines:?}");
    }

    #[test]
    fn other_inputs_are_one_option_change_not_packages_removed() {
        let old = crate::manifest::tests::sample();
        let mut new = old.clone();
        new.options.inputs = Some(crate::manifest::InputChoice::Minimal);
        new.options.input_paths.clear();
        new.inputs = vec![ManifestInput {
            path: "<embedded>/packages".into(),
            kind: "packages".into(),
            sha256: "ee".into(),
        }];
        new.packages.clear();
        new.host_files.clear();
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, ["option changed: inputs /x → minimal"]);
    }

    #[test]
    fn hostfiles_are_itemised() {
        let old = crate::manifest::tests::sample();
        let mut new = old.clone();
        new.host_files[0].content = "c1".into();
        let mut added = new.host_files[0].clone();
        added.path = "/lib/lsb/init-functions".into();
        new.host_files.push(added);
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, ["hostfile changed: /etc/ld.so.cache", "hostfile added: /lib/lsb/init-functions"]);
        let lines: Vec<String> = diff(&new, &old).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            ["hostfile changed: /etc/ld.so.cache", "hostfile removed: /lib/lsb/init-functions"]
        );
    }

    /// A format-1 manifest recorded no hostfile matches, timestamp or
    /// modules tree: the format change says it is stale, without noise.
    #[test]
    fn format_1_manifest_is_a_format_change_without_noise() {
        let mut old = crate::manifest::tests::sample();
        old.format_version = 1;
        old.options.inputs = None;
        old.options.input_paths.clear();
        old.options.timestamp = 0;
        old.host_files.clear();
        old.kernel.modules_tree_sha256.clear();
        let new = crate::manifest::tests::sample();
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, [format!("format changed: 1 → {}", crate::manifest::FORMAT_VERSION)]);
    }

    #[test]
    fn timestamp_and_source_date_epoch_are_options() {
        let old = crate::manifest::tests::sample();
        let mut new = old.clone();
        new.options.timestamp += 60;
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, ["option changed: timestamp 1700000000 → 1700000060"]);
        new.options.source_date_epoch = Some(1_700_000_060);
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, ["option changed: source-date-epoch unset → 1700000060"]);
    }

    #[test]
    fn diff_of_removed_package() {
        let old = crate::manifest::tests::sample();
        let mut new = old.clone();
        new.packages.clear();
        let changes = diff(&old, &new);
        assert_eq!(
            changes,
            vec![Change::PackageRemoved { package: "bash:amd64".into(), version: "5.2".into() }]
        );
    }

    #[test]
    fn missing_appliance_is_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            report(&tmp.path().join("none"), &Config::default()).freshness,
            Freshness::Unknown(_)
        ));
    }
}
