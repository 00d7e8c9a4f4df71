//! The package-database contract: how the appliance builder turns a list of
//! package names into a dependency closure and then into a list of files.
//!
//! This module owns the [`PackageDb`] trait (the one interface every distro
//! handler implements, in the spirit of supermin's `src/package_handler.mli`),
//! the types it exchanges ([`Package`], [`Resolution`], [`PackageFile`]), the
//! module's error type and [`detect`], which picks a handler for a host root.
//! Each handler lives in its own file (`dpkg.rs` today; `rpm.rs`, `pacman.rs`
//! later: one file plus one line in [`detect`]).
//!
//! It leaves to others: reading the supermin.d `packages` lists (`input/`),
//! excludefiles, deciding which files are config files and copying anything
//! (`appliance.rs`), and warning about [`Resolution::missing`] (the caller
//! warns once, or fails under `--strict`).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod dpkg;

pub use dpkg::{open_dpkg, DpkgDb};

/// One installed binary package.
///
/// Ordering (and equality) is by `(name, arch, version)`, so sorting a list of
/// packages sorts it by `(name, arch)`: a handler never reports the same
/// `(name, arch)` twice, so the version only breaks ties that cannot occur.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Package {
    /// The package name, e.g. `libc6`.
    pub name: String,
    /// The installed version, verbatim, e.g. `2.36-9+deb12u14`.
    pub version: String,
    /// The package architecture, e.g. `amd64` or `all`.
    pub arch: String,
}

impl Package {
    /// `name:arch`, the unambiguous spelling dpkg itself accepts (two
    /// `Multi-Arch: same` instances differ only in their arch).
    pub fn qualified_name(&self) -> String {
        format!("{}:{}", self.name, self.arch)
    }
}

impl Ord for Package {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.name, &self.arch, &self.version).cmp(&(&other.name, &other.arch, &other.version))
    }
}

impl PartialOrd for Package {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A dependency of a closure package that no installed package satisfies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Unsatisfied {
    /// The depending package as `name:arch`.
    pub package: String,
    /// The raw dependency text from the database, alternatives and version
    /// constraints included, e.g. `debconf (>= 0.5) | debconf-2.0`.
    pub dependency: String,
}

/// The result of [`PackageDb::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The dependency closure: sorted by `(name, arch)`, no duplicates.
    /// Invariant: every requested name that is installed is in it.
    pub packages: Vec<Package>,
    /// Requested names that are not installed, in request order, each once.
    pub missing: Vec<String>,
    /// Dependencies of closure packages that could not be satisfied, in the
    /// order they were met. Informational (shown with `-v`): the closure is
    /// still usable, as with supermin, which drops them silently.
    pub unsatisfied: Vec<Unsatisfied>,
}

/// One path owned by a package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PackageFile {
    /// Absolute path inside the appliance, e.g. `/usr/bin/perf`.
    pub path: PathBuf,
    /// Absolute host path to read the content from: the diversion target when
    /// the packaged file was diverted away from `path`, else `path` itself.
    /// Not prefixed by [`PackageDb::root`]: join it yourself when the root
    /// is not `/`.
    pub source: PathBuf,
}

/// A host package database: maps names to installed packages, computes their
/// dependency closure and lists their files.
///
/// Contract shared by every handler:
/// - the handler reads the database of the host tree at [`PackageDb::root`]
///   (`/` normally) and never touches anything outside it;
/// - [`PackageDb::resolve`] returns a closure that contains every requested
///   installed package (supermin's `package_handler.mli`: "the returned set
///   must also contain the original package"), sorted and deduplicated;
///   names it cannot map go to [`Resolution::missing`], never to an error;
/// - [`PackageDb::files`] returns absolute paths, sorted by path, each once;
/// - results are deterministic: the same database gives the same answer.
pub trait PackageDb: Send + Sync {
    /// The handler's name as users know it: `"dpkg"`.
    fn handler(&self) -> &'static str;

    /// The host root the database and the files live under (`/` normally).
    fn root(&self) -> &Path;

    /// Maps package names (optionally `name:arch`) to installed packages and
    /// computes their dependency closure.
    ///
    /// # Errors
    /// Only when the database cannot be read; unknown names are reported in
    /// [`Resolution::missing`].
    fn resolve(&self, names: &[String]) -> Result<Resolution, PackageError>;

