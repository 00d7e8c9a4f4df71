//! Creating, opening, renaming and removing files in directories that other
//! users may write, without letting them steer what we (often root) write.
//!
//! Everything goes through a [`PinnedDir`]: a directory opened once, whose
//! file descriptor every later operation is relative to (`openat`,
//! `mkdirat`, `renameat2`, `unlinkat`, `fstatat`). Names are single path
//! components (no `/`, not `.` or `..`), so `O_NOFOLLOW` on the last — and
//! only — component means no symlink is ever followed; that is what
//! `openat2(RESOLVE_NO_SYMLINKS)` would add for multi-component paths, and
//! we have none. Whatever happens to the directory's *name* after it was
//! pinned (renamed, replaced by a symlink), we keep working in the directory
//! we opened.
//!
//! The rules, which the issue-8 attack tests check:
//! - new files and directories are created exclusively (`O_EXCL`,
//!   `mkdirat`), never through a link, with unpredictable temporary names
//!   (not the PID), and their mode and owner are set on the open fd
//!   (`fchmod`/`fchown`), never by path;
//! - existing files we must use (locks, stamps, appliance files) are opened
//!   `O_NOFOLLOW|O_NONBLOCK` and must `fstat` as regular files, so a FIFO
//!   never blocks us and a device is never read;
//! - trees are removed fd-relative, descending only into real directories;
//! - a directory writable by others that is not sticky is refused
//!   ([`PinnedDir::refuse_if_shared`]): there, anyone could rename our
//!   entries away under us.
//!
//! What is written, and when, is left to the callers (`output`, `stamp`,
//! `cache`, the tarball writer, `env` and `schedule`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

/// Deepest tree [`PinnedDir::remove_tree`] descends (one open fd per level);
/// the trees we remove (appliances, caches) are a few levels deep.
const MAX_REMOVE_DEPTH: usize = 64;

/// Errors from pinned-directory operations. Each names the full path.
#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    /// A system call failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An existing entry we must use is not a regular file.
    #[error(
        "{path} is {what}, not a regular file; refusing to use it: remove it after checking who made it"
    )]
    NotRegular {
        /// The entry.
        path: PathBuf,
        /// What it is (`a symlink`, `a FIFO`, ...).
        what: &'static str,
    },
    /// A directory others can write, without the sticky bit.
    #[error("{path} is writable by other users and not sticky (mode {mode:04o}): they could replace what we create there; run chmod o-w (or chmod +t) on it, or choose another directory")]
    SharedDirectory {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An entry we must trust belongs to someone we do not trust.
    #[error("{path} belongs to uid {owner}, not to us or to the owner of its directory; refusing to use it: remove it after checking who made it")]
    Untrusted {
        /// The entry.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// A symlink on a path we resolve belongs to another user.
    #[error("{path} is a symlink owned by uid {owner}, not by us or root; refusing to follow it (another user could point it anywhere): give the real path")]
    UntrustedLink {
        /// The symlink.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// A tree is deeper than we remove.
    #[error(
        "{path} is nested more than {MAX_REMOVE_DEPTH} directories deep; not removing it: remove it by hand"
    )]
    TooDeep {
        /// The directory where we stopped.
        path: PathBuf,
    },
}

/// An open directory; every operation is relative to its descriptor.
#[derive(Debug)]
pub(crate) struct PinnedDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Take ownership of a descriptor a successful `open*` call returned.
#[allow(unsafe_code)]
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open system call in
    // this function's callers and nothing else holds or will close it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A short description of a file type, for messages.
fn type_name(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "of an unknown type",
    }
}

/// True for a regular file's `stat`.
pub(crate) fn is_regular(st: &FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
}

/// True for a directory's `stat`.
pub(crate) fn is_dir(st: &FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
}

/// An unpredictable suffix for temporary names: 64 bits from SipHash keyed
/// by the OS random source (std's `RandomState`), mixed with a counter and
/// the time, so a local user cannot plant anything at the name in advance.
pub(crate) fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// What [`PinnedDir::open_regular`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read an existing file.
    Read,
    /// Read and write an existing file, or create it (not exclusively) with
    /// this mode, set on the fd.
    ReadWriteCreate(u32),
}

