//! Finding the data segments of a file: the regions the file system reports
//! as data (SEEK_DATA/SEEK_HOLE, [`holes::data_regions`]), minus 4 KiB
//! blocks that read as all zeros.
//!
//! The result depends only on the file's content, not on how it happens to be
//! allocated, so a root image copied without `--sparse` still archives to the
//! same bytes. Holes are never read, which is what keeps a 4 GiB image with
//! 670 MB allocated cheap. Writing the segments is left to the caller.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::image::holes::{self, is_zero, ZERO_BLOCK};

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
    for (start, end) in holes::data_regions(file, 0, size)? {
        scan_region(file, start, end, &mut buf, &mut segments)?;
    }
    Ok(segments)
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
}
