//! libguestfs's per-user appliance caches (`<base>/.guestfs-<UID>`): find
//! them, inspect them (owner, size, age, freshness, lock), prepare one for a
//! build, and remove them safely.
//!
//! libguestfs keeps one cache per effective uid under `$LIBGUESTFS_CACHEDIR`,
//! else `$TMPDIR`, else `/var/tmp` (docs/libguestfs-side.md, "Cache directory"
//! and "Cache contents"). It holds `lock` (the file
//! supermin's `--lock` takes with `lockf`), `appliance.d/{kernel,initrd,root}`
//! (supermin's output; ours adds `README.fixed` and `manifest.toml`),
//! transient `appliance.d.XXXXXXXX` directories and, in 1.48, qemu probe
//! caches. This module owns the rules for trusting and deleting such a
//! directory: a real directory (never a symlink) named `.guestfs-<digits>`
//! whose owner is that uid, deleted only while we hold its lock as a POSIX
//! record lock (so supermin and we exclude each other).
//!
//! It leaves to others: building (`crate::build`), checking an appliance
//! that has a manifest against the host (the caller passes that check in, see
//! [`InspectContext::manifest_check`]), and printing (`commands::cache`).
//! Whether a cache's user still exists is asked of a [`UserDb`] (on the
//! host: libc and NSS, see [`crate::users`]); a lookup that fails is never
//! taken as "gone".

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::output::{self, OutputError, OutputLock};
use crate::safefs::{Access, PinnedDir, SafeFsError};
use crate::users::UserDb;

/// Name prefix of a cache directory; the rest is the decimal uid.
pub const CACHE_PREFIX: &str = ".guestfs-";

/// The appliance directory supermin writes inside a cache.
pub const APPLIANCE_DIR: &str = "appliance.d";

/// The lock file supermin's `--lock` takes, beside `appliance.d`.
pub const LOCK_NAME: &str = "lock";

/// The files whose dates supermin's `--if-newer` compares (besides
/// `appliance.d` itself).
pub const DATED_OUTPUTS: [&str; 3] = ["kernel", "root", "initrd"];

/// Errors from cache handling.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The path is not a `.guestfs-UID` directory.
    #[error("{path} is not named .guestfs-UID; refusing to touch it")]
    NotACache {
        /// The path.
        path: PathBuf,
    },
    /// The cache (or its lock or appliance.d) is a symlink or not a directory.
    #[error("{path} is {what}, not what libguestfs creates; refusing to use it: remove it by hand after checking what it is")]
    Unexpected {
        /// The path.
        path: PathBuf,
        /// What it is (`a symlink`, `not a directory`, ...).
        what: &'static str,
    },
    /// The cache's owner does not match the uid in its name.
    #[error("{path} belongs to uid {owner}, not {uid} as its name says; refusing to use it (libguestfs would refuse it too): remove it by hand after checking who made it")]
    OwnerMismatch {
        /// The cache.
        path: PathBuf,
        /// The uid in the name.
        uid: u32,
        /// The actual owner.
        owner: u32,
    },
    /// The cache is writable by group or others.
    #[error("{path} has mode {mode:04o}, writable by group or others; libguestfs refuses such a cache: run chmod 0755 on it")]
    UnsafeMode {
        /// The cache.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A duration on the command line is malformed.
    #[error("invalid duration {text:?}: use a number followed by s, m, h, d or w, e.g. 30d, 12h or 1w2d")]
    BadDuration {
        /// The text given.
        text: String,
    },
    /// Locking failed (not contention: that is reported as "in use").
    #[error(transparent)]
    Lock(#[from] OutputError),
    /// A pinned-directory operation failed (the message names the path).
    #[error(transparent)]
    Fs(#[from] SafeFsError),
    /// The cache is, or holds, a mount point.
    #[error("{path} is or holds the mount point {mount}; refusing to delete across it: unmount it first")]
    MountPoint {
        /// The cache.
        path: PathBuf,
        /// The mount point at or below it.
        mount: PathBuf,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io { action, path: path.to_owned(), source }
}

// ---------------------------------------------------------------------------
// Finding caches

/// libguestfs's cache base for the given environment values:
/// `LIBGUESTFS_CACHEDIR`, else `TMPDIR`, else `/var/tmp` (empty values count
/// as unset).
pub fn libguestfs_base(cachedir: Option<PathBuf>, tmpdir: Option<PathBuf>) -> PathBuf {
    cachedir
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| tmpdir.filter(|p| !p.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// The base directories to search by default: `$LIBGUESTFS_CACHEDIR`,
/// `$TMPDIR` and `/var/tmp` (each that is set), then `extra`.
pub fn default_search_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["LIBGUESTFS_CACHEDIR", "TMPDIR"]
        .iter()
        .filter_map(std::env::var_os)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .collect();
    dirs.push(PathBuf::from("/var/tmp"));
    dirs.extend(extra.iter().cloned());
    dirs
}

/// The uid a cache directory name stands for (`.guestfs-1001` → 1001).
/// Only the canonical decimal form libguestfs writes counts:
/// `.guestfs-01001` is some other directory, not uid 1001's cache.
pub fn cache_uid(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(CACHE_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The first mount point at or below `path` (a physical path), by
/// `/proc/self/mountinfo`. Deleting a cache must never reach into another
/// filesystem, and a cache that is itself a mount point cannot be removed.
pub fn mount_at_or_below(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    crate::health::location::parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .find(|m| m.starts_with(path))
}

/// Every `.guestfs-UID` entry in `dirs`. A dir that is itself named
/// `.guestfs-UID` counts as a cache. Base directories are compared by
/// canonical path so `$TMPDIR=/var/tmp` is searched once; the cache entries
/// themselves are not resolved (a symlinked cache is reported, never
/// followed). Missing base directories are skipped.
pub fn find_caches(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, CacheError> {
    let mut seen_bases = Vec::new();
    let mut found = Vec::new();
    for dir in dirs {
        let is_cache = dir.file_name().and_then(|n| n.to_str()).and_then(cache_uid).is_some();
        if is_cache {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let Ok(parent) = std::fs::canonicalize(parent) else { continue };
            let path = parent.join(dir.file_name().unwrap_or_default());
            if std::fs::symlink_metadata(&path).is_ok() && !found.contains(&path) {
                found.push(path);
            }
            continue;
        }
        let Ok(base) = std::fs::canonicalize(dir) else { continue };
        if seen_bases.contains(&base) {
            continue;
        }
        let entries = match std::fs::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
                continue
            }
            Err(e) => return Err(CacheError::Io { action: "listing", path: base, source: e }),
        };
        let mut here = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &base))?;
            if entry.file_name().to_str().and_then(cache_uid).is_some() {
                here.push(entry.path());
            }
        }
        here.sort();
        for p in here {
            if !found.contains(&p) {
                found.push(p);
            }
        }
        seen_bases.push(base);
    }
    Ok(found)
}

// ---------------------------------------------------------------------------
// Inspecting

/// Whether a cache's appliance matches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplianceState {
    /// No `appliance.d` with kernel, initrd and root.
    Missing,
    /// Our manifest matches the host.
    Fresh,
    /// Our manifest differs from the host; one line per change.
    Stale(Vec<String>),
    /// No manifest (built by supermin); supermin's `--if-newer` date rule
    /// says the next launch reuses it.
    FreshByDate,
    /// No manifest; by the date rule the next launch rebuilds it. One line
    /// per reason.
    StaleByDate(Vec<String>),
    /// Could not decide (e.g. libguestfs's supermin.d is not installed).
    Unknown(String),
}

impl ApplianceState {
    /// Short label for tables and JSON: `missing`, `fresh`, `stale`,
    /// `fresh-by-date`, `stale-by-date`, `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            ApplianceState::Missing => "missing",
            ApplianceState::Fresh => "fresh",
            ApplianceState::Stale(_) => "stale",
            ApplianceState::FreshByDate => "fresh-by-date",
            ApplianceState::StaleByDate(_) => "stale-by-date",
            ApplianceState::Unknown(_) => "unknown",
        }
    }

    /// The reasons behind the label (changes, date comparisons, why unknown).
    pub fn details(&self) -> Vec<String> {
        match self {
            ApplianceState::Stale(v) | ApplianceState::StaleByDate(v) => v.clone(),
            ApplianceState::Unknown(why) => vec![why.clone()],
            _ => Vec::new(),
        }
    }

    /// True for both kinds of stale.
    pub fn is_stale(&self) -> bool {
        matches!(self, ApplianceState::Stale(_) | ApplianceState::StaleByDate(_))
    }
}