    /// Lists every path owned by `packages`, sorted by path, deduplicated,
    /// with diversions applied.
    ///
    /// # Errors
    /// When a package's file list is missing or unreadable.
    fn files(&self, packages: &[Package]) -> Result<Vec<PackageFile>, PackageError>;

    /// The database files whose change means the package set or the file
    /// lists may have changed: what a freshness stamp must watch.
    fn database_files(&self) -> Vec<PathBuf>;
}

/// Errors from reading a package database.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A database file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A database file is not in the expected format.
    #[error(
        "{path}:{line}: {message}\n  hint: the package database looks damaged; \
         check it with `dpkg --audit` (dpkg keeps the previous copy in status-old)"
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// 1-based line number of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An installed package of the closure has no file list.
    #[error(
        "package {package}: its file list {path} is missing\n  hint: run \
         `dpkg --verify {package}`, or reinstall it with \
         `apt-get install --reinstall {package}`"
    )]
    MissingFileList {
        /// The package as `name:arch`.
        package: String,
        /// The file list looked for (the `name:arch` spelling).
        path: PathBuf,
    },
    /// No supported package database was found under the root.
    #[error(
        "no supported package database under {root} (looked for: {looked_for})\n  \
         hint: this tool supports dpkg hosts; pass the root of a Debian-like tree"
    )]
    NoDatabase {
        /// The root searched.
        root: PathBuf,
        /// What was looked for, for the message.
        looked_for: String,
    },
}

/// Picks the package handler for the host tree at `root`.
///
/// dpkg is chosen when `<root>/var/lib/dpkg/status` is a regular file. Unlike
/// supermin, no tool and no `/etc/os-release` is consulted: the database
/// itself is what the handler reads, so its presence is the test.
///
/// # Errors
/// [`PackageError::NoDatabase`] when no supported database is found, or the
/// handler's own error when its database cannot be read.
pub fn detect(root: &Path) -> Result<Box<dyn PackageDb>, PackageError> {
    if dpkg::is_present(root) {
        return Ok(Box::new(open_dpkg(root)?));
    }
    Err(PackageError::NoDatabase { root: root.to_path_buf(), looked_for: dpkg::STATUS_FILE.to_string() })
}

/// The upstream part of a Debian-style version: no epoch, no revision
/// (`1:1.48.6-2` → `1.48.6`).
pub fn upstream_version(version: &str) -> &str {
    let v = version.split_once(':').map_or(version, |(_, rest)| rest);
    v.rsplit_once('-').map_or(v, |(upstream, _)| upstream)
}

/// The upstream version of the installed package `name` under `root`, if
/// the database can be read and the package is installed. Used for
/// libguestfs's version (make-fixed-appliance's tarball name, `status`).
pub fn installed_upstream_version(root: &Path, name: &str) -> Option<String> {
    let db = detect(root).ok()?;
    let resolution = db.resolve(&[name.to_string()]).ok()?;
    resolution.packages.iter().find(|p| p.name == name).map(|p| upstream_version(&p.version).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_version_strips_epoch_and_revision() {
        assert_eq!(upstream_version("1:1.48.6-2"), "1.48.6");
        assert_eq!(upstream_version("1.48.6-2+deb12u1"), "1.48.6");
        assert_eq!(upstream_version("1.48.6"), "1.48.6");
        assert_eq!(upstream_version("1.32.0"), "1.32.0");
    }

    fn pkg(name: &str, version: &str, arch: &str) -> Package {
        Package { name: name.into(), version: version.into(), arch: arch.into() }
    }

    #[test]
    fn packages_sort_by_name_then_arch() {
        let mut v =
            [pkg("libc6", "2.36-9", "i386"), pkg("bash", "5.2", "amd64"), pkg("libc6", "2.37-1", "amd64")];
        v.sort();
        let got: Vec<String> = v.iter().map(Package::qualified_name).collect();
        assert_eq!(got, ["bash:amd64", "libc6:amd64", "libc6:i386"]);
    }

    #[test]
    fn detect_refuses_a_root_without_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect(dir.path()).err().expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains("no supported package database"), "{msg}");
        assert!(msg.contains("var/lib/dpkg/status"), "{msg}");
    }
}
