//! Publishing an appliance directory safely: the lock, the staging
//! directory beside the target, the atomic swap, and the rule for what
//! counts as an appliance we may replace.
//!
//! A build never writes into the target directory. It takes a POSIX record
//! lock on a lock file *beside* the target (the target is replaced, so the
//! lock cannot live inside it), builds into a hidden staging directory in the
//! same parent (same filesystem, so rename works), fsyncs, then swaps the
//! staging directory in with `renameat2(RENAME_EXCHANGE)`. A running
//! libguestfs therefore sees either the old appliance or the new one, never a
//! mix. A failed build drops its staging directory; a killed one leaves it
//! behind, and the next build (holding the lock, so no build can be using it)
//! removes it.
//!
//! The parent may be writable by others (`/tmp`, a user's cache when root
//! primes it), so everything here goes through [`crate::safefs`]: the parent
//! is pinned by fd (and refused if others can write it without the sticky
//! bit), the staging directory gets an unpredictable name and mode 0700
//! until the swap, files are created in it through its fd, the lock is
//! opened without following links and must be a regular file we trust, and
//! entries we did not make (other users' junk named like ours) are never
//! opened, removed or waited on.
//!
//! The lock is an fcntl record lock (open file description lock), not
//! `flock(2)`: supermin's `--lock` takes a `lockf` lock, and on Linux only
//! record locks exclude each other (docs/machine-quirks.md, "flock and fcntl
//! locks").

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::RenameFlags;
use nix::sys::stat::FileStat;

use crate::safefs::{self, Access, PinnedDir, SafeFsError};

/// Names a finished appliance directory may contain; anything else means the
/// directory is not ours to replace.
pub(crate) const APPLIANCE_FILES: [&str; 5] = ["kernel", "initrd", "root", "README.fixed", "manifest.toml"];

/// Staging directories are `.NAME.build-PID.RANDOM`; earlier versions also
/// left `.NAME.old-PID` behind. Both are removed when found dead.
const STAGING_TAG: &str = "build";
const OLD_TAG: &str = "old";

/// Largest manifest we parse to recognise our own appliance.
const MANIFEST_LIMIT: u64 = 16 << 20;

/// Errors from locking and publishing.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
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
    /// A pinned-directory operation failed (the message names the path).
    #[error(transparent)]
    Fs(#[from] SafeFsError),
    /// The target exists and is not a directory.
    #[error("{path} exists and is not a directory: remove it or choose another output directory")]
    NotADirectory {
        /// The target.
        path: PathBuf,
    },
    /// The target is not an appliance (by name or by content).
    #[error("{path} is not an appliance: {why}; refusing to replace the directory: empty it or choose another output directory")]
    ForeignContent {
        /// The target.
        path: PathBuf,
        /// What gave it away (`holds notes.txt`, `root is a directory`).
        why: String,
    },
    /// The target has no parent we can build beside.
    #[error("{path}: cannot build beside this path; give a directory path such as /dev/shm/appliance")]
    NoParent {
        /// The target.
        path: PathBuf,
    },
    /// Another process held the lock for too long.
    #[error("timed out after {secs} s waiting for the lock {path} (another build of the same directory is running; wait for it, or raise --lock-timeout)")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        secs: u64,
    },
    /// The staging directory's name no longer leads to our directory.
    #[error("the staging directory {path} was moved or replaced while building; not publishing it (is another user writing in {parent}?)")]
    StagingReplaced {
        /// The staging directory.
        path: PathBuf,
        /// Its parent.
        parent: PathBuf,
    },
}

/// The lock file used for a target directory: `PARENT/.NAME.lock`.
pub fn lock_path_for(target: &Path) -> Result<PathBuf, OutputError> {
    let (parent, name) = split_target(target)?;
    Ok(parent.join(format!(".{}.lock", name.to_string_lossy())))
}

fn split_target(target: &Path) -> Result<(&Path, &OsStr), OutputError> {
    crate::paths::split(target).ok_or_else(|| OutputError::NoParent { path: target.to_owned() })
}

