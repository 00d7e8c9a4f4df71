//! Finding the data segments of a file: the regions the file system reports
//! as data (SEEK_DATA/SEEK_HOLE), minus 4 KiB blocks that read as all zeros.
//!
//! The result depends only on the file's content, not on how it happens to be
//! allocated, so a root image copied without `--sparse` still archives to the
//! same bytes. Holes are never read, which is what keeps a 4 GiB image with
//! 670 MB allocated cheap. Writing the segments is left to the caller.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Granularity of zero detection; the page and file-system block size, so
/// holes we report line up with holes the extracting file system can make.
const ZERO_BLOCK: u64 = 4096;

/// Read buffer for scanning data regions.
const SCAN_BUF: usize = 1 << 20;

/// `(offset, length)` of each non-zero data segment, ascending, disjoint and
/// never adjacent (adjacent ones are merged).
pub(super) type Segments = Vec<(u64, u64)>;

/// Find the data segments of `file`, whose size is `size`.
///
/// # Errors
/// Any I/O error from seeking or reading; `UnexpectedEof` when the file is
/// shorter than `size` (it changed while we read it).
pub(super) fn data_segments(file: &File, size: u64) -> io::Result<Segments> {
    let mut segments = Segments::new();
    let mut buf = vec![0u8; SCAN_BUF];
    for (start, end) in allocated_regions(file, size)? {
        scan_region(file, start, end, &mut buf, &mut segments)?;
    }
    Ok(segments)
}

/// Regions the file system reports as data, as `(start, end)`.
fn allocated_regions(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let mut regions = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match lseek(fd, to_off(pos)?, Whence::SeekData) {
            Ok(s) => from_off(s),
            // ENXIO: no data at or after `pos`, the rest is one hole.
            Err(Errno::ENXIO) => break,
            // A file system without SEEK_DATA: treat everything as data; the
            // zero scan still finds the holes, only slower.
            Err(Errno::EINVAL) if pos == 0 => return Ok(vec![(0, size)]),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match lseek(fd, to_off(start)?, Whence::SeekHole) {
            Ok(e) => from_off(e).min(size),
            Err(Errno::ENXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            // Cannot happen on a stable file; stop rather than loop forever.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file changed while reading"));
        }
        regions.push((start, end));
        pos = end;
    }
    Ok(regions)
}

/// Read `[start, end)` and append its non-zero 4 KiB-aligned pieces.
fn scan_region(file: &File, start: u64, end: u64, buf: &mut [u8], segments: &mut Segments) -> io::Result<()> {
    let mut pos = start;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let got = read_full(file, pos, &mut buf[..want])?;
        let mut off = 0usize;
        while off < got {
            let abs = pos + off as u64;
            // Pieces end on absolute 4 KiB boundaries so that the same content
            // yields the same map however the data regions are split.
            let piece_end = ((abs / ZERO_BLOCK + 1) * ZERO_BLOCK).min(pos + got as u64);
            let len = (piece_end - abs) as usize;
            if !is_zero(&buf[off..off + len]) {
                push_segment(segments, abs, len as u64);
            }
            off += len;
        }
        pos += got as u64;
    }
    Ok(())
}

/// Append a segment, merging it with the previous one when adjacent.
fn push_segment(segments: &mut Segments, offset: u64, len: u64) {
    match segments.last_mut() {
        Some((o, l)) if *o + *l == offset => *l += len,
        _ => segments.push((offset, len)),
    }
}

/// Fill `buf` from `offset`.
///
/// # Errors
/// `UnexpectedEof` if the file ends first (it shrank after we sized it).
pub(super) fn read_full(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    file.read_exact_at(buf, offset)?;
    Ok(buf.len())
}

/// True if every byte is zero. OR-folding 8 bytes at a time lets the
/// compiler vectorise this, so the scan runs at memory speed.
fn is_zero(bytes: &[u8]) -> bool {
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
    use std::io::Write;

    #[test]
    fn finds_data_and_skips_holes_and_zero_blocks() {
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        f.write_all_at(&[1u8; 100], 8192 + 10).unwrap();
        // An allocated but all-zero block is treated as a hole.
        f.write_all_at(&[0u8; 4096], 65536).unwrap();
        f.write_all_at(&[2u8; 5000], (1 << 20) - 5000).unwrap();
        f.flush().unwrap();
        let segs = data_segments(&f, 1 << 20).unwrap();
        assert_eq!(segs, vec![(8192, 4096), ((1 << 20) - 8192, 8192)]);
    }

    #[test]
    fn all_hole_file_has_no_segments() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(12345).unwrap();
        assert!(data_segments(&f, 12345).unwrap().is_empty());
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