/// What [`inspect`] needs besides the cache path.
pub struct InspectContext<'a> {
    /// The host's users.
    pub users: &'a dyn UserDb,
    /// Inputs of supermin's date rule: libguestfs's supermin.d directory and
    /// the package database's date file (the handler's). Empty: the rule
    /// cannot be applied (no libguestfs supermin.d on the host).
    pub date_inputs: Vec<PathBuf>,
    /// Checks an `appliance.d` that holds our `manifest.toml` against the
    /// host (the caller wires `check`; kept out of here so this module does
    /// not depend on the build pipeline).
    pub manifest_check: &'a dyn Fn(&Path) -> ApplianceState,
    /// "Now", for ages.
    pub now: SystemTime,
}

/// Everything `list` shows about one cache.
#[derive(Debug, Clone)]
pub struct CacheInfo {
    /// The cache directory (base canonicalised, the entry itself not).
    pub path: PathBuf,
    /// The uid its name stands for.
    pub uid: u32,
    /// Its owner by `lstat`.
    pub owner: u32,
    /// Its group by `lstat`.
    pub group: u32,
    /// Whether the user of `uid` exists.
    pub user: UserStatus,
    /// Why we would not trust or delete it (symlink, owner mismatch, ...).
    pub problem: Option<String>,
    /// `appliance.d` holds kernel, initrd and root.
    pub has_appliance: bool,
    /// Sum of file sizes (st_size), symlinks not followed.
    pub apparent_bytes: u64,
    /// Sum of allocated blocks (st_blocks × 512).
    pub allocated_bytes: u64,
    /// Time since the newest of: the cache dir, appliance.d and its files.
    pub age: Option<Duration>,
    /// Freshness of the appliance.
    pub state: ApplianceState,
    /// Some process holds the lock file's record lock.
    pub locked: bool,
}

/// Whether a cache's user exists, by the system's user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserStatus {
    /// The user exists; its name.
    Exists(String),
    /// The database answered "no such user".
    Gone,
    /// The lookup failed (the reason is the cache's
    /// [`CacheInfo::problem`]): the cache is never removed for that.
    Unknown,
}

impl UserStatus {
    /// The user's name, if it exists.
    pub fn name(&self) -> Option<&str> {
        match self {
            UserStatus::Exists(name) => Some(name),
            _ => None,
        }
    }
}

impl CacheInfo {
    /// The user database answered that uid has no user.
    pub fn user_gone(&self) -> bool {
        self.user == UserStatus::Gone
    }
}

/// Check that `path` is a cache we may use or delete: named `.guestfs-UID`,
/// a real directory (lstat), owned by that uid. Returns the uid and the
/// directory's metadata.
pub fn check_cache_dir(path: &Path) -> Result<(u32, std::fs::Metadata), CacheError> {
    let uid = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(cache_uid)
        .ok_or_else(|| CacheError::NotACache { path: path.to_owned() })?;
    let md = std::fs::symlink_metadata(path).map_err(io_err("inspecting", path))?;
    if md.file_type().is_symlink() {
        return Err(CacheError::Unexpected { path: path.to_owned(), what: "a symlink" });
    }
    if !md.is_dir() {
        return Err(CacheError::Unexpected { path: path.to_owned(), what: "not a directory" });
    }
    if md.uid() != uid {
        return Err(CacheError::OwnerMismatch { path: path.to_owned(), uid, owner: md.uid() });
    }
    Ok((uid, md))
}