/// Pin the parent of `target`, refusing one others can write without the
/// sticky bit. Returns it with the target's name.
pub(crate) fn pin_parent(target: &Path) -> Result<(PinnedDir, OsString), OutputError> {
    let (parent, name) = split_target(target)?;
    let dir = PinnedDir::open(parent)?;
    dir.refuse_if_shared()?;
    Ok((dir, name.to_owned()))
}

/// Resolve a symlinked target to the directory it names, so that we replace
/// the real directory and keep the user's symlink. The whole path is
/// resolved by [`safefs::real_path`]: a symlink owned by another user (one
/// planted in `/tmp`, a cache's owner swapping a directory for a link) is
/// refused, never followed.
pub(crate) fn resolve_target(target: &Path) -> Result<PathBuf, OutputError> {
    Ok(safefs::real_path(target)?)
}

/// Check that `target` is absent, an empty directory, or an appliance (see
/// [`check_target_in`]). Returns whether it exists.
pub(crate) fn check_target(target: &Path) -> Result<bool, OutputError> {
    let (parent, name) = split_target(target)?;
    let dir = match PinnedDir::open(parent) {
        Ok(d) => d,
        Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    check_target_in(&dir, name)
}

/// Check that `parent/name` is absent, an empty directory, or an appliance
/// *by content*: every entry is one of [`APPLIANCE_FILES`] and a regular
/// file, and either `manifest.toml` is our manifest (it may describe a
/// damaged appliance, which a rebuild repairs), or `kernel`, `initrd` and
/// `root` are all there and look like a kernel, an initramfs and an ext2
/// image (supermin's `appliance.d`, libguestfs's fixed appliance). Names
/// alone prove nothing: `root/home/thesis.tex` is not an appliance.
/// Returns whether it exists.
pub(crate) fn check_target_in(parent: &PinnedDir, name: &OsStr) -> Result<bool, OutputError> {
    let path = parent.child(name);
    let Some(st) = parent.stat(name)? else { return Ok(false) };
    if !safefs::is_dir(&st) {
        return Err(OutputError::NotADirectory { path });
    }
    let dir = parent.open_dir(name)?;
    let foreign = |why: String| OutputError::ForeignContent { path: path.clone(), why };
    let mut entries = dir.list()?;
    entries.sort();
    if entries.is_empty() {
        return Ok(true);
    }
    for entry in &entries {
        let shown = entry.to_string_lossy();
        if !APPLIANCE_FILES.contains(&shown.as_ref()) {
            return Err(foreign(format!("it holds {shown}")));
        }
        let st = dir.stat(entry)?.ok_or_else(|| foreign(format!("{shown} vanished while we looked")))?;
        if !safefs::is_regular(&st) {
            return Err(foreign(format!("{shown} is not a regular file")));
        }
    }
    if entries.iter().any(|e| e == crate::manifest::MANIFEST_NAME) {
        return match is_our_manifest(&dir) {
            Ok(()) => Ok(true),
            Err(why) => Err(foreign(why)),
        };
    }
    for (file, looks_right) in [
        ("kernel", looks_like_kernel as fn(&[u8]) -> bool),
        ("initrd", looks_like_initrd),
        ("root", looks_like_ext2),
    ] {
        let Some(f) = dir.open_regular(file, Access::Read)? else {
            return Err(foreign(format!("it has no {file} and no manifest.toml")));
        };
        let mut head = vec![0u8; 4096];
        let n = read_head(&f, &mut head).map_err(|source| OutputError::Io {
            action: "reading",
            path: dir.child(file),
            source,
        })?;
        if !looks_right(&head[..n]) {
            return Err(foreign(format!("{file} does not look like an appliance's {file}")));
        }
    }
    Ok(true)
}

/// Read up to `buf.len()` bytes from the start of `f`.
fn read_head(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `manifest.toml` parses as TOML with our top-level keys.
fn is_our_manifest(dir: &PinnedDir) -> Result<(), String> {
    let name = crate::manifest::MANIFEST_NAME;
    let bytes = dir
        .read_regular(name, MANIFEST_LIMIT)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{name} vanished while we looked"))?;
    let table: toml::Table = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| toml::from_str(t).ok())
        .ok_or_else(|| format!("{name} is not a guestfs-appliance manifest"))?;
    if ["format_version", "fingerprint", "kernel"].iter().all(|k| table.contains_key(*k)) {
        Ok(())
    } else {
        Err(format!("{name} is not a guestfs-appliance manifest"))
    }
}

/// A Linux kernel image: x86 bzImage (`HdrS` at 0x202), arm64 `Image`
/// (`ARM\x64` at 0x38), an ELF vmlinux, or a compressed image.
fn looks_like_kernel(b: &[u8]) -> bool {
    b.get(0x202..0x206) == Some(b"HdrS")
        || b.get(0x38..0x3c) == Some(b"ARM\x64")
        || b.starts_with(b"\x7fELF")
        || b.get(0x24..0x28) == Some(&[0x18, 0x28, 0x6f, 0x01]) // arm zImage
        || is_compressed(b)
}

/// An initramfs: a cpio archive (newc, crc or odc), possibly compressed.
fn looks_like_initrd(b: &[u8]) -> bool {
    b.starts_with(b"070701") || b.starts_with(b"070702") || b.starts_with(b"070707") || is_compressed(b)
}

/// gzip, xz, zstd, lz4 (legacy and frame), bzip2, lzma.
fn is_compressed(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || b.starts_with(&[0x02, 0x21, 0x4c, 0x18])
        || b.starts_with(&[0x04, 0x22, 0x4d, 0x18])
        || b.starts_with(b"BZh")
        || b.starts_with(&[0x5d, 0, 0])
}

/// An ext2/3/4 image (magic 0xEF53 at 1080) or a qcow2 file (libguestfs
/// accepts a qcow2 root, docs/libguestfs-side.md).
fn looks_like_ext2(b: &[u8]) -> bool {
    b.get(0x438..0x43a) == Some(&[0x53, 0xef]) || b.starts_with(b"QFI\xfb")
}

/// A held POSIX record lock on a lock file; released when dropped.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Try to take the lock without waiting. `Ok(None)`: someone holds it.
    ///
    /// The lock file is opened in its pinned directory without following a
    /// symlink and without blocking (a FIFO is refused, not waited on); it
    /// is created 0600 if missing. An existing one must be a regular file
    /// with one link, owned by us, root or the directory's owner: anything
    /// else is someone else's and is refused with an error naming it.
    pub fn try_acquire(path: &Path) -> Result<Option<OutputLock>, OutputError> {
        let (parent, name) = split_target(path)?;
        Self::try_acquire_in(&PinnedDir::open(parent)?, name)
    }

    /// [`OutputLock::try_acquire`] for `name` in a pinned directory.
    pub(crate) fn try_acquire_in(dir: &PinnedDir, name: &OsStr) -> Result<Option<OutputLock>, OutputError> {
        let path = dir.child(name);
        let file = dir.open_regular(name, Access::ReadWriteCreate(0o600))?.expect("created if missing");
        check_trusted(dir, name, &file)?;
        match set_record_lock(&file) {
            Ok(()) => Ok(Some(OutputLock { _file: file })),
            Err(Errno::EAGAIN | Errno::EACCES) => Ok(None),
            Err(e) => Err(OutputError::Io { action: "locking", path, source: e.into() }),
        }
    }

    /// Take the lock, calling `on_wait` once if we have to wait, and giving
    /// up after `timeout`.
    pub(crate) fn acquire(
        path: &Path,
        timeout: Duration,
        on_wait: impl FnOnce(),
    ) -> Result<OutputLock, OutputError> {
        if let Some(lock) = Self::try_acquire(path)? {
            return Ok(lock);
        }
        on_wait();
        let start = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            std::thread::sleep(delay);
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
            if start.elapsed() >= timeout {
                return Err(OutputError::LockTimeout { path: path.to_owned(), secs: timeout.as_secs() });
            }
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }
}

