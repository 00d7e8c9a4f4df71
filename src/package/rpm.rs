//! The rpm handler: Fedora, RHEL, CentOS Stream, openSUSE and other RPM
//! hosts. It owns finding the rpm database under a root, reading it
//! (directly for sqlite, else with one `rpm -qa` call), the name → package
//! mapping, the dependency closure and the file lists; the contract and
//! shared types are `mod.rs`'s, the query format and its parser
//! `rpm/query.rs`'s, the direct reader `rpm/sqlite.rs`'s and
//! `rpm/header.rs`'s.
//!
//! # Reading the database
//!
//! The database comes in three formats (backends): sqlite
//! (`/usr/lib/sysimage/rpm/rpmdb.sqlite`, Fedora ≥ 36 and RHEL 9, with
//! `/var/lib/rpm` a symlink to it; older sqlite hosts keep it in
//! `/var/lib/rpm`), Berkeley DB (`/var/lib/rpm/Packages`, RHEL 8) and ndb
//! (`Packages.db`, SUSE). The first is read directly: every package's
//! header blob from its `Packages` table (`rpm/sqlite.rs`), the same tags
//! the query below prints, in about a seventh of the time (rpm's own
//! startup and header loading cost more than the whole direct reading).
//! The others, and an sqlite database the direct reader refuses (a header
//! it does not understand; `-v` says why), are read by the host's own
//! `rpm`: ONE `rpm --root R --dbpath D -qa --nodigest --nosignature
//! --queryformat F` returns every package with its name,
//! `[epoch:]version-release`, arch, requires (name, flags, version),
//! provides and files (directory names, then per file its directory index,
//! flags, mode and base name); `rpm/query.rs` says why in that shape and
//! without digest checks. Both readers give the same packages and file
//! records (`tests/integration/pkgdb.rs` compares them). Paths are put
//! together only for the packages [`RpmDb::files`] is asked about and for
//! required paths. rpm picks the backend from the files it finds in `D`
//! (rpm ≥ 4.16 warns and switches when they are not its configured
//! backend's). The database path is always passed: Debian's rpm defaults
//! it to a per-user directory, and a user's `~/.rpmmacros` may move it.
//!
//! `D` is found by resolving `usr/lib/sysimage/rpm`, then `var/lib/rpm`,
//! *inside* the root (an absolute symlink such as `/var/lib/rpm ->
//! /usr/lib/sysimage/rpm` in a fixture root must not lead rpm to the host's
//! database), and taking the first that holds a backend's main file.
//!
//! Every string field is printed with rpm's `:shescape` formatter (single
//! quotes, `'` written as `'\''`), so a path holding spaces, newlines or
//! control characters cannot be mistaken for a separator; numbers and
//! rpm's `(none)` are bare words. The one exception, base names, are
//! printed raw where they cannot be mistaken either (`rpm/query.rs`). The
//! parser refuses anything else.
//!
//! # Closure and files, and how they differ from supermin (`src/ph_rpm.ml`)
//!
//! - **Requested names**: packages of that name, preferring `noarch`, then
//!   the native arch, then others (supermin's weights), then the newest
//!   version (installonly packages such as `kernel-core` are installed in
//!   several versions; supermin's version tiebreak compares a version with
//!   itself). No package of that name: a unique provider (supermin's
//!   `whatprovides` rule), else the name is reported missing.
//! - **Requirements** are resolved by name, versions ignored (what is
//!   installed is what it is): a path (`/usr/bin/sh`) through the
//!   installed-file index and explicit path provides; anything else through
//!   provides (every package provides its own name, and arch-qualified forms
//!   such as `fx-lib(x86-64)` and sonames such as `libc.so.6()(64bit)` are
//!   provides like any other). `rpmlib(...)` requirements and other
//!   pseudo-requirements rpm satisfies itself (flag `RPMSENSE_RPMLIB`) are
//!   skipped.
//! - **Rich dependencies** (`(a or b)`, `(a if b else c)`, `and`, `with`,
//!   `without`, `unless`; rpm ≥ 4.13) are evaluated: `or` takes the first
//!   satisfiable branch, `and`/`with` all, `if`/`unless` test whether the
//!   condition is installed. supermin hands them to `whatprovides`, which
//!   finds nothing, and drops them.
//! - **Choosing a provider**: one already in the closure first (requested
//!   packages are in it from the start), then one of the depender's arch
//!   (or `noarch`), then supermin's rule (shortest name, then alphabetical),
//!   then the newest version. supermin ignores the closure and the arch, so
//!   a 64-bit package's `glibc` requirement can pull in `glibc.i686`.
//! - **Config files** (`%config`, flag `RPMFILE_CONFIG`) are flagged and
//!   left out of the appliance, as supermin does: libguestfs's `supermin
//!   --prepare` put them into `base.tar.gz` by the same flag.
//! - **Ghost files** (`%ghost`) are not in the package payload: rpm only
//!   records that the package owns the path. supermin lists them and copies
//!   whatever the host has there. Ghost *regular files* are runtime state
//!   (logs, caches, `/var/lib/rpm-state/*`) whose content changes without
//!   any package changing, so they are left out here; ghost directories and
//!   symlinks (`alternatives`-managed links such as `/usr/bin/ld`) are kept
//!   and, like every listed path, dropped later if absent on the host.
//!
//! rpm has no diversions; `alternatives` links are ghost symlinks (above).
//! Unresolvable requirements are kept in [`Resolution::unsatisfied`] (shown
//! with `-v`) and otherwise ignored, as supermin ignores them.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::{path_order, Handler, Package, PackageDb, PackageError, PackageFile, Resolution, Unsatisfied};
use crate::kernel::compare_versions;

