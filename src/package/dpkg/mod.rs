//! The dpkg handler: reads a Debian-style package database straight from its
//! files and implements [`PackageDb`] on it.
//!
//! It owns parsing `<root>/var/lib/dpkg/status`, `<root>/var/lib/dpkg/info/*.list`
//! and `<root>/var/lib/dpkg/diversions`, the name → package mapping, the
//! dependency closure and diversion handling. It runs no program at all (no
//! `dpkg-query`, `dpkg-divert` or `apt-cache`): the files are small, their
//! format is stable and documented in deb-status(5), deb-control(5) and
//! dpkg-divert(1), and reading them takes milliseconds where supermin's
//! three subprocesses take a fifth of a second. It leaves the contract and
//! the shared types to `mod.rs`, and config-file and exclude handling to the
//! appliance builder.
//!
//! # How this differs from supermin (`src/ph_dpkg.ml`)
//!
//! supermin runs `dpkg-query` and pipes `Depends`/`Pre-Depends` through a
//! `sed` that deletes every `| alternative` and looks every remaining word up
//! literally, so it silently loses dependencies (docs/supermin-compat.md,
//! "dpkg closure"; docs/traps.md, "Silent drops").
//! This handler resolves dependencies the way dpkg itself checks them:
//!
//! - **Alternatives** `a | b`: the first alternative that is installed (as a
//!   real package or through `Provides`) is taken. supermin keeps only `a`
//!   and drops the dependency when `a` is not installed.
//! - **Virtual packages** (`Provides`, versioned or not): satisfied by an
//!   installed provider, preferring one already in the closure (requested
//!   packages are in it from the start), else the first acceptable provider
//!   in `(arch preference, name, arch)` order, so the answer is
//!   deterministic. supermin drops them.
//! - **Architecture qualifiers and Multi-Arch**: a plain dependency of an
//!   arch-specific package is satisfied by the same arch, by `all`, or by a
//!   `Multi-Arch: foreign` package of any arch; `Architecture: all` packages
//!   depend as if they were of the primary arch; `:any` additionally accepts
//!   `Multi-Arch: allowed` packages of any arch; `:native` means the primary
//!   arch; `:amd64` (any explicit arch) means that arch. supermin looks
//!   `perl:any` up literally and drops it. `Multi-Arch: same` packages
//!   installed for two arches are two packages.
//! - **Installed** means the Status state is `installed`, `triggers-pending`
//!   or `triggers-awaited`: in the last two the package is unpacked and
//!   configured and only a trigger (man-db, ldconfig, ...) is outstanding,
//!   and dpkg itself counts them as satisfying dependencies. supermin accepts
//!   only `installed`, so an interrupted `apt-get` silently shrinks its
//!   appliance. `unpacked`, `half-configured`, `half-installed` and
//!   `config-files` do not count (dpkg does not consider them to satisfy
//!   dependencies either; their files may be incomplete).
//! - **Diversions**: local diversions (`dpkg-divert --local`, written with
//!   the package `:`) are applied too: the packaged content of a locally
//!   diverted path lives at the diversion target, and that is what the
//!   appliance wants. supermin ignores them. A diversion is *not* applied to
//!   the diverting package's own copy of the path: dpkg only redirects the
//!   files of *other* packages. supermin applies it to everyone and is
//!   saved only by a later fallback (the diversion target is used only if
//!   it is a regular file; docs/supermin-compat.md, "Diversions"): Debian
//!   12's dash lists `/bin/sh` and diverts it to `/bin/sh.distrib`, which
//!   does not exist, so the fallback happens to pick `/bin/sh`. But
//!   postgresql-common lists and
//!   diverts `/usr/bin/pg_config`, and libpq-dev's copy sits at the target
//!   `/usr/bin/pg_config.libpq-dev`, so supermin gives postgresql-common's
//!   path libpq-dev's content. Here `source` is simply right. When a diverted
//!   path is listed both by the diverter and by another closure package, the
//!   diverter's copy wins, as it does on the host.
//!
//! Unchanged from supermin: version constraints are ignored (what is
//! installed is what it is), `Recommends` and `Suggests` are not followed,
//! requested names are exact package names (a virtual name in a `packages`
//! list is reported as missing rather than guessed).
//!
//! Measured on a Debian 12 host for libguestfs's 74-name `packages` list:
//! supermin 5.2.2 resolves 214 packages and 9092 files, this handler 222
//! packages and 11 962 files. The extra packages are real dependencies
//! supermin loses: `perl`, `perl-modules-5.36`, `libperl5.36`, `libgdbm6`,
//! `libgdbm-compat4` (sleuthkit and libdate-manip-perl depend on
//! `perl:any`), `sysvinit-utils` (provides `lsb-base`, which mdadm depends
//! on) and `usr-is-merged` (the installed second alternative of
//! init-system-helpers' `usrmerge | usr-is-merged`).
//!
//! # Primary architecture
//!
//! `dpkg --print-architecture` prints the architecture dpkg was built for,
//! which is exactly the `Architecture` of the installed `dpkg` package, so
//! that is what this handler reads. A tree without dpkg installed (not a
//! normal Debian root) falls back to the most common architecture among its
//! installed arch-specific packages, ties broken by name.
//!
//! # Missing file lists
//!
//! dpkg writes an `info/<pkg>.list` (or `<pkg>:<arch>.list`) for every
//! unpacked package, even one that owns no file (it then lists `/.`), so a
//! missing list means a damaged database. [`DpkgDb::files`] fails with
//! [`PackageError::MissingFileList`] naming the package and the file rather
//! than silently building an appliance without that package's files.

