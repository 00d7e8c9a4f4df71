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
//! it (read-only location, another user's appliance) only costs speed. It is
//! read and written through [`crate::safefs`]: never through a planted
//! link, never blocking on a planted FIFO, never believed from a stranger.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::safefs::{Access, PinnedDir};

use serde::{Deserialize, Serialize};

/// Stamp format version.
const STAMP_VERSION: u32 = 1;

/// The `lstat` signature of one path; `None` fields mean "did not exist".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileSig {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileSig {
    /// Signature of `path` (`None` if it does not exist or cannot be read).
    pub(crate) fn of(path: &Path) -> Option<FileSig> {
        std::fs::symlink_metadata(path).ok().map(|md| FileSig::from_metadata(&md))
    }

    /// Signature from a `stat`/`lstat`/`fstat` result.
    pub(crate) fn from_metadata(md: &std::fs::Metadata) -> FileSig {
        FileSig {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
        }
    }

    /// The later of its modification and change times, in nanoseconds
    /// since 1970.
    pub(crate) fn newest_time_ns(&self) -> i128 {
        self.mtime_ns.max(self.ctime_ns)
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

/// Largest stamp we read (it lists every watched path: a few hundred KiB
/// for libguestfs's full appliance).
const STAMP_LIMIT: u64 = 64 << 20;

/// Where the stamp of appliance directory `dir` lives.
pub fn stamp_path(dir: &Path) -> PathBuf {
    beside_path(dir, STAMP_SUFFIX)
}

/// The stamp's suffix: `PARENT/.NAME.stamp`.
const STAMP_SUFFIX: &str = "stamp";

/// `PARENT/.NAME.SUFFIX` for appliance directory `PARENT/NAME`: where the
/// files that describe an appliance but must outlive its directory (which
/// every build replaces) live: the stamp, and [`crate::hashcache`]'s file.
pub(crate) fn beside_path(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.parent().unwrap_or(Path::new(".")).join(format!(".{name}.{suffix}"))
}

/// The directory (pinned) and name of `dir`'s `suffix` file.
pub(crate) fn pinned(dir: &Path, suffix: &str) -> Option<(PinnedDir, OsString)> {
    let path = beside_path(dir, suffix);
    let (parent, name) = crate::paths::split(&path)?;
    Some((PinnedDir::open(parent).ok()?, name.to_owned()))
}

/// The bytes of `dir`'s `suffix` file (see [`beside_path`]), if it can be
/// believed: a regular file with one link, owned by us, root or the owner
/// of the directory holding it (in a shared parent anyone could plant one,
/// or a FIFO to make us wait forever), reached without following a link,
/// of at most `limit` bytes. `None` for anything else: such files only
/// save work, so what cannot be believed is ignored, never an error.
pub(crate) fn read_beside(dir: &Path, suffix: &str, limit: u64) -> Option<Vec<u8>> {
    let (parent, name) = pinned(dir, suffix)?;
    let file = parent.open_regular(&name, Access::Read).ok()??;
    crate::output::check_trusted(&parent, &name, &file).ok()?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}

/// Replace `dir`'s `suffix` file with `bytes`. Best effort: errors are
/// returned for `-v` but harmless.
///
/// Written atomically through the pinned parent (exclusive temporary file
/// with a random name, renamed over the file, never written through a
/// link). Not synced: these files only save work and are checked before
/// use, so what a crash can leave (the previous content, an empty file, no
/// file) is harmless: an empty file is not believed, and an old stamp names
/// the signatures, manifest inode included, of what it described. The two
/// fsyncs would cost `check` after a touch a quarter of its time.
/// When we are root and the parent belongs to someone else (a user's
/// libguestfs cache), the file is given to the parent's owner, so that
/// user's own `check` can refresh it.
pub(crate) fn write_beside(dir: &Path, suffix: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = beside_path(dir, suffix);
    let (parent, name) = crate::paths::split(&path).ok_or_else(|| std::io::Error::other("no parent"))?;
    let parent = PinnedDir::open(parent).map_err(std::io::Error::other)?;
    let owner = beside_owner(&parent)?;
    parent.write_atomic_unsynced(name, bytes, 0o644, owner).map_err(std::io::Error::other)
}

/// Who a file we write beside an appliance (in `parent`) is given to: the
/// parent's owner when we are root and the parent is someone else's (a
/// user's libguestfs cache), so that user's own runs can refresh it; else
/// nobody (it stays ours).
pub(crate) fn beside_owner(parent: &PinnedDir) -> std::io::Result<Option<(u32, u32)>> {
    let st = parent.stat_self().map_err(std::io::Error::other)?;
    Ok((nix::unistd::geteuid().is_root() && st.st_uid != 0).then_some((st.st_uid, st.st_gid)))
}

/// True when the stamp says nothing changed since `fingerprint` was found
/// fresh for `dir` under this `request` digest. Returns the fingerprint.
///
/// Only a regular file with one link, owned by us, root or the owner of the
/// directory holding it, is believed: in a shared parent anyone could plant
/// a stamp saying "fresh", or a FIFO to make us wait forever.
pub(crate) fn still_fresh(dir: &Path, request: &str) -> Option<String> {
    let text = read_beside(dir, STAMP_SUFFIX, STAMP_LIMIT)?;
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
/// `watched`. Best effort: errors are returned for `-v` but harmless. Written
/// by [`write_beside`].
pub(crate) fn record(
    dir: &Path,
    request: &str,
    fingerprint: &str,
    watched: &[PathBuf],
) -> std::io::Result<()> {
    let stamp = Stamp {
        version: STAMP_VERSION,
        request: request.to_string(),
        fingerprint: fingerprint.to_string(),
        manifest: FileSig::of(&dir.join(crate::manifest::MANIFEST_NAME)),
        files: watched.iter().map(|p| (p.clone(), FileSig::of(p))).collect(),
    };
    let bytes = serde_json::to_vec(&stamp).map_err(std::io::Error::other)?;
    write_beside(dir, STAMP_SUFFIX, &bytes)
}

/// The paths the last exact computation for `dir` read (what `watch`
/// watches), or `None` without a stamp of this format that can be
/// believed (read as [`still_fresh`] reads it: never through a link or a
/// FIFO, never a stranger's, at most [`STAMP_LIMIT`] bytes).
pub(crate) fn watched_paths(dir: &Path) -> Option<Vec<PathBuf>> {
    let text = read_beside(dir, STAMP_SUFFIX, STAMP_LIMIT)?;
    let stamp: Stamp = serde_json::from_slice(&text).ok()?;
    (stamp.version == STAMP_VERSION).then(|| stamp.files.into_iter().map(|(path, _)| path).collect())
}

/// Forget the stamp (after a build, before the new one is recorded).
pub(crate) fn clear(dir: &Path) {
    if let Some((parent, name)) = pinned(dir, STAMP_SUFFIX) {
        let _ = parent.remove_file(name);
    }
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
        assert_eq!(watched_paths(&dir), Some(vec![watched.clone(), missing.clone()]));
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

#[cfg(test)]
mod attack_tests {
    use super::*;

    /// Issue 8 items 2 and 9: a symlink at any predictable temporary name
    /// or a FIFO at the stamp's name neither redirects nor blocks us.
    #[test]
    fn planted_links_and_fifos_are_harmless() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("manifest.toml"), "x").unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let pid = std::process::id();
        std::os::unix::fs::symlink(&victim, tmp.path().join(format!(".app.stamp.tmp{pid}"))).unwrap();
        nix::unistd::mkfifo(&stamp_path(&dir), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        assert_eq!(still_fresh(&dir, "r"), None);
        assert_eq!(watched_paths(&dir), None);
        record(&dir, "r", "fp", &[]).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(still_fresh(&dir, "r").as_deref(), Some("fp"));
    }

    /// `watch` reads the stamp's paths the way `check` reads the stamp: a
    /// link planted in its place (to a stamp of the attacker's choosing,
    /// naming paths to watch) is not followed.
    #[test]
    fn watched_paths_do_not_follow_a_planted_link() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("manifest.toml"), "x").unwrap();
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("manifest.toml"), "x").unwrap();
        record(&other, "r", "fp", &[PathBuf::from("/planted")]).unwrap();
        std::os::unix::fs::symlink(stamp_path(&other), stamp_path(&dir)).unwrap();
        assert_eq!(watched_paths(&other), Some(vec![PathBuf::from("/planted")]));
        assert_eq!(watched_paths(&dir), None);
    }
}
