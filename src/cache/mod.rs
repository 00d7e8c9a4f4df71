//! libguestfs's per-user appliance caches (`<base>/.guestfs-<UID>`): find
//! them, inspect them (owner, size, age, freshness, lock), prime one for a
//! user, and remove them safely.
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
//! One file per job: `find.rs` locates caches and tells a cache by its
//! name, `inspect.rs` reports on one (including supermin's date rule),
//! `prime.rs` builds a user's appliance into one, `clean.rs` removes
//! caches. This file holds what they share: the names inside a cache, the
//! error type, and the rules for opening a cache and its lock file.
//!
//! It leaves to others: the build pipeline (`crate::build`, which
//! [`prime()`] calls), checking an appliance that has a manifest against the
//! host (the caller passes that check in, see
//! [`InspectContext::manifest_check`]), and printing (`commands::cache`).
//! Whether a cache's user still exists is asked of a [`UserDb`] (on the
//! host: libc and NSS, see [`crate::host::users`]); a lookup that fails is never
//! taken as "gone".

use std::io;
use std::path::{Path, PathBuf};

#[cfg(doc)]
use crate::host::users::UserDb;
use crate::output::{self, OutputError};
use crate::safefs::{Access, PinnedDir, SafeFsError};

mod clean;
mod find;
mod inspect;
mod prime;

pub(crate) use clean::{
    clean_reason, human_duration, parse_duration, remove_cache, CleanOutcome, CleanPolicy,
};
pub(crate) use find::{cache_uid, default_search_dirs, find_caches, libguestfs_base, mount_at_or_below};
pub use inspect::{date_rule, host_date_inputs, ApplianceState};
pub(crate) use inspect::{inspect, tree_size, CacheInfo, InspectContext, UserStatus};
pub(crate) use prime::prime;
pub use prime::{prime_observed, touch_outputs, PrimeRequest};

/// Name prefix of a cache directory; the rest is the decimal uid.
pub(crate) const CACHE_PREFIX: &str = ".guestfs-";

/// The appliance directory supermin writes inside a cache.
pub(crate) const APPLIANCE_DIR: &str = "appliance.d";

/// The lock file supermin's `--lock` takes, beside `appliance.d`.
pub(crate) const LOCK_NAME: &str = "lock";

/// The files whose dates supermin's `--if-newer` compares (besides
/// `appliance.d` itself).
pub(crate) const DATED_OUTPUTS: [&str; 3] = ["kernel", "root", "initrd"];

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
// Opening a cache and its lock file (shared by inspect, prime and clean)

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

#[cfg(test)]
pub(super) mod test_support {
    //! Fixtures shared by the submodules' tests.
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::{APPLIANCE_DIR, DATED_OUTPUTS};

    pub(crate) fn me() -> (u32, u32) {
        (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
    }

    pub(crate) fn fake_cache(base: &Path, uid: u32) -> PathBuf {
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
}
