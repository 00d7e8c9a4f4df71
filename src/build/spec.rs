//! What to build, independent of how the command line said it.
//!
//! An [`ApplianceSpec`] is the recipe: inputs, size, strictness, host root,
//! host CPU and the config's extras. It is what a manifest records under
//! `[options]`, so an existing appliance's spec can be read back from its
//! manifest ([`ApplianceSpec::from_manifest`]) and compared with the host.
//! [`PublishOptions`] say where the result goes (directory, tarball, lock,
//! owner); they never change the appliance's content.
//!
//! Commands turn their clap arguments into a [`SourceOverrides`] (what the
//! user gave explicitly) and call the constructors here; nothing in this
//! module (or below it) knows the command-line types.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::input;
use crate::manifest::{self, InputChoice, KernelFormat, Manifest, ManifestError};

/// The reproducible-builds variable giving the time of invented entries.
pub(crate) const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// How long a build waits for another build of the same directory.
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// The recipe of an appliance: everything that decides its content besides
/// the host's state. Serializable and hashable, so it can key a cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ApplianceSpec {
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
    /// Packages added to the inputs' lists (config `extra_packages`).
    pub extra_packages: Vec<String>,
    /// Patterns added to the inputs' excludefiles (config `extra_excludes`).
    pub extra_excludes: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: the timestamp of invented and normalized
    /// entries; `None` = the newest input file's mtime.
    pub source_date_epoch: Option<i64>,
    /// What the appliance's `kernel` file is.
    pub kernel_format: KernelFormat,
}

/// Where a build's result goes and how it is published. None of this
/// changes the appliance's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishOptions {
    /// Output directory (replaced atomically), if any.
    pub(crate) dir: Option<PathBuf>,
    /// Tarball to write, if any.
    pub(crate) tar: Option<PathBuf>,
    /// Lock file to take instead of `.DIR.lock` beside DIR (e.g. libguestfs's
    /// `.guestfs-UID/lock`, which supermin's `--lock` uses).
    pub(crate) lock_path: Option<PathBuf>,
    /// Lock wait limit.
    pub(crate) lock_timeout: Duration,
    /// uid and gid to give the output directory and its files before it is
    /// published (e.g. a user's libguestfs cache).
    pub(crate) owner: Option<(u32, u32)>,
}

impl PublishOptions {
    /// Publish to `dir` and/or `tar`; neither = the config's
    /// `appliance.dir`. Default lock, no owner change.
    pub(crate) fn new(dir: Option<PathBuf>, tar: Option<PathBuf>, config: &Config) -> Self {
        let dir = match (dir, &tar) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(config.appliance.dir.clone()),
        };
        PublishOptions { dir, tar, lock_path: None, lock_timeout: DEFAULT_LOCK_TIMEOUT, owner: None }
    }

    /// Publish to the directory `dir` only.
    pub(crate) fn dir(dir: &Path) -> Self {
        PublishOptions {
            dir: Some(dir.to_path_buf()),
            tar: None,
            lock_path: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            owner: None,
        }
    }
}

/// The source options a user gave explicitly (command-line `--input`,
/// `--minimal`, `--size`, `--strict`, `--root`, `--host-cpu`); each one
/// given replaces what the config (new builds) or the manifest (existing
/// appliances) says. The default gives nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOverrides {
    /// Inputs, as given (made absolute when used).
    pub inputs: Vec<PathBuf>,
    /// The built-in minimal appliance.
    pub minimal: bool,
    /// Root image size, in supermin's syntax (see [`parse_size`]), as given.
    pub size: Option<String>,
    /// Missing packages are errors.
    pub strict: bool,
    /// Host root, as given.
    pub root: Option<PathBuf>,
    /// Host CPU.
    pub host_cpu: Option<String>,
    /// What the `kernel` file is.
    pub kernel_format: Option<KernelFormat>,
}

impl ApplianceSpec {
    /// What a new build makes: the overrides given, with the config file
    /// filling what they leave out.
    pub fn from_config(src: &SourceOverrides, config: &Config) -> Result<Self> {
        let app = &config.appliance;
        let inputs = if src.inputs.is_empty() && !src.minimal { &app.inputs } else { &src.inputs };
        Ok(ApplianceSpec {
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
            extra_packages: app.extra_packages.clone(),
            extra_excludes: app.extra_excludes.clone(),
            source_date_epoch: source_date_epoch()?,
            kernel_format: src.kernel_format.unwrap_or(app.kernel_format),
        })
    }

