//! Remembered sha256 digests of host files, each tied to the `stat`
//! signature of the file it was computed from: what keeps `check` cheap
//! after a `touch` of the package database.
//!
//! When the stat-level stamp ([`crate::stamp`]) does not hold — any watched
//! path's signature moved: `touch /var/lib/dpkg/status`, a dpkg trigger
//! rewriting the status file with the same packages, a `depmod -a` — the
//! fingerprint is recomputed. Most of that recomputation was hashing files
//! that had not changed: the kernel image (8 MB on Debian 12), depmod's
//! indexes (5 MB), the inputs' base archives (2 MB for libguestfs). So the
//! digest of each file hashed is remembered with the file's signature
//! (device, inode, size, mtime and ctime in nanoseconds; the file reached
//! through symlinks, as it is read), and used again only while the file has
//! exactly that signature. A change of content changes the ctime, which
//! no user can set: content rewritten with its mtime put back (`touch -d`)
//! is hashed again.
//!
//! Racy signatures (git's "racy clean" problem): a file changed twice
//! within one tick of its filesystem's clock can keep its signature. A
//! digest is therefore kept for later runs only when the file's mtime and
//! ctime are more than [`RACY_WINDOW`] older than the moment we began
//! reading it, and the file's signature did not move while we read it; a
//! younger file is hashed again next time. Within one run each file is
//! hashed at most once (`modules.dep` is both the kernel's index and part of
//! the modules tree).
//!
//! The digests live beside the stamp (`PARENT/.NAME.hashes`), read and
//! written the same way ([`crate::stamp::read_beside`],
//! [`crate::stamp::write_beside`]): never through a planted link or FIFO,
//! never believed from a stranger, read up to [`READ_LIMIT`] bytes. A file
//! that is missing, untrusted, oversized, corrupt or of another format is
//! ignored and everything is hashed: it only saves work. The digests the
//! last computation used are written back, with those remembered that it
//! did not ask for while their file keeps its signature (`check` does not
//! read the remembered vmlinux a build hashed, and must not make the next
//! build hash it again; the file does not grow with kernels that come and
//! go), only when that set changed, and only by
//! callers that may write beside the appliance (`check`, builds; not the
//! reports, which only look). What the digests are used for is the
//! callers' business (`build::plan`, `hostdata`, `input`).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::stamp::FileSig;
use serde::{Deserialize, Serialize};

/// Format version of the file.
const FORMAT_VERSION: u32 = 1;

/// The file's suffix: `PARENT/.NAME.hashes`.
const SUFFIX: &str = "hashes";

/// Largest file we read: one entry is about 250 bytes, and a computation
/// hashes a few dozen files (kernel, depmod's indexes, inputs, hostfiles).
pub(crate) const READ_LIMIT: u64 = 4 << 20;

/// How much older than "now" a file's times must be for its digest to be
/// kept: FAT (a kernel on an EFI system partition) stores times in 2-second
/// steps and the kernel stamps files from a clock that lags by up to a tick,
/// so a file changed again within this window of the signature we saw could
/// show the same times.
pub const RACY_WINDOW: Duration = Duration::from_secs(3);

/// What a computation did: how many files it read and hashed, and how many
/// digests it took from memory instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HashStats {
    /// Files read and hashed.
    pub hashed: usize,
    /// Digests reused (remembered from an earlier run, or from earlier in
    /// this one).
    pub reused: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    version: u32,
    entries: Vec<StoredEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEntry {
    path: String,
    sig: FileSig,
    sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    sig: FileSig,
    sha256: [u8; 32],
    /// Old enough to be kept for later runs (see [`RACY_WINDOW`]).
    keep: bool,
}

/// A file about to be hashed: its signature when opened, and when.
#[derive(Debug)]
pub(crate) struct Reading {
    sig: FileSig,
    started: SystemTime,
}

/// The digests remembered for one appliance directory, and those used by
/// the computation in progress.
#[derive(Debug)]
pub struct HashCache {
    /// From the file, by path.
    remembered: HashMap<PathBuf, Entry>,
    /// Used (or computed) by this computation: what is written back.
    used: HashMap<PathBuf, Entry>,
    stats: HashStats,
    racy_window: Duration,
}

