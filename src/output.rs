//! Publishing an appliance directory safely: the lock, the staging
//! directory beside the target, and the atomic swap.
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
//! The lock is an fcntl record lock (open file description lock), not
//! `flock(2)`: supermin's `--lock` takes a `lockf` lock, and on Linux only
//! record locks exclude each other (docs/machine-quirks.md, "flock and fcntl
//! locks").

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags};

/// Names a finished appliance directory may contain; anything else means the
/// directory is not ours to replace.
pub const APPLIANCE_FILES: [&str; 5] = ["kernel", "initrd", "root", "README.fixed", "manifest.toml"];

/// Prefix of staging directories (`.NAME.build-PID`) and of old appliances
/// waiting for removal (`.NAME.old-PID`).
const STAGING_TAG: &str = "build";
const OLD_TAG: &str = "old";

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
    /// The target exists and is not a directory.
    #[error("{path} exists and is not a directory: remove it or choose another output directory")]
    NotADirectory {
        /// The target.
        path: PathBuf,
    },
    /// The target holds files that are not part of an appliance.
    #[error("{path} holds {entry}, which is not part of an appliance; refusing to replace the directory: empty it or choose another output directory")]
    ForeignContent {
        /// The target.
        path: PathBuf,
        /// The first unexpected entry.
        entry: String,
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
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OutputError + 'a {
    move |source| OutputError::Io { action, path: path.to_owned(), source }
}

/// The lock file used for a target directory: `PARENT/.NAME.lock`.
pub fn lock_path_for(target: &Path) -> Result<PathBuf, OutputError> {
    let (parent, name) = split_target(target)?;
    Ok(parent.join(format!(".{name}.lock")))
}

fn split_target(target: &Path) -> Result<(&Path, String), OutputError> {
    let no_parent = || OutputError::NoParent { path: target.to_owned() };
    let name = target.file_name().ok_or_else(no_parent)?.to_string_lossy().into_owned();
    let parent = match target.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(no_parent()),
    };
    Ok((parent, name))
}

/// Resolve a symlinked target to the directory it names, so that we replace
/// the real directory and keep the user's symlink.
pub fn resolve_target(target: &Path) -> Result<PathBuf, OutputError> {
    match std::fs::symlink_metadata(target) {
        Ok(md) if md.file_type().is_symlink() => {
            std::fs::canonicalize(target).map_err(io_err("resolving symlink", target))
        }
        _ => Ok(target.to_path_buf()),
    }
}

/// Check that `target` is absent, or a directory holding only appliance
/// files. Returns whether it exists.
pub fn check_target(target: &Path) -> Result<bool, OutputError> {
    let md = match std::fs::symlink_metadata(target) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(OutputError::Io { action: "inspecting", path: target.into(), source: e }),
    };
    if !md.is_dir() {
        return Err(OutputError::NotADirectory { path: target.to_owned() });
    }
    for entry in std::fs::read_dir(target).map_err(io_err("listing", target))? {
        let entry = entry.map_err(io_err("listing", target))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !APPLIANCE_FILES.contains(&name.as_str()) {
            return Err(OutputError::ForeignContent { path: target.to_owned(), entry: name });
        }
    }
    Ok(true)
}

/// A held POSIX record lock on a lock file; released when dropped.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Try to take the lock without waiting. `Ok(None)`: someone holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<OutputLock>, OutputError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(io_err("opening lock file", path))?;
        match set_record_lock(&file) {
            Ok(()) => Ok(Some(OutputLock { _file: file, path: path.to_owned() })),
            Err(Errno::EAGAIN | Errno::EACCES) => Ok(None),
            Err(e) => Err(OutputError::Io { action: "locking", path: path.to_owned(), source: e.into() }),
        }
    }

    /// Take the lock, calling `on_wait` once if we have to wait, and giving
    /// up after `timeout`.
    pub fn acquire(
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

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
/// taking it). A missing file is unlocked.
pub fn is_locked(path: &Path) -> Result<bool, OutputError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(OutputError::Io { action: "opening lock file", path: path.into(), source: e }),
    };
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock))
        .map_err(|e| OutputError::Io { action: "testing lock", path: path.into(), source: e.into() })?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Remove staging and old directories a killed build left beside `target`.
/// A directory whose PID suffix names a live process is kept (that build is
/// still running, e.g. a lock-free tarball-only build). Returns what was
/// removed.
pub fn clean_leftovers(target: &Path) -> Result<Vec<PathBuf>, OutputError> {
    let (parent, name) = split_target(target)?;
    let prefixes = [format!(".{name}.{STAGING_TAG}-"), format!(".{name}.{OLD_TAG}-")];
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(OutputError::Io { action: "listing", path: parent.into(), source: e }),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("listing", parent))?;
        let fname = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = prefixes.iter().find_map(|p| fname.strip_prefix(p.as_str())) else {
            continue;
        };
        if pid.parse::<i32>().is_ok_and(is_alive) {
            continue;
        }
        {
            let path = entry.path();
            remove_tree(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Whether a process with this PID exists (signal 0 probes without sending).
fn is_alive(pid: i32) -> bool {
    pid > 0 && !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

fn remove_tree(path: &Path) -> Result<(), OutputError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OutputError::Io { action: "removing", path: path.into(), source: e }),
    }
}