/// Whether an open file in `dir` may steer us: one link (not a hard link to
/// a file elsewhere) and owned by us, root, or the directory's owner.
pub(crate) fn check_trusted(dir: &PinnedDir, name: &OsStr, file: &File) -> Result<FileStat, OutputError> {
    let path = dir.child(name);
    let st = nix::sys::stat::fstat(file.as_raw_fd()).map_err(|e| OutputError::Io {
        action: "inspecting",
        path: path.clone(),
        source: e.into(),
    })?;
    let dir_owner = dir.stat_self()?.st_uid;
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me && st.st_uid != 0 && st.st_uid != dir_owner {
        return Err(SafeFsError::Untrusted { path, owner: st.st_uid }.into());
    }
    if st.st_nlink == 0 {
        // Unlinked after we opened it (another cleaner removing the cache):
        // report it as gone, which callers already handle.
        return Err(SafeFsError::Io {
            action: "inspecting",
            path,
            source: io::Error::new(io::ErrorKind::NotFound, "removed while we opened it"),
        }
        .into());
    }
    if st.st_nlink != 1 {
        return Err(SafeFsError::NotRegular { path, what: "a file with several hard links" }.into());
    }
    Ok(st)
}

/// Try to set a whole-file write lock: an open-file-description lock, which
/// conflicts with classic POSIX (`lockf`) locks and is not dropped when some
/// other fd of this process to the same file is closed.
fn set_record_lock(file: &File) -> Result<(), Errno> {
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)).map(|_| ())
}

