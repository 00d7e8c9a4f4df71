//! What libguestfs itself will use on this machine, from the environment
//! it would run with: which appliance (`LIBGUESTFS_PATH`, searched element
//! by element: docs/libguestfs-side.md, "Finding the appliance") and which
//! cache base (`LIBGUESTFS_CACHEDIR`, else `TMPDIR`, else `/var/tmp`:
//! docs/libguestfs-side.md, "Cache directory"), plus which appliance directory
//! `status` and `env` therefore look at.
//!
//! The rule for the examined directory (README "Health report"): `--dir`
//! if given; else, when `LIBGUESTFS_PATH` is set, the fixed appliance
//! libguestfs finds on it (or, if it finds none, the path's first element,
//! so the report says why launches fail); else the config's
//! `appliance.dir`. An exported variable wins over the config file because
//! it is what libguestfs in this environment uses.
//!
//! Facts only: the probes about them live in `appliance.rs` and
//! `location.rs`; the environment is read once, in [`LibguestfsEnv::from_env`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;

/// What libguestfs finds in one element of its search path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ApplianceKind {
    /// `supermin.d/base.tar.gz` and `supermin.d/packages`: libguestfs runs
    /// supermin to build an appliance into its cache.
    Supermin,
    /// `README.fixed`, `kernel`, `initrd` and `root`: booted in place.
    Fixed,
    /// `vmlinuz.CPU` and `initramfs.CPU.img`, no root disk.
    OldStyle,
}

impl ApplianceKind {
    /// A few words for reports.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            ApplianceKind::Supermin => "a supermin appliance (built into the cache at launch)",
            ApplianceKind::Fixed => "a fixed appliance (booted in place)",
            ApplianceKind::OldStyle => "an old-style kernel + initramfs appliance",
        }
    }
}

/// The appliance libguestfs's search stops at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FoundAppliance {
    /// Its kind.
    pub(crate) kind: ApplianceKind,
    /// The search path element holding it.
    pub(crate) dir: PathBuf,
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Source {
    /// The `--dir` option.
    #[serde(rename = "--dir")]
    Flag,
    /// The `LIBGUESTFS_PATH` variable.
    #[serde(rename = "LIBGUESTFS_PATH")]
    LibguestfsPath,
    /// The `LIBGUESTFS_CACHEDIR` variable.
    #[serde(rename = "LIBGUESTFS_CACHEDIR")]
    LibguestfsCachedir,
    /// The `TMPDIR` variable.
    #[serde(rename = "TMPDIR")]
    Tmpdir,
    /// `appliance.dir` of the config file.
    #[serde(rename = "config")]
    Config,
    /// A built-in default (libguestfs's or ours).
    #[serde(rename = "default")]
    Default,
}

impl Source {
    /// `(from LIBGUESTFS_PATH)`-style phrase for reports.
    pub(crate) fn phrase(self) -> &'static str {
        match self {
            Source::Flag => "from --dir",
            Source::LibguestfsPath => "from LIBGUESTFS_PATH",
            Source::LibguestfsCachedir => "from LIBGUESTFS_CACHEDIR",
            Source::Tmpdir => "from TMPDIR",
            Source::Config => "from the config file's appliance.dir",
            Source::Default => "default",
        }
    }
}

/// libguestfs's view of this environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LibguestfsEnv {
    /// `LIBGUESTFS_CACHEDIR` as set (absent when unset or empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cachedir_var: Option<PathBuf>,
    /// `TMPDIR` as set (absent when unset or empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tmpdir_var: Option<PathBuf>,
    /// `LIBGUESTFS_PATH` as set (absent when unset or empty, which
    /// libguestfs treats alike).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path_var: Option<String>,
    /// The directories searched, in order (an empty element is `.`).
    pub(crate) search_path: Vec<PathBuf>,
    /// `LIBGUESTFS_PATH`, or `default` (libguestfs's built-in path).
    pub(crate) search_path_source: Source,
    /// What the search finds (absent: launches fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) appliance: Option<FoundAppliance>,
    /// The cache base (`<base>/.guestfs-UID` is the cache).
    pub(crate) cachedir: PathBuf,
    /// `LIBGUESTFS_CACHEDIR`, `TMPDIR` or `default`.
    pub(crate) cachedir_source: Source,
    /// Variables libguestfs refuses (not an existing directory), with what
    /// it does instead.
    pub(crate) cachedir_errors: Vec<String>,
}