impl Default for HashCache {
    fn default() -> Self {
        HashCache::new()
    }
}

impl HashCache {
    /// Nothing remembered (a tarball-only build, a fresh plan).
    pub(crate) fn new() -> HashCache {
        HashCache {
            remembered: HashMap::new(),
            used: HashMap::new(),
            stats: HashStats::default(),
            racy_window: RACY_WINDOW,
        }
    }

    /// Nothing remembered, and every digest kept however new its file:
    /// for tests, which make their files just before hashing them.
    #[cfg(test)]
    pub(crate) fn keeping_every_digest() -> HashCache {
        HashCache { racy_window: Duration::ZERO, ..HashCache::new() }
    }

    /// Where the digests of appliance directory `dir` are kept.
    pub fn path(dir: &Path) -> PathBuf {
        crate::stamp::beside_path(dir, SUFFIX)
    }

    /// The digests remembered beside `dir`; none when there is no file, or
    /// it cannot be believed or parsed (see the module documentation).
    pub(crate) fn load(dir: &Path) -> HashCache {
        let mut cache = HashCache::new();
        if let Some(stored) = crate::stamp::read_beside(dir, SUFFIX, READ_LIMIT)
            .and_then(|bytes| serde_json::from_slice::<Stored>(&bytes).ok())
            .filter(|s| s.version == FORMAT_VERSION)
        {
            cache.remembered = stored
                .entries
                .into_iter()
                .filter_map(|e| {
                    let sha256 = parse_hex(&e.sha256)?;
                    Some((PathBuf::from(e.path), Entry { sig: e.sig, sha256, keep: true }))
                })
                .collect();
        }
        cache
    }

    /// Files hashed and digests reused so far.
    pub(crate) fn stats(&self) -> HashStats {
        self.stats
    }

    /// The digest of the open regular file `file` at `path` if it is known
    /// for its current signature (counted as reused), else a [`Reading`] to
    /// hand to [`HashCache::remember`] with the digest once it is computed.
    ///
    /// # Errors
    /// The `fstat` error.
    pub(crate) fn lookup(&mut self, path: &Path, file: &File) -> io::Result<Result<[u8; 32], Reading>> {
        let started = SystemTime::now();
        let sig = FileSig::from_metadata(&file.metadata()?);
        if let Some(entry) = self.used.get(path).filter(|e| e.sig == sig) {
            self.stats.reused += 1;
            return Ok(Ok(entry.sha256));
        }
        if let Some(entry) = self.remembered.get(path).filter(|e| e.sig == sig) {
            self.stats.reused += 1;
            let sha256 = entry.sha256;
            self.used.insert(path.to_path_buf(), entry.clone());
            return Ok(Ok(sha256));
        }
        Ok(Err(Reading { sig, started }))
    }

    /// Record that `file` at `path`, read since `reading` was made, hashed
    /// to `sha256`. Remembered for this run if its signature did not move
    /// meanwhile, and for later runs if it is also old enough (see
    /// [`RACY_WINDOW`]).
    pub(crate) fn remember(&mut self, path: &Path, file: &File, reading: Reading, sha256: [u8; 32]) {
        self.stats.hashed += 1;
        let Ok(md) = file.metadata() else { return };
        if FileSig::from_metadata(&md) != reading.sig {
            self.used.remove(path);
            return;
        }
        let keep = is_settled(&reading.sig, reading.started, self.racy_window);
        self.used.insert(path.to_path_buf(), Entry { sig: reading.sig, sha256, keep });
    }

    /// The sha256 of the regular file at `path` (followed through
    /// symlinks), reading it only when its digest is not known for its
    /// current signature. A FIFO or device is refused, not read.
    ///
    /// # Errors
    /// Opening (`InvalidInput` for a non-regular file) or reading it.
    pub(crate) fn sha256_file(&mut self, path: &Path) -> io::Result<[u8; 32]> {
        let mut file = crate::bounded::open_regular(path)?;
        let reading = match self.lookup(path, &file)? {
            Ok(sha256) => return Ok(sha256),
            Err(reading) => reading,
        };
        let sha256 = crate::digest::sha256_stream(&mut file)?;
        self.remember(path, &file, reading, sha256);
        Ok(sha256)
    }

