//! Scratch space for file data that must not live in memory: base archive
//! members are streamed into one unnamed temporary file beside the output,
//! and the tree points at their blocks there ([`ScratchData`]).
//!
//! Only 4 KiB blocks holding a non-zero byte are stored, packed one after
//! the other; the rest of each file is a hole that the ext2 writer leaves
//! unallocated. Block-sized holes are what the image can represent (ext2
//! maps whole blocks), so a sparse tar member stays sparse in the root image
//! and a member full of zeros costs neither memory nor disk. The file has no
//! name (`O_TMPFILE`), so nobody can plant a link at it and a killed build
//! leaves nothing behind.
//!
//! What goes into a file, and in which order, is left to the producer
//! (`input::archive`); copying the blocks into the image to the ext2 writer.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Granularity of holes: the ext2 block size.
pub(crate) const BLOCK: u64 = 4096;

/// Bytes gathered before one `pwrite` to the scratch file.
const BATCH: usize = 1 << 20;

/// An unnamed temporary file holding file data, written append-only.
#[derive(Debug)]
pub(crate) struct Scratch {
    file: Arc<File>,
    /// The directory it lives in, for messages.
    dir: PathBuf,
    /// Bytes written so far (the next file's data starts here).
    end: u64,
}

/// The data of one regular file kept in a [`Scratch`] file: `len` bytes, of
/// which the logical blocks listed in `runs` are stored, packed, from
/// `offset`; every other block reads as zeros (a hole).
#[derive(Debug, Clone)]
pub(crate) struct ScratchData {
    file: Arc<File>,
    offset: u64,
    len: u64,
    runs: Arc<[(u64, u64)]>,
}

impl PartialEq for ScratchData {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
            && self.offset == other.offset
            && self.len == other.len
            && self.runs == other.runs
    }
}

impl Eq for ScratchData {}

impl ScratchData {
    /// Size of the file in bytes (holes included).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Runs of logical blocks holding data, as `(first block, count)`:
    /// ascending, disjoint and never adjacent. Blocks are [`BLOCK`] bytes;
    /// the last one may extend past `len` (its tail is zeros).
    pub(crate) fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    /// Number of stored blocks.
    pub(crate) fn stored_blocks(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }

    /// The scratch file and the offset of the first stored block; the stored
    /// blocks follow each other there, [`BLOCK`] bytes each.
    pub(crate) fn source(&self) -> (&File, u64) {
        (&self.file, self.offset)
    }

    /// Read the whole file back, holes as zeros (for tests).
    #[cfg(test)]
    pub(crate) fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file too large to read"))?;
        let mut out = vec![0u8; len];
        let mut at = self.offset;
        for &(first, count) in self.runs.iter() {
            for b in first..first + count {
                let start = (b * BLOCK) as usize;
                let end = (start + BLOCK as usize).min(len);
                self.file.read_exact_at(&mut out[start..end], at)?;
                at += BLOCK;
            }
        }
        Ok(out)
    }
}

impl Scratch {
    /// Create an unnamed scratch file in `dir` (`O_TMPFILE`; where the file
    /// system lacks it, a fresh name created exclusively without following
    /// links and unlinked at once).
    ///
    /// # Errors
    /// The OS error; the caller names `dir`.
    pub(crate) fn create_in(dir: &Path) -> io::Result<Scratch> {
        let tmpfile = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(dir);
        let file = match tmpfile {
            Ok(f) => f,
            // EOPNOTSUPP/EISDIR/EINVAL: no O_TMPFILE on this file system or kernel.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                named_then_unlinked(dir)?
            }
            Err(e) => return Err(e),
        };
        Ok(Scratch { file: Arc::new(file), dir: dir.to_owned(), end: 0 })
    }

    /// The directory the scratch file lives in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes stored so far (all files).
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.end
    }

    /// Start a file of `len` bytes. Write its data with
    /// [`ScratchWriter::write_at`] at increasing offsets, then call
    /// [`ScratchWriter::finish`].
    pub(crate) fn writer(&mut self, len: u64) -> ScratchWriter<'_> {
        let offset = self.end;
        ScratchWriter {
            scratch: self,
            offset,
            len,
            runs: Vec::new(),
            block: vec![0; BLOCK as usize],
            current: None,
            pos: 0,
            batch: Vec::new(),
        }
    }
}

/// The fallback for file systems without `O_TMPFILE`.
fn named_then_unlinked(dir: &Path) -> io::Result<File> {
    use sha2::{Digest, Sha256};
    let mut last = None;
    for attempt in 0u32..16 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!("{}:{now}:{attempt}:{:p}", std::process::id(), &last);
        let tag: String = Sha256::digest(seed.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!(".guestfs-appliance-scratch-{tag}"));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Writes one file's data into a [`Scratch`], dropping all-zero blocks.
/// Memory: one block plus one batch, whatever the file's size.
pub(crate) struct ScratchWriter<'a> {
    scratch: &'a mut Scratch,
    offset: u64,
    len: u64,
    runs: Vec<(u64, u64)>,
    /// The block being filled.
    block: Vec<u8>,
    /// Its logical index, when one is being filled.
    current: Option<u64>,
    /// Smallest offset the next write may start at.
    pos: u64,
    /// Stored blocks not yet written.
    batch: Vec<u8>,
}

