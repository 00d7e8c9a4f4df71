//! Files with holes: finding the regions a file system holds as data, and
//! writing or copying a file so that its 4 KiB blocks of zeros become holes
//! (they read back as zeros and take no memory on tmpfs, no disk
//! elsewhere). Half of an uncompressed kernel is such blocks
//! (`crate::build::kernel_file`); the tarball's reader finds the holes of
//! the root image the same way (`crate::image::tarball`).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Granularity of zero detection; the page and file-system block size, so
/// the holes we make or report line up with holes a file system can hold.
pub(crate) const ZERO_BLOCK: u64 = 4096;

/// Bytes a [`HoleWriter`] gathers before it writes.
const WRITE_BUF: usize = 1 << 20;

/// The regions of `[start, end)` of `file` the file system reports as data
/// (SEEK_DATA/SEEK_HOLE), as `(from, to)`; all of it where the file system
/// cannot say.
///
/// # Errors
/// Seeking fails, or the file changes under us (a region ends before it
/// starts).
pub(crate) fn data_regions(file: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let mut regions = Vec::new();
    let mut pos = start;
    while pos < end {
        let from = match lseek(fd, to_off(pos)?, Whence::SeekData) {
            Ok(s) => from_off(s),
            // ENXIO: no data at or after `pos`, the rest is one hole.
            Err(Errno::ENXIO) => break,
            // A file system without SEEK_DATA: everything is data.
            Err(Errno::EINVAL) if pos == start => return Ok(vec![(start, end)]),
            Err(e) => return Err(e.into()),
        };
        if from >= end {
            break;
        }
        let to = match lseek(fd, to_off(from)?, Whence::SeekHole) {
            Ok(e) => from_off(e).min(end),
            Err(Errno::ENXIO) => end,
            Err(e) => return Err(e.into()),
        };
        if to <= from {
            // Cannot happen on a stable file; stop rather than loop forever.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file changed while reading"));
        }
        regions.push((from, to));
        pos = to;
    }
    Ok(regions)
}

/// Copy `len` bytes of `src` from `src_at` into `dst` (which has nothing
/// written in that range) at `dst_at`, only the data regions of the
/// source, with `copy_file_range` where the file system has it; `dst` is
/// then at least `dst_at + len` long, its holes where the source had
/// them. The file offsets of both (shared by their clones) move.
///
/// # Errors
/// Reading or writing fails, or the source is shorter than
/// `src_at + len`.
pub(crate) fn copy_data(src: &File, src_at: u64, dst: &File, dst_at: u64, len: u64) -> io::Result<()> {
    if src.metadata()?.len() < src_at + len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than expected"));
    }
    let (mut from, mut to) = (src.try_clone()?, dst.try_clone()?);
    for (start, end) in data_regions(src, src_at, src_at + len)? {
        from.seek(io::SeekFrom::Start(start))?;
        to.seek(io::SeekFrom::Start(dst_at + (start - src_at)))?;
        // std's io::copy between files is copy_file_range, with a
        // read/write fallback where the file system has none.
        if io::copy(&mut (&from).take(end - start), &mut to)? != end - start {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than expected"));
        }
    }
    if dst.metadata()?.len() < dst_at + len {
        dst.set_len(dst_at + len)?;
    }
    Ok(())
}

/// A writer of a new, empty file from offset 0 that leaves a hole where a
/// 4 KiB block (at a multiple of 4 KiB in the file) is all zeros. Each
/// flush writes what it gathered and makes the file as long as what was
/// written to it, so holes at the end read back as zeros too; dropping it
/// without a flush loses the unflushed bytes, as with a `BufWriter`.
pub(crate) struct HoleWriter<'a> {
    file: &'a File,
    /// Bytes gathered, which start at file offset `at`.
    buf: Vec<u8>,
    at: u64,
}

impl<'a> HoleWriter<'a> {
    /// Write into `file`, which must be empty.
    pub(crate) fn new(file: &'a File) -> Self {
        HoleWriter { file, buf: Vec::with_capacity(WRITE_BUF), at: 0 }
    }