/// A staging directory beside the target. Dropped without [`Staging::commit`]
/// it is removed, so a failed build leaves nothing behind.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Staging {
    /// Create `PARENT/.NAME.build-PID` (mode 0755). The parent must exist.
    pub fn create(target: &Path) -> Result<Staging, OutputError> {
        let (parent, name) = split_target(target)?;
        let dir = parent.join(format!(".{name}.{STAGING_TAG}-{}", std::process::id()));
        remove_tree(&dir)?;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(io_err("creating staging directory", &dir))?;
        Ok(Staging { dir, target: target.to_owned(), done: false })
    }

    /// The staging directory to write into.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// fsync every file and the directory, then swap it into place. The old
    /// appliance (if any) is removed afterwards.
    pub fn commit(mut self) -> Result<(), OutputError> {
        sync_dir_contents(&self.dir)?;
        let exists = check_target(&self.target)?;
        if exists {
            renameat2(None, &self.dir, None, &self.target, RenameFlags::RENAME_EXCHANGE).map_err(|e| {
                OutputError::Io {
                    action: "swapping in the new appliance at",
                    path: self.target.clone(),
                    source: e.into(),
                }
            })?;
            // self.dir now holds the previous appliance.
            let (parent, name) = split_target(&self.target)?;
            let old = parent.join(format!(".{name}.{OLD_TAG}-{}", std::process::id()));
            std::fs::rename(&self.dir, &old).map_err(io_err("renaming old appliance", &old))?;
            self.done = true;
            sync_parent(&self.target)?;
            remove_tree(&old)?;
        } else {
            renameat2(None, &self.dir, None, &self.target, RenameFlags::RENAME_NOREPLACE).map_err(|e| {
                OutputError::Io {
                    action: "moving the new appliance to",
                    path: self.target.clone(),
                    source: e.into(),
                }
            })?;
            self.done = true;
            sync_parent(&self.target)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    eprintln!(
                        "guestfs-appliance: warning: could not remove staging directory {}: {e}",
                        self.dir.display()
                    );
                }
            }
        }
    }
}

fn sync_dir_contents(dir: &Path) -> Result<(), OutputError> {
    for entry in std::fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let path = entry.map_err(io_err("listing", dir))?.path();
        File::open(&path).and_then(|f| f.sync_all()).map_err(io_err("syncing", &path))?;
    }
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err("syncing", dir))
}

fn sync_parent(target: &Path) -> Result<(), OutputError> {
    let (parent, _) = split_target(target)?;
    File::open(parent).and_then(|f| f.sync_all()).map_err(io_err("syncing", parent))
}

/// Free bytes available to us on the filesystem holding `path`.
pub fn available_bytes(path: &Path) -> Result<u64, OutputError> {
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

    #[test]
    fn staging_commit_swaps_and_failed_build_leaves_old_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("appliance");
        let s = Staging::create(&target).unwrap();
        std::fs::write(s.path().join("kernel"), b"one").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read(target.join("kernel")).unwrap(), b"one");

        let s = Staging::create(&target).unwrap();
        std::fs::write(s.path().join("kernel"), b"half").unwrap();
        drop(s); // a failed build
        assert_eq!(std::fs::read(target.join("kernel")).unwrap(), b"one");

        let s = Staging::create(&target).unwrap();
        std::fs::write(s.path().join("kernel"), b"two").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read(target.join("kernel")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("appliance")]);
    }

    #[test]
    fn refuses_foreign_directories_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        let err = check_target(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        let file = tmp.path().join("notes.txt");
        assert!(matches!(check_target(&file), Err(OutputError::NotADirectory { .. })));
        assert!(!check_target(&tmp.path().join("absent")).unwrap());
    }

    #[test]
    fn leftovers_are_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("app");
        std::fs::create_dir(tmp.path().join(".app.build-999999999")).unwrap();
        std::fs::write(tmp.path().join(".app.build-999999999/root"), b"x").unwrap();
        // A live build's staging directory (ours) is kept.
        let live = tmp.path().join(format!(".app.build-{}", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        std::fs::create_dir(tmp.path().join(".other.build-1")).unwrap();
        let removed = clean_leftovers(&target).unwrap();
        assert_eq!(removed, vec![tmp.path().join(".app.build-999999999")]);
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
}
