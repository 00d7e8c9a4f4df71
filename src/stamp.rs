//! The stat-level stamp: a cheap way to know that nothing the fingerprint
//! depends on has changed since it was last computed.
//!
//! Recomputing the fingerprint reads the package database, the inputs and
//! the kernel (tens of milliseconds). Package-manager hooks and cron ask far
//! more often than anything changes, so after a full computation that found
//! the appliance fresh we record `lstat` signatures (device, inode, size,
//! mtime and ctime in nanoseconds) of every path that computation read, plus
//! a digest of the request (options, environment, tool version) and of the
//! manifest file. If all of them are unchanged, the answer is still "fresh"
//! and no file is read. Any difference — even a `touch` — only sends us back
//! to the exact computation; the stamp can never make a stale appliance look
//! fresh unless a file changed without changing its inode, size, mtime *and*
//! ctime, which the kernel does not allow.
//!
//! The stamp lives beside the appliance directory (`PARENT/.NAME.stamp`),
//! because the directory itself is replaced by every build. Failing to write
//! it (read-only location, another user's appliance) only costs speed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest stamp we read: it lists every watched path (thousands).
const STAMP_MAX: u64 = 64 << 20;

/// Stamp format version.
const STAMP_VERSION: u32 = 1;

/// The `lstat` signature of one path; `None` fields mean "did not exist".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSig {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileSig {
    /// Signature of `path` (`None` if it does not exist or cannot be read).
    pub fn of(path: &Path) -> Option<FileSig> {
        let md = std::fs::symlink_metadata(path).ok()?;
        Some(FileSig {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    version: u32,
    request: String,
    fingerprint: String,
    manifest: Option<FileSig>,
    files: Vec<(PathBuf, Option<FileSig>)>,
}

/// Where the stamp of appliance directory `dir` lives.
pub fn stamp_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.parent().unwrap_or(Path::new(".")).join(format!(".{name}.stamp"))
}

/// True when the stamp says nothing changed since `fingerprint` was found
/// fresh for `dir` under this `request` digest. Returns the fingerprint.
pub fn still_fresh(dir: &Path, request: &str) -> Option<String> {
    // Bounded, and never blocking on a FIFO planted in its place.
    let text = crate::bounded::read(&stamp_path(dir), STAMP_MAX).ok()?;
    let stamp: Stamp = serde_json::from_slice(&text).ok()?;
    if stamp.version != STAMP_VERSION || stamp.request != request {
        return None;
    }
    if stamp.manifest.is_none() || FileSig::of(&dir.join(crate::manifest::MANIFEST_NAME)) != stamp.manifest {
        return None;
    }
    stamp.files.iter().all(|(path, sig)| FileSig::of(path) == *sig).then_some(stamp.fingerprint)
}

/// Record that `dir` was found fresh with `fingerprint` after reading
/// `watched`. Best effort: errors are returned for `-v` but harmless.
pub fn record(dir: &Path, request: &str, fingerprint: &str, watched: &[PathBuf]) -> std::io::Result<()> {
    let stamp = Stamp {
        version: STAMP_VERSION,
        request: request.to_string(),
        fingerprint: fingerprint.to_string(),
        manifest: FileSig::of(&dir.join(crate::manifest::MANIFEST_NAME)),
        files: watched.iter().map(|p| (p.clone(), FileSig::of(p))).collect(),
    };
    let path = stamp_path(dir);
    let tmp = path.with_extension(format!("stamp.tmp{}", std::process::id()));
    let bytes = serde_json::to_vec(&stamp).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Forget the stamp (after a build, before the new one is recorded).
pub fn clear(dir: &Path) {
    let _ = std::fs::remove_file(stamp_path(dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_holds_until_any_watched_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("manifest.toml"), "x").unwrap();
        let watched = tmp.path().join("status");
        std::fs::write(&watched, "a").unwrap();
        let missing = tmp.path().join("absent");
        record(&dir, "req", "fp", &[watched.clone(), missing.clone()]).unwrap();
        assert_eq!(still_fresh(&dir, "req").as_deref(), Some("fp"));
        assert_eq!(still_fresh(&dir, "other request"), None);

        // Touching (same content, new times) invalidates: the exact check
        // then decides.
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&watched, "a").unwrap();
        assert_eq!(still_fresh(&dir, "req"), None);

        record(&dir, "req", "fp", &[watched.clone(), missing.clone()]).unwrap();
        std::fs::write(&missing, "now here").unwrap();
        assert_eq!(still_fresh(&dir, "req"), None);
    }

    #[test]
    fn replaced_manifest_invalidates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("manifest.toml"), "x").unwrap();
        record(&dir, "r", "fp", &[]).unwrap();
        std::fs::remove_file(dir.join("manifest.toml")).unwrap();
        std::fs::write(dir.join("manifest.toml"), "y").unwrap();
        assert_eq!(still_fresh(&dir, "r"), None);
    }
}