    /// [`HashCache::sha256_file`] in lower-case hex, as manifests record it.
    ///
    /// # Errors
    /// As [`HashCache::sha256_file`].
    pub(crate) fn sha256_hex(&mut self, path: &Path) -> io::Result<String> {
        Ok(crate::digest::hex(&self.sha256_file(path)?))
    }

    /// Write the digests this computation used beside `dir`, and those
    /// remembered that it did not ask for whose file (reached through
    /// symlinks, as it is read) still has their signature, when they differ
    /// from those remembered there (usually they do not, and nothing is
    /// written). Best effort: errors are for `-v`; see
    /// [`crate::stamp::write_beside`] for how and as whom.
    ///
    /// Returns whether the file was written.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<bool> {
        let mut kept: HashMap<&PathBuf, &Entry> = self.used.iter().filter(|(_, e)| e.keep).collect();
        for (path, entry) in &self.remembered {
            if !self.used.contains_key(path)
                && std::fs::metadata(path).is_ok_and(|md| FileSig::from_metadata(&md) == entry.sig)
            {
                kept.insert(path, entry);
            }
        }
        let unchanged = kept.len() == self.remembered.len()
            && kept.iter().all(|(path, entry)| self.remembered.get(*path) == Some(*entry));
        if unchanged {
            return Ok(false);
        }
        let mut entries: Vec<StoredEntry> = kept
            .iter()
            .filter_map(|(path, e)| {
                Some(StoredEntry {
                    path: path.to_str()?.to_string(),
                    sig: e.sig,
                    sha256: crate::digest::hex(&e.sha256),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let bytes =
            serde_json::to_vec(&Stored { version: FORMAT_VERSION, entries }).map_err(io::Error::other)?;
        if bytes.len() as u64 > READ_LIMIT {
            return Err(io::Error::other(format!("{} digests are more than we would read back", kept.len())));
        }
        crate::stamp::write_beside(dir, SUFFIX, &bytes)?;
        Ok(true)
    }
}

/// Whether a file whose signature is `sig`, read from `started` on, was
/// last changed more than `window` before: then any later change gets
/// newer times, and the signature tells it.
fn is_settled(sig: &FileSig, started: SystemTime, window: Duration) -> bool {
    let Ok(since_epoch) = started.duration_since(SystemTime::UNIX_EPOCH) else { return false };
    let Some(limit) = since_epoch.checked_sub(window) else { return false };
    sig.newest_time_ns() < limit.as_nanos() as i128
}

/// 32 bytes from 64 hex digits.
fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Write;

    /// A cache that keeps every digest, however new the file: the tests
    /// make their files just before hashing them.
    fn keeping_all(dir: &Path) -> HashCache {
        let mut c = HashCache::load(dir);
        c.racy_window = Duration::ZERO;
        c
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        let file = tmp.path().join("vmlinuz");
        std::fs::write(&file, b"kernel one").unwrap();
        (tmp, dir, file)
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn set_mtime(path: &Path, secs: i64) {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        let t = TimeSpec::new(secs, 0);
        utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    }

    #[test]
    fn touch_keeps_the_digest_and_a_second_run_reads_nothing() {
        let (_tmp, dir, file) = setup();
        let mut first = keeping_all(&dir);
        assert_eq!(first.sha256_file(&file).unwrap(), sha(b"kernel one"));
        assert_eq!(first.sha256_file(&file).unwrap(), sha(b"kernel one"));
        assert_eq!(first.stats(), HashStats { hashed: 1, reused: 1 });
        assert!(first.save(&dir).unwrap());

        let mut second = keeping_all(&dir);
        assert_eq!(second.sha256_file(&file).unwrap(), sha(b"kernel one"));
        assert_eq!(second.stats(), HashStats { hashed: 0, reused: 1 });
        assert!(!second.save(&dir).unwrap(), "nothing changed: nothing written");

        // Another file's touch (the package database) is not this file's
        // business; a touch of this file itself rehashes it, same digest.
        std::thread::sleep(Duration::from_millis(30));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .set_modified(SystemTime::now())
            .unwrap();
        let mut third = keeping_all(&dir);
        assert_eq!(third.sha256_file(&file).unwrap(), sha(b"kernel one"));
        assert_eq!(third.stats(), HashStats { hashed: 1, reused: 0 });
    }

    /// Content rewritten in place (same inode, same size) with the old
    /// mtime put back, as `touch -d` does: the ctime tells.
    #[test]
    fn content_change_with_mtime_restored_is_rehashed() {
        let (_tmp, dir, file) = setup();
        set_mtime(&file, 1_000_000_000);
        let mut first = keeping_all(&dir);
        first.sha256_file(&file).unwrap();
        assert!(first.save(&dir).unwrap(), "the digest was not kept");

        std::thread::sleep(Duration::from_millis(30));
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.write_all(b"kernel two").unwrap();
        drop(f);
        set_mtime(&file, 1_000_000_000);
        let mut second = keeping_all(&dir);
        assert_eq!(second.sha256_file(&file).unwrap(), sha(b"kernel two"));
        assert_eq!(second.stats().hashed, 1);
    }

    /// A file changed within the racy window is hashed, and reused within
    /// the run, but not written down for later runs.
    #[test]
    fn new_files_are_not_kept() {
        let (_tmp, dir, file) = setup();
        let mut c = HashCache::load(&dir);
        c.sha256_file(&file).unwrap();
        c.sha256_file(&file).unwrap();
        assert_eq!(c.stats(), HashStats { hashed: 1, reused: 1 });
        assert!(!c.save(&dir).unwrap());
        assert!(!HashCache::path(&dir).exists());
        let now = SystemTime::now();
        let sig = FileSig::of(&file).unwrap();
        assert!(!is_settled(&sig, now, RACY_WINDOW));
        assert!(is_settled(&sig, now + RACY_WINDOW + Duration::from_secs(1), RACY_WINDOW));
    }

    /// Corrupt, truncated, foreign-format or oversized files are ignored:
    /// the file is hashed, the answer right, and a good file replaces them.
    #[test]
    fn bad_files_are_ignored() {
        let (_tmp, dir, file) = setup();
        let mut c = keeping_all(&dir);
        c.sha256_file(&file).unwrap();
        c.save(&dir).unwrap();
        let good = std::fs::read(HashCache::path(&dir)).unwrap();
        let wrong = String::from_utf8(good.clone())
            .unwrap()
            .replace(&crate::digest::hex(&sha(b"kernel one")), &"0".repeat(64));
        let mut oversized = good.clone();
        oversized.resize(READ_LIMIT as usize + 1, b' ');
        let bad: Vec<Vec<u8>> = vec![
            b"\0\0\0garbage".to_vec(),
            good[..good.len() / 2].to_vec(),
            String::from_utf8(wrong.clone().into_bytes())
                .unwrap()
                .replace("\"version\":1", "\"version\":99")
                .into_bytes(),
            String::from_utf8(good.clone())
                .unwrap()
                .replace(&crate::digest::hex(&sha(b"kernel one")), "zz")
                .into_bytes(),
            oversized,
        ];
        for bytes in bad {
            std::fs::write(HashCache::path(&dir), &bytes).unwrap();
            let mut c = keeping_all(&dir);
            assert_eq!(c.sha256_file(&file).unwrap(), sha(b"kernel one"));
            assert_eq!(c.stats().hashed, 1, "{}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)]));
            assert!(c.save(&dir).unwrap());
        }
        // A well-formed file is believed (this is what the ctime and the
        // trust checks protect).
        std::fs::write(HashCache::path(&dir), wrong).unwrap();
        assert_eq!(keeping_all(&dir).sha256_file(&file).unwrap(), [0u8; 32]);
    }

    /// A symlink planted at the file's name is neither read nor written
    /// through; a FIFO does not block.
    #[test]
    fn planted_links_and_fifos_are_harmless() {
        let (tmp, dir, file) = setup();
        let mut c = keeping_all(&dir);
        c.sha256_file(&file).unwrap();
        c.save(&dir).unwrap();
        let forged = String::from_utf8(std::fs::read(HashCache::path(&dir)).unwrap())
            .unwrap()
            .replace(&crate::digest::hex(&sha(b"kernel one")), &"0".repeat(64));
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, &forged).unwrap();
        std::fs::remove_file(HashCache::path(&dir)).unwrap();
        std::os::unix::fs::symlink(&victim, HashCache::path(&dir)).unwrap();

        let mut c = keeping_all(&dir);
        assert_eq!(c.sha256_file(&file).unwrap(), sha(b"kernel one"), "followed the link");
        assert!(c.save(&dir).unwrap());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), forged, "wrote through the link");
        assert!(std::fs::symlink_metadata(HashCache::path(&dir)).unwrap().is_file());

        std::fs::remove_file(HashCache::path(&dir)).unwrap();
        nix::unistd::mkfifo(&HashCache::path(&dir), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        let mut c = keeping_all(&dir);
        assert_eq!(c.sha256_file(&file).unwrap(), sha(b"kernel one"));
        assert!(c.save(&dir).unwrap());
    }

    /// Run as root: a file owned by another user (not the directory's
    /// owner) is not believed.
    #[test]
    fn strangers_files_are_not_believed() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (_tmp, dir, file) = setup();
        let mut c = keeping_all(&dir);
        c.sha256_file(&file).unwrap();
        c.save(&dir).unwrap();
        let path = HashCache::path(&dir);
        let forged = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&crate::digest::hex(&sha(b"kernel one")), &"0".repeat(64));
        std::fs::write(&path, forged).unwrap();
        std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
        let mut c = keeping_all(&dir);
        assert_eq!(c.sha256_file(&file).unwrap(), sha(b"kernel one"));
    }