    /// What the appliance in `dir`, whose manifest is `m`, was built from,
    /// with each override given in `src` replacing the recorded option:
    /// inputs (including the built-in minimal appliance, and "libguestfs's
    /// default", which is looked for again), size, strictness, host root,
    /// host CPU, the config's extra packages and excludes, and
    /// `SOURCE_DATE_EPOCH` (the environment's, if set). The config file
    /// plays no part: it describes new builds, not this one.
    ///
    /// This is the one place that decides what an existing appliance is
    /// compared with; `check`, `build --if-needed`, `cache list` and
    /// `status` reach it through [`crate::build::fresh`].
    pub(crate) fn from_manifest(dir: &Path, m: &Manifest, src: &SourceOverrides) -> Result<Self> {
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
        Ok(ApplianceSpec {
            inputs,
            minimal,
            size: match &src.size {
                Some(s) => parse_size(s)?,
                None => m.options.size,
            },
            strict: src.strict || m.options.strict,
            root,
            host_cpu: src.host_cpu.clone().unwrap_or_else(|| m.options.host_cpu.clone()),
            extra_packages: m.options.extra_packages.clone(),
            extra_excludes: m.options.extra_excludes.clone(),
            source_date_epoch: match source_date_epoch()? {
                Some(t) => Some(t),
                None => recorded_epoch(dir, m)?,
            },
            kernel_format: src.kernel_format.unwrap_or(m.options.kernel_format),
        })
    }

    /// The spec to judge (or refresh) the appliance in `dir` with: from its
    /// manifest ([`ApplianceSpec::from_manifest`]) when it has a readable
    /// one, else what a new build would make ([`ApplianceSpec::from_config`];
    /// the freshness check then reports the missing or broken manifest).
    ///
    /// `recorded` is `dir`'s manifest, already read by the caller (who
    /// compares with it too, so it is parsed once).
    pub(crate) fn for_recorded(
        dir: &Path,
        recorded: &Result<Manifest, ManifestError>,
        src: &SourceOverrides,
        config: &Config,
    ) -> Result<Self> {
        match recorded {
            Ok(m) => Self::from_manifest(dir, m, src),
            Err(_) => Self::from_config(src, config),
        }
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
pub(crate) fn absolute_lexical(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Physical form of a path that may not exist yet (its existing ancestor
/// resolved, the rest appended), following only symlinks owned by us or
/// root ([`crate::safefs::real_path`]); a path through someone else's link
/// is kept as given, and is refused when we come to write there.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    crate::safefs::real_path(path).unwrap_or_else(|_| absolute_lexical(path))
}

/// Parse a size in supermin's syntax: digits (and a decimal point) followed
/// by `b`, `K`, `M` or `G` (binary multiples), e.g. `4G`, `1.5G`, `800M`.
pub(crate) fn parse_size(text: &str) -> Result<u64> {
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
            let err = ApplianceSpec::from_manifest(Path::new("/srv/app"), &m, &SourceOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("/srv/app/manifest.toml") && err.contains("source_date_epoch"), "{err}");
        }
        m.options.source_date_epoch = Some(-1);
        assert!(recorded_epoch(Path::new("/srv/app"), &m).is_err());
        m.options.source_date_epoch = Some(i64::from(u32::MAX));
        assert_eq!(recorded_epoch(Path::new("/srv/app"), &m).unwrap(), Some(i64::from(u32::MAX)));
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
        let spec = ApplianceSpec::from_manifest(dir, &m, &SourceOverrides::default()).unwrap();
        assert!(spec.minimal && spec.inputs.is_empty());
        assert_eq!((spec.size, spec.strict, spec.root.as_path()), (4 << 30, true, Path::new("/")));
        assert_eq!(
            (spec.host_cpu.as_str(), spec.extra_packages.clone()),
            ("x86_64", vec!["vim".to_string()])
        );
        if std::env::var_os(SOURCE_DATE_EPOCH).is_none() {
            assert_eq!(spec.source_date_epoch, Some(5));
        }

        let src = SourceOverrides {
            inputs: vec![PathBuf::from("/in")],
            size: Some("1G".into()),
            root: Some(PathBuf::from("/r")),
            host_cpu: Some("aarch64".into()),
            ..Default::default()
        };
        let spec = ApplianceSpec::from_manifest(dir, &m, &src).unwrap();
        assert!(!spec.minimal);
        assert_eq!(spec.inputs, vec![PathBuf::from("/in")]);
        assert_eq!(
            (spec.size, spec.root.as_path(), spec.host_cpu.as_str()),
            (1 << 30, Path::new("/r"), "aarch64")
        );

        m.options.inputs = Some(InputChoice::Default);
        m.options.input_paths = vec!["/usr/lib/x86_64-linux-gnu/guestfs/supermin.d".into()];
        let spec = ApplianceSpec::from_manifest(dir, &m, &SourceOverrides::default()).unwrap();
        assert!(!spec.minimal && spec.inputs.is_empty(), "default inputs are looked for again");
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
        let none = SourceOverrides::default();
        let spec = ApplianceSpec::from_manifest(Path::new("/srv/app"), &m, &none).unwrap();
        assert!(!spec.minimal && spec.inputs.is_empty(), "{:?}", spec.inputs);
        m.inputs[0].path = "/elsewhere/packages".into();
        let spec = ApplianceSpec::from_manifest(Path::new("/srv/app"), &m, &none).unwrap();
        assert_eq!(spec.inputs, vec![PathBuf::from("/elsewhere")]);
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