/// Inspect one cache. Never fails: what cannot be read shows up as
/// [`CacheInfo::problem`] or an unknown state.
pub fn inspect(path: &Path, ctx: &InspectContext) -> CacheInfo {
    let uid = path.file_name().and_then(|n| n.to_str()).and_then(cache_uid).unwrap_or(u32::MAX);
    let lmd = std::fs::symlink_metadata(path).ok();
    let mut info = CacheInfo {
        path: path.to_owned(),
        uid,
        owner: lmd.as_ref().map(|m| m.uid()).unwrap_or(u32::MAX),
        group: lmd.as_ref().map(|m| m.gid()).unwrap_or(u32::MAX),
        user: UserStatus::Unknown,
        problem: None,
        has_appliance: false,
        apparent_bytes: 0,
        allocated_bytes: 0,
        age: None,
        state: ApplianceState::Missing,
        locked: false,
    };
    match ctx.users.by_uid(uid) {
        Ok(Some(user)) => info.user = UserStatus::Exists(user.name),
        Ok(None) => info.user = UserStatus::Gone,
        Err(e) => info.problem = Some(format!("cannot tell whether its user exists: {e}")),
    }
    match check_cache_dir(path) {
        Ok((_, md)) if md.mode() & 0o022 != 0 => {
            info.problem = Some(format!(
                "mode {:04o} is group/other writable (libguestfs refuses it)",
                md.mode() & 0o7777
            ));
        }
        Ok(_) => {}
        Err(e) => {
            info.problem = Some(e.to_string());
            // Not ours to look into (a symlink could point anywhere).
            return info;
        }
    }
    if let Some(mount) = mount_at_or_below(path) {
        info.problem = Some(CacheError::MountPoint { path: path.to_owned(), mount }.to_string());
    }
    let (apparent, allocated) = tree_size(path);
    info.apparent_bytes = apparent;
    info.allocated_bytes = allocated;
    let appliance = path.join(APPLIANCE_DIR);
    let appliance_is_dir = std::fs::symlink_metadata(&appliance).is_ok_and(|m| m.is_dir());
    info.has_appliance = appliance_is_dir
        && DATED_OUTPUTS
            .iter()
            .all(|f| std::fs::symlink_metadata(appliance.join(f)).is_ok_and(|m| m.is_file()));
    info.age = newest_mtime(path).and_then(|t| ctx.now.duration_since(t).ok().or(Some(Duration::ZERO)));
    info.locked = match check_lock_file(path) {
        Ok(true) => output::is_locked(&path.join(LOCK_NAME)).unwrap_or(false),
        _ => false,
    };
    info.state = if !info.has_appliance {
        ApplianceState::Missing
    } else if appliance.join(crate::manifest::MANIFEST_NAME).is_file() {
        (ctx.manifest_check)(&appliance)
    } else if ctx.date_inputs.is_empty() {
        ApplianceState::Unknown(
            "libguestfs's supermin.d is not installed, so supermin's date rule has no inputs".into(),
        )
    } else {
        date_rule(&appliance, &ctx.date_inputs)
    };
    info
}

/// Apparent and allocated bytes of everything under `path`, not following
/// symlinks. Unreadable entries count as zero.
pub fn tree_size(path: &Path) -> (u64, u64) {
    let mut apparent = 0;
    let mut allocated = 0;
    for entry in walkdir::WalkDir::new(path).follow_links(false).same_file_system(true).into_iter().flatten()
    {
        if let Ok(md) = entry.metadata() {
            if !md.is_dir() {
                apparent += md.len();
            }
            allocated += md.blocks() * 512;
        }
    }
    (apparent, allocated)
}

/// The newest mtime among the cache dir, `appliance.d` and the files
/// directly in it (libguestfs touches the cache dir at every launch and the
/// appliance files after every supermin run).
fn newest_mtime(cache: &Path) -> Option<SystemTime> {
    let appliance = cache.join(APPLIANCE_DIR);
    let mut paths = vec![cache.to_path_buf(), appliance.clone()];
    if let Ok(rd) = std::fs::read_dir(&appliance) {
        paths.extend(rd.flatten().map(|e| e.path()));
    }
    paths.iter().filter_map(|p| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok()).max()
}

/// An `lstat` mtime as floating seconds, as supermin (OCaml `Unix.lstat`)
/// compares them.
fn mtime_f64(md: &std::fs::Metadata) -> f64 {
    md.mtime() as f64 + md.mtime_nsec() as f64 / 1e9
}

/// supermin's `--if-newer` rule (docs/supermin-compat.md, "The if-newer
/// rule"): the appliance is reused
/// iff every input date is strictly less than every output date (outputs:
/// `appliance.d` itself, kernel, root, initrd; `lstat` mtimes). A missing
/// file means a rebuild.
pub fn date_rule(appliance: &Path, inputs: &[PathBuf]) -> ApplianceState {
    let mut outputs = vec![appliance.to_path_buf()];
    outputs.extend(DATED_OUTPUTS.iter().map(|f| appliance.join(f)));
    let dated = |paths: &[PathBuf]| -> Result<Vec<(PathBuf, f64)>, String> {
        paths
            .iter()
            .map(|p| match std::fs::symlink_metadata(p) {
                Ok(md) => Ok((p.clone(), mtime_f64(&md))),
                Err(e) => Err(format!("{}: {e} (supermin rebuilds)", p.display())),
            })
            .collect()
    };
    let outs = match dated(&outputs) {
        Ok(v) => v,
        Err(why) => return ApplianceState::StaleByDate(vec![why]),
    };
    let ins = match dated(inputs) {
        Ok(v) => v,
        Err(why) => return ApplianceState::StaleByDate(vec![why]),
    };
    let Some((oldest_out, odate)) = outs.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
        return ApplianceState::Missing;
    };
    let reasons: Vec<String> = ins
        .iter()
        .filter(|(_, idate)| *idate >= *odate)
        .map(|(p, _)| {
            format!(
                "{} is not older than {} (supermin --if-newer rebuilds)",
                p.display(),
                oldest_out.display()
            )
        })
        .collect();
    if reasons.is_empty() {
        ApplianceState::FreshByDate
    } else {
        ApplianceState::StaleByDate(reasons)
    }
}

