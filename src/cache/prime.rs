//! Priming a user's cache: make `.guestfs-UID` and its lock file as
//! libguestfs would accept them, and date the appliance's outputs so
//! supermin's `--if-newer` reuses them. Everything is done through pinned
//! directory fds, created exclusively, owners set on fds: the cache's owner
//! cannot steer us through a link.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{ensure_lock_file, open_cache, CacheError, CACHE_PREFIX, DATED_OUTPUTS};
use crate::output;
use crate::safefs::{Access, PinnedDir, SafeFsError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::*;
    use crate::cache::LOCK_NAME;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
}
