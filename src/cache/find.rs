//! Finding libguestfs caches: where libguestfs puts them, which names are
//! caches (`.guestfs-UID`, canonical decimal only), and which mount points
//! lie at or below one. Judging a cache is [`super::inspect`]'s.

use std::io;
use std::path::{Path, PathBuf};

use super::{io_err, CacheError, CACHE_PREFIX};

/// libguestfs's cache base for the given environment values:
/// `LIBGUESTFS_CACHEDIR`, else `TMPDIR`, else `/var/tmp` (empty values count
/// as unset).
pub(crate) fn libguestfs_base(cachedir: Option<PathBuf>, tmpdir: Option<PathBuf>) -> PathBuf {
    cachedir
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| tmpdir.filter(|p| !p.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// The base directories to search by default: `$LIBGUESTFS_CACHEDIR`,
/// `$TMPDIR` and `/var/tmp` (each that is set), then `extra`.
pub(crate) fn default_search_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
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
pub(crate) fn cache_uid(name: &str) -> Option<u32> {
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
pub(crate) fn mount_at_or_below(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    crate::host::mountinfo::parse(&text).into_iter().map(|m| m.mount_point).find(|m| m.starts_with(path))
}

/// Every `.guestfs-UID` entry in `dirs`. A dir that is itself named
/// `.guestfs-UID` counts as a cache. Base directories are compared by
/// canonical path so `$TMPDIR=/var/tmp` is searched once; the cache entries
/// themselves are not resolved (a symlinked cache is reported, never
/// followed). Missing base directories are skipped.
pub(crate) fn find_caches(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, CacheError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::*;

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
    fn only_canonical_uids_name_caches() {
        assert_eq!(cache_uid(".guestfs-4011"), Some(4011));
        assert_eq!(cache_uid(".guestfs-0"), Some(0));
        for bad in [".guestfs-04011", ".guestfs-00004011", ".guestfs-00", ".guestfs-+4011"] {
            assert_eq!(cache_uid(bad), None, "{bad}");
        }
    }
}