    /// A symlinked path is keyed by what it points to: retargeting the link
    /// to another file with the same times is noticed.
    #[test]
    fn links_are_followed_to_the_file_read() {
        let (tmp, dir, file) = setup();
        let other = tmp.path().join("other");
        std::fs::write(&other, b"kernel two").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let mut c = keeping_all(&dir);
        c.sha256_file(&link).unwrap();
        c.save(&dir).unwrap();
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&other, &link).unwrap();
        assert_eq!(keeping_all(&dir).sha256_file(&link).unwrap(), sha(b"kernel two"));
    }

    /// A digest the last computation did not ask for (the remembered
    /// vmlinux, for `check`) stays while its file keeps its signature, and
    /// is dropped once the file changes or goes.
    #[test]
    fn unused_digests_stay_until_their_file_changes_or_goes() {
        let (tmp, dir, file) = setup();
        let (old, gone) = (tmp.path().join("old-kernel"), tmp.path().join("gone-kernel"));
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(&gone, b"gone").unwrap();
        let mut c = keeping_all(&dir);
        for f in [&file, &old, &gone] {
            c.sha256_file(f).unwrap();
        }
        c.save(&dir).unwrap();
        let mut c = keeping_all(&dir);
        c.sha256_file(&file).unwrap();
        assert!(!c.save(&dir).unwrap(), "nothing changed: nothing written");
        assert_eq!(keeping_all(&dir).remembered.len(), 3);

        std::fs::write(&old, b"rewritten").unwrap();
        std::fs::remove_file(&gone).unwrap();
        let mut c = keeping_all(&dir);
        c.sha256_file(&file).unwrap();
        assert!(c.save(&dir).unwrap());
        let text = std::fs::read_to_string(HashCache::path(&dir)).unwrap();
        assert!(!text.contains("old-kernel") && !text.contains("gone-kernel"), "{text}");
        assert_eq!(keeping_all(&dir).remembered.len(), 1);
    }

    #[test]
    fn hex_round_trip() {
        let d = sha(b"x");
        assert_eq!(parse_hex(&crate::digest::hex(&d)), Some(d));
        assert_eq!(parse_hex("ab"), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }
}