impl ScratchWriter<'_> {
    /// Write `data` at logical offset `at`. Offsets must not go backwards
    /// and data must stay within the file's length; bytes never written
    /// read as zeros.
    ///
    /// # Errors
    /// `InvalidInput` for a write out of order or past the end (a bug in
    /// the producer); otherwise the OS error from writing the scratch file.
    pub(crate) fn write_at(&mut self, at: u64, mut data: &[u8]) -> io::Result<()> {
        if at < self.pos || at.checked_add(data.len() as u64).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("scratch write of {} bytes at {at} out of order or past {}", data.len(), self.len),
            ));
        }
        let mut at = at;
        while !data.is_empty() {
            let index = at / BLOCK;
            if self.current != Some(index) {
                self.flush_block()?;
                self.current = Some(index);
            }
            let within = (at % BLOCK) as usize;
            let n = data.len().min(BLOCK as usize - within);
            self.block[within..within + n].copy_from_slice(&data[..n]);
            data = &data[n..];
            at += n as u64;
            if at % BLOCK == 0 {
                self.flush_block()?;
            }
        }
        self.pos = at;
        Ok(())
    }

    /// Store the block being filled, unless it is all zeros.
    fn flush_block(&mut self) -> io::Result<()> {
        let Some(index) = self.current.take() else { return Ok(()) };
        if self.block.iter().any(|&b| b != 0) {
            match self.runs.last_mut() {
                Some((first, count)) if *first + *count == index => *count += 1,
                _ => self.runs.push((index, 1)),
            }
            self.batch.extend_from_slice(&self.block);
            if self.batch.len() >= BATCH {
                self.write_batch()?;
            }
        }
        self.block.fill(0);
        Ok(())
    }

    fn write_batch(&mut self) -> io::Result<()> {
        if !self.batch.is_empty() {
            self.scratch.file.write_all_at(&self.batch, self.scratch.end)?;
            self.scratch.end += self.batch.len() as u64;
            self.batch.clear();
        }
        Ok(())
    }

    /// Finish the file. Data never written reads as zeros.
    ///
    /// # Errors
    /// The OS error from writing the scratch file (e.g. out of space).
    pub(crate) fn finish(mut self) -> io::Result<ScratchData> {
        self.flush_block()?;
        self.write_batch()?;
        Ok(ScratchData {
            file: self.scratch.file.clone(),
            offset: self.offset,
            len: self.len,
            runs: Arc::from(std::mem::take(&mut self.runs)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes_and_data_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Scratch::create_in(dir.path()).unwrap();
        // Nothing visible in the directory: the file has no name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let len = 10 * BLOCK + 100;
        let mut w = s.writer(len);
        w.write_at(0, &vec![0u8; 2 * BLOCK as usize]).unwrap(); // two zero blocks
        w.write_at(2 * BLOCK + 5, b"abc").unwrap(); // block 2
        w.write_at(3 * BLOCK - 1, b"xy").unwrap(); // end of 2, start of 3
        w.write_at(9 * BLOCK + 1, b"z").unwrap(); // block 9
        w.write_at(10 * BLOCK + 99, b"!").unwrap(); // last, partial block
        let d = w.finish().unwrap();
        assert_eq!(d.runs(), &[(2, 2), (9, 2)]);
        assert_eq!(d.stored_blocks(), 4);
        assert_eq!(s.stored_bytes(), 4 * BLOCK);
        let back = d.read_all().unwrap();
        let mut want = vec![0u8; len as usize];
        want[2 * BLOCK as usize + 5..][..3].copy_from_slice(b"abc");
        want[3 * BLOCK as usize - 1..][..2].copy_from_slice(b"xy");
        want[9 * BLOCK as usize + 1] = b'z';
        want[len as usize - 1] = b'!';
        assert_eq!(back, want);

        // A second file follows the first in the same scratch file.
        let mut w = s.writer(3);
        w.write_at(0, b"hey").unwrap();
        let d2 = w.finish().unwrap();
        assert_eq!(d2.source().1, 4 * BLOCK);
        assert_eq!(d2.read_all().unwrap(), b"hey");
        assert_eq!(d.read_all().unwrap(), want, "the first file is untouched");
    }

    #[test]
    fn writes_out_of_order_or_past_the_end_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Scratch::create_in(dir.path()).unwrap();
        let mut w = s.writer(10);
        w.write_at(5, b"a").unwrap();
        let e = w.write_at(2, b"b").unwrap_err();
        assert!(e.to_string().contains("out of order"), "{e}");
        let e = w.write_at(8, b"abc").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(w.finish().unwrap().read_all().unwrap(), b"\0\0\0\0\0a\0\0\0\0");
    }

    #[test]
    fn all_zero_file_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Scratch::create_in(dir.path()).unwrap();
        let mut w = s.writer(1 << 30);
        let zeros = vec![0u8; 1 << 20];
        for i in 0..4u64 {
            w.write_at(i << 20, &zeros).unwrap();
        }
        let d = w.finish().unwrap();
        assert!(d.runs().is_empty());
        assert_eq!(d.len(), 1 << 30);
        assert_eq!(s.stored_bytes(), 0);
    }

    #[test]
    fn fallback_name_is_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        let f = named_then_unlinked(dir.path()).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