/// The host's inputs for [`date_rule`]: libguestfs's supermin.d under
/// `root` and the package database date file. Empty when libguestfs's
/// supermin.d is not installed.
pub fn host_date_inputs(root: &Path) -> Vec<PathBuf> {
    let mut inputs = crate::input::default_input_dirs(root);
    if !inputs.is_empty() {
        // supermin dates the database by one file, the handler's.
        inputs.extend(crate::package::date_file(root));
    }
    inputs
}

// ---------------------------------------------------------------------------
// Preparing a cache for a build (prime)

/// Create `base/.guestfs-UID` as libguestfs would accept it (a real
/// directory owned by uid:gid, mode 0755), or check an existing one, and
/// make sure its lock file exists and belongs to the user. Returns the
/// cache path. Everything is done through pinned directory fds: the cache's
/// owner cannot swap a link in under us.
///
/// Errors: `base` missing; an existing cache that is a symlink, not a
/// directory, owned by someone else or group/other writable; a lock file
/// that is not a regular file.
pub fn prepare_cache_dir(base: &Path, uid: u32, gid: u32) -> Result<PathBuf, CacheError> {
    let base = PinnedDir::open(base)?;
    let name = format!("{CACHE_PREFIX}{uid}");
    if base.stat(&name)?.is_none() {
        match base.create_dir(&name, 0o755) {
            Ok(dir) => {
                dir.chown(uid, gid)?;
                dir.chmod(0o755)?;
            }
            // libguestfs made it meanwhile: check it below.
            Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    let cache = open_cache(&base, &name, uid)?;
    let st = cache.stat_self()?;
    if st.st_mode & 0o022 != 0 {
        return Err(CacheError::UnsafeMode { path: cache.path().to_owned(), mode: st.st_mode & 0o7777 });
    }
    ensure_lock_file(&cache, uid, gid)?;
    Ok(cache.path().to_owned())
}

/// Open `base/name` as a cache of `uid`: a real directory owned by `uid`.
fn open_cache(base: &PinnedDir, name: &str, uid: u32) -> Result<PinnedDir, CacheError> {
    let path = base.child(name);
    let cache = match base.open_dir(name) {
        Ok(d) => d,
        Err(SafeFsError::NotRegular { .. }) => {
            return Err(CacheError::Unexpected { path, what: "a symlink" })
        }
        Err(SafeFsError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(CacheError::Unexpected { path, what: "not a directory" })
        }
        Err(e) => return Err(e.into()),
    };
    let st = cache.stat_self()?;
    if st.st_uid != uid {
        return Err(CacheError::OwnerMismatch { path, uid, owner: st.st_uid });
    }
    Ok(cache)
}

/// Check the lock file: `Ok(true)` a regular file, `Ok(false)` absent.
fn check_lock_file(cache: &Path) -> Result<bool, CacheError> {
    check_lock_file_in(&PinnedDir::open(cache)?)
}

fn check_lock_file_in(cache: &PinnedDir) -> Result<bool, CacheError> {
    let path = cache.child(LOCK_NAME);
    match cache.stat(LOCK_NAME)? {
        Some(st) if crate::safefs::is_regular(&st) => Ok(true),
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            Err(CacheError::Unexpected { path, what: "a symlink" })
        }
        Some(_) => Err(CacheError::Unexpected { path, what: "not a regular file" }),
        None => Ok(false),
    }
}

/// Make `cache/lock` a regular file owned by uid:gid, mode 0644 (created
/// exclusively, owner set on the fd; an existing one is given to the user
/// only if it has a single link). A lock file we created as root would lock
/// the user out: supermin opens it `O_WRONLY|O_CREAT` as the user, and
/// fails on a root-owned 0644 file.
fn ensure_lock_file(cache: &PinnedDir, uid: u32, gid: u32) -> Result<PathBuf, CacheError> {
    let path = cache.child(LOCK_NAME);
    check_lock_file_in(cache)?;
    let file = cache.open_regular(LOCK_NAME, Access::ReadWriteCreate(0o644))?.expect("created if missing");
    let st = output::check_trusted(cache, std::ffi::OsStr::new(LOCK_NAME), &file)?;
    if st.st_uid != uid || st.st_gid != gid {
        crate::safefs::fchown(&file, uid, gid).map_err(|e| CacheError::Io {
            action: "changing owner of",
            path: path.clone(),
            source: e.into(),
        })?;
    }
    Ok(path)
}

/// Set the mtime (and atime) of `appliance` and its kernel, initrd and root
/// to `when`, so supermin's `--if-newer` sees outputs newer than its inputs,
/// as libguestfs does after each supermin run (docs/supermin-compat.md, "The
/// if-newer rule"; docs/libguestfs-side.md, "How libguestfs runs supermin").
/// Done on open fds: each file must be a regular file with one link owned by
/// us, root or the directory's owner, so a link planted in a user's cache
/// cannot make us touch anything else.
pub fn touch_outputs(appliance: &Path, when: SystemTime) -> Result<(), CacheError> {
    let since = when.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let ts =
        nix::sys::time::TimeSpec::new(since.as_secs() as libc::time_t, since.subsec_nanos() as libc::c_long);
    let dir = PinnedDir::open(appliance)?;
    // Files first, the directory last: nothing below touches the dir again.
    for f in DATED_OUTPUTS {
        let name = std::ffi::OsStr::new(f);
        let file = dir.open_regular(name, Access::Read)?.ok_or_else(|| CacheError::Io {
            action: "setting the date of",
            path: dir.child(name),
            source: io::ErrorKind::NotFound.into(),
        })?;
        output::check_trusted(&dir, name, &file)?;
        nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&file), &ts, &ts).map_err(|e| {
            CacheError::Io { action: "setting the date of", path: dir.child(name), source: e.into() }
        })?;
    }
    nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&dir)), &ts, &ts)
        .map_err(|e| CacheError::Io {
            action: "setting the date of",
            path: appliance.to_owned(),
            source: e.into(),
        })
}