impl PinnedDir {
    /// Open the directory `path`, resolving it ourselves ([`resolve`]): a
    /// symlink on the way is followed only if it belongs to us or to root,
    /// so no other user's link can steer where we write.
    pub(crate) fn open(path: &Path) -> Result<PinnedDir, SafeFsError> {
        let (fd, real) = resolve(path)?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(Some(fd.as_raw_fd()), ".", flags, Mode::empty()).map_err(|e| {
            SafeFsError::Io { action: "opening directory", path: real.clone(), source: e.into() }
        })?;
        Ok(PinnedDir { fd: own(fd), path: real })
    }

    /// The path this directory had when it was opened (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/name`, for messages.
    pub(crate) fn child(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn err(&self, action: &'static str, name: &OsStr) -> impl FnOnce(Errno) -> SafeFsError + '_ {
        let path = self.child(name);
        move |e| SafeFsError::Io { action, path, source: e.into() }
    }

    /// `fstat` of the directory itself.
    pub(crate) fn stat_self(&self) -> Result<FileStat, SafeFsError> {
        nix::sys::stat::fstat(self.raw()).map_err(|e| SafeFsError::Io {
            action: "inspecting",
            path: self.path.clone(),
            source: e.into(),
        })
    }

    /// Refuse a directory that users other than its owner (and group) can
    /// write unless it is sticky: without the sticky bit anyone could rename
    /// or replace what we create there. Group-writable directories are
    /// accepted (Debian's user private groups make them common); the group's
    /// members are trusted.
    pub(crate) fn refuse_if_shared(&self) -> Result<(), SafeFsError> {
        let st = self.stat_self()?;
        let mode = st.st_mode & 0o7777;
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(SafeFsError::SharedDirectory { path: self.path.clone(), mode });
        }
        Ok(())
    }

    /// `lstat` of an entry; `None` if it does not exist.
    pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> Result<Option<FileStat>, SafeFsError> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        match nix::sys::stat::fstatat(Some(self.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.err("inspecting", name)(e)),
        }
    }

