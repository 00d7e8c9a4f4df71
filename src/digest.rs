//! Digests of the files an appliance is made of, as the manifest records
//! them (`[[outputs]]`) and `check --verify` re-checks them.
//!
//! Two definitions, each named in the manifest by its `algorithm`:
//!
//! - [`SHA256`]: the plain sha256 of the file's bytes (what `sha256sum`
//!   prints). Used for `kernel` and `initrd`, which are written as one
//!   stream: [`HashingWriter`] hashes the bytes on their way to the file.
//! - [`SPARSE_SHA256`]: for `root`, a 4 GiB file of which a few hundred MB
//!   are data. A plain sha256 would have to hash every zero of every hole
//!   (seconds of CPU for nothing), because sha256's state depends on every
//!   byte. Instead the file is cut into 64 KiB chunks at multiples of
//!   64 KiB; for each chunk holding a non-zero byte, in order, the chunk's
//!   index (u64, little-endian) and the sha256 of its bytes are hashed; the
//!   file's length (u64, little-endian) ends the input. All-zero chunks
//!   contribute nothing, so holes (which read as zeros) are never read:
//!   [`sparse_sha256`] walks the data regions with `SEEK_DATA`/`SEEK_HOLE`,
//!   and whether a zero range is a hole or written zeros does not change
//!   the digest (a copy that fills or punches holes keeps it). Chunks are
//!   hashed on all cores.
//!
//! The root image's writer copies file data inside the kernel
//! (`copy_file_range`), so those bytes never pass through this process;
//! the build computes the root's digest with [`sparse_sha256`] on the
//! freshly written file (its data still in the page cache), before it is
//! synced and published — the same function `check --verify` uses, so the
//! two can never disagree about the definition.
//!
//! Deciding *whether* an appliance is damaged is `crate::build::fresh`'s.
//!
//! Also the one home of the hex and sha256 helpers ([`hex`],
//! [`sha256_hex`], [`sha256_file`]) that the manifest's fingerprint, the
//! host data and the freshness verdict use.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use sha2::{Digest, Sha256};

/// `algorithm` of a plain sha256 of the bytes.
pub(crate) const SHA256: &str = "sha256";

/// `algorithm` of the hole-skipping chunked digest (see the module docs).
pub(crate) const SPARSE_SHA256: &str = "sha256-chunks-64k";

/// Chunk size of [`SPARSE_SHA256`].
const CHUNK: u64 = 64 << 10;

/// A non-zero chunk's index and the sha256 of its bytes.
type Leaf = (u64, [u8; 32]);