// ---------------------------------------------------------------------------
// Cleaning

/// Parse a duration: one or more `<number><unit>` with unit `s`, `m`, `h`,
/// `d` or `w`, e.g. `30d`, `12h`, `90m`, `2w`, `45s`, `1w2d`.
pub fn parse_duration(text: &str) -> Result<Duration, CacheError> {
    let bad = || CacheError::BadDuration { text: text.to_string() };
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A duration for people: the largest unit that fits, e.g. `3d`, `5h`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 7 * 86_400 * 2 => format!("{}w", s / (7 * 86_400)),
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Which caches `clean` removes.
#[derive(Debug, Clone, Default)]
pub struct CleanPolicy {
    /// Remove caches whose age exceeds this.
    pub older_than: Option<Duration>,
    /// Remove stale appliances (the `appliance.d` only).
    pub stale: bool,
    /// Only caches of these uids (`None`: all).
    pub uids: Option<Vec<u32>>,
}

/// Why a cache is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanReason {
    /// Its user no longer exists (always removed).
    UserGone,
    /// Older than `--older-than`.
    Old(Duration),
    /// The appliance is stale (only `appliance.d` goes).
    Stale,
}

impl std::fmt::Display for CleanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CleanReason::UserGone => f.write_str("user gone"),
            CleanReason::Old(age) => write!(f, "unused for {}", human_duration(*age)),
            CleanReason::Stale => f.write_str("stale appliance"),
        }
    }
}

impl CleanReason {
    /// Whether the whole `.guestfs-UID` goes (else only the appliance).
    pub fn removes_whole_cache(&self) -> bool {
        !matches!(self, CleanReason::Stale)
    }
}

/// Decide whether `policy` removes `info`, and why. Caches with a
/// [`CacheInfo::problem`] are never chosen.
pub fn clean_reason(info: &CacheInfo, policy: &CleanPolicy) -> Option<CleanReason> {
    if info.problem.is_some() {
        return None;
    }
    if policy.uids.as_ref().is_some_and(|u| !u.contains(&info.uid)) {
        return None;
    }
    if info.user_gone() {
        return Some(CleanReason::UserGone);
    }
    if let (Some(limit), Some(age)) = (policy.older_than, info.age) {
        if age > limit {
            return Some(CleanReason::Old(age));
        }
    }
    if policy.stale && info.has_appliance && info.state.is_stale() {
        return Some(CleanReason::Stale);
    }
    None
}

/// What happened to one cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanOutcome {
    /// Removed; bytes freed (allocated).
    Removed(u64),
    /// `--dry-run`: would have freed this many bytes.
    WouldRemove(u64),
    /// Its lock is held (a supermin or build is running): left alone.
    InUse,
    /// It was already gone (another `cache clean` got there first).
    Gone,
}

/// Remove what `reason` says from the cache at `path`, holding its lock.
///
/// Re-checks the directory first (name, real directory, owner = uid in
/// the name, no mount point at or below it) and works through pinned
/// directory fds from then on: in a sticky world-writable base such as
/// /var/tmp the cache's owner could rename it and put a symlink to /etc in
/// its place between our check and the removals. Nothing is followed;
/// symlinks inside are unlinked. For a stale appliance only `appliance.d`,
/// supermin's transient `appliance.d.XXXXXXXX`, our dead staging
/// directories and the stamp go. The lock file is kept (owned by the user)
/// unless the whole cache goes. Losing a race to another cleaner is
/// [`CleanOutcome::Gone`], not an error.
///
/// Errors: the checks fail, the lock cannot be opened, a removal fails.
pub fn remove_cache(path: &Path, reason: &CleanReason, dry_run: bool) -> Result<CleanOutcome, CacheError> {
    let not_cache = || CacheError::NotACache { path: path.to_owned() };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(not_cache)?;
    let uid = cache_uid(name).ok_or_else(not_cache)?;
    let (parent, _) = crate::safefs::split(path).ok_or_else(not_cache)?;
    let base = PinnedDir::open(parent)?;
    let gone = |e: &CacheError| match e {
        CacheError::Fs(SafeFsError::Io { source, .. }) | CacheError::Io { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
        }
        CacheError::Lock(OutputError::Fs(SafeFsError::Io { source, .. })) => {
            source.kind() == io::ErrorKind::NotFound
        }
        _ => false,
    };
    let cache = match open_cache(&base, name, uid) {
        Ok(c) => c,
        Err(e) if gone(&e) => return Ok(CleanOutcome::Gone),
        Err(e) => return Err(e),
    };
    match remove_pinned(&base, name, &cache, reason, dry_run) {
        Err(e) if gone(&e) => Ok(CleanOutcome::Gone),
        other => other,
    }
}

