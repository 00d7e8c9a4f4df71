//! The package-database contract: the [`PackageDb`] trait every handler
//! implements, the types it exchanges ([`Package`], [`Resolution`],
//! [`PackageFile`]), its error type and the [`Handler`] descriptor. The
//! handlers (`dpkg/`, `rpm.rs`, `pacman.rs`) and the registry in `mod.rs`
//! import it; it imports neither (see `mod.rs` for the whole story).

use std::cmp::Ordering;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What the tool may know about one package manager before (or without)
/// reading its database. Each handler file defines one as a `const`.
#[derive(Debug)]
pub struct Handler {
    /// The name users know: `dpkg`, `rpm`, `pacman`.
    pub(crate) name: &'static str,
    /// What [`super::detect`] looks for under the root (for the "no database"
    /// message), e.g. `var/lib/dpkg/status`.
    pub(crate) marker: &'static str,
    /// Whether the tree at the given root holds this manager's database.
    pub(crate) is_present: fn(&Path) -> bool,
    /// Opens the database under the given root.
    pub(crate) open: fn(&Path) -> Result<Box<dyn PackageDb>, PackageError>,
    /// The file supermin's `--if-newer` dates the package database by, under
    /// the given root (the `cache list` date rule predicts supermin).
    pub(crate) date_file: fn(&Path) -> PathBuf,
    /// The distribution family, for hints: `Debian`.
    pub(crate) distro: &'static str,
    /// The package that ships libguestfs itself (and its supermin.d):
    /// `libguestfs0` on Debian.
    pub(crate) libguestfs_package: &'static str,
    /// The command that installs libguestfs and its tools.
    pub(crate) install_libguestfs: &'static str,
    /// The command that installs qemu for this architecture.
    pub(crate) install_qemu: &'static str,
    /// The package that installs a kernel with its modules.
    pub(crate) kernel_package: &'static str,
    /// How messages spell a package (`check`'s "package upgraded" lines).
    pub(crate) spelling: Spelling,
    /// How to keep a kernel file readable across kernel updates, with
    /// `{path}` standing for the file; `None` when the manager needs nothing.
    pub(crate) keep_kernel_readable: Option<&'static str>,
}

/// How a package manager's users spell one installed package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// `name:arch`, always (dpkg: Multi-Arch: same packages of two arches
    /// are two packages, and dpkg spells them so).
    NameColonArch,
    /// `name`, or `name.arch` when the name is installed for several
    /// arches (rpm multilib; pacman has one arch per name).
    NameDotArchWhenAmbiguous,
}

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
    pub(crate) arch: String,
}

impl Package {
    /// `name:arch`, the unambiguous spelling dpkg itself accepts (two
    /// `Multi-Arch: same` instances differ only in their arch).
    pub(crate) fn qualified_name(&self) -> String {
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
    pub(crate) package: String,
    /// The raw dependency text from the database, alternatives and version
    /// constraints included, e.g. `debconf (>= 0.5) | debconf-2.0`.
    pub(crate) dependency: String,
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
    pub(crate) source: PathBuf,
    /// A configuration file by the handler's rule (dpkg: a regular file under
    /// `/etc/`). Config files are left out of the appliance, as supermin
    /// does: their pristine copies come from the base archives.
    pub(crate) config: bool,
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
    /// What is known about this package manager without its database.
    fn info(&self) -> &'static Handler;

    /// The handler's name as users know it: `"dpkg"`.
    fn handler(&self) -> &'static str {
        self.info().name
    }

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
    /// with diversions applied and config files flagged.
    ///
    /// # Errors
    /// When a package's file list is missing or unreadable.
    fn files(&self, packages: &[Package]) -> Result<Vec<PackageFile>, PackageError>;

    /// The database files whose change means the package set or the file
    /// lists may have changed: what a freshness stamp must watch.
    fn database_files(&self) -> Vec<PathBuf>;

    /// What the handler noticed while reading the database that a user may
    /// want to know (shown with `-v`), e.g. that it fell back to a slower
    /// way of reading it.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
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
    #[error("{path}:{line}: {message}\n  hint: {hint}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// 1-based line number of the problem.
        line: usize,
        /// What is wrong.
        message: String,
        /// The handler's advice (how to check or restore the database).
        hint: &'static str,
    },
    /// An installed package of the closure has no file list.
    #[error("package {package}: its file list {path} is missing\n  hint: {hint}")]
    MissingFileList {
        /// The package as the handler spells it (dpkg: `name:arch`).
        package: String,
        /// The file list looked for.
        path: PathBuf,
        /// The handler's advice (how to verify or reinstall the package).
        hint: String,
    },
    /// No supported package database was found under the root.
    #[error(
        "no supported package database under {root} (looked for: {looked_for})\n  \
         hint: this tool supports {supported} hosts; pass the root of a tree that holds such a database"
    )]
    NoDatabase {
        /// The root searched.
        root: PathBuf,
        /// What was looked for, for the message.
        looked_for: String,
        /// The handlers' names, for the message.
        supported: String,
    },
    /// The package manager's own tool (rpm) failed to read its database.
    #[error("{what}: {source}\n  hint: {hint}")]
    Tool {
        /// What was being done, with the database path.
        what: String,
        /// The failed command, with its stderr.
        #[source]
        source: crate::process::ProcessError,
        /// What to try.
        hint: &'static str,
    },
}

/// Orders paths as [`Path`]'s component-wise `Ord` does, for the
/// normalized absolute paths package databases hold (no `//`, no trailing `/`, no `.`):
/// comparing bytes with `/` ranked below every other byte gives the same
/// answer, and is several times faster than `Path::cmp`, which dominated
/// dpkg's `files` (about 8 of 11 ms for libguestfs's closure).
pub(crate) fn path_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    let (a, b) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
    let rank = |c: u8| if c == b'/' { 0 } else { u16::from(c) + 1 };
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => rank(a[i]).cmp(&rank(b[i])),
        None => a.len().cmp(&b.len()),
    }
}
