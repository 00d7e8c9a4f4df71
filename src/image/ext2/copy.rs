//! Copying file data into the image, on all cores: host files (data
//! regions only, so holes stay holes, except in files up to
//! [`WHOLE_UP_TO`], copied whole) with `copy_file_range` where the kernel
//! can copy them without passing the bytes through user space, and the
//! stored blocks of scratch files through our buffer (they are small, and
//! their blocks are hashed there). Where the blocks go
//! was decided by `layout`; this module only moves bytes, and tells the
//! digest about every write (crate::digest::WrittenBytes).
//!
//! While the workers copy, a flusher thread starts writeback of what they
//! have written so far (every `WRITEBACK_STEP` bytes). The output layer
//! fsyncs every file before the swap, so durability is unchanged; without
//! the flusher that fsync found the whole image dirty (~690 MB on a disk)
//! and waited for all of it after the copying was done, instead of the
//! disk writing while the cores copy.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

use super::layout::Extent;
use super::layout::BLOCK_SIZE;
use crate::digest::WrittenBytes;

/// Where a job's bytes come from.
pub(super) enum From<'a> {
    /// The host file named by the job (opened by the worker).
    Host,
    /// Packed blocks of a scratch file, starting at `offset`.
    Scratch { file: &'a File, offset: u64 },
}

/// One file to copy: at most `len` bytes into `extents`. For a host file
/// `name` is its path (and file offsets are image offsets within the
/// extents); for a scratch file the `len` bytes from its offset fill the
/// extents in order and `name` is only for messages.
pub(super) struct Job<'a> {
    pub(crate) name: &'a Path,
    pub(crate) source: From<'a>,
    pub(crate) len: u64,
    pub(crate) extents: &'a [Extent],
}

/// What went wrong with one job.
pub(super) enum JobError {
    /// The file could not be opened any more (it was readable in the
    /// first pass): its blocks stay zero.
    Open(io::Error),
    /// Reading the host file or writing the image failed.
    Copy(io::Error),
}

/// How many bytes are copied between two writeback starts: big enough
/// that a start is cheap against the copying, small enough that the disk
/// is busy early.
const WRITEBACK_STEP: u64 = 64 << 20;

/// Where every byte of the image is written from our memory: the file,
/// and the digest that hears each write ([`WrittenBytes`]).
pub(super) struct Sink<'a> {
    pub(super) file: &'a File,
    pub(super) heard: &'a dyn WrittenBytes,
}

impl Sink<'_> {
    /// Write `bytes` at `offset` and tell the digest; `zeros_follow` as in
    /// [`WrittenBytes::wrote`].
    pub(super) fn write_at(&self, bytes: &[u8], offset: u64, zeros_follow: bool) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        self.heard.wrote(offset, bytes, zeros_follow);
        Ok(())
    }
}

/// Host files up to this size are copied whole, without looking for
/// holes: nine in ten of an appliance's files, for which the two `lseek`s
/// cost more than the copy. A hole in one (there are none in packaged
/// files this small) reads as zeros and is written as zeros: the same
/// bytes in the image, in a block that takes memory or disk.
const WHOLE_UP_TO: u64 = 64 << 10;

/// Copy every job on `threads` threads into `sink`'s image (on this one
/// where no thread can be started), telling its digest about every write
/// (the bytes that pass through a buffer, the place of those the kernel
/// copied). Returns the failures with the job index, sorted by index so
/// the caller reports deterministically.
///
/// # Errors
/// [`panicked`] when a copying thread panicked (its file is incomplete).
pub(super) fn copy_all(sink: &Sink, jobs: &[Job], threads: usize) -> io::Result<Vec<(usize, JobError)>> {
    let image = sink.file;
    // Biggest files first so one large file does not end up last on one core.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].len));
    let next = AtomicUsize::new(0);
    let copied = AtomicU64::new(0);
    let errors = Mutex::new(Vec::new());
    let threads = threads.clamp(1, jobs.len().max(1));
    // `true` asks the flusher for a writeback start, `false` ends it. A
    // full channel means a start is already pending: that one covers the
    // new bytes too, so workers never wait on the flusher (nor, where it
    // could not be started, on anyone: sending then fails).
    let (kick, kicks) = mpsc::sync_channel::<bool>(1);
    let worker = || {
        let mut buf = Vec::new();
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = order.get(k) else { break };
            if let Err(e) = copy_one(sink, &jobs[i], &mut buf) {
                if let Ok(mut errs) = errors.lock() {
                    errs.push((i, e));
                }
            }
            let len = jobs[i].len;
            let before = copied.fetch_add(len, Ordering::Relaxed);
            if (before + len) / WRITEBACK_STEP != before / WRITEBACK_STEP {
                let _ = kick.try_send(true);
            }
        }
    };
    let all_joined = std::thread::scope(|s| {
        crate::cores::try_spawn(s, move || {
            while let Ok(true) = kicks.recv() {
                start_writeback(image);
            }
        });
        let workers: Vec<_> = (0..threads).filter_map(|_| crate::cores::try_spawn(s, worker)).collect();
        if workers.is_empty() {
            worker();
        }
        // Every worker is joined (a panic left unjoined would panic the
        // scope), then their answers looked at.
        let joined: Vec<bool> = workers.into_iter().map(|w| w.join().is_ok()).collect();
        let all_joined = joined.iter().all(|&ok| ok);
        let _ = kick.send(false);
        all_joined
    });
    if !all_joined {
        return Err(panicked());
    }
    let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    Ok(errors)
}

/// The error of a copying thread that panicked.
pub(super) fn panicked() -> io::Error {
    io::Error::other("a copy thread panicked")
}