mod header;
mod installed;
mod query;
mod sqlite;

use installed::{collect_paths, Installed, Requirement, RpmFile};

/// What the rest of the tool knows about rpm hosts.
pub(crate) const HANDLER: Handler = Handler {
    name: "rpm",
    marker: "usr/lib/sysimage/rpm or var/lib/rpm (rpmdb.sqlite, Packages or Packages.db)",
    is_present: |root| locate(root).is_some(),
    open: |root| Ok(Box::new(open_rpm(root)?)),
    date_file,
    distro: "Fedora/RHEL",
    libguestfs_package: "libguestfs",
    install_libguestfs: "dnf install libguestfs-tools",
    install_qemu: "dnf install qemu-kvm",
    kernel_package: "kernel",
    spelling: super::Spelling::NameDotArchWhenAmbiguous,
    keep_kernel_readable: None,
};

/// Where rpm databases live, relative to the root, in the order looked at.
const DB_DIRS: [&str; 2] = ["usr/lib/sysimage/rpm", "var/lib/rpm"];

/// Each backend's main file, in the order looked for.
const BACKEND_FILES: [&str; 3] = ["rpmdb.sqlite", "Packages", "Packages.db"];

/// supermin's database date (docs/supermin-compat.md, "rpm closure"): the first existing of these.
const SUPERMIN_DATE_FILES: [&str; 3] =
    ["usr/lib/sysimage/rpm/rpmdb.sqlite", "var/lib/rpm/rpmdb.sqlite", "var/lib/rpm/Packages"];

/// rpm's `RPMSENSE_RPMLIB`: a requirement rpm itself satisfies.
const RPMSENSE_RPMLIB: u32 = 1 << 24;
/// rpm's `RPMFILE_CONFIG`.
const RPMFILE_CONFIG: u32 = 1;
/// rpm's `RPMFILE_GHOST`.
const RPMFILE_GHOST: u32 = 1 << 6;
/// `S_IFMT` and `S_IFREG`, for file modes from the database.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// A located database: the `--dbpath` to pass and the files that change
/// when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    /// Absolute path inside the root, symlinks resolved within the root.
    dbpath: PathBuf,
    /// The backend's main file on the host (under the root).
    main_file: PathBuf,
}