fn remove_pinned(
    base: &PinnedDir,
    name: &str,
    cache: &PinnedDir,
    reason: &CleanReason,
    dry_run: bool,
) -> Result<CleanOutcome, CacheError> {
    let st = cache.stat_self()?;
    if let Some(mount) = mount_at_or_below(cache.path()) {
        return Err(CacheError::MountPoint { path: cache.path().to_owned(), mount });
    }
    let targets = removal_targets(cache, reason)?;
    let freed: u64 = targets.iter().map(|t| tree_size(&cache.child(t)).1).sum::<u64>()
        + if reason.removes_whole_cache() { st.st_blocks as u64 * 512 } else { 0 };
    let lock_exists = check_lock_file_in(cache)?;
    let lock_name = std::ffi::OsStr::new(LOCK_NAME);
    if dry_run {
        let held = lock_exists && output::is_locked_in(cache, lock_name)?;
        return Ok(if held { CleanOutcome::InUse } else { CleanOutcome::WouldRemove(freed) });
    }
    ensure_lock_file(cache, st.st_uid, st.st_gid)?;
    let Some(lock) = OutputLock::try_acquire_in(cache, lock_name)? else {
        return Ok(CleanOutcome::InUse);
    };
    // Under the lock no supermin can be writing here; re-list in case one
    // finished just before we took it.
    for t in removal_targets(cache, reason)? {
        cache.remove_tree(&t)?;
    }
    if reason.removes_whole_cache() {
        // Unlink the lock file while still holding it, then the directory
        // (rmdir never follows a symlink): a supermin that starts now finds
        // no cache and makes a new one. Another cleaner that opened the
        // cache before we unlinked the lock may have made a new one: it
        // finishes the job, so a non-empty or vanished directory is fine.
        cache.remove_file(LOCK_NAME)?;
        match nix::unistd::unlinkat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(base))),
            name,
            nix::unistd::UnlinkatFlags::RemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTEMPTY) => {}
            Err(e) => {
                return Err(CacheError::Io { action: "removing", path: base.child(name), source: e.into() })
            }
        }
    } else {
        output::clean_leftovers_in(cache, std::ffi::OsStr::new(APPLIANCE_DIR))?;
    }
    drop(lock);
    Ok(CleanOutcome::Removed(freed))
}

