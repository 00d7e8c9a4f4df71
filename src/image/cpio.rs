//! SVR4 "newc" cpio writing (magic `070701`, no CRC), the format the Linux
//! kernel unpacks into its initramfs, plus a minimal reader used by tests and
//! checks.
//!
//! The writer is deliberately small: it emits directories and regular files
//! with caller-chosen names, uid/gid 0, one fixed mtime and sequential inode
//! numbers, so the same input always gives the same bytes. Choosing *what*
//! goes in, and in which order, is left to [`crate::image::initrd`]; the
//! writer neither sorts nor checks that parents come first (the initrd is flat).
//!
//! Format reference: the kernel's `Documentation/driver-api/early-userspace/
//! buffer-format.rst` and GNU cpio's `copyout.c` (the archive is padded to a
//! 512-byte block after the trailer, as `cpio -o` does).

use std::io::{self, Read, Write};

/// The newc magic: SVR4 portable format without checksums.
const MAGIC: &[u8; 6] = b"070701";
/// Fixed header size: magic plus thirteen 8-digit hex fields.
const HEADER_LEN: usize = 110;
/// Name of the entry that ends every archive.
const TRAILER: &str = "TRAILER!!!";
/// GNU cpio pads the whole archive to this block size; some readers
/// (`cpio -i` among them) expect it.
const BLOCK: u64 = 512;

/// File type bits (`S_IFDIR`, `S_IFREG`) as stored in the `mode` field.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// Streams a newc archive into `W`.
///
/// Invariants: every entry has uid 0, gid 0, the mtime given to [`new`],
/// and an inode number one higher than the previous entry's (starting at 1;
/// the trailer has 0). Data and headers are padded to 4 bytes as newc
/// requires.
///
/// [`new`]: CpioWriter::new
pub(crate) struct CpioWriter<W: Write> {
    out: W,
    mtime: i64,
    next_ino: u32,
    /// Bytes written so far, for alignment padding.
    pos: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive written to `out`; every entry gets `mtime`
    /// (seconds since the epoch).
    ///
    /// newc stores the mtime in 32 unsigned bits; a value outside
    /// `0..=u32::MAX` makes the first `add_*` call fail with
    /// [`io::ErrorKind::InvalidInput`].
    pub(crate) fn new(out: W, mtime: i64) -> Self {
        Self { out, mtime, next_ino: 1, pos: 0 }
    }