/// Finds the database under `root` (see the module docs).
fn locate(root: &Path) -> Option<Location> {
    for dir in DB_DIRS {
        let Some(inside) = resolve_in_root(root, Path::new(dir)) else { continue };
        let host = root.join(&inside);
        for file in BACKEND_FILES {
            let main_file = host.join(file);
            if std::fs::symlink_metadata(&main_file).is_ok_and(|m| m.is_file()) {
                return Some(Location { dbpath: Path::new("/").join(inside), main_file });
            }
        }
    }
    None
}

/// Resolves `rel` (relative to `root`) as if `root` were `/`: symlinks are
/// followed, absolute targets start again at `root`, `..` stops at `root`.
/// Returns the resolved path relative to `root`, or `None` when a component
/// is missing or links loop (more than 40, as the kernel's limit).
fn resolve_in_root(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut done = PathBuf::new();
    let mut todo: VecDeque<OsString> = normal_parts(rel);
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            done.pop();
            continue;
        }
        let candidate = done.join(&part);
        let md = std::fs::symlink_metadata(root.join(&candidate)).ok()?;
        if !md.file_type().is_symlink() {
            done = candidate;
            continue;
        }
        hops += 1;
        if hops > 40 {
            return None;
        }
        let target = std::fs::read_link(root.join(&candidate)).ok()?;
        if target.is_absolute() {
            done = PathBuf::new();
        }
        let mut next = normal_parts(&target);
        next.extend(todo);
        todo = next;
    }
    Some(done)
}

/// The components of `path` that name something (`..` kept, `/` and `.`
/// dropped).
fn normal_parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// supermin's date file under `root`: the first of [`SUPERMIN_DATE_FILES`]
/// that exists (directories resolved inside the root), else the first
/// (missing: supermin rebuilds).
fn date_file(root: &Path) -> PathBuf {
    SUPERMIN_DATE_FILES
        .iter()
        .filter_map(|f| {
            let f = Path::new(f);
            let dir = resolve_in_root(root, f.parent()?)?;
            Some(root.join(dir).join(f.file_name()?))
        })
        .find(|p| std::fs::symlink_metadata(p).is_ok())
        .unwrap_or_else(|| root.join(SUPERMIN_DATE_FILES[0]))
}

/// Opens the rpm database under `root`: locates it and reads every package,
/// directly from an sqlite database (`rpm/sqlite.rs`), else (another
/// backend, or something the direct reader does not understand: noted for
/// `-v`) with one `rpm -qa`.
///
/// # Errors
/// [`PackageError::NoDatabase`] when no database is found,
/// [`PackageError::Tool`] when rpm cannot run or fails,
/// [`PackageError::Corrupt`] when its output cannot be parsed.
pub(crate) fn open_rpm(root: &Path) -> Result<RpmDb, PackageError> {
    let location = locate_or_fail(root)?;
    let mut notes = Vec::new();
    if is_sqlite(&location) {
        match sqlite::read(&location.main_file) {
            Ok((installed, table)) => return Ok(RpmDb::new(root, location, installed, table)),
            Err(reason) => notes.push(format!(
                "rpm: not reading {} directly ({reason}); asking rpm instead",
                location.main_file.display()
            )),
        }
    }
    let (installed, table) = query_rpm(root, &location)?;
    let mut db = RpmDb::new(root, location, installed, table);
    db.notes = notes;
    Ok(db)
}

/// [`locate`], or the error that says what was looked for.
fn locate_or_fail(root: &Path) -> Result<Location, PackageError> {
    locate(root).ok_or_else(|| PackageError::NoDatabase {
        root: root.to_path_buf(),
        looked_for: HANDLER.marker.to_string(),
        supported: HANDLER.name.to_string(),
    })
}