    /// Write out the gathered bytes but the zero blocks, in runs.
    fn write_gathered(&mut self) -> io::Result<()> {
        let mut run: Option<(usize, usize)> = None;
        let mut i = 0usize;
        while i < self.buf.len() {
            let abs = self.at + i as u64;
            let piece_end = (((abs / ZERO_BLOCK + 1) * ZERO_BLOCK - self.at) as usize).min(self.buf.len());
            if is_zero(&self.buf[i..piece_end]) {
                if let Some((s, e)) = run.take() {
                    self.file.write_all_at(&self.buf[s..e], self.at + s as u64)?;
                }
            } else {
                run = Some(match run {
                    Some((s, _)) => (s, piece_end),
                    None => (i, piece_end),
                });
            }
            i = piece_end;
        }
        if let Some((s, e)) = run {
            self.file.write_all_at(&self.buf[s..e], self.at + s as u64)?;
        }
        self.at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl Write for HoleWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(WRITE_BUF - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == WRITE_BUF {
            self.write_gathered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_gathered()?;
        if self.file.metadata()?.len() < self.at {
            self.file.set_len(self.at)?;
        }
        Ok(())
    }
}

/// True if every byte is zero. OR-folding 8 bytes at a time lets the
/// compiler vectorise this, so the scan runs at memory speed.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let acc = words
        .by_ref()
        .fold(0u64, |acc, w| acc | u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]));
    acc == 0 && words.remainder().iter().all(|&b| b == 0)
}

fn to_off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

fn from_off(v: i64) -> u64 {
    // lseek never returns a negative offset on success.
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Content with zero blocks at block boundaries and off them: 3 data
    /// blocks, 4 zero blocks, 1 data byte, zeros to the end of that block,
    /// 2 zero blocks, a last partial data block.
    fn content() -> Vec<u8> {
        let mut v = vec![7u8; 3 * 4096];
        v.extend(vec![0u8; 4 * 4096]);
        v.push(9);
        v.extend(vec![0u8; 4095 + 2 * 4096]);
        v.extend(vec![5u8; 100]);
        v
    }

    fn allocated(f: &File) -> u64 {
        f.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn zero_blocks_become_holes_in_any_write_pattern() {
        let want = content();
        for step in [1usize, 7, 4096, 5000, 1 << 20] {
            let f = tempfile::tempfile().unwrap();
            let mut w = HoleWriter::new(&f);
            for piece in want.chunks(step) {
                w.write_all(piece).unwrap();
            }
            w.flush().unwrap();
            let mut got = Vec::new();
            (&f).read_to_end(&mut got).unwrap();
            assert!(got == want, "step {step}: content differs");
            assert!(allocated(&f) <= 5 * 4096, "step {step}: {} bytes allocated", allocated(&f));
        }
    }

    #[test]
    fn zeros_at_the_end_are_a_hole_of_the_right_length() {
        let f = tempfile::tempfile().unwrap();
        let mut w = HoleWriter::new(&f);
        w.write_all(&[1u8; 10]).unwrap();
        w.write_all(&vec![0u8; 3 << 20]).unwrap();
        w.flush().unwrap();
        assert_eq!(f.metadata().unwrap().len(), 10 + (3 << 20));
        assert!(allocated(&f) <= 4096);
    }

    #[test]
    fn copy_data_keeps_holes_and_bytes() {
        let src = tempfile::tempfile().unwrap();
        let mut w = HoleWriter::new(&src);
        w.write_all(&vec![3u8; 8192]).unwrap(); // a header to skip
        w.write_all(&content()).unwrap();
        w.flush().unwrap();
        let len = content().len() as u64;
        let dst = tempfile::tempfile().unwrap();
        dst.write_all_at(b"head", 0).unwrap();
        copy_data(&src, 8192, &dst, 4096, len).unwrap();
        let mut got = Vec::new();
        let mut reader = dst.try_clone().unwrap();
        reader.rewind().unwrap();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got.len() as u64, 4096 + len);
        assert!(got[4096..] == content()[..] && &got[..4] == b"head");
        assert!(allocated(&dst) <= 6 * 4096, "{} bytes allocated", allocated(&dst));
        // A source shorter than asked for is an error, not a short copy.
        let short = tempfile::tempfile().unwrap();
        short.write_all_at(&[1u8; 100], 0).unwrap();
        let out = tempfile::tempfile().unwrap();
        assert_eq!(copy_data(&short, 0, &out, 0, 4096).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn zero_check_sees_a_single_byte() {
        let mut b = vec![0u8; 4099];
        assert!(is_zero(&b));
        b[4098] = 1;
        assert!(!is_zero(&b));
        b[4098] = 0;
        b[7] = 1;
        assert!(!is_zero(&b));
    }
}