/// Report whether some process holds a record lock on `path` (without
/// taking it). A missing file is unlocked; anything but a regular file is
/// an error (never opened in a way that could block).
pub(crate) fn is_locked(path: &Path) -> Result<bool, OutputError> {
    let (parent, name) = split_target(path)?;
    let dir = match PinnedDir::open(parent) {
        Ok(d) => d,
        Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    is_locked_in(&dir, name)
}

/// [`is_locked`] for `name` in a pinned directory.
pub(crate) fn is_locked_in(dir: &PinnedDir, name: &OsStr) -> Result<bool, OutputError> {
    let path = dir.child(name);
    let Some(file) = dir.open_regular(name, Access::Read)? else { return Ok(false) };
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock))
        .map_err(|e| OutputError::Io { action: "testing lock", path, source: e.into() })?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// What [`clean_leftovers`] did.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    /// Directories removed.
    pub(crate) removed: Vec<PathBuf>,
    /// Entries named like ours that we left alone, and why (someone else's,
    /// not a directory, or removal failed).
    pub(crate) kept: Vec<String>,
}

/// Remove staging and old directories a killed build left beside `target`.
/// Only real directories we own, whose PID names no live process (a
/// lock-free tarball-only build may still be running), are removed; other
/// entries with such names (anyone can make them in a shared parent) are
/// reported in [`Leftovers::kept`] and otherwise ignored: they never fail
/// a build.
pub(crate) fn clean_leftovers(target: &Path) -> Result<Leftovers, OutputError> {
    let (parent, name) = split_target(target)?;
    let dir = match PinnedDir::open(parent) {
        Ok(d) => d,
        Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Leftovers::default())
        }
        Err(e) => return Err(e.into()),
    };
    clean_leftovers_in(&dir, name)
}

/// [`clean_leftovers`] in a pinned parent.
pub(crate) fn clean_leftovers_in(dir: &PinnedDir, name: &OsStr) -> Result<Leftovers, OutputError> {
    let name = name.to_string_lossy();
    let prefixes = [format!(".{name}.{STAGING_TAG}-"), format!(".{name}.{OLD_TAG}-")];
    let me = nix::unistd::geteuid().as_raw();
    let mut done = Leftovers::default();
    for entry in dir.list()? {
        let fname = entry.to_string_lossy();
        let Some(rest) = prefixes.iter().find_map(|p| fname.strip_prefix(p.as_str())) else {
            continue;
        };
        let pid = rest.split('.').next().unwrap_or("");
        if pid.parse::<i32>().is_ok_and(is_alive) {
            continue;
        }
        let path = dir.child(&entry);
        match dir.stat(&entry)? {
            Some(st) if safefs::is_dir(&st) && st.st_uid == me => match dir.remove_tree(&entry) {
                Ok(_) => done.removed.push(path),
                Err(e) => done.kept.push(format!("could not remove {}: {e}", path.display())),
            },
            Some(st) => done.kept.push(format!(
                "left {} alone: not a directory this user made (owner uid {}); remove it after checking who made it",
                path.display(),
                st.st_uid
            )),
            None => {}
        }
    }
    Ok(done)
}