/// Whether the located database is an sqlite one (read directly).
fn is_sqlite(location: &Location) -> bool {
    location.main_file.file_name() == Some(OsStr::new("rpmdb.sqlite"))
}

/// Reads every package with one `rpm -qa` (`rpm/query.rs`).
fn query_rpm(root: &Path, location: &Location) -> Result<(Vec<Installed>, query::FileTable), PackageError> {
    let argv: Vec<&OsStr> = vec![
        "rpm".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--dbpath".as_ref(),
        location.dbpath.as_os_str(),
        "-qa".as_ref(),
        "--nodigest".as_ref(),
        "--nosignature".as_ref(),
        "--queryformat".as_ref(),
        query::QUERY_FORMAT.as_ref(),
    ];
    let out = crate::process::bulk_output(&argv).map_err(|source| PackageError::Tool {
        what: format!("reading the rpm database in {}", location.main_file.display()),
        source,
        hint: "install rpm (it reads every rpm database format), or check the database with `rpm --verifydb`",
    })?;
    query::parse(out, &location.main_file)
}

/// Which reader [`open_rpm_with`] uses.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpmReader {
    /// The direct sqlite reader, without falling back to rpm.
    Direct,
    /// One `rpm -qa`.
    Query,
}

/// Test support (`tests/integration/pkgdb.rs` proves the two readers
/// equivalent): opens the rpm database under `root` with one reader and
/// returns it with a dump of everything it read (every package's fields,
/// requirements, provides, required paths it owns, directory names and
/// file records with flags and modes).
///
/// # Errors
/// As [`open_rpm`]; the direct reader's refusal as
/// [`PackageError::Corrupt`].
#[doc(hidden)]
pub fn open_rpm_with(root: &Path, reader: RpmReader) -> Result<(Box<dyn PackageDb>, String), PackageError> {
    let location = locate_or_fail(root)?;
    let (installed, table) = match reader {
        RpmReader::Query => query_rpm(root, &location)?,
        RpmReader::Direct => sqlite::read(&location.main_file).map_err(|message| PackageError::Corrupt {
            path: location.main_file.clone(),
            line: 0,
            message,
            hint: "the direct reader refused it",
        })?,
    };
    let db = RpmDb::new(root, location, installed, table);
    let mut dump = String::new();
    for p in &db.installed {
        let files: Vec<RpmFile> = db.table.records(p).collect();
        let fields = (&p.pkg, &p.requires, &p.provides, &p.owned, &p.dirs, files);
        dump.push_str(&format!("{fields:?}\n"));
    }
    Ok((Box::new(db), dump))
}

/// A read rpm database. Build it with [`open_rpm`].
#[derive(Debug)]
pub(crate) struct RpmDb {
    root: PathBuf,
    location: Location,
    native_arch: String,
    /// Sorted by `(name, arch, version)`.
    installed: Vec<Installed>,
    by_name: HashMap<String, Vec<usize>>,
    /// Provide name → providers, ascending.
    providers: HashMap<String, Vec<usize>>,
    /// Required path → owners (only paths some package requires).
    owners: HashMap<PathBuf, Vec<usize>>,
    /// Every package's files.
    table: query::FileTable,
    /// What [`PackageDb::notes`] reports (why rpm was asked, if it was).
    notes: Vec<String>,
}