    /// Open the subdirectory `name`, which must be a real directory.
    pub(crate) fn open_dir(&self, name: impl AsRef<OsStr>) -> Result<PinnedDir, SafeFsError> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(Some(self.raw()), name, flags, Mode::empty()) {
            Ok(fd) => Ok(PinnedDir { fd: own(fd), path: self.child(name) }),
            Err(Errno::ELOOP) => Err(SafeFsError::NotRegular { path: self.child(name), what: "a symlink" }),
            Err(e) => Err(self.err("opening directory", name)(e)),
        }
    }

    /// Create the directory `name` exclusively, open it, check it is the one
    /// we made (a directory owned by us), and give it `mode` on the fd.
    pub(crate) fn create_dir(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<PinnedDir, SafeFsError> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        // 0700 until the fd is checked: nobody else can use it meanwhile.
        nix::sys::stat::mkdirat(Some(self.raw()), name, Mode::from_bits_truncate(0o700))
            .map_err(self.err("creating directory", name))?;
        let dir = self.open_dir(name)?;
        let st = dir.stat_self()?;
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(SafeFsError::Untrusted { path: dir.path.clone(), owner: st.st_uid });
        }
        dir.chmod(mode)?;
        Ok(dir)
    }

    /// Create a directory named `STEM.RANDOM` (see [`random_suffix`]).
    pub(crate) fn create_temp_dir(&self, stem: &str, mode: u32) -> Result<(String, PinnedDir), SafeFsError> {
        let mut attempt = 0;
        loop {
            let name = format!("{stem}.{}", random_suffix());
            match self.create_dir(&name, mode) {
                Ok(d) => return Ok((name, d)),
                Err(SafeFsError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists && attempt < 16 =>
                {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Create the regular file `name` exclusively (`O_EXCL|O_NOFOLLOW`), for
    /// reading and writing, with `mode` set on the fd (not left to umask).
    pub(crate) fn create_file(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<File, SafeFsError> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(Some(self.raw()), name, flags, Mode::from_bits_truncate(0o600))
            .map_err(self.err("creating", name))?;
        let file = File::from(own(fd));
        fchmod(&file, mode).map_err(self.err("setting the mode of", name))?;
        Ok(file)
    }

    /// Create a file named `STEM.RANDOM` (see [`random_suffix`]).
    pub(crate) fn create_temp_file(&self, stem: &str, mode: u32) -> Result<(String, File), SafeFsError> {
        let mut attempt = 0;
        loop {
            let name = format!("{stem}.{}", random_suffix());
            match self.create_file(&name, mode) {
                Ok(f) => return Ok((name, f)),
                Err(SafeFsError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists && attempt < 16 =>
                {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Open an existing regular file (or create one, see [`Access`]) without
    /// following a symlink and without blocking on a FIFO; anything but a
    /// regular file is refused. `Ok(None)`: it does not exist (and `access`
    /// does not create).
    pub(crate) fn open_regular(
        &self,
        name: impl AsRef<OsStr>,
        access: Access,
    ) -> Result<Option<File>, SafeFsError> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        let (mut flags, mode) = match access {
            Access::Read => (OFlag::O_RDONLY, 0o600),
            Access::ReadWriteCreate(mode) => (OFlag::O_RDWR | OFlag::O_CREAT, mode),
        };
        flags |= OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = match nix::fcntl::openat(Some(self.raw()), name, flags, Mode::from_bits_truncate(mode)) {
            Ok(fd) => own(fd),
            Err(Errno::ENOENT) if access == Access::Read => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(SafeFsError::NotRegular { path: self.child(name), what: "a symlink" })
            }
            Err(Errno::ENXIO) => {
                return Err(SafeFsError::NotRegular { path: self.child(name), what: "a FIFO" })
            }
            Err(e) => {
                // Say what is in the way when it is not a regular file (the
                // kernel may answer EACCES for someone else's link in a
                // sticky directory).
                if let Ok(Some(st)) = self.stat(name) {
                    if !is_regular(&st) {
                        return Err(SafeFsError::NotRegular { path: self.child(name), what: type_name(&st) });
                    }
                }
                return Err(self.err("opening", name)(e));
            }
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(self.err("inspecting", name))?;
        if !is_regular(&st) {
            return Err(SafeFsError::NotRegular { path: self.child(name), what: type_name(&st) });
        }
        // A regular file: blocking I/O from here on.
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))
            .map_err(self.err("opening", name))?;
        Ok(Some(File::from(fd)))
    }

    /// Read a regular file of at most `limit` bytes (`None`: absent).
    /// Longer files and non-regular ones are errors.
    pub(crate) fn read_regular(
        &self,
        name: impl AsRef<OsStr>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, SafeFsError> {
        let name = name.as_ref();
        let Some(file) = self.open_regular(name, Access::Read)? else { return Ok(None) };
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| SafeFsError::Io {
            action: "reading",
            path: self.child(name),
            source: e,
        })?;
        if bytes.len() as u64 > limit {
            return Err(SafeFsError::Io {
                action: "reading",
                path: self.child(name),
                source: io::Error::other(format!("larger than {limit} bytes")),
            });
        }
        Ok(Some(bytes))
    }

    /// Start replacing `name` atomically: a new temporary file
    /// `.NAME.tmp.RANDOM` beside it (exclusive, never through a link, `mode`
    /// set on the fd), which [`Replacement::commit`] renames over `name`
    /// and which is removed if dropped uncommitted. The one way we write a
    /// file in place of another ([`PinnedDir::write_atomic`], the tarball).
    pub(crate) fn create_replacement(
        &self,
        name: impl AsRef<OsStr>,
        mode: u32,
    ) -> Result<(Replacement<'_>, File), SafeFsError> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        let (tmp, file) = self.create_temp_file(&format!(".{}.tmp", name.to_string_lossy()), mode)?;
        Ok((Replacement { dir: self, tmp, name: name.to_owned(), armed: true }, file))
    }

    /// Write `bytes` to `name` atomically: a new temporary file beside it
    /// (exclusive, random name), `mode` and `owner` set on its fd, fsync,
    /// rename over `name` (replacing whatever entry is there, never writing
    /// through it), fsync the directory.
    pub(crate) fn write_atomic(
        &self,
        name: impl AsRef<OsStr>,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), SafeFsError> {
        self.write_replacing(name.as_ref(), bytes, mode, owner, true)
    }

    /// [`PinnedDir::write_atomic`] without either fsync: readers see the
    /// old content or the new, never a mix, but after a crash the file may
    /// be old, new, empty or gone. For files that only save work and are
    /// checked before use (the stamp, remembered digests), where two
    /// fsyncs would cost more than the work they save (about 5 ms on ext4).
    pub(crate) fn write_atomic_unsynced(
        &self,
        name: impl AsRef<OsStr>,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), SafeFsError> {
        self.write_replacing(name.as_ref(), bytes, mode, owner, false)
    }

    fn write_replacing(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
        sync: bool,
    ) -> Result<(), SafeFsError> {
        let (replacement, mut file) = self.create_replacement(name, mode)?;
        let errno = |e: io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        (|| {
            file.write_all(bytes).map_err(errno)?;
            if let Some((uid, gid)) = owner {
                chown_keeping_mode(&file, uid, gid, mode)?;
            }
            if sync {
                file.sync_all().map_err(errno)?;
            }
            Ok(())
        })()
        .map_err(self.err("writing", OsStr::new(&replacement.tmp)))?;
        if sync {
            replacement.commit()
        } else {
            replacement.commit_unsynced()
        }
    }

    /// `renameat2(self/from, to_dir/to, flags)`.
    pub(crate) fn rename(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &PinnedDir,
        to: impl AsRef<OsStr>,
        flags: RenameFlags,
    ) -> Result<(), SafeFsError> {
        let (from, to) = (from.as_ref(), to.as_ref());
        check_name(&self.path, from)?;
        check_name(&to_dir.path, to)?;
        nix::fcntl::renameat2(Some(self.raw()), from, Some(to_dir.raw()), to, flags).map_err(|e| {
            SafeFsError::Io {
                action: "renaming",
                path: PathBuf::from(format!(
                    "{} to {}",
                    self.child(from).display(),
                    to_dir.child(to).display()
                )),
                source: e.into(),
            }
        })
    }

    /// Unlink the non-directory `name`. Returns whether it existed.
    pub(crate) fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<bool, SafeFsError> {
        let name = name.as_ref();
        check_name(&self.path, name)?;
        match nix::unistd::unlinkat(Some(self.raw()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.err("removing", name)(e)),
        }
    }

    /// Remove `name` and, if it is a real directory, everything below it,
    /// without following symlinks (they are unlinked). Returns whether it
    /// existed.
    pub(crate) fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<bool, SafeFsError> {
        self.remove_tree_at(name.as_ref(), 0)
    }

    fn remove_tree_at(&self, name: &OsStr, depth: usize) -> Result<bool, SafeFsError> {
        let Some(st) = self.stat(name)? else { return Ok(false) };
        if !is_dir(&st) {
            return self.remove_file(name);
        }
        if depth >= MAX_REMOVE_DEPTH {
            return Err(SafeFsError::TooDeep { path: self.child(name) });
        }
        match self.open_dir(name) {
            Ok(sub) => {
                for entry in sub.list()? {
                    sub.remove_tree_at(&entry, depth + 1)?;
                }
            }
            // Replaced meanwhile (by a symlink, or removed): unlink below.
            Err(SafeFsError::NotRegular { .. }) => return self.remove_file(name),
            Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
        match nix::unistd::unlinkat(Some(self.raw()), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.err("removing", name)(e)),
        }
    }

    /// The names in this directory (without `.` and `..`), in no order.
    pub(crate) fn list(&self) -> Result<Vec<OsString>, SafeFsError> {
        let err = |e: Errno| SafeFsError::Io { action: "listing", path: self.path.clone(), source: e.into() };
        // A fresh descriptor of the same directory: reading moves its offset.
        let mut dir = nix::dir::Dir::openat(
            Some(self.raw()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(names)
    }

    /// Set the mode of the directory itself (on its fd).
    pub(crate) fn chmod(&self, mode: u32) -> Result<(), SafeFsError> {
        fchmod(&self.fd, mode).map_err(|e| SafeFsError::Io {
            action: "setting the mode of",
            path: self.path.clone(),
            source: e.into(),
        })
    }

    /// Set the owner of the directory itself (on its fd).
    pub(crate) fn chown(&self, uid: u32, gid: u32) -> Result<(), SafeFsError> {
        fchown(&self.fd, uid, gid).map_err(|e| SafeFsError::Io {
            action: "changing the owner of",
            path: self.path.clone(),
            source: e.into(),
        })
    }

    /// fsync the directory (makes renames and creations in it durable).
    pub(crate) fn sync(&self) -> Result<(), SafeFsError> {
        nix::unistd::fsync(self.raw()).map_err(|e| SafeFsError::Io {
            action: "syncing",
            path: self.path.clone(),
            source: e.into(),
        })
    }
}

impl AsFd for PinnedDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `fchmod` on an open file or directory.
pub(crate) fn fchmod(fd: &impl AsFd, mode: u32) -> Result<(), Errno> {
    nix::sys::stat::fchmod(fd.as_fd().as_raw_fd(), Mode::from_bits_truncate(mode))
}

/// `fchown` on an open file or directory.
pub(crate) fn fchown(fd: &impl AsFd, uid: u32, gid: u32) -> Result<(), Errno> {
    nix::unistd::fchown(
        fd.as_fd().as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
}

/// `fchown`, then `fchmod` to `mode` again: chown clears the set-id bits,
/// and the mode we asked for stands.
pub(crate) fn chown_keeping_mode(fd: &impl AsFd, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    fchown(fd, uid, gid)?;
    fchmod(fd, mode)
}

/// A temporary file that becomes another name on [`Replacement::commit`]
/// (see [`PinnedDir::create_replacement`]); removed on drop otherwise.
#[derive(Debug)]
pub(crate) struct Replacement<'d> {
    dir: &'d PinnedDir,
    tmp: String,
    name: OsString,
    armed: bool,
}

impl Replacement<'_> {
    /// Rename the temporary file over its final name (whatever entry is
    /// there is replaced, never written through) and fsync the directory.
    /// The caller has written and fsynced the file.
    pub(crate) fn commit(mut self) -> Result<(), SafeFsError> {
        self.dir.rename(&self.tmp, self.dir, &self.name, RenameFlags::empty())?;
        self.armed = false;
        self.dir.sync()
    }

    /// [`Replacement::commit`] without the directory fsync
    /// ([`PinnedDir::write_atomic_unsynced`]).
    pub(crate) fn commit_unsynced(mut self) -> Result<(), SafeFsError> {
        self.dir.rename(&self.tmp, self.dir, &self.name, RenameFlags::empty())?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for Replacement<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the error being reported matters more.
            let _ = self.dir.remove_file(&self.tmp);
        }
    }
}

/// Write `bytes` to the file `path` atomically ([`PinnedDir::write_atomic`],
/// no owner change), through its pinned parent, which must not be writable
/// by others unless it is sticky ([`PinnedDir::refuse_if_shared`]).
pub(crate) fn write_path_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SafeFsError> {
    let (parent, name) = crate::paths::split(path).ok_or_else(|| SafeFsError::Io {
        action: "writing",
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let dir = PinnedDir::open(parent)?;
    dir.refuse_if_shared()?;
    dir.write_atomic(name, bytes, mode, None)
}

/// Most symlinks [`resolve`] follows for one path (Linux's own limit).
const MAX_SYMLINKS: u32 = 40;

/// Resolve `path` (relative to the current directory if not absolute) to
/// the directory it names, one component at a time with `O_NOFOLLOW`, the
/// way the kernel would, except that a symlink is followed only if it is
/// owned by us or by root. Returns an `O_PATH` descriptor of the directory
/// and its physical path (no symlinks, no `..`).
///
/// This is the only place paths are resolved for writing: paths other users
/// can change (a cache directory in `/var/tmp`, an output in `/tmp`) can
/// only lead us to directories, never through their links. Like
/// `protected_symlinks`, but in every directory and for every user.
pub(crate) fn resolve(path: &Path) -> Result<(OwnedFd, PathBuf), SafeFsError> {
    let io_err =
        |action, path: &Path, e: Errno| SafeFsError::Io { action, path: path.to_owned(), source: e.into() };
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let start = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(|e| SafeFsError::Io {
            action: "finding the current directory for",
            path: path.to_owned(),
            source: e,
        })?
    };
    // The current directory is where we are: its own path is trusted.
    let root = nix::fcntl::open(&start, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io_err("opening directory", &start, e))?;
    let me = nix::unistd::geteuid().as_raw();
    // The directories walked so far (for `..`), with their names.
    let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
    let base: Vec<OsString> = start.components().skip(1).map(|c| c.as_os_str().to_owned()).collect();
    let mut top = own(root);
    let real = |stack: &[(OwnedFd, OsString)], base: &[OsString]| -> PathBuf {
        let mut p = PathBuf::from("/");
        p.extend(base.iter());
        p.extend(stack.iter().map(|(_, n)| n));
        p
    };
    let mut base = base;
    let mut todo: std::collections::VecDeque<OsString> =
        path.components().map(|c| c.as_os_str().to_owned()).collect();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        let cb = c.as_bytes();
        if cb == b"/" || cb == b"." || cb.is_empty() {
            continue;
        }
        let cur = stack.last().map(|(fd, _)| fd.as_raw_fd()).unwrap_or(top.as_raw_fd());
        if cb == b".." {
            if stack.pop().is_none() && base.pop().is_some() {
                // Above the start directory: reopen its parent.
                let p = real(&[], &base);
                let fd = nix::fcntl::open(
                    &p,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("opening directory", &p, e))?;
                top = own(fd);
            }
            continue;
        }
        match nix::fcntl::openat(Some(cur), c.as_os_str(), dir_flags, Mode::empty()) {
            Ok(fd) => stack.push((own(fd), c)),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let here = real(&stack, &base).join(&c);
                let st = nix::sys::stat::fstatat(
                    Some(cur),
                    c.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err("inspecting", &here, e))?;
                if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFLNK.bits() {
                    return Err(io_err("opening directory", &here, Errno::ENOTDIR));
                }
                if st.st_uid != me && st.st_uid != 0 {
                    return Err(SafeFsError::UntrustedLink { path: here, owner: st.st_uid });
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io_err("resolving", path, Errno::ELOOP));
                }
                let target = nix::fcntl::readlinkat(Some(cur), c.as_os_str())
                    .map_err(|e| io_err("reading symlink", &here, e))?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    stack.clear();
                    base.clear();
                    top = own(nix::fcntl::open(
                        "/",
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io_err("opening directory", Path::new("/"), e))?);
                }
                for t in target.components().rev() {
                    todo.push_front(t.as_os_str().to_owned());
                }
            }
            Err(e) => return Err(io_err("opening directory", &real(&stack, &base).join(&c), e)),
        }
    }
    let path = real(&stack, &base);
    Ok((stack.pop().map(|(fd, _)| fd).unwrap_or(top), path))
}

/// [`resolve`] for a path that may not exist yet: the longest existing
/// ancestor is resolved, the rest appended. For messages and for deciding
/// where to write; writes then open the result with [`PinnedDir::open`].
pub(crate) fn real_path(path: &Path) -> Result<PathBuf, SafeFsError> {
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    loop {
        match resolve(&cur) {
            Ok((_, real)) => {
                let mut out = real;
                out.extend(rest.iter().rev());
                return Ok(out);
            }
            // Missing, or not a directory (a file named as the output):
            // resolve what leads to it and let the writer say what is wrong.
            Err(SafeFsError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => return Err(e),
        }
        match (cur.file_name().map(|n| n.to_owned()), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                cur = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() };
            }
            _ => return Ok(path.to_path_buf()),
        }
    }
}

/// Names must be one component: no `/`, not empty, `.` or `..`.
fn check_name(dir: &Path, name: &OsStr) -> Result<(), SafeFsError> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(SafeFsError::Io {
            action: "using",
            path: dir.join(name),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a single file name"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn creation_is_exclusive_and_never_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let d = PinnedDir::open(tmp.path()).unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("link")).unwrap();
        assert!(d.create_file("link", 0o644).is_err());
        assert!(d.open_regular("link", Access::Read).is_err());
        assert!(d.open_regular("link", Access::ReadWriteCreate(0o644)).is_err());
        d.write_atomic("link", b"new", 0o640, None).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let md = std::fs::symlink_metadata(tmp.path().join("link")).unwrap();
        assert!(md.is_file() && md.mode() & 0o7777 == 0o640);
        assert!(d.create_file("a/b", 0o644).is_err());
        assert!(d.create_file("..", 0o644).is_err());
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&tmp.path().join("fifo"), Mode::from_bits_truncate(0o666)).unwrap();
        let d = PinnedDir::open(tmp.path()).unwrap();
        for access in [Access::Read, Access::ReadWriteCreate(0o644)] {
            let err = d.open_regular("fifo", access).unwrap_err().to_string();
            assert!(err.contains("a FIFO"), "{err}");
        }
        assert!(d.read_regular("absent", 10).unwrap().is_none());
    }

    #[test]
    fn pinned_dir_survives_rename_and_tree_removal_does_not_follow() {
        let tmp = tempfile::tempdir().unwrap();
        let top = PinnedDir::open(tmp.path()).unwrap();
        let (name, sub) = top.create_temp_dir(".x.build", 0o755).unwrap();
        assert_eq!(std::fs::metadata(tmp.path().join(&name)).unwrap().permissions().mode() & 0o777, 0o755);
        // Renamed away and replaced by a symlink: we still write into ours.
        std::fs::rename(tmp.path().join(&name), tmp.path().join("moved")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join(&name)).unwrap();
        sub.create_file("kernel", 0o644).unwrap();
        assert!(tmp.path().join("moved/kernel").is_file());
        assert!(!outside.join("kernel").exists());
        std::os::unix::fs::symlink(&outside, tmp.path().join("moved/evil")).unwrap();
        assert!(top.remove_tree("moved").unwrap());
        assert!(top.remove_tree(&name).unwrap());
        assert!(outside.join("keep").is_file());
        assert!(!top.remove_tree("moved").unwrap());
    }

    #[test]
    fn shared_directories_need_the_sticky_bit() {
        let tmp = tempfile::tempdir().unwrap();
        let set = |m| std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(m)).unwrap();
        for (mode, ok) in [(0o755, true), (0o775, true), (0o777, false), (0o1777, true), (0o757, false)] {
            set(mode);
            let r = PinnedDir::open(tmp.path()).unwrap().refuse_if_shared();
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
        }
        set(0o700);
    }

    #[test]
    fn resolve_follows_only_trusted_links() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        std::os::unix::fs::symlink("real/sub", tmp.path().join("mine")).unwrap();
        std::os::unix::fs::symlink("../..", real.join("sub/up")).unwrap();
        let canon = std::fs::canonicalize(&real).unwrap();
        assert_eq!(resolve(&tmp.path().join("mine")).unwrap().1, canon.join("sub"));
        assert_eq!(resolve(&tmp.path().join("mine/up/real/./sub/..")).unwrap().1, canon);
        assert_eq!(real_path(&tmp.path().join("mine/new/deeper")).unwrap(), canon.join("sub/new/deeper"));
        // Someone else's symlink is never followed.
        if nix::unistd::geteuid().is_root() {
            let theirs = tmp.path().join("theirs");
            std::os::unix::fs::symlink(&real, &theirs).unwrap();
            std::os::unix::fs::lchown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = PinnedDir::open(&theirs.join("sub")).unwrap_err();
            assert!(matches!(err, SafeFsError::UntrustedLink { owner: 65534, .. }), "{err}");
        }
        assert!(PinnedDir::open(&tmp.path().join("absent")).is_err());
    }

    #[test]
    fn random_suffixes_differ() {
        assert_ne!(random_suffix(), random_suffix());
        assert_eq!(random_suffix().len(), 16);
    }
}