/// Whether a process with this PID exists (signal 0 probes without sending).
fn is_alive(pid: i32) -> bool {
    pid > 0 && !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// A staging directory beside the target. Dropped without [`Staging::commit`]
/// it is removed, so a failed build leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Staging {
    parent: PinnedDir,
    dir: PinnedDir,
    /// Its name in `parent`.
    name: String,
    /// The target's name in `parent`.
    target: OsString,
    target_path: PathBuf,
    done: bool,
}

/// What [`Staging::commit`] did.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The previous appliance could not be removed after the swap (the new
    /// one is in place): what is left, and why.
    pub(crate) leftover: Option<String>,
}

impl Staging {
    /// Create `PARENT/.NAME.build-PID.RANDOM`, mode 0700 until the swap.
    /// The parent must exist and must not be writable by others unless it
    /// is sticky.
    pub(crate) fn create(target: &Path) -> Result<Staging, OutputError> {
        let (parent, target_name) = pin_parent(target)?;
        let stem = format!(".{}.{STAGING_TAG}-{}", target_name.to_string_lossy(), std::process::id());
        let (name, dir) = parent.create_temp_dir(&stem, 0o700)?;
        Ok(Staging { parent, dir, name, target: target_name, target_path: target.to_owned(), done: false })
    }

    /// The staging directory's path (for messages and free-space checks;
    /// write through [`Staging::create_file`]).
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The pinned staging directory.
    pub(crate) fn dir(&self) -> &PinnedDir {
        &self.dir
    }

    /// Create a new file in the staging directory (exclusive, mode on fd).
    pub(crate) fn create_file(&self, name: &str, mode: u32) -> Result<File, OutputError> {
        Ok(self.dir.create_file(name, mode)?)
    }

    /// Give the staging directory and the files in it to `uid:gid`, on
    /// their fds.
    /// Open a file we wrote into the staging directory. Nobody else can
    /// write there (0700, ours), but a file that is gone is an error with
    /// its name, not a panic.
    fn staged_file(&self, entry: &OsStr) -> Result<File, OutputError> {
        self.dir.open_regular(entry, Access::Read)?.ok_or_else(|| OutputError::Io {
            action: "opening",
            path: self.dir.child(entry),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "removed from the staging directory during the build",
            ),
        })
    }

    pub(crate) fn chown_all(&self, uid: u32, gid: u32) -> Result<(), OutputError> {
        for entry in self.dir.list()? {
            let f = self.staged_file(&entry)?;
            let mode = nix::sys::stat::fstat(f.as_raw_fd()).map(|s| s.st_mode & 0o7777).unwrap_or(0o644);
            safefs::chown_keeping_mode(&f, uid, gid, mode).map_err(|e| OutputError::Io {
                action: "changing the owner of",
                path: self.dir.child(&entry),
                source: e.into(),
            })?;
        }
        Ok(self.dir.chown(uid, gid)?)
    }

    /// fsync every file and the directory, make it 0755, then swap it into
    /// place. The old appliance (if any) is removed afterwards; failing to
    /// remove it does not undo the swap and is reported in
    /// [`Committed::leftover`], not as an error.
    pub(crate) fn commit(mut self) -> Result<Committed, OutputError> {
        for entry in self.dir.list()? {
            let f = self.staged_file(&entry)?;
            f.sync_all().map_err(|source| OutputError::Io {
                action: "syncing",
                path: self.dir.child(&entry),
                source,
            })?;
        }
        self.dir.chmod(0o755)?;
        self.dir.sync()?;
        // The name must still lead to the directory we filled.
        let ours = self.dir.stat_self()?;
        match self.parent.stat(&self.name)? {
            Some(st) if st.st_ino == ours.st_ino && st.st_dev == ours.st_dev => {}
            _ => {
                return Err(OutputError::StagingReplaced {
                    path: self.dir.path().to_owned(),
                    parent: self.parent.path().to_owned(),
                })
            }
        }
        let exists = check_target_in(&self.parent, &self.target)?;
        let flags = if exists { RenameFlags::RENAME_EXCHANGE } else { RenameFlags::RENAME_NOREPLACE };
        self.parent.rename(&self.name, &self.parent, &self.target, flags)?;
        self.done = true;
        self.parent.sync()?;
        // The staging name now holds the previous appliance (if any).
        let leftover = match self.parent.remove_tree(&self.name) {
            Ok(_) => None,
            Err(e) => Some(format!(
                "the new appliance is in place at {}, but the previous one, now at {}, could not be removed: {e}; remove it by hand",
                self.target_path.display(),
                self.parent.child(&self.name).display()
            )),
        };
        Ok(Committed { leftover })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            // Remove by name only while the name still leads to our
            // directory; otherwise empty ours through its fd and leave the
            // name (and whatever someone put there) alone.
            let ours = self.dir.stat_self().ok();
            let named = self.parent.stat(&self.name).ok().flatten();
            let same =
                matches!((ours, named), (Some(a), Some(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev);
            let result = if same {
                self.parent.remove_tree(&self.name).map(|_| ())
            } else {
                self.dir
                    .list()
                    .and_then(|names| names.iter().try_for_each(|n| self.dir.remove_tree(n).map(|_| ())))
            };
            if let Err(e) = result {
                eprintln!(
                    "guestfs-appliance: warning: could not remove staging directory {}: {e}",
                    self.dir.path().display()
                );
            }
        }
    }
}