impl RpmDb {
    fn new(root: &Path, location: Location, mut installed: Vec<Installed>, table: query::FileTable) -> RpmDb {
        installed.sort_by(|a, b| a.pkg.cmp(&b.pkg));
        let native_arch = native_arch(&installed);
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
        let mut owners: HashMap<PathBuf, Vec<usize>> = HashMap::new();
        for (i, p) in installed.iter().enumerate() {
            by_name.entry(p.pkg.name.clone()).or_default().push(i);
            for name in &p.provides {
                let list = providers.entry(name.clone()).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
            for r in &p.requires {
                collect_paths(&r.name, &mut |path| {
                    owners.entry(PathBuf::from(path)).or_default();
                });
            }
        }
        for (i, p) in installed.iter().enumerate() {
            for path in &p.owned {
                if let Some(list) = owners.get_mut(path) {
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        RpmDb {
            root: root.to_path_buf(),
            location,
            native_arch,
            installed,
            by_name,
            providers,
            owners,
            table,
            notes: Vec::new(),
        }
    }

    /// 0 for `noarch` or the wanted arch, 1 otherwise.
    fn arch_rank(&self, i: usize, wanted: &str) -> u8 {
        let arch = self.installed[i].pkg.arch.as_str();
        u8::from(arch != "noarch" && arch != wanted)
    }

    /// Maps a requested name to a package index (see the module docs).
    fn lookup_request(&self, name: &str) -> Option<usize> {
        if let Some(cands) = self.by_name.get(name) {
            let weight = |i: usize| match self.installed[i].pkg.arch.as_str() {
                "noarch" => 0,
                a if a == self.native_arch => 1,
                _ => 2,
            };
            return cands.iter().copied().min_by(|&a, &b| {
                weight(a).cmp(&weight(b)).then_with(|| self.newer_first(a, b)).then(a.cmp(&b))
            });
        }
        let mut providers = self.providers_of(name);
        providers.dedup();
        match providers.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// Orders two indices newest version first.
    fn newer_first(&self, a: usize, b: usize) -> std::cmp::Ordering {
        compare_versions(&self.installed[b].pkg.version, &self.installed[a].pkg.version)
    }

    /// Every installed package that provides `name` (a path: also its
    /// owners), ascending, possibly with repeats.
    fn providers_of(&self, name: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.providers.get(name).cloned().unwrap_or_default();
        if name.starts_with('/') {
            out.extend(self.owners.get(Path::new(name)).into_iter().flatten().copied());
            out.sort_unstable();
        }
        out
    }

    /// The provider of a simple (non-rich) requirement, if any.
    fn satisfy_name(&self, name: &str, context: &str, in_closure: &[bool]) -> Option<usize> {
        let cands = self.providers_of(name);
        cands.into_iter().min_by(|&a, &b| {
            let key =
                |i: usize| (!in_closure[i], self.arch_rank(i, context), self.installed[i].pkg.name.len());
            key(a)
                .cmp(&key(b))
                .then_with(|| self.installed[a].pkg.name.cmp(&self.installed[b].pkg.name))
                .then_with(|| self.newer_first(a, b))
                .then(a.cmp(&b))
        })
    }

    /// What a requirement needs: `None` when it cannot be satisfied, else
    /// the packages (none for a false rich condition).
    fn satisfy(&self, req: &Requirement, context: &str, in_closure: &[bool]) -> Option<Vec<usize>> {
        if req.name.starts_with('(') {
            let expr = rich::parse(&req.name).ok()?;
            return self.satisfy_rich(&expr, context, in_closure);
        }
        self.satisfy_name(&req.name, context, in_closure).map(|i| vec![i])
    }

    fn satisfy_rich(&self, expr: &rich::Expr, context: &str, in_closure: &[bool]) -> Option<Vec<usize>> {
        use rich::Expr;
        match expr {
            Expr::Atom(name) => self.satisfy_name(name, context, in_closure).map(|i| vec![i]),
            Expr::Or(branches) => branches.iter().find_map(|b| self.satisfy_rich(b, context, in_closure)),
            Expr::And(parts) => {
                let mut all = Vec::new();
                for p in parts {
                    all.extend(self.satisfy_rich(p, context, in_closure)?);
                }
                Some(all)
            }
            Expr::If { then, cond, otherwise, negate } => {
                let holds = self.satisfy_rich(cond, context, in_closure).is_some() != *negate;
                match (holds, otherwise) {
                    (true, _) => self.satisfy_rich(then, context, in_closure),
                    (false, Some(e)) => self.satisfy_rich(e, context, in_closure),
                    (false, None) => Some(Vec::new()),
                }
            }
        }
    }
}

/// What the appliance gets of a package's file records: ghost regular
/// files left out, `%config` flagged, sorted by path, each path once.
fn package_files(records: impl IntoIterator<Item = RpmFile>) -> Vec<PackageFile> {
    let mut files: Vec<PackageFile> = records
        .into_iter()
        .filter(|f| f.flags & RPMFILE_GHOST == 0 || f.mode & S_IFMT != S_IFREG)
        .map(|f| PackageFile { source: f.path.clone(), config: f.flags & RPMFILE_CONFIG != 0, path: f.path })
        .collect();
    files.sort_by(|a, b| path_order(&a.path, &b.path));
    files.dedup_by(|b, a| a.path == b.path);
    files
}

/// See [`RpmDb::native_arch`].
fn native_arch(installed: &[Installed]) -> String {
    if let Some(p) = installed.iter().find(|p| p.pkg.name == "rpm" && p.pkg.arch != "noarch") {
        return p.pkg.arch.clone();
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in installed.iter().filter(|p| p.pkg.arch != "noarch" && !p.pkg.arch.is_empty()) {
        *counts.entry(p.pkg.arch.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map_or_else(|| std::env::consts::ARCH.to_string(), |(arch, _)| arch.to_string())
}

impl PackageDb for RpmDb {
    fn info(&self) -> &'static Handler {
        &HANDLER
    }

    fn root(&self) -> &Path {
        &self.root
    }

    /// Breadth-first from the requested packages in `(name, arch, version)`
    /// order, requirements in database order (see the module docs).
    fn resolve(&self, names: &[String]) -> Result<Resolution, PackageError> {
        let mut in_closure = vec![false; self.installed.len()];
        let mut missing: Vec<String> = Vec::new();
        let mut roots = Vec::new();
        for name in names {
            match self.lookup_request(name) {
                Some(i) => roots.push(i),
                None if !missing.contains(name) => missing.push(name.clone()),
                None => {}
            }
        }
        roots.sort_unstable();
        roots.dedup();
        for &i in &roots {
            in_closure[i] = true;
        }
        let mut queue: VecDeque<usize> = roots.into_iter().collect();
        let mut unsatisfied = Vec::new();
        while let Some(i) = queue.pop_front() {
            let package = &self.installed[i];
            let context = match package.pkg.arch.as_str() {
                "noarch" => self.native_arch.as_str(),
                arch => arch,
            };
            for req in &package.requires {
                if req.flags & RPMSENSE_RPMLIB != 0 || req.name.starts_with("rpmlib(") {
                    continue;
                }
                match self.satisfy(req, context, &in_closure) {
                    Some(found) => {
                        for j in found {
                            if !in_closure[j] {
                                in_closure[j] = true;
                                queue.push_back(j);
                            }
                        }
                    }
                    None => {
                        unsatisfied.push(Unsatisfied { package: package.label(), dependency: req.display() })
                    }
                }
            }
        }
        let packages = self
            .installed
            .iter()
            .zip(&in_closure)
            .filter(|(_, &inside)| inside)
            .map(|(p, _)| p.pkg.clone())
            .collect();
        Ok(Resolution { packages, missing, unsatisfied })
    }

    /// The files of `packages` from the database: ghost regular files left
    /// out, `%config` flagged, sorted by path, each path once.
    ///
    /// # Errors
    /// None: everything was read by [`open_rpm`]. A package not in the
    /// database contributes nothing.
    fn files(&self, packages: &[Package]) -> Result<Vec<PackageFile>, PackageError> {
        let records = packages
            .iter()
            .filter_map(|p| self.installed.binary_search_by(|i| i.pkg.cmp(p)).ok())
            .flat_map(|i| self.table.records(&self.installed[i]));
        Ok(package_files(records))
    }

    /// The backend's main file (every install, removal or upgrade writes
    /// it) and, for sqlite, its write-ahead log (rpm's sqlite backend uses
    /// WAL mode: until a checkpoint, a change may be only there). A missing
    /// WAL is recorded as missing: its appearance is a change.
    fn database_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.location.main_file.clone()];
        if self.location.main_file.ends_with("rpmdb.sqlite") {
            files.push(self.location.main_file.with_file_name("rpmdb.sqlite-wal"));
        }
        files
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// rpm's rich (boolean) dependencies, rpm ≥ 4.13: `(a or (b and c))`,
/// `(a if b else c)`, `(a unless b)`, `(a with b)`, `(a without b)`.
mod rich {
    /// A parsed rich dependency.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Expr {
        /// A plain dependency name (version constraint dropped).
        Atom(String),
        /// The first satisfiable branch.
        Or(Vec<Expr>),
        /// All parts (`and`, `with`; `without` keeps its left side only).
        And(Vec<Expr>),
        /// `then if cond [else otherwise]`; `negate` for `unless`.
        If { then: Box<Expr>, cond: Box<Expr>, otherwise: Option<Box<Expr>>, negate: bool },
    }

    /// Parses `(…)`.
    pub(super) fn parse(text: &str) -> Result<Expr, String> {
        let tokens: Vec<String> =
            text.replace('(', " ( ").replace(')', " ) ").split_whitespace().map(str::to_string).collect();
        let mut pos = 0;
        let expr = group(&tokens, &mut pos)?;
        if pos != tokens.len() {
            return Err(format!("trailing text in rich dependency {text:?}"));
        }
        Ok(expr)
    }

    /// `( term (op term)* )`.
    fn group(tokens: &[String], pos: &mut usize) -> Result<Expr, String> {
        if tokens.get(*pos).map(String::as_str) != Some("(") {
            return Err("expected '('".into());
        }
        *pos += 1;
        let first = term(tokens, pos)?;
        let op = tokens.get(*pos).cloned().ok_or("unterminated rich dependency")?;
        if op == ")" {
            *pos += 1;
            return Ok(first);
        }
        *pos += 1;
        let second = term(tokens, pos)?;
        let expr = match op.as_str() {
            "or" | "and" | "with" => {
                let mut parts = vec![first, second];
                while tokens.get(*pos).map(String::as_str) == Some(op.as_str()) {
                    *pos += 1;
                    parts.push(term(tokens, pos)?);
                }
                if op == "or" {
                    Expr::Or(parts)
                } else {
                    Expr::And(parts)
                }
            }
            "without" => first,
            "if" | "unless" => {
                let otherwise = if tokens.get(*pos).map(String::as_str) == Some("else") {
                    *pos += 1;
                    Some(Box::new(term(tokens, pos)?))
                } else {
                    None
                };
                Expr::If { then: Box::new(first), cond: Box::new(second), otherwise, negate: op == "unless" }
            }
            other => return Err(format!("unknown rich dependency operator {other:?}")),
        };
        if tokens.get(*pos).map(String::as_str) != Some(")") {
            return Err("expected ')'".into());
        }
        *pos += 1;
        Ok(expr)
    }

    /// A nested group, or a name with an optional `op version`.
    fn term(tokens: &[String], pos: &mut usize) -> Result<Expr, String> {
        match tokens.get(*pos).map(String::as_str) {
            Some("(") => group(tokens, pos),
            Some(")") | None => Err("expected a dependency".into()),
            Some(name) => {
                let name = name.to_string();
                *pos += 1;
                if let Some(op) = tokens.get(*pos) {
                    if ["<", ">", "=", "<=", ">=", "<>"].contains(&op.as_str()) {
                        *pos += 2;
                    }
                }
                Ok(Expr::Atom(name))
            }
        }
    }
}

#[cfg(test)]
mod tests;