mod closure;
mod status;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use self::status::{parse_status, primary_arch, Installed, MultiArch, CORRUPT_HINT};
use super::{path_order, Handler, Package, PackageDb, PackageError, PackageFile, Resolution};

/// The status file, relative to the root.
pub(crate) const STATUS_FILE: &str = "var/lib/dpkg/status";
/// The diversions database, relative to the root (dpkg-divert(1), FILES).
const DIVERSIONS_FILE: &str = "var/lib/dpkg/diversions";
/// The per-package control data directory, relative to the root.
const INFO_DIR: &str = "var/lib/dpkg/info";

/// What the rest of the tool knows about dpkg hosts.
pub(crate) const HANDLER: Handler = Handler {
    name: "dpkg",
    marker: STATUS_FILE,
    is_present,
    open: |root| Ok(Box::new(open_dpkg(root)?)),
    // supermin's dpkg handler dates the database by its status file.
    date_file: |root| root.join(STATUS_FILE),
    distro: "Debian",
    libguestfs_package: "libguestfs0",
    install_libguestfs: "apt-get install libguestfs-tools",
    install_qemu: "apt-get install qemu-system-x86",
    kernel_package: "linux-image-amd64",
    spelling: super::Spelling::NameColonArch,
    keep_kernel_readable: Some("sudo dpkg-statoverride --update --add root root 0644 {path}"),
};

/// Whether `root` holds a dpkg database (used by [`super::detect`]).
pub(crate) fn is_present(root: &Path) -> bool {
    root.join(STATUS_FILE).is_file()
}

