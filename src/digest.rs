//! Digests of the files an appliance is made of, as the manifest records
//! them (`[[outputs]]`) and `check --verify` re-checks them.
//!
//! Three definitions, each named in the manifest by its `algorithm`:
//!
//! - [`SHA256`]: the plain sha256 of the file's bytes (what `sha256sum`
//!   prints). Used for `kernel` and `initrd`, which are written as one
//!   stream: [`HashingWriter`] hashes the bytes on their way to the file.
//! - [`SPARSE_BLAKE3`]: for `root`, a 4 GiB file of which a few hundred MB
//!   are data. A plain hash would have to hash every zero of every hole
//!   (seconds of CPU for nothing), because a hash's state depends on every
//!   byte. Instead the file is cut into 64 KiB chunks at multiples of
//!   64 KiB; for each chunk holding a non-zero byte, in order, the chunk's
//!   index (u64, little-endian) and the BLAKE3 of its bytes are hashed
//!   with BLAKE3; the file's length (u64, little-endian) ends the input.
//!   All-zero chunks contribute nothing, so holes (which read as zeros) are
//!   never read: [`sparse_digest`] walks the data regions with
//!   `SEEK_DATA`/`SEEK_HOLE`, and whether a zero range is a hole or written
//!   zeros does not change the digest (a copy that fills or punches holes
//!   keeps it). Chunks are hashed on all cores. BLAKE3 rather than sha256
//!   because the build hashes ~700 MB of image data: with sha256 (even
//!   with the CPU's SHA instructions) that was a third of a build into
//!   tmpfs; BLAKE3 hashes a 64 KiB chunk with SIMD across its 1 KiB pieces.
//! - [`SPARSE_SHA256`]: the same with sha256 in both places, what builds
//!   recorded before; still verified, never written.
//!
//! The root image's writer copies file data inside the kernel
//! (`copy_file_range`), so those bytes never pass through this process;
//! the build computes the root's digest with [`sparse_digest`] on the
//! freshly written file (its data still in the page cache), before it is
//! synced and published — the same function `check --verify` uses, so the
//! two can never disagree about the definition. (Hashing chunks while the
//! copy still runs, and reading them through a memory mapping, were both
//! measured on the 2-core build machine and gained nothing measurable: the copy
//! already keeps both cores busy, and a mapping counts the whole image in
//! the build's resident memory.)
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

/// `algorithm` of the hole-skipping chunked digest with sha256 (see the
/// module docs): what builds recorded before [`SPARSE_BLAKE3`].
pub(crate) const SPARSE_SHA256: &str = "sha256-chunks-64k";

/// `algorithm` of the hole-skipping chunked digest with BLAKE3: what
/// builds record for `root`.
pub(crate) const SPARSE_BLAKE3: &str = "blake3-chunks-64k";

/// Chunk size of the chunked digests.
const CHUNK: u64 = 64 << 10;

/// A non-zero chunk's index and the hash of its bytes.
type Leaf = (u64, [u8; 32]);

/// The hash a chunked digest uses for its chunks and for the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkHash {
    /// [`SPARSE_SHA256`].
    Sha256,
    /// [`SPARSE_BLAKE3`].
    Blake3,
}

impl ChunkHash {
    /// The chunked digest a manifest's `algorithm` names, if it is one.
    pub(crate) fn from_algorithm(algorithm: &str) -> Option<ChunkHash> {
        match algorithm {
            SPARSE_SHA256 => Some(ChunkHash::Sha256),
            SPARSE_BLAKE3 => Some(ChunkHash::Blake3),
            _ => None,
        }
    }

    /// The manifest's name for it.
    pub(crate) fn algorithm(self) -> &'static str {
        match self {
            ChunkHash::Sha256 => SPARSE_SHA256,
            ChunkHash::Blake3 => SPARSE_BLAKE3,
        }
    }

    fn leaf(self, chunk: &[u8]) -> [u8; 32] {
        match self {
            ChunkHash::Sha256 => Sha256::digest(chunk).into(),
            ChunkHash::Blake3 => blake3::hash(chunk).into(),
        }
    }

    /// The hex digest of the leaves (in chunk order) and the length.
    fn outer(self, leaves: impl Iterator<Item = Leaf>, len: u64) -> String {
        fn feed(mut update: impl FnMut(&[u8]), leaves: impl Iterator<Item = Leaf>, len: u64) {
            for (index, leaf) in leaves {
                update(&index.to_le_bytes());
                update(&leaf);
            }
            update(&len.to_le_bytes());
        }
        match self {
            ChunkHash::Sha256 => {
                let mut h = Sha256::new();
                feed(|b| h.update(b), leaves, len);
                hex(&h.finalize())
            }
            ChunkHash::Blake3 => {
                let mut h = blake3::Hasher::new();
                feed(
                    |b| {
                        h.update(b);
                    },
                    leaves,
                    len,
                );
                hex(h.finalize().as_bytes())
            }
        }
    }
}

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

/// The chunked digest of `file` by `hash` (hex), reading only its data
/// regions, on all cores.
///
/// # Errors
/// Reading the file.
pub(crate) fn sparse_digest(file: &File, hash: ChunkHash) -> io::Result<String> {
    let len = file.metadata()?.len();
    let chunks = data_chunks(file, len)?;
    Ok(hash.outer(read_leaves(file, len, hash, &chunks)?.into_iter(), len))
}