/// libguestfs's default cache base.
pub(crate) const DEFAULT_CACHEDIR: &str = "/var/tmp";

impl LibguestfsEnv {
    /// From this process's environment.
    pub(crate) fn from_env() -> Self {
        Self::new(
            std::env::var_os("LIBGUESTFS_PATH"),
            std::env::var_os("LIBGUESTFS_CACHEDIR"),
            std::env::var_os("TMPDIR"),
            default_path(),
        )
    }

    /// From the given variable values; `default_path` is libguestfs's
    /// built-in path (`$libdir/guestfs`), if it is installed.
    pub(crate) fn new(
        path_var: Option<OsString>,
        cachedir_var: Option<OsString>,
        tmpdir_var: Option<OsString>,
        default_path: Option<PathBuf>,
    ) -> Self {
        let path_var = path_var.filter(|v| !v.is_empty()).map(|v| v.to_string_lossy().into_owned());
        let (search_path, search_path_source): (Vec<PathBuf>, Source) = match &path_var {
            // An empty element means the current directory (lib/appliance.c).
            Some(v) => (
                v.split(':').map(|e| PathBuf::from(if e.is_empty() { "." } else { e })).collect(),
                Source::LibguestfsPath,
            ),
            None => (default_path.into_iter().collect(), Source::Default),
        };
        let appliance = search(&search_path, std::env::consts::ARCH);
        let set = |v: &Option<OsString>| v.as_ref().filter(|v| !v.is_empty()).map(PathBuf::from);
        let (cachedir_var_path, tmpdir_var_path) = (set(&cachedir_var), set(&tmpdir_var));
        let (cachedir, cachedir_source, cachedir_errors) = cache_base(cachedir_var, tmpdir_var);
        LibguestfsEnv {
            cachedir_var: cachedir_var_path,
            tmpdir_var: tmpdir_var_path,
            path_var,
            search_path,
            search_path_source,
            appliance,
            cachedir,
            cachedir_source,
            cachedir_errors,
        }
    }

    /// Whether libguestfs boots a fixed appliance in place: then its cache
    /// holds only small qemu probe files, not an appliance.
    pub(crate) fn uses_fixed_appliance(&self) -> bool {
        self.appliance.as_ref().is_some_and(|a| a.kind == ApplianceKind::Fixed)
    }
}

/// libguestfs's built-in path: the directory holding the installed
/// supermin.d, if libguestfs is installed.
pub(crate) fn default_path() -> Option<PathBuf> {
    crate::input::default_input_dirs(Path::new("/")).first().and_then(|d| d.parent()).map(Path::to_path_buf)
}

/// The first appliance along `path`, as libguestfs 1.48 searches
/// (lib/appliance.c; docs/libguestfs-side.md, "Finding the appliance"): per
/// element, a supermin appliance
/// before a fixed one before an old-style one; the first hit ends it.
pub(crate) fn search(path: &[PathBuf], host_cpu: &str) -> Option<FoundAppliance> {
    let all = |dir: &Path, names: &[&str]| names.iter().all(|n| dir.join(n).exists());
    path.iter().find_map(|dir| {
        let kind = if all(dir, &["supermin.d/base.tar.gz", "supermin.d/packages"]) {
            ApplianceKind::Supermin
        } else if all(dir, &["README.fixed", "kernel", "initrd", "root"]) {
            ApplianceKind::Fixed
        } else if all(dir, &[&format!("vmlinuz.{host_cpu}"), &format!("initramfs.{host_cpu}.img")]) {
            ApplianceKind::OldStyle
        } else {
            return None;
        };
        Some(FoundAppliance { kind, dir: dir.clone() })
    })
}