/// Free bytes available to us on the filesystem holding `path`.
pub(crate) fn available_bytes(path: &Path) -> Result<u64, OutputError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| OutputError::Io {
        action: "checking free space on",
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal file set that passes [`check_target_in`] by its manifest.
    fn fill(s: &Staging, kernel: &[u8]) {
        use std::io::Write;
        s.create_file("kernel", 0o644).unwrap().write_all(kernel).unwrap();
        let manifest = "format_version = 2\nfingerprint = \"x\"\n[kernel]\nversion = \"6\"\n";
        s.create_file("manifest.toml", 0o644).unwrap().write_all(manifest.as_bytes()).unwrap();
    }

    /// A lock file another cleaner unlinks between our open and our check
    /// is reported as gone (NotFound), not as a planted hard link.
    #[test]
    fn check_trusted_reports_an_unlinked_file_as_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PinnedDir::open(tmp.path()).unwrap();
        let file = dir.open_regular(OsStr::new("lock"), Access::ReadWriteCreate(0o600)).unwrap().unwrap();
        std::fs::remove_file(tmp.path().join("lock")).unwrap();
        match check_trusted(&dir, OsStr::new("lock"), &file) {
            Err(OutputError::Fs(SafeFsError::Io { source, .. })) => {
                assert_eq!(source.kind(), io::ErrorKind::NotFound)
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        let linked = dir.open_regular(OsStr::new("a"), Access::ReadWriteCreate(0o600)).unwrap().unwrap();
        std::fs::hard_link(tmp.path().join("a"), tmp.path().join("b")).unwrap();
        assert!(matches!(
            check_trusted(&dir, OsStr::new("a"), &linked),
            Err(OutputError::Fs(SafeFsError::NotRegular { .. }))
        ));
    }

    #[test]
    fn staging_commit_swaps_and_failed_build_leaves_old_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("appliance");
        let s = Staging::create(&target).unwrap();
        fill(&s, b"one");
        assert!(s.commit().unwrap().leftover.is_none());
        assert_eq!(std::fs::read(target.join("kernel")).unwrap(), b"one");

        let s = Staging::create(&target).unwrap();
        fill(&s, b"half");
        drop(s); // a failed build
        assert_eq!(std::fs::read(target.join("kernel")).unwrap(), b"one");

        let s = Staging::create(&target).unwrap();
        fill(&s, b"two");
        s.commit().unwrap();
        assert_eq!(std::fs::read(target.join("kernel")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("appliance")]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn appliances_are_recognised_by_content_not_names() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        let err = check_target(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        let file = tmp.path().join("notes.txt");
        assert!(matches!(check_target(&file), Err(OutputError::NotADirectory { .. })));
        assert!(!check_target(&tmp.path().join("absent")).unwrap());

        // Issue 8 item 3: a home directory's `root/` is not a root image.
        let d = tmp.path().join("d");
        std::fs::create_dir_all(d.join("root/home")).unwrap();
        std::fs::write(d.join("root/home/thesis.tex"), b"x").unwrap();
        let err = check_target(&d).unwrap_err().to_string();
        assert!(err.contains("root is not a regular file"), "{err}");
        std::fs::remove_dir_all(d.join("root")).unwrap();
        assert!(check_target(&d).unwrap(), "an empty directory may be built into");

        // Right names, wrong content.
        for f in ["kernel", "initrd", "root", "README.fixed"] {
            std::fs::write(d.join(f), b"my notes").unwrap();
        }
        let err = check_target(&d).unwrap_err().to_string();
        assert!(err.contains("kernel does not look like"), "{err}");
        // supermin's output: bzImage, cpio, ext2.
        let mut kernel = vec![0u8; 4096];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        let mut root = vec![0u8; 4096];
        root[0x438..0x43a].copy_from_slice(&[0x53, 0xef]);
        std::fs::write(d.join("kernel"), &kernel).unwrap();
        std::fs::write(d.join("initrd"), b"070701000").unwrap();
        std::fs::write(d.join("root"), &root).unwrap();
        assert!(check_target(&d).unwrap());
        // A manifest that is not ours proves nothing.
        std::fs::write(d.join("manifest.toml"), b"title = 'thesis'").unwrap();
        assert!(check_target(&d).is_err());
    }

    #[test]
    fn leftovers_are_cleaned_and_strangers_junk_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("app");
        std::fs::create_dir(tmp.path().join(".app.build-999999999.abc")).unwrap();
        std::fs::write(tmp.path().join(".app.build-999999999.abc/root"), b"x").unwrap();
        std::fs::create_dir(tmp.path().join(".app.old-999999998")).unwrap();
        // A live build's staging directory (ours) is kept.
        let live = tmp.path().join(format!(".app.build-{}.def", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        std::fs::create_dir(tmp.path().join(".other.build-1")).unwrap();
        // Junk someone planted: a regular file with a dead PID.
        std::fs::write(tmp.path().join(".app.build-99999"), b"").unwrap();
        let done = clean_leftovers(&target).unwrap();
        let mut removed = done.removed.clone();
        removed.sort();
        assert_eq!(
            removed,
            vec![tmp.path().join(".app.build-999999999.abc"), tmp.path().join(".app.old-999999998")]
        );
        assert_eq!(done.kept.len(), 1, "{:?}", done.kept);
        assert!(tmp.path().join(".app.build-99999").is_file());
        assert!(tmp.path().join(".other.build-1").exists());
        assert!(live.exists());
    }

    #[test]
    fn record_lock_excludes_second_holder_and_lockf() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("lock");
        let held = OutputLock::try_acquire(&path).unwrap().expect("first lock");
        assert!(OutputLock::try_acquire(&path).unwrap().is_none());
        assert!(is_locked(&path).unwrap());
        // supermin takes a classic lockf(3) lock; another process doing the
        // same must be refused while we hold ours.
        let lockf = "import fcntl,sys\nf=open(sys.argv[1],'a')\ntry:\n fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError:\n sys.exit(7)";
        match std::process::Command::new("python3").args(["-c", lockf]).arg(&path).status() {
            Ok(status) => assert_eq!(status.code(), Some(7), "lockf got a held lock"),
            Err(e) => eprintln!("skipping lockf cross-check: python3 unavailable: {e}"),
        }
        drop(held);
        assert!(!is_locked(&path).unwrap());
        assert!(OutputLock::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn lock_is_never_a_link_or_fifo() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("missing/dir");
        std::os::unix::fs::symlink(&victim, tmp.path().join(".a.lock")).unwrap();
        let err = OutputLock::try_acquire(&tmp.path().join(".a.lock")).unwrap_err().to_string();
        assert!(err.contains("a symlink"), "{err}");
        assert!(!victim.exists());
        nix::unistd::mkfifo(&tmp.path().join(".b.lock"), nix::sys::stat::Mode::from_bits_truncate(0o644))
            .unwrap();
        let err = OutputLock::try_acquire(&tmp.path().join(".b.lock")).unwrap_err().to_string();
        assert!(err.contains("a FIFO"), "{err}");
        assert!(is_locked(&tmp.path().join(".b.lock")).is_err());
    }
}