/// Ask the kernel to start writing the image's dirty pages, without
/// waiting for them. Best effort: an I/O error surfaces in the fsync the
/// output layer does before the swap, which is what decides success.
#[allow(unsafe_code)]
fn start_writeback(image: &File) {
    // SAFETY: sync_file_range takes a descriptor we hold open for the
    // duration of the call and plain integers; it touches no memory of ours.
    let _ = unsafe { libc::sync_file_range(image.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

fn copy_one(sink: &Sink, job: &Job, buf: &mut Vec<u8>) -> Result<(), JobError> {
    if let From::Scratch { file, offset } = job.source {
        // Scratch files hold exactly the blocks to copy, back to back: the
        // base archives' members, a few MB. Copied through our buffer, they
        // are hashed on the way, where a kernel copy would have to be read
        // back once the image is written (the build's serial end).
        let dst = Dest { sink, file_end: job.len, kernel_copy: false };
        copy_range(file, offset, &dst, job.extents, 0, job.len, buf).map_err(JobError::Copy)?;
        return Ok(());
    }
    let dst = Dest { sink, file_end: job.len, kernel_copy: true };
    let src = File::open(job.name).map_err(JobError::Open)?;
    if job.len <= WHOLE_UP_TO {
        // Most files are small: two seeks would cost more than their copy.
        copy_range(&src, 0, &dst, job.extents, 0, job.len, buf).map_err(JobError::Copy)?;
        return Ok(());
    }
    let fd = src.as_raw_fd();
    let mut pos = 0u64;
    while pos < job.len {
        // Find the next data region; ENXIO means only a hole is left.
        let start = match lseek(fd, pos as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(Errno::ENXIO) => break,
            // No SEEK_DATA support: treat everything as data.
            Err(_) => pos,
        };
        if start >= job.len {
            break;
        }
        let end = match lseek(fd, start as i64, Whence::SeekHole) {
            Ok(e) => (e as u64).min(job.len),
            Err(_) => job.len,
        };
        if end <= start {
            break;
        }
        let copied = copy_range(&src, 0, &dst, job.extents, start, end, buf).map_err(JobError::Copy)?;
        if copied < end - start {
            // The file shrank since it was listed: the rest stays zero.
            break;
        }
        pos = end;
    }
    Ok(())
}

/// Copy bytes `[from, to)` (read from `src` at `base` + offset) to where the
/// extents put them. Returns the number of bytes copied (short only at end
/// of file).
fn copy_range(
    src: &File,
    base: u64,
    image: &Dest,
    extents: &[Extent],
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
) -> io::Result<u64> {
    let mut file_off = 0u64; // file offset where the current extent starts
    let mut done = 0u64;
    for e in extents {
        let ext_bytes = e.len * BLOCK_SIZE;
        let lo = from.max(file_off);
        let hi = to.min(file_off + ext_bytes);
        if lo < hi {
            let img = e.start * BLOCK_SIZE + (lo - file_off);
            let ends_file = hi == image.file_end;
            let n = copy_bytes(src, image, base + lo, img, hi - lo, ends_file, buf)?;
            done += n;
            if n < hi - lo {
                return Ok(done);
            }
        }
        file_off += ext_bytes;
        if file_off >= to {
            break;
        }
    }
    Ok(done)
}

/// Where a job's bytes go: the image and its digest, and where the job's
/// data ends (in the job's own offsets), after which its last block holds
/// zeros.
struct Dest<'a> {
    sink: &'a Sink<'a>,
    file_end: u64,
    /// Whether `copy_file_range` may copy (else always through our buffer).
    kernel_copy: bool,
}

/// Copy `len` bytes from `src` at `src_off` to the image at `dst_off`,
/// with `copy_file_range`, and a read/write fallback when the kernel
/// refuses it (across file system types, as from ext4 into tmpfs; or file
/// systems without support). `ends_file`: these are the last bytes of
/// the job's data.
fn copy_bytes(
    src: &File,
    dst: &Dest,
    mut src_off: u64,
    mut dst_off: u64,
    len: u64,
    ends_file: bool,
    buf: &mut Vec<u8>,
) -> io::Result<u64> {
    if !dst.kernel_copy {
        return fallback(src, dst, src_off, dst_off, len, ends_file, buf);
    }
    let mut left = len;
    while left > 0 {
        let mut si = src_off as i64;
        let mut di = dst_off as i64;
        let chunk = left.min(1 << 30) as usize;
        match nix::fcntl::copy_file_range(src, Some(&mut si), dst.sink.file, Some(&mut di), chunk) {
            Ok(0) => break,
            Ok(n) => {
                dst.sink.heard.copied(dst_off, n as u64);
                src_off += n as u64;
                dst_off += n as u64;
                left -= n as u64;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL) => {
                return Ok(len - left + fallback(src, dst, src_off, dst_off, left, ends_file, buf)?);
            }
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Ok(len - left)
}

/// `pread` + `pwrite` through `buf`, with [`Sink::write_at`]: the bytes
/// are in our memory, so the digest hears them there.
fn fallback(
    src: &File,
    dst: &Dest,
    mut src_off: u64,
    mut dst_off: u64,
    len: u64,
    ends_file: bool,
    buf: &mut Vec<u8>,
) -> io::Result<u64> {
    buf.resize(1 << 20, 0);
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match src.read_at(&mut buf[..want], src_off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.sink.write_at(&buf[..n], dst_off, ends_file && n as u64 == left)?;
        src_off += n as u64;
        dst_off += n as u64;
        left -= n as u64;
    }
    Ok(len - left)
}

/// A host path paired with an error, for reporting.
pub(super) type Failure = (PathBuf, io::Error);