/// The cache base libguestfs 1.48.6 ends up with, and the complaints it
/// prints on the way (observed with `guestfish get-cachedir`): a non-empty
/// `LIBGUESTFS_CACHEDIR` must be an existing directory, else libguestfs
/// prints an error and falls back to /var/tmp, ignoring `TMPDIR` too; an
/// empty one counts as unset. A set `TMPDIR` (even empty) must be an
/// existing directory, else an error and /var/tmp.
fn cache_base(cachedir: Option<OsString>, tmpdir: Option<OsString>) -> (PathBuf, Source, Vec<String>) {
    let is_dir = |v: &OsString| !v.is_empty() && Path::new(v).is_dir();
    let refused = |name: &str, v: &OsString| {
        format!(
            "{name}={} is not an existing directory: libguestfs prints an error on every launch and uses {DEFAULT_CACHEDIR}",
            v.to_string_lossy()
        )
    };
    let mut errors = Vec::new();
    match cachedir.filter(|v| !v.is_empty()) {
        Some(v) if is_dir(&v) => {
            if let Some(t) = tmpdir.filter(|t| !is_dir(t)) {
                errors.push(format!(
                    "TMPDIR={} is not an existing directory: libguestfs prints an error on every launch",
                    t.to_string_lossy()
                ));
            }
            return (PathBuf::from(v), Source::LibguestfsCachedir, errors);
        }
        Some(v) => {
            errors.push(refused("LIBGUESTFS_CACHEDIR", &v));
            return (PathBuf::from(DEFAULT_CACHEDIR), Source::Default, errors);
        }
        None => {}
    }
    match tmpdir {
        Some(t) if is_dir(&t) => (PathBuf::from(t), Source::Tmpdir, errors),
        Some(t) => {
            errors.push(refused("TMPDIR", &t));
            (PathBuf::from(DEFAULT_CACHEDIR), Source::Default, errors)
        }
        None => (PathBuf::from(DEFAULT_CACHEDIR), Source::Default, errors),
    }
}