/// A writer that hashes (sha256) and counts every byte written through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// Flush and return the inner writer, the byte count and the hex sha256
    /// of everything written.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64, String)> {
        self.inner.flush()?;
        Ok((self.inner, self.bytes, hex(&self.hasher.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The [`SPARSE_SHA256`] digest of `file` (hex), reading only its data
/// regions, on all cores.
///
/// # Errors
/// Reading the file.
pub(crate) fn sparse_sha256(file: &File) -> io::Result<String> {
    let len = file.metadata()?.len();
    let chunks = data_chunks(file, len)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chunks.len().max(1));
    // Contiguous shares keep each thread's reads sequential.
    let share = chunks.len().div_ceil(threads).max(1);
    let leaves: Vec<io::Result<Vec<Leaf>>> = std::thread::scope(|s| {
        let handles: Vec<_> =
            chunks.chunks(share).map(|part| s.spawn(move || hash_chunks(file, len, part))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked"))))
            .collect()
    });
    let mut outer = Sha256::new();
    for part in leaves {
        for (index, leaf) in part? {
            outer.update(index.to_le_bytes());
            outer.update(leaf);
        }
    }
    outer.update(len.to_le_bytes());
    Ok(hex(&outer.finalize()))
}

/// Indexes of the chunks that overlap a data region, ascending, each once.
fn data_chunks(file: &File, len: u64) -> io::Result<Vec<u64>> {
    let fd = file.as_raw_fd();
    let mut chunks: Vec<u64> = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match lseek(fd, pos as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(Errno::ENXIO) => break,
            // No SEEK_DATA here: everything is data.
            Err(Errno::EINVAL | Errno::EOPNOTSUPP) => pos,
            Err(e) => return Err(e.into()),
        };
        if start >= len {
            break;
        }
        let end = match lseek(fd, start as i64, Whence::SeekHole) {
            Ok(e) => (e as u64).min(len),
            Err(_) => len,
        };
        let first = (start / CHUNK).max(chunks.last().map_or(0, |l| l + 1));
        let last = (end.max(start + 1) - 1) / CHUNK;
        chunks.extend(first..=last);
        pos = end.max(start + 1);
    }
    Ok(chunks)
}

/// Leaf hashes of the non-zero chunks among `indexes`.
fn hash_chunks(file: &File, len: u64, indexes: &[u64]) -> io::Result<Vec<Leaf>> {
    let mut buf = vec![0u8; CHUNK as usize];
    let mut out = Vec::new();
    for &k in indexes {
        let at = k * CHUNK;
        let n = CHUNK.min(len - at) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        let chunk = &buf[..n];
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        out.push((k, Sha256::digest(chunk).into()));
    }
    Ok(out)
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of a byte slice.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hex sha256 of a regular file's content, streamed (a FIFO or device is
/// refused, not read).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(hex(&sha256_stream(&mut crate::bounded::open_regular(path)?)?))
}

/// The sha256 of everything `reader` yields, streamed.
pub(crate) fn sha256_stream(reader: &mut impl io::Read) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    io::copy(reader, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// The [`SPARSE_SHA256`] digest of `bytes` as if they were a file's
/// content: the reference the tests compare [`sparse_sha256`] with.
#[cfg(test)]
fn sparse_sha256_of(bytes: &[u8]) -> String {
    let mut outer = Sha256::new();
    for (k, chunk) in bytes.chunks(CHUNK as usize).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            outer.update((k as u64).to_le_bytes());
            outer.update(Sha256::digest(chunk));
        }
    }
    outer.update((bytes.len() as u64).to_le_bytes());
    hex(&outer.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_sha256() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (inner, n, hex) = w.finish().unwrap();
        assert_eq!((inner.as_slice(), n), (&b"hello world"[..], 11));
        assert_eq!(hex, sha256_hex(b"hello world"));
    }

    /// Holes and written zeros give the same digest; data anywhere, a
    /// changed byte or another length give another.
    #[test]
    fn sparse_digest_skips_holes_and_sees_every_data_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let len = 3 * CHUNK * 100 + 123;
        let mut content = vec![0u8; len as usize];
        content[5] = 1;
        content[(CHUNK * 150 + 7) as usize] = 2;
        content[(len - 1) as usize] = 3;

        let sparse = tmp.path().join("sparse");
        let f = File::options().read(true).write(true).create_new(true).open(&sparse).unwrap();
        f.set_len(len).unwrap();
        for (i, b) in content.iter().enumerate().filter(|(_, b)| **b != 0) {
            f.write_all_at(&[*b], i as u64).unwrap();
        }
        let dense = tmp.path().join("dense");
        std::fs::write(&dense, &content).unwrap();

        let want = sparse_sha256_of(&content);
        assert_eq!(sparse_sha256(&f).unwrap(), want);
        assert_eq!(sparse_sha256(&File::open(&dense).unwrap()).unwrap(), want);

        f.write_all_at(&[9], CHUNK * 200).unwrap();
        assert_ne!(sparse_sha256(&f).unwrap(), want, "a byte written into a hole");
        f.write_all_at(&[0], CHUNK * 200).unwrap();
        assert_eq!(sparse_sha256(&f).unwrap(), want, "written zeros are like a hole");
        f.set_len(len + 1).unwrap();
        assert_ne!(sparse_sha256(&f).unwrap(), want, "the length counts");
        let empty = tmp.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(sparse_sha256(&File::open(&empty).unwrap()).unwrap(), sparse_sha256_of(b""));
    }
}