/// The entries `reason` removes, excluding the lock file.
fn removal_targets(cache: &PinnedDir, reason: &CleanReason) -> Result<Vec<std::ffi::OsString>, CacheError> {
    // `check`'s stat-level stamp describes the appliance, so it goes with it.
    let stamp = crate::stamp::stamp_path(&cache.child(APPLIANCE_DIR));
    let stamp_name = stamp.file_name().map(|n| n.to_owned()).unwrap_or_default();
    let mut targets: Vec<_> = cache
        .list()?
        .into_iter()
        .filter(|entry| {
            let name = entry.to_string_lossy();
            if reason.removes_whole_cache() {
                name != LOCK_NAME
            } else {
                name == APPLIANCE_DIR || *entry == stamp_name || is_supermin_transient(&name)
            }
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// supermin's transient `appliance.d.XXXXXXXX` (eight of `[a-z0-9]`,
/// docs/supermin-compat.md, "Output swap").
fn is_supermin_transient(name: &str) -> bool {
    name.strip_prefix("appliance.d.")
        .is_some_and(|r| r.len() == 8 && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::UserTable;
    use std::os::unix::fs::PermissionsExt;

    fn users() -> UserTable {
        UserTable::new(&[("root", 0, 0), ("svc", 1001, 1002)])
    }

    fn me() -> (u32, u32) {
        (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
    }

    fn fake_cache(base: &Path, uid: u32) -> PathBuf {
        let c = base.join(format!(".guestfs-{uid}"));
        let app = c.join(APPLIANCE_DIR);
        std::fs::create_dir_all(&app).unwrap();
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in DATED_OUTPUTS {
            std::fs::write(app.join(f), vec![1u8; 5000]).unwrap();
        }
        std::fs::write(c.join("qemu-1-2.stat"), b"3 1 2 /usr/bin/qemu").unwrap();
        c
    }

    fn ctx<'a>(
        users: &'a UserTable,
        check: &'a dyn Fn(&Path) -> ApplianceState,
        inputs: Vec<PathBuf>,
    ) -> InspectContext<'a> {
        InspectContext { users, date_inputs: inputs, manifest_check: check, now: SystemTime::now() }
    }

    #[test]
    fn cache_names_and_bases() {
        assert_eq!(cache_uid(".guestfs-1001"), Some(1001));
        for bad in [".guestfs-", ".guestfs-1a", "guestfs-1", ".guestfs--1", ".guestfs-99999999999"] {
            assert_eq!(cache_uid(bad), None, "{bad}");
        }
        assert_eq!(libguestfs_base(Some("/c".into()), Some("/t".into())), PathBuf::from("/c"));
        assert_eq!(libguestfs_base(Some("".into()), Some("/t".into())), PathBuf::from("/t"));
        assert_eq!(libguestfs_base(None, None), PathBuf::from("/var/tmp"));
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(90 * 60));
        assert_eq!(parse_duration("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("1w2d").unwrap(), Duration::from_secs(9 * 86_400));
        for bad in ["", "30", "d", "3x", "-1d", "1.5d", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400 + 5)), "3d");
        assert_eq!(human_duration(Duration::from_secs(40)), "40s");
        assert_eq!(human_duration(Duration::from_secs(30 * 86_400)), "4w");
    }

    #[test]
    fn finds_caches_once_and_skips_other_names() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        std::fs::create_dir(tmp.path().join(".guestfs-x")).unwrap();
        std::fs::create_dir(tmp.path().join("other")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("other/alias")).unwrap();
        let dirs = vec![
            tmp.path().to_path_buf(),
            tmp.path().join("other/alias"),
            c.clone(),
            tmp.path().join("absent"),
        ];
        let found = find_caches(&dirs).unwrap();
        let canon = std::fs::canonicalize(&c).unwrap();
        assert_eq!(found, vec![canon]);
    }

    #[test]
    fn inspect_reports_sizes_lock_and_date_rule() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        let input = tmp.path().join("supermin.d");
        std::fs::create_dir(&input).unwrap();
        let p = UserTable::new(&[("me", uid, 0)]);
        let never = |_: &Path| ApplianceState::Unknown("not called".into());

        // Input newer than the outputs: supermin would rebuild.
        let past = SystemTime::now() - Duration::from_secs(3600);
        touch_outputs(&c.join(APPLIANCE_DIR), past).unwrap();
        let info = inspect(&c, &ctx(&p, &never, vec![input.clone()]));
        assert!(info.problem.is_none(), "{:?}", info.problem);
        assert!(info.has_appliance);
        assert_eq!(info.user, UserStatus::Exists("me".into()));
        assert!(
            matches!(&info.state, ApplianceState::StaleByDate(r) if r[0].contains("supermin.d")),
            "{:?}",
            info.state
        );
        assert_eq!(info.apparent_bytes, 3 * 5000 + 19);
        assert!(info.allocated_bytes >= 3 * 8192, "{}", info.allocated_bytes);
        assert!(!info.locked);

        // Outputs touched after the input: reused.
        touch_outputs(&c.join(APPLIANCE_DIR), SystemTime::now() + Duration::from_secs(5)).unwrap();
        let lock = OutputLock::try_acquire(&c.join(LOCK_NAME)).unwrap().unwrap();
        let info = inspect(&c, &ctx(&p, &never, vec![input.clone()]));
        assert_eq!(info.state, ApplianceState::FreshByDate);
        assert!(info.locked);
        drop(lock);

        // A manifest hands over to the caller's check.
        std::fs::write(c.join(APPLIANCE_DIR).join("manifest.toml"), b"x").unwrap();
        let fresh = |d: &Path| {
            assert!(d.ends_with(APPLIANCE_DIR));
            ApplianceState::Fresh
        };
        assert_eq!(inspect(&c, &ctx(&p, &fresh, vec![input])).state, ApplianceState::Fresh);
    }

    #[test]
    fn inspect_flags_symlinks_and_owner_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let real = fake_cache(tmp.path(), uid);
        let link = tmp.path().join(format!(".guestfs-{}", uid.wrapping_add(1)));
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let p = users();
        let never = |_: &Path| ApplianceState::Fresh;
        let info = inspect(&link, &ctx(&p, &never, vec![]));
        assert!(info.problem.as_deref().is_some_and(|m| m.contains("symlink")), "{:?}", info.problem);
        assert_eq!(info.apparent_bytes, 0, "followed the symlink");
        // A directory whose name says another uid than its owner.
        let other = tmp.path().join(format!(".guestfs-{}", uid.wrapping_add(2)));
        std::fs::create_dir(&other).unwrap();
        let info = inspect(&other, &ctx(&p, &never, vec![]));
        assert!(info.problem.as_deref().is_some_and(|m| m.contains("belongs to uid")), "{:?}", info.problem);
        assert_eq!(clean_reason(&info, &CleanPolicy::default()), None);
        assert!(remove_cache(&other, &CleanReason::UserGone, false).is_err());
        assert!(remove_cache(&link, &CleanReason::UserGone, false).is_err());
        assert!(real.join(APPLIANCE_DIR).join("root").exists());
    }

    #[test]
    fn failed_user_lookup_is_never_taken_as_user_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        let never = |_: &Path| ApplianceState::Fresh;
        let gone = inspect(&c, &ctx(&UserTable::new(&[]), &never, vec![]));
        assert_eq!(gone.user, UserStatus::Gone);
        assert_eq!(clean_reason(&gone, &CleanPolicy::default()), Some(CleanReason::UserGone));
        // The directory service is down: same cache, but it must stay.
        let down = UserTable { failing: vec![uid], ..UserTable::new(&[]) };
        let info = inspect(&c, &ctx(&down, &never, vec![]));
        assert_eq!(info.user, UserStatus::Unknown);
        assert!(
            info.problem.as_deref().is_some_and(|p| p.contains("cannot tell whether its user exists")),
            "{:?}",
            info.problem
        );
        assert_eq!(clean_reason(&info, &CleanPolicy::default()), None);
    }

    #[test]
    fn clean_policy_picks_reasons() {
        let base = CacheInfo {
            path: "/var/tmp/.guestfs-1001".into(),
            uid: 1001,
            owner: 1001,
            group: 1001,
            user: UserStatus::Exists("svc".into()),
            problem: None,
            has_appliance: true,
            apparent_bytes: 0,
            allocated_bytes: 0,
            age: Some(Duration::from_secs(10 * 86_400)),
            state: ApplianceState::StaleByDate(vec!["x".into()]),
            locked: false,
        };
        let none = CleanPolicy::default();
        assert_eq!(clean_reason(&base, &none), None);
        let gone = CacheInfo { user: UserStatus::Gone, ..base.clone() };
        assert_eq!(clean_reason(&gone, &none), Some(CleanReason::UserGone));
        let old = CleanPolicy { older_than: Some(Duration::from_secs(86_400)), ..Default::default() };
        assert!(matches!(clean_reason(&base, &old), Some(CleanReason::Old(_))));
        let young = CleanPolicy { older_than: Some(Duration::from_secs(30 * 86_400)), ..Default::default() };
        assert_eq!(clean_reason(&base, &young), None);
        let stale = CleanPolicy { stale: true, ..Default::default() };
        assert_eq!(clean_reason(&base, &stale), Some(CleanReason::Stale));
        let fresh = CacheInfo { state: ApplianceState::Fresh, ..base.clone() };
        assert_eq!(clean_reason(&fresh, &stale), None);
        let other_user = CleanPolicy { uids: Some(vec![7]), ..stale };
        assert_eq!(clean_reason(&base, &other_user), None);
    }

    #[test]
    fn remove_whole_cache_respects_lock_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        // A symlink inside pointing outside must be unlinked, not followed.
        let outside = tmp.path().join("precious");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        std::os::unix::fs::symlink(&outside, c.join("evil")).unwrap();

        let held = OutputLock::try_acquire(&c.join(LOCK_NAME)).unwrap().unwrap();
        assert_eq!(remove_cache(&c, &CleanReason::UserGone, false).unwrap(), CleanOutcome::InUse);
        assert_eq!(remove_cache(&c, &CleanReason::UserGone, true).unwrap(), CleanOutcome::InUse);
        assert!(c.join(APPLIANCE_DIR).join("root").exists());
        drop(held);

        match remove_cache(&c, &CleanReason::UserGone, true).unwrap() {
            CleanOutcome::WouldRemove(n) => assert!(n >= 3 * 4096, "{n}"),
            other => panic!("{other:?}"),
        }
        assert!(c.exists());
        assert!(matches!(remove_cache(&c, &CleanReason::UserGone, false).unwrap(), CleanOutcome::Removed(_)));
        assert!(!c.exists());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn removal_works_on_the_checked_directory_not_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        let base = PinnedDir::open(tmp.path()).unwrap();
        let name = c.file_name().unwrap().to_str().unwrap().to_owned();
        let pinned = open_cache(&base, &name, uid).unwrap();
        // The owner swaps the name for a symlink to a victim directory.
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("passwd"), b"keep").unwrap();
        let moved = tmp.path().join("moved");
        std::fs::rename(&c, &moved).unwrap();
        std::os::unix::fs::symlink(&victim, &c).unwrap();
        let targets = removal_targets(&pinned, &CleanReason::UserGone).unwrap();
        assert!(targets.iter().any(|t| t == APPLIANCE_DIR), "{targets:?}");
        for t in &targets {
            pinned.remove_tree(t).unwrap();
        }
        assert!(victim.join("passwd").is_file(), "followed the swapped-in symlink");
        assert!(!moved.join(APPLIANCE_DIR).exists());
        assert!(open_cache(&base, &name, uid).is_err());
    }

    #[test]
    fn only_canonical_uids_name_caches() {
        assert_eq!(cache_uid(".guestfs-4011"), Some(4011));
        assert_eq!(cache_uid(".guestfs-0"), Some(0));
        for bad in [".guestfs-04011", ".guestfs-00004011", ".guestfs-00", ".guestfs-+4011"] {
            assert_eq!(cache_uid(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_cache_that_vanished_is_gone_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        std::fs::remove_dir_all(&c).unwrap();
        assert_eq!(remove_cache(&c, &CleanReason::UserGone, false).unwrap(), CleanOutcome::Gone);
    }

    #[test]
    fn remove_stale_keeps_cache_and_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        std::fs::create_dir(c.join("appliance.d.ab12cd34")).unwrap();
        std::fs::create_dir(c.join("appliance.d.keepme-not-transient")).unwrap();
        std::fs::write(c.join(LOCK_NAME), b"").unwrap();
        std::fs::write(c.join(".appliance.d.stamp"), b"{}").unwrap();
        assert!(
            matches!(remove_cache(&c, &CleanReason::Stale, false).unwrap(), CleanOutcome::Removed(n) if n > 0)
        );
        assert!(!c.join(APPLIANCE_DIR).exists());
        assert!(!c.join("appliance.d.ab12cd34").exists());
        assert!(!c.join(".appliance.d.stamp").exists());
        assert!(c.join("appliance.d.keepme-not-transient").exists());
        assert!(c.join(LOCK_NAME).is_file());
        assert!(c.join("qemu-1-2.stat").is_file());
    }

    #[test]
    fn prepare_creates_and_checks_the_cache_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, gid) = me();
        let c = prepare_cache_dir(tmp.path(), uid, gid).unwrap();
        let md = std::fs::symlink_metadata(&c).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.mode() & 0o7777, 0o755);
        assert_eq!(md.uid(), uid);
        let lock = std::fs::symlink_metadata(c.join(LOCK_NAME)).unwrap();
        assert!(lock.is_file());
        assert_eq!(lock.uid(), uid);
        // Idempotent.
        assert_eq!(prepare_cache_dir(tmp.path(), uid, gid).unwrap(), c);
        // Group-writable: refused, as libguestfs would.
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(prepare_cache_dir(tmp.path(), uid, gid), Err(CacheError::UnsafeMode { .. })));
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A symlinked lock file: refused, never followed.
        std::fs::remove_file(c.join(LOCK_NAME)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", c.join(LOCK_NAME)).unwrap();
        let err = prepare_cache_dir(tmp.path(), uid, gid).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        // A symlinked cache dir: refused.
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            other.path(),
            tmp.path().join(format!(".guestfs-{}", uid.wrapping_add(1))),
        )
        .unwrap();
        assert!(prepare_cache_dir(tmp.path(), uid.wrapping_add(1), gid).is_err());
    }

    #[test]
    fn date_rule_is_strict() {
        let tmp = tempfile::tempdir().unwrap();
        let c = fake_cache(tmp.path(), 1);
        let app = c.join(APPLIANCE_DIR);
        let input = tmp.path().join("in");
        std::fs::write(&input, b"").unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        touch_outputs(&app, t).unwrap();
        nix::sys::stat::utimensat(
            None,
            input.as_path(),
            &nix::sys::time::TimeSpec::new(1_700_000_000, 0),
            &nix::sys::time::TimeSpec::new(1_700_000_000, 0),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        // Equal dates: not strictly older, so supermin rebuilds.
        assert!(date_rule(&app, std::slice::from_ref(&input)).is_stale());
        touch_outputs(&app, t + Duration::from_millis(1)).unwrap();
        assert_eq!(date_rule(&app, std::slice::from_ref(&input)), ApplianceState::FreshByDate);
        std::fs::remove_file(app.join("initrd")).unwrap();
        assert!(date_rule(&app, &[input]).is_stale());
    }
}