/// The appliance directory `status` and `env` look at, and where it came
/// from (module docs: `--dir`, else what `LIBGUESTFS_PATH` leads to, else
/// the config's `appliance.dir`).
pub(crate) fn examined_dir(flag: Option<&Path>, lg: &LibguestfsEnv, config: &Config) -> (PathBuf, Source) {
    if let Some(dir) = flag {
        return (dir.to_path_buf(), Source::Flag);
    }
    if lg.search_path_source == Source::LibguestfsPath {
        match &lg.appliance {
            Some(found) if found.kind == ApplianceKind::Fixed => {
                return (found.dir.clone(), Source::LibguestfsPath);
            }
            // Nothing there: the first element, where one would go.
            None => {
                if let Some(first) = lg.search_path.first() {
                    return (first.clone(), Source::LibguestfsPath);
                }
            }
            // A supermin or old-style appliance: no fixed appliance is in
            // use, ours is the config's.
            Some(_) => {}
        }
    }
    let source = if config.source.is_some() { Source::Config } else { Source::Default };
    (config.appliance.dir.clone(), source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for f in ["README.fixed", "kernel", "initrd", "root"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
    }

    fn os(p: &Path) -> Option<OsString> {
        Some(p.as_os_str().to_owned())
    }

    #[test]
    fn search_follows_libguestfs_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fixed(&b);
        // The first element holding anything wins; empty ones are skipped.
        let found = search(&[a.clone(), b.clone()], "x86_64").unwrap();
        assert_eq!((found.kind, found.dir.as_path()), (ApplianceKind::Fixed, b.as_path()));
        // A supermin appliance beats a fixed one in the same element.
        std::fs::create_dir_all(b.join("supermin.d")).unwrap();
        std::fs::write(b.join("supermin.d/base.tar.gz"), b"").unwrap();
        std::fs::write(b.join("supermin.d/packages"), b"").unwrap();
        assert_eq!(search(std::slice::from_ref(&b), "x86_64").unwrap().kind, ApplianceKind::Supermin);
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("vmlinuz.x86_64"), b"").unwrap();
        std::fs::write(a.join("initramfs.x86_64.img"), b"").unwrap();
        assert_eq!(search(&[a, b], "x86_64").unwrap().kind, ApplianceKind::OldStyle);
        assert!(search(&[tmp.path().join("none")], "x86_64").is_none());
    }

    #[test]
    fn path_variable_is_a_colon_list_and_wins_over_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        fixed(&app);
        let var = format!("{}:{}", tmp.path().join("missing").display(), app.display());
        let lg = LibguestfsEnv::new(Some(var.clone().into()), None, None, Some("/usr/lib/guestfs".into()));
        assert_eq!(lg.path_var.as_deref(), Some(var.as_str()));
        assert_eq!(lg.search_path.len(), 2);
        assert!(lg.uses_fixed_appliance());
        let config = Config::default();
        assert_eq!(examined_dir(None, &lg, &config), (app.clone(), Source::LibguestfsPath));
        // --dir is what the user asked about.
        assert_eq!(examined_dir(Some(Path::new("/x")), &lg, &config), (PathBuf::from("/x"), Source::Flag));
        // Nothing on the path: its first element, so the report explains.
        let lg = LibguestfsEnv::new(os(&tmp.path().join("missing")), None, None, None);
        assert!(lg.appliance.is_none());
        assert_eq!(examined_dir(None, &lg, &config).0, tmp.path().join("missing"));
        // Unset or empty: libguestfs's default path; we look at the config's.
        for var in [None, Some(OsString::new())] {
            let lg = LibguestfsEnv::new(var, None, None, Some(tmp.path().to_path_buf()));
            assert_eq!(lg.search_path_source, Source::Default);
            assert_eq!(lg.search_path, [tmp.path().to_path_buf()]);
            assert_eq!(examined_dir(None, &lg, &config), (config.appliance.dir.clone(), Source::Default));
        }
        // ":" holds an empty element: the current directory.
        let lg = LibguestfsEnv::new(Some(":/x".into()), None, None, None);
        assert_eq!(lg.search_path, [PathBuf::from("."), PathBuf::from("/x")]);
    }

    #[test]
    fn cache_base_as_libguestfs_148_picks_it() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().to_path_buf();
        let bad = tmp.path().join("missing");
        let base = |c: Option<&Path>, t: Option<&Path>| {
            let lg = LibguestfsEnv::new(None, c.and_then(os), t.and_then(os), None);
            (lg.cachedir, lg.cachedir_source, lg.cachedir_errors.len())
        };
        assert_eq!(base(None, None), (PathBuf::from("/var/tmp"), Source::Default, 0));
        assert_eq!(base(Some(&good), Some(Path::new("/tmp"))), (good.clone(), Source::LibguestfsCachedir, 0));
        assert_eq!(base(None, Some(&good)), (good.clone(), Source::Tmpdir, 0));
        // Refused values: an error, and /var/tmp (TMPDIR ignored too).
        assert_eq!(base(Some(&bad), Some(&good)), (PathBuf::from("/var/tmp"), Source::Default, 1));
        assert_eq!(base(None, Some(&bad)), (PathBuf::from("/var/tmp"), Source::Default, 1));
        assert_eq!(base(Some(&good), Some(&bad)), (good.clone(), Source::LibguestfsCachedir, 1));
        // An empty LIBGUESTFS_CACHEDIR is unset; an empty TMPDIR is refused.
        let lg = LibguestfsEnv::new(None, Some(OsString::new()), Some(OsString::new()), None);
        assert_eq!((lg.cachedir_source, lg.cachedir_errors.len()), (Source::Default, 1));
        assert!(
            lg.cachedir_errors[0].starts_with("TMPDIR= is not an existing directory"),
            "{:?}",
            lg.cachedir_errors
        );
    }
}