/// Opens the dpkg database under `root` (`/` for the running host).
///
/// Reads and parses the status and diversions files once; the returned
/// handle is immutable and answers every later query from memory (file
/// lists are read by [`DpkgDb::files`]).
///
/// # Errors
/// [`PackageError::Io`] when the status file cannot be read (a missing
/// diversions file just means no diversions), [`PackageError::Corrupt`] with
/// the path and line when either file is malformed.
pub(crate) fn open_dpkg(root: &Path) -> Result<DpkgDb, PackageError> {
    let status_path = root.join(STATUS_FILE);
    let bytes = crate::bounded::read(&status_path, crate::bounded::DATABASE_MAX)
        .map_err(|e| io_error(&status_path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut installed = parse_status(&text, &status_path)?;
    installed.sort_by(|a, b| a.pkg.cmp(&b.pkg));
    // A real database never holds the same (name, arch) twice; keep the
    // first so that indices stay unique per package.
    installed.dedup_by(|b, a| a.pkg.name == b.pkg.name && a.pkg.arch == b.pkg.arch);

    let primary_arch = primary_arch(&installed);
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in installed.iter().enumerate() {
        by_name.entry(p.pkg.name.clone()).or_default().push(i);
        for virt in &p.provides {
            let list = providers.entry(virt.clone()).or_default();
            // Indices are visited in order, so the lists stay sorted.
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }

    let diversions_path = root.join(DIVERSIONS_FILE);
    let diversions = match crate::bounded::read(&diversions_path, crate::bounded::DATABASE_MAX) {
        Ok(bytes) => parse_diversions(&bytes, &diversions_path)?,
        Err(e) if e.kind() == ErrorKind::NotFound => HashMap::new(),
        Err(e) => return Err(io_error(&diversions_path, e)),
    };

    Ok(DpkgDb {
        root: root.to_path_buf(),
        status_path,
        diversions_path,
        primary_arch,
        installed,
        by_name,
        providers,
        diversions,
    })
}

/// A parsed dpkg database. Build it with [`open_dpkg`].
#[derive(Debug)]
pub(crate) struct DpkgDb {
    root: PathBuf,
    status_path: PathBuf,
    diversions_path: PathBuf,
    primary_arch: String,
    /// Installed packages sorted by `(name, arch)`: an index order is the
    /// output order, which keeps the closure deterministic.
    installed: Vec<Installed>,
    /// Package name → indices into `installed`, ascending.
    by_name: HashMap<String, Vec<usize>>,
    /// Virtual name → indices of installed providers, ascending.
    providers: HashMap<String, Vec<usize>>,
    /// Diverted path → where its packaged content lives and who diverted it.
    diversions: HashMap<PathBuf, Diversion>,
}

impl DpkgDb {
    /// The primary (native) architecture, e.g. `amd64`; see the module docs
    /// for how it is derived.
    #[cfg(test)]
    pub(crate) fn primary_arch(&self) -> &str {
        &self.primary_arch
    }

    /// Reads and parses one package's `.list` file, applying diversions.
    fn package_files(&self, package: &Package) -> Result<Vec<PackageFile>, PackageError> {
        let info = self.root.join(INFO_DIR);
        // dpkg names the list `name:arch.list` for Multi-Arch: same packages
        // and `name.list` for the others (dpkg's infodb "format 1"). Try the
        // expected spelling first, then the other, in case the database was
        // converted from an older layout.
        let qualified = info.join(format!("{}:{}.list", package.name, package.arch));
        let plain = info.join(format!("{}.list", package.name));
        let is_same = self.by_name.get(package.name.as_str()).is_some_and(|found| {
            found.iter().any(|&i| {
                let p = &self.installed[i];
                p.pkg.arch == package.arch && p.multi_arch == MultiArch::Same
            })
        });
        let candidates = if is_same { [qualified, plain] } else { [plain, qualified] };
        let mut bytes = None;
        for candidate in &candidates {
            match crate::bounded::read(candidate, crate::bounded::DATABASE_MAX) {
                Ok(b) => {
                    bytes = Some(b);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(candidate, e)),
            }
        }
        let Some(bytes) = bytes else {
            let [expected, _] = candidates;
            let hint = format!(
                "run `dpkg --verify {0}`, or reinstall it with `apt-get install --reinstall {0}`",
                package.qualified_name()
            );
            return Err(PackageError::MissingFileList {
                package: package.qualified_name(),
                path: expected,
                hint,
            });
        };
        let mut files = Vec::new();
        for line in bytes.split(|&b| b == b'\n') {
            // `/.` stands for the root every package "owns"; anything not
            // absolute is not a path (supermin keeps only lines starting
            // with `/` too).
            if line == b"/." || line.first() != Some(&b'/') {
                continue;
            }
            let path = PathBuf::from(OsStr::from_bytes(line));
            let source = match self.diversions.get(&path) {
                Some(d) if d.by.as_deref() != Some(package.name.as_str()) => d.to.clone(),
                _ => path.clone(),
            };
            files.push(PackageFile { path, source, config: false });
        }
        Ok(files)
    }
}

impl PackageDb for DpkgDb {
    fn info(&self) -> &'static Handler {
        &HANDLER
    }

    fn root(&self) -> &Path {
        &self.root
    }
    fn resolve(&self, names: &[String]) -> Result<Resolution, PackageError> {
        Ok(self.closure(names))
    }

    /// Reads the `.list` file of every package, drops `/.`, applies
    /// diversions, sorts by path and deduplicates.
    ///
    /// A path listed by several packages appears once; if one of them is the
    /// package that diverted the path, its (undiverted) copy is kept.
    ///
    /// One thread: for libguestfs's closure (222 lists, 12 000 paths) on a
    /// 2-core host, reading on two threads (`std::thread::scope`) took the
    /// same 5.3 ms (best of 40) as one; reading is ~3 ms of mostly cached
    /// syscalls and the rest is the sort. A stable sort is used because it
    /// finds the already-sorted runs each list contributes (5.3 ms against
    /// 5.7 ms unstable).
    ///
    /// # Errors
    /// [`PackageError::MissingFileList`] for a package without a `.list`
    /// file, [`PackageError::Io`] when one cannot be read.
    fn files(&self, packages: &[Package]) -> Result<Vec<PackageFile>, PackageError> {
        let mut files = Vec::new();
        for package in packages {
            files.extend(self.package_files(package)?);
        }
        // Undiverted copies sort first so that dedup keeps them.
        files.sort_by(|a, b| {
            path_order(&a.path, &b.path).then_with(|| (a.source != a.path).cmp(&(b.source != b.path)))
        });
        files.dedup_by(|b, a| a.path == b.path);
        for f in &mut files {
            f.config = is_config(&self.root, &f.path);
        }
        Ok(files)
    }

    /// The status file (changes on every install, removal or upgrade, so it
    /// covers the `.list` files too) and the diversions file (`dpkg-divert`
    /// changes it without touching the status file). The diversions file is
    /// listed even when absent: its appearance is a change.
    fn database_files(&self) -> Vec<PathBuf> {
        vec![self.status_path.clone(), self.diversions_path.clone()]
    }
}

/// One entry of the diversions file.
#[derive(Debug)]
struct Diversion {
    to: PathBuf,
    /// The diverting package, `None` for a local diversion.
    by: Option<String>,
}

/// supermin's dpkg rule for config files (`src/ph_dpkg.ml`): every path
/// under `/etc/` that is a regular file on the host. `conffiles` are not
/// consulted; directories and symlinks under `/etc` (e.g.
/// `/etc/alternatives/*`) are not config files.
fn is_config(root: &Path, path: &Path) -> bool {
    path.starts_with("/etc")
        && path != Path::new("/etc")
        && std::fs::symlink_metadata(crate::paths::under_root(root, path)).is_ok_and(|m| m.is_file())
}

fn io_error(path: &Path, source: std::io::Error) -> PackageError {
    PackageError::Io { path: path.to_path_buf(), source }
}

/// Parses the diversions file: groups of three lines (diverted path,
/// target, diverting package or `:` for a local diversion).
fn parse_diversions(bytes: &[u8], path: &Path) -> Result<HashMap<PathBuf, Diversion>, PackageError> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.len() % 3 != 0 {
        return Err(PackageError::Corrupt {
            hint: CORRUPT_HINT,
            path: path.to_path_buf(),
            line: lines.len(),
            message: format!("{} lines is not a whole number of (from, to, package) entries", lines.len()),
        });
    }
    let mut map = HashMap::new();
    for entry in lines.chunks_exact(3) {
        let from = PathBuf::from(OsStr::from_bytes(entry[0]));
        let to = PathBuf::from(OsStr::from_bytes(entry[1]));
        let by = match entry[2] {
            b":" => None,
            name => Some(String::from_utf8_lossy(name).into_owned()),
        };
        map.insert(from, Diversion { to, by });
    }
    Ok(map)
}