/// The leaves of `chunks` (ascending) of the `len`-byte `file`, read with
/// `pread` on all cores.
fn read_leaves(file: &File, len: u64, hash: ChunkHash, chunks: &[u64]) -> io::Result<Vec<Leaf>> {
    on_all_cores(chunks, |part| {
        let mut buf = vec![0u8; CHUNK as usize];
        let mut out = Vec::new();
        for &k in part {
            let at = k * CHUNK;
            let n = CHUNK.min(len - at) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            out.extend(chunk_leaf(hash, k, &buf[..n]));
        }
        Ok(out)
    })
}

/// Chunk `k`'s leaf, or none for an all-zero chunk.
fn chunk_leaf(hash: ChunkHash, k: u64, chunk: &[u8]) -> Option<Leaf> {
    if chunk.iter().all(|&b| b == 0) {
        return None;
    }
    Some((k, hash.leaf(chunk)))
}

/// Run `work` over contiguous shares of `chunks` (so each thread reads
/// sequentially) on all cores, and concatenate the leaves in order.
fn on_all_cores<F>(chunks: &[u64], work: F) -> io::Result<Vec<Leaf>>
where
    F: Fn(&[u64]) -> io::Result<Vec<Leaf>> + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chunks.len().max(1));
    let share = chunks.len().div_ceil(threads).max(1);
    let parts: Vec<io::Result<Vec<Leaf>>> = std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> = chunks.chunks(share).map(|part| s.spawn(move || work(part))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked"))))
            .collect()
    });
    let mut leaves = Vec::new();
    for part in parts {
        leaves.extend(part?);
    }
    Ok(leaves)
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

/// The chunked digest of `bytes` by `hash` as if they were a file's
/// content, straight from the definition: the reference the tests compare
/// [`sparse_digest`] with.
#[cfg(test)]
fn sparse_digest_of(bytes: &[u8], hash: ChunkHash) -> String {
    let leaves = bytes
        .chunks(CHUNK as usize)
        .enumerate()
        .filter(|(_, chunk)| chunk.iter().any(|&b| b != 0))
        .map(|(k, chunk)| (k as u64, hash.leaf(chunk)));
    hash.outer(leaves, bytes.len() as u64)
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

    /// A sparse file with `content`'s non-zero bytes written into holes,
    /// and a dense copy.
    fn digest(f: &File, hash: ChunkHash) -> String {
        sparse_digest(f, hash).unwrap()
    }

    fn sparse_and_dense(dir: &Path, content: &[u8]) -> (File, File) {
        let sparse = dir.join("sparse");
        let f = File::options().read(true).write(true).create_new(true).open(&sparse).unwrap();
        f.set_len(content.len() as u64).unwrap();
        for (i, b) in content.iter().enumerate().filter(|(_, b)| **b != 0) {
            f.write_all_at(&[*b], i as u64).unwrap();
        }
        let dense = dir.join("dense");
        std::fs::write(&dense, content).unwrap();
        (f, File::open(&dense).unwrap())
    }

    /// Holes and written zeros give the same digest; data anywhere, a
    /// changed byte or another length give another; the file's digest is
    /// the definition's.
    #[test]
    fn sparse_digest_skips_holes_and_sees_every_data_byte() {
        for hash in [ChunkHash::Sha256, ChunkHash::Blake3] {
            let tmp = tempfile::tempdir().unwrap();
            let len = 3 * CHUNK * 100 + 123;
            let mut content = vec![0u8; len as usize];
            content[5] = 1;
            content[(CHUNK * 150 + 7) as usize] = 2;
            content[(len - 1) as usize] = 3;
            let (f, dense) = sparse_and_dense(tmp.path(), &content);

            let want = sparse_digest_of(&content, hash);
            assert_eq!(digest(&f, hash), want);
            assert_eq!(digest(&dense, hash), want);

            f.write_all_at(&[9], CHUNK * 200).unwrap();
            assert_ne!(digest(&f, hash), want, "a byte written into a hole");
            f.write_all_at(&[0], CHUNK * 200).unwrap();
            assert_eq!(digest(&f, hash), want, "written zeros are like a hole");
            f.set_len(len + 1).unwrap();
            assert_ne!(digest(&f, hash), want, "the length counts");
            let empty = tmp.path().join("empty");
            std::fs::write(&empty, b"").unwrap();
            assert_eq!(digest(&File::open(&empty).unwrap(), hash), sparse_digest_of(b"", hash));
        }
    }

    /// The definitions themselves, pinned by values computed outside this
    /// code (Python's hashlib and the blake3 package, from the module
    /// docs' description): manifests written by earlier builds must keep
    /// verifying.
    #[test]
    fn chunked_digests_match_independent_computations() {
        let tmp = tempfile::tempdir().unwrap();
        let len = 3 * CHUNK + 123;
        let mut content = vec![0u8; len as usize];
        content[5] = 1;
        content[(CHUNK * 2 + 7) as usize] = 2;
        content[(len - 1) as usize] = 3;
        let (f, _) = sparse_and_dense(tmp.path(), &content);
        assert_eq!(
            digest(&f, ChunkHash::Sha256),
            "9d8cf6bdca2f1d56a9d47584eed966ae72cdc45be376afca1e0197f6dfecd207"
        );
        assert_eq!(
            digest(&f, ChunkHash::Blake3),
            "6ef44cc833293e3e3455ce5928813c2729ceeef3ddaaa875a1ad4f6c97791552"
        );
        for hash in [ChunkHash::Sha256, ChunkHash::Blake3] {
            assert_eq!(ChunkHash::from_algorithm(hash.algorithm()), Some(hash));
        }
        assert_eq!(ChunkHash::from_algorithm(SHA256), None);
    }
}