    /// Adds a directory entry `name` with permission bits `perm`
    /// (e.g. `0o755`; type bits are added here).
    ///
    /// # Errors
    /// Write errors from `W`, or [`io::ErrorKind::InvalidInput`] for a name
    /// containing NUL or an mtime that does not fit.
    pub(crate) fn add_dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        let ino = self.take_ino();
        // nlink 2 for a directory, as cpio -o records an empty directory.
        self.write_header(name, ino, S_IFDIR | (perm & 0o7777), 2, 0)
    }

    /// Adds a regular file `name` with permission bits `perm` and contents
    /// `data`.
    ///
    /// # Errors
    /// As [`add_dir`](Self::add_dir), plus files of 4 GiB or more, which
    /// newc cannot represent.
    pub(crate) fn add_file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.add_file_from(name, perm, data.len() as u64, &mut &data[..])
    }

    /// Adds a regular file whose `len` bytes of contents are read from
    /// `src`, so large files are streamed rather than held in memory.
    ///
    /// # Errors
    /// As [`add_file`](Self::add_file), plus read errors from `src` and
    /// [`io::ErrorKind::UnexpectedEof`] if `src` yields fewer than `len`
    /// bytes (e.g. the file shrank after it was measured). The archive is
    /// unusable after an error.
    pub(crate) fn add_file_from(
        &mut self,
        name: &str,
        perm: u32,
        len: u64,
        src: &mut impl Read,
    ) -> io::Result<()> {
        let size = u32::try_from(len).map_err(|_| {
            invalid(format!("{name}: {len} bytes is too large for a newc cpio entry (limit 4 GiB)"))
        })?;
        let ino = self.take_ino();
        self.write_header(name, ino, S_IFREG | (perm & 0o7777), 1, size)?;
        let copied = io::copy(&mut src.take(len), &mut self.out)?;
        self.pos += copied;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {len} bytes of data, the source gave {copied}"),
            ));
        }
        self.pad_to(4)
    }

    /// Writes the `TRAILER!!!` entry, pads the archive to a 512-byte block
    /// and returns the underlying writer (flushed).
    ///
    /// # Errors
    /// Write or flush errors from `W`.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        // The trailer carries inode 0, mode 0, nlink 1, as GNU cpio writes it.
        self.write_header(TRAILER, 0, 0, 1, 0)?;
        self.pad_to(BLOCK)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn take_ino(&mut self) -> u32 {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        ino
    }

    fn write_header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, size: u32) -> io::Result<()> {
        if name.as_bytes().contains(&0) {
            return Err(invalid(format!("{name:?}: a cpio entry name cannot contain NUL")));
        }
        let mtime = u32::try_from(self.mtime)
            .map_err(|_| invalid(format!("mtime {} does not fit the 32-bit newc field", self.mtime)))?;
        let namesize = u32::try_from(name.len() + 1)
            .map_err(|_| invalid(format!("{name}: name too long for a cpio entry")))?;
        let fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, namesize, 0];
        let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.out.write_all(&header)?;
        self.pos += header.len() as u64;
        // The file data (or the next header) starts on a 4-byte boundary.
        self.pad_to(4)
    }

    fn pad_to(&mut self, align: u64) -> io::Result<()> {
        let pad = (align - self.pos % align) % align;
        if pad > 0 {
            // `pad` < 512, so the cast is lossless.
            self.out.write_all(&vec![0u8; pad as usize])?;
            self.pos += pad;
        }
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// One entry read back by [`read_newc`].
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpioEntry {
    /// Entry name as stored (no leading `/`).
    pub(crate) name: String,
    /// Full mode: type bits and permissions.
    pub(crate) mode: u32,
    /// Inode number.
    pub(crate) ino: u32,
    /// Owner uid.
    pub(crate) uid: u32,
    /// Owner gid.
    pub(crate) gid: u32,
    /// Link count.
    pub(crate) nlink: u32,
    /// Modification time, seconds since the epoch.
    pub(crate) mtime: u32,
    /// File contents (empty for directories).
    pub(crate) data: Vec<u8>,
}

/// Parses a whole newc archive held in memory, up to (not including) the
/// trailer. Meant for tests and sanity checks, not for untrusted input at
/// scale: the data is copied into each entry.
///
/// # Errors
/// [`io::ErrorKind::InvalidData`] naming the offset for a bad magic,
/// non-hex field, truncated entry or missing trailer.
#[cfg(test)]
pub(crate) fn read_newc(bytes: &[u8]) -> io::Result<Vec<CpioEntry>> {
    let bad = |off: usize, what: &str| {
        io::Error::new(io::ErrorKind::InvalidData, format!("cpio at offset {off}: {what}"))
    };
    let mut entries = Vec::new();
    let mut off = 0usize;
    loop {
        let header =
            bytes.get(off..off + HEADER_LEN).ok_or_else(|| bad(off, "truncated header (no trailer?)"))?;
        if &header[..6] != MAGIC {
            return Err(bad(off, "bad magic, expected 070701"));
        }
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .map_err(|_| bad(off, "non-ASCII field"))?;
            *field = u32::from_str_radix(hex, 16).map_err(|_| bad(off, "non-hex field"))?;
        }
        let [ino, mode, uid, gid, nlink, mtime, size, _, _, _, _, namesize, _] = fields;
        let name_start = off + HEADER_LEN;
        let name_end = name_start + namesize as usize;
        let name_bytes = bytes.get(name_start..name_end).ok_or_else(|| bad(off, "truncated name"))?;
        let name = std::str::from_utf8(
            name_bytes.strip_suffix(&[0]).ok_or_else(|| bad(off, "name not NUL-terminated"))?,
        )
        .map_err(|_| bad(off, "name is not UTF-8"))?
        .to_owned();
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start + size as usize;
        let data = bytes.get(data_start..data_end).ok_or_else(|| bad(off, "truncated data"))?.to_vec();
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(CpioEntry { name, mode, ino, uid, gid, nlink, mtime, data });
        off = data_end.next_multiple_of(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new(), 1_700_000_000);
        w.add_dir(".", 0o755).unwrap();
        w.add_file("init", 0o755, b"#!/bin/sh\n").unwrap();
        w.add_file("a", 0o644, b"").unwrap();
        w.add_file_from("five", 0o600, 5, &mut &b"12345xyz"[..]).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_keeps_names_modes_data_and_metadata() {
        let entries = read_newc(&sample()).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".", "init", "a", "five"]);
        assert_eq!(entries[0].mode, 0o040_755);
        assert_eq!(entries[0].nlink, 2);
        assert_eq!(entries[1].mode, 0o100_755);
        assert_eq!(entries[1].data, b"#!/bin/sh\n");
        assert_eq!(entries[2].data, b"");
        // add_file_from takes exactly `len` bytes, not the whole reader.
        assert_eq!(entries[3].data, b"12345");
        assert_eq!(entries[3].mode, 0o100_600);
        let inos: Vec<_> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos, [1, 2, 3, 4]);
        assert!(entries.iter().all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 1_700_000_000));
    }

    #[test]
    fn header_fields_are_upper_hex_and_entries_are_aligned() {
        let bytes = sample();
        // The first header: ".", inode 1, mode 040755 = 0x41ED, namesize 2.
        assert_eq!(&bytes[..22], b"07070100000001000041ED");
        assert_eq!(&bytes[94..102], b"00000002");
        // "." + NUL ends at 112, so "init"'s header starts at 112 (4-aligned).
        assert_eq!(&bytes[112..118], MAGIC);
        // 110 + 5 ("init\0") = 115 -> data at 116; 10 data bytes -> 126 -> next at 128.
        assert_eq!(&bytes[228..238], b"#!/bin/sh\n");
        assert_eq!(&bytes[240..246], MAGIC);
    }

    #[test]
    fn archive_is_padded_to_512_and_ends_with_trailer() {
        let bytes = sample();
        assert_eq!(bytes.len() % 512, 0);
        let at = bytes.windows(TRAILER.len()).rposition(|w| w == TRAILER.as_bytes()).unwrap();
        assert!(bytes[at + TRAILER.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn same_input_gives_same_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn short_source_is_an_error() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        let err = w.add_file_from("x", 0o644, 10, &mut &b"abc"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("x: expected 10 bytes"), "{err}");
    }

    #[test]
    fn out_of_range_mtime_and_nul_names_are_refused() {
        let mut w = CpioWriter::new(Vec::new(), -1);
        assert_eq!(w.add_dir(".", 0o755).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let mut w = CpioWriter::new(Vec::new(), 0);
        assert_eq!(w.add_file("a\0b", 0o644, b"").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn reader_refuses_garbage() {
        assert!(read_newc(b"070707 old binary-ish").is_err());
        let mut bytes = sample();
        bytes.truncate(200);
        assert!(read_newc(&bytes).is_err());
    }
}
