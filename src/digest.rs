//! Digests of the files an appliance is made of, as the manifest records
//! them (`[[outputs]]`) and `check --verify` re-checks them.
//!
//! Three definitions, each named in the manifest by its `algorithm`:
//!
//! - [`SHA256`]: the plain sha256 of the file's bytes (what `sha256sum`
//!   prints). Used for `kernel` and `initrd`, which are written as one
//!   stream: [`HashingWriter`] hashes the bytes on their way to the file.
//! - [`SPARSE_XXH3`]: for `root`, a 4 GiB file of which a few hundred MB
//!   are data. A plain hash would have to hash every zero of every hole
//!   (seconds of CPU for nothing), because a hash's state depends on every
//!   byte. Instead the file is cut into 4 KiB blocks at multiples of 4 KiB;
//!   for each block holding a non-zero byte, in order, the block's index
//!   (u64, little-endian) and the XXH3-128 of its bytes (16 bytes,
//!   big-endian, the canonical form) are hashed with XXH3-128; the file's
//!   length (u64, little-endian) ends the input, and the digest is 32 hex
//!   digits. All-zero blocks contribute nothing, so holes (which read as
//!   zeros) are never read: [`sparse_digest`] walks the data regions with
//!   `SEEK_DATA`/`SEEK_HOLE`, and whether a zero range is a hole or written
//!   zeros does not change the digest (a copy that fills or punches holes
//!   keeps it).
//! - [`SPARSE_SHA256`]: the same with 64 KiB chunks and sha256 in both
//!   places, what builds recorded before; still verified, never written.
//!
//! Why blocks and XXH3: the root's digest detects damage (a truncated,
//! overwritten or bit-rotted image), not tampering — whoever can rewrite
//! `root` can rewrite `manifest.toml` beside it — so it need not be a
//! cryptographic hash, and hashing ~700 MB with sha256 was a third of a
//! build into tmpfs. XXH3 runs at memory speed. A 4 KiB block is an ext2
//! block, written by exactly one writer, so when the root image's writer
//! copies a file through its own buffer (from ext4 into tmpfs, where
//! `copy_file_range` refuses: docs/machine-quirks.md, "Copying into tmpfs
//! has a floor"), each block is hashed right there
//! ([`WrittenBytes`], [`ImageDigest`]) instead of being read back; so is
//! the metadata, written from the writer's buffers. Only what the kernel
//! copied without us (`copy_file_range` on one file system) is read back
//! from the page cache once the image is written, before it is synced and
//! published; the writer reports where. `check --verify` reads the whole
//! file ([`sparse_digest`]); both use the same blocks and hashes, and
//! tests hold them equal.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// `algorithm` of a plain sha256 of the bytes.
pub(crate) const SHA256: &str = "sha256";

/// `algorithm` of the hole-skipping digest of 64 KiB chunks with sha256
/// (see the module docs): what builds recorded before [`SPARSE_XXH3`].
pub(crate) const SPARSE_SHA256: &str = "sha256-chunks-64k";

/// `algorithm` of the hole-skipping digest of 4 KiB blocks with XXH3-128:
/// what builds record for `root`.
pub(crate) const SPARSE_XXH3: &str = "xxh3-128-blocks-4k";

/// How much of a file is read at a time, and the granularity of the data
/// walk: a multiple of every unit.
const READ: u64 = 64 << 10;

/// A non-zero unit's index and its hash (the first `leaf_len` bytes).
type Leaf = (u64, [u8; 32]);

/// A hole-skipping digest: its unit (the pieces hashed one by one) and its
/// hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkHash {
    /// [`SPARSE_SHA256`]: 64 KiB chunks, sha256.
    Sha256,
    /// [`SPARSE_XXH3`]: 4 KiB blocks, XXH3-128.
    Xxh3,
}

impl ChunkHash {
    /// The digest a manifest's `algorithm` names, if it is one of these.
    pub(crate) fn from_algorithm(algorithm: &str) -> Option<ChunkHash> {
        match algorithm {
            SPARSE_SHA256 => Some(ChunkHash::Sha256),
            SPARSE_XXH3 => Some(ChunkHash::Xxh3),
            _ => None,
        }
    }

    /// The manifest's name for it.
    pub(crate) fn algorithm(self) -> &'static str {
        match self {
            ChunkHash::Sha256 => SPARSE_SHA256,
            ChunkHash::Xxh3 => SPARSE_XXH3,
        }
    }

    /// Bytes per unit.
    fn unit(self) -> u64 {
        match self {
            ChunkHash::Sha256 => 64 << 10,
            ChunkHash::Xxh3 => 4 << 10,
        }
    }

    fn leaf_len(self) -> usize {
        match self {
            ChunkHash::Sha256 => 32,
            ChunkHash::Xxh3 => 16,
        }
    }

    fn leaf(self, unit: &[u8]) -> [u8; 32] {
        match self {
            ChunkHash::Sha256 => Sha256::digest(unit).into(),
            ChunkHash::Xxh3 => {
                let mut out = [0u8; 32];
                // XXH3-128's canonical form is big-endian.
                out[..16].copy_from_slice(&xxh3_128(unit).to_be_bytes());
                out
            }
        }
    }

    /// The hex digest of the leaves (in unit order) and the length.
    fn outer(self, leaves: impl Iterator<Item = Leaf>, len: u64) -> String {
        fn feed(
            mut update: impl FnMut(&[u8]),
            leaves: impl Iterator<Item = Leaf>,
            len: u64,
            leaf_len: usize,
        ) {
            for (index, leaf) in leaves {
                update(&index.to_le_bytes());
                update(&leaf[..leaf_len]);
            }
            update(&len.to_le_bytes());
        }
        match self {
            ChunkHash::Sha256 => {
                let mut h = Sha256::new();
                feed(|b| h.update(b), leaves, len, self.leaf_len());
                hex(&h.finalize())
            }
            ChunkHash::Xxh3 => {
                let mut h = Xxh3::new();
                feed(|b| h.update(b), leaves, len, self.leaf_len());
                hex(&h.digest128().to_be_bytes())
            }
        }
    }

    /// Unit `index`'s leaf, or none for an all-zero unit.
    fn unit_leaf(self, index: u64, unit: &[u8]) -> Option<Leaf> {
        if unit.iter().all(|&b| b == 0) {
            return None;
        }
        Some((index, self.leaf(unit)))
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

/// The digest of `file` by `hash` (hex), reading only its data regions,
/// on all cores.
///
/// # Errors
/// Reading the file.
pub(crate) fn sparse_digest(file: &File, hash: ChunkHash) -> io::Result<String> {
    let len = file.metadata()?.len();
    let chunks = data_chunks(file, len)?;
    Ok(hash.outer(read_leaves(file, len, hash, &chunks, &|_| false)?.into_iter().flatten(), len))
}

/// The leaves of the units in `chunks` (ascending indexes of [`READ`]-sized
/// pieces) of the `len`-byte `file`, except those `skip` names, read with
/// `pread` on all cores: one list per core, in order (flatten them; they
/// are not copied into one, a root image has some 180,000 leaves).
fn read_leaves(
    file: &File,
    len: u64,
    hash: ChunkHash,
    chunks: &[u64],
    skip: &(dyn Fn(u64) -> bool + Sync),
) -> io::Result<Vec<Vec<Leaf>>> {
    let unit = hash.unit();
    let per_read = READ / unit;
    on_all_cores(chunks, |part| {
        let mut buf = vec![0u8; READ as usize];
        let mut out = Vec::new();
        for &k in part {
            let units = k * per_read..(k + 1) * per_read;
            if units.clone().all(skip) {
                continue;
            }
            let at = k * READ;
            let n = READ.min(len - at) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            for (i, piece) in buf[..n].chunks(unit as usize).enumerate() {
                let index = units.start + i as u64;
                if !skip(index) {
                    out.extend(hash.unit_leaf(index, piece));
                }
            }
        }
        Ok(out)
    })
}

/// What an image writer tells about every write into the image, so
/// [`ImageDigest`] hashes the bytes that pass through its memory right
/// there and reads back only what the kernel wrote without us. The writer
/// must report every write: a block nobody reported is taken to be zeros.
pub(crate) trait WrittenBytes: Sync {
    /// `bytes` were written at `offset` and are final: nothing writes them
    /// again. With `zeros_follow`, the image holds zeros from their end to
    /// the next unit boundary, and nothing writes there either (the end of
    /// a file's data in its last block).
    fn wrote(&self, offset: u64, bytes: &[u8], zeros_follow: bool);

    /// `len` bytes at `offset` were written without passing through our
    /// memory (`copy_file_range`), and are final.
    fn copied(&self, offset: u64, len: u64);
}

/// Nobody is listening: for writers used without a digest.
#[cfg(test)]
pub(crate) struct Unheard;

#[cfg(test)]
impl WrittenBytes for Unheard {
    fn wrote(&self, _offset: u64, _bytes: &[u8], _zeros_follow: bool) {}
    fn copied(&self, _offset: u64, _len: u64) {}
}

/// Blocks per page of [`ImageDigest`]'s leaf table: 64 KiB of leaves, for
/// 16 MiB of image.
const TABLE_PAGE: u64 = 4096;

/// [`TABLE_PAGE`] leaves (XXH3-128, 16 bytes each), by block index.
type LeafPage = Box<[[u8; 16]]>;

/// A file's [`SPARSE_XXH3`] digest computed while it is written, from what
/// the writer reports of every write ([`WrittenBytes`]): whole blocks that
/// pass through the writer's buffers are hashed there; the blocks the
/// kernel copied, and blocks split between two writes, are read back by
/// [`ImageDigest::finish`]. Nothing else is read: the image is not searched
/// for data (on tmpfs each `SEEK_HOLE` walks every page of a data region).
pub(crate) struct ImageDigest {
    len: u64,
    /// One bit per block: its leaf is known (in `leaves`, unless all zero).
    done: Vec<AtomicU64>,
    /// One bit per block heard as all zeros (no leaf, as in the
    /// definition).
    zero: Vec<AtomicU64>,
    /// The leaves (XXH3-128) of the blocks heard, by block index, in pages
    /// of [`TABLE_PAGE`] made when first written: in block order without
    /// sorting some 180,000 of them, and in memory only where the image
    /// has data.
    leaves: Mutex<Vec<Option<LeafPage>>>,
    /// Block ranges `[start, end)` to read back.
    reread: Mutex<Vec<(u64, u64)>>,
}

impl ImageDigest {
    const HASH: ChunkHash = ChunkHash::Xxh3;

    /// For a file that will be `len` bytes long.
    pub(crate) fn new(len: u64) -> ImageDigest {
        let units = len.div_ceil(Self::HASH.unit());
        let bits = || (0..units.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        ImageDigest {
            len,
            done: bits(),
            zero: bits(),
            leaves: Mutex::new((0..units.div_ceil(TABLE_PAGE)).map(|_| None).collect()),
            reread: Mutex::new(Vec::new()),
        }
    }

    /// The manifest's `algorithm` for the digest [`ImageDigest::finish`]
    /// returns.
    pub(crate) fn algorithm(&self) -> &'static str {
        Self::HASH.algorithm()
    }

    fn bit(bits: &[AtomicU64], index: u64) -> bool {
        bits.get((index / 64) as usize).is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (index % 64)) != 0)
    }

    fn set_bit(bits: &[AtomicU64], index: u64) {
        bits[(index / 64) as usize].fetch_or(1 << (index % 64), Ordering::Relaxed);
    }

    /// Blocks hashed from the writer's buffers so far.
    pub(crate) fn units_heard(&self) -> u64 {
        self.done.iter().map(|w| u64::from(w.load(Ordering::Relaxed).count_ones())).sum()
    }

    /// Blocks `[start, end)` (clamped to the file) are read back.
    fn read_back(&self, start: u64, end: u64) {
        let end = end.min(self.len.div_ceil(Self::HASH.unit()));
        if start < end {
            self.reread.lock().unwrap_or_else(|e| e.into_inner()).push((start, end));
        }
    }

    /// The digest of the finished `file`: the leaves heard, and the blocks
    /// reported as copied or split, read on all cores.
    ///
    /// # Errors
    /// Reading the file; a file whose length is not the one it was
    /// written with.
    pub(crate) fn finish(self, file: &File) -> io::Result<String> {
        let len = file.metadata()?.len();
        if len != self.len {
            return Err(io::Error::other(format!("written as {} bytes, now {len}", self.len)));
        }
        let per_read = READ / Self::HASH.unit();
        let mut ranges = self.reread.into_inner().unwrap_or_else(|e| e.into_inner());
        ranges.sort_unstable();
        let mut chunks: Vec<u64> = Vec::new();
        for (start, end) in ranges {
            let first = (start / per_read).max(chunks.last().map_or(0, |l| l + 1));
            chunks.extend(first..end.div_ceil(per_read));
        }
        let read = read_leaves(file, len, Self::HASH, &chunks, &|i| Self::bit(&self.done, i))?;
        let table = self.leaves.into_inner().unwrap_or_else(|e| e.into_inner());
        let (done, zero, table) = (&self.done, &self.zero, &table);
        // The heard leaves in block order: the set bits of `done` that are
        // not in `zero`, looked up in their page.
        let heard = done.iter().enumerate().flat_map(move |(w, word)| {
            let mut bits = word.load(Ordering::Relaxed) & !zero[w].load(Ordering::Relaxed);
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let index = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let page = table[(index / TABLE_PAGE) as usize].as_ref()?;
                let mut leaf = [0u8; 32];
                leaf[..16].copy_from_slice(&page[(index % TABLE_PAGE) as usize]);
                Some((index, leaf))
            })
        });
        Ok(Self::HASH.outer(merge_sorted(read.into_iter().flatten(), heard), len))
    }
}

/// Two iterators of leaves, each in index order, merged in index order.
fn merge_sorted(a: impl Iterator<Item = Leaf>, b: impl Iterator<Item = Leaf>) -> impl Iterator<Item = Leaf> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 <= y.0 => a.next(),
        (Some(_), None) => a.next(),
        _ => b.next(),
    })
}

impl WrittenBytes for ImageDigest {
    fn wrote(&self, offset: u64, bytes: &[u8], zeros_follow: bool) {
        let unit = Self::HASH.unit();
        let end = offset + bytes.len() as u64;
        let blocks = self.len.div_ceil(unit);
        // Whole blocks are hashed here; a block that starts before
        // `offset`, or ends after `end` without zeros following, is shared
        // with another write and read back.
        let first = offset.div_ceil(unit);
        let mut last_whole = end.min(self.len) / unit;
        let partial_tail = zeros_follow
            && end % unit != 0
            && end / unit < blocks
            && end / unit == last_whole
            && first <= last_whole;
        if offset % unit != 0 {
            self.read_back(offset / unit, first.min(blocks));
        }
        if end % unit != 0 && !partial_tail && first <= end / unit {
            self.read_back(end / unit, end / unit + 1);
        }
        let mut padded = Vec::new();
        let block = |index: u64| -> &[u8] {
            let at = (index * unit - offset) as usize;
            &bytes[at..(at + unit as usize).min(bytes.len())]
        };
        if partial_tail {
            padded = vec![0u8; unit as usize];
            let tail = block(last_whole);
            padded[..tail.len()].copy_from_slice(tail);
            last_whole += 1;
        }
        if first >= last_whole {
            return;
        }
        // Leaves first, then one lock for the lot.
        let leaves: Vec<Option<[u8; 16]>> = (first..last_whole)
            .map(|index| {
                let bytes = if partial_tail && index + 1 == last_whole { &padded[..] } else { block(index) };
                Self::HASH.unit_leaf(index, bytes).map(|(_, h)| {
                    let mut c = [0u8; 16];
                    c.copy_from_slice(&h[..16]);
                    c
                })
            })
            .collect();
        {
            let mut table = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
            for (index, leaf) in (first..last_whole).zip(&leaves) {
                if let Some(leaf) = leaf {
                    let page = table[(index / TABLE_PAGE) as usize]
                        .get_or_insert_with(|| vec![[0u8; 16]; TABLE_PAGE as usize].into_boxed_slice());
                    page[(index % TABLE_PAGE) as usize] = *leaf;
                }
            }
        }
        for (index, leaf) in (first..last_whole).zip(&leaves) {
            if leaf.is_none() {
                Self::set_bit(&self.zero, index);
            }
            Self::set_bit(&self.done, index);
        }
    }

    fn copied(&self, offset: u64, len: u64) {
        let unit = Self::HASH.unit();
        self.read_back(offset / unit, (offset + len).div_ceil(unit));
    }
}

/// Run `work` over contiguous shares of `chunks` (crate::cores); the
/// shares' leaves, in order.
fn on_all_cores<F>(chunks: &[u64], work: F) -> io::Result<Vec<Vec<Leaf>>>
where
    F: Fn(&[u64]) -> io::Result<Vec<Leaf>> + Sync,
{
    crate::cores::map_shares(chunks, work)
        .into_iter()
        .map(|(_, leaves)| leaves.unwrap_or_else(|| Err(io::Error::other("a hashing thread panicked"))))
        .collect()
}

/// Indexes of the [`READ`]-sized pieces that overlap a data region,
/// ascending, each once.
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
        let first = (start / READ).max(chunks.last().map_or(0, |l| l + 1));
        let last = (end.max(start + 1) - 1) / READ;
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
        .chunks(hash.unit() as usize)
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

    fn digest(f: &File, hash: ChunkHash) -> String {
        sparse_digest(f, hash).unwrap()
    }

    /// A sparse file with `content`'s non-zero bytes written into holes,
    /// and a dense copy.
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
        for hash in [ChunkHash::Sha256, ChunkHash::Xxh3] {
            let tmp = tempfile::tempdir().unwrap();
            let len = 3 * READ * 100 + 123;
            let mut content = vec![0u8; len as usize];
            content[5] = 1;
            content[(READ * 150 + 7) as usize] = 2;
            content[(len - 1) as usize] = 3;
            let (f, dense) = sparse_and_dense(tmp.path(), &content);

            let want = sparse_digest_of(&content, hash);
            assert_eq!(digest(&f, hash), want);
            assert_eq!(digest(&dense, hash), want);

            f.write_all_at(&[9], READ * 200 + 4096).unwrap();
            assert_ne!(digest(&f, hash), want, "a byte written into a hole");
            f.write_all_at(&[0], READ * 200 + 4096).unwrap();
            assert_eq!(digest(&f, hash), want, "written zeros are like a hole");
            f.set_len(len + 1).unwrap();
            assert_ne!(digest(&f, hash), want, "the length counts");
            let empty = tmp.path().join("empty");
            std::fs::write(&empty, b"").unwrap();
            assert_eq!(digest(&File::open(&empty).unwrap(), hash), sparse_digest_of(b"", hash));
        }
    }

    /// The definitions themselves, pinned by values computed outside this
    /// code (Python's hashlib and xxhash packages, from the module docs'
    /// description): manifests written by earlier builds must keep
    /// verifying.
    #[test]
    fn sparse_digests_match_independent_computations() {
        let tmp = tempfile::tempdir().unwrap();
        let len = 3 * READ + 123;
        let mut content = vec![0u8; len as usize];
        content[5] = 1;
        content[(READ * 2 + 7) as usize] = 2;
        content[(len - 1) as usize] = 3;
        let (f, _) = sparse_and_dense(tmp.path(), &content);
        assert_eq!(
            digest(&f, ChunkHash::Sha256),
            "9d8cf6bdca2f1d56a9d47584eed966ae72cdc45be376afca1e0197f6dfecd207"
        );
        assert_eq!(digest(&f, ChunkHash::Xxh3), "10e3bcb9503d95bc03f25bc704b76d82");
        for hash in [ChunkHash::Sha256, ChunkHash::Xxh3] {
            assert_eq!(ChunkHash::from_algorithm(hash.algorithm()), Some(hash));
        }
        assert_eq!(ChunkHash::from_algorithm(SHA256), None);
    }

    /// A digest built from what a writer reports agrees with reading the
    /// file back, whatever the writer reports: whole blocks, pieces that
    /// start or end inside a block (read back by `finish`), a file's last
    /// partial block with zeros after it, all-zero blocks, bytes the kernel
    /// copied, everything as copied.
    #[test]
    fn image_digest_from_reported_writes_equals_reading_back() {
        let tmp = tempfile::tempdir().unwrap();
        let len: u64 = 64 * 4096;
        let image =
            File::options().read(true).write(true).create_new(true).open(tmp.path().join("img")).unwrap();
        image.set_len(len).unwrap();
        let pattern = |n: usize, seed: u8| {
            (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect::<Vec<u8>>()
        };
        let d = ImageDigest::new(len);
        // A piece inside block 0, reported as written: read back.
        let sb = pattern(300, 1);
        image.write_all_at(&sb, 1024).unwrap();
        d.wrote(1024, &sb, false);
        // Whole blocks 2..5, reported.
        let whole = pattern(3 * 4096, 2);
        image.write_all_at(&whole, 2 * 4096).unwrap();
        d.wrote(2 * 4096, &whole, false);
        // A file's data ending inside block 9, zeros after it.
        let tail = pattern(4096 + 100, 3);
        image.write_all_at(&tail, 8 * 4096).unwrap();
        d.wrote(8 * 4096, &tail, true);
        // A piece starting inside block 20 and ending inside block 22,
        // not the end of its file: only block 21 is whole.
        let middle = pattern(2 * 4096, 4);
        image.write_all_at(&middle, 20 * 4096 + 500).unwrap();
        d.wrote(20 * 4096 + 500, &middle, false);
        // Zeros reported as written: no leaf, as in the definition.
        let zeros = vec![0u8; 4096];
        image.write_all_at(&zeros, 30 * 4096).unwrap();
        d.wrote(30 * 4096, &zeros, false);
        // Copied by the kernel (copy_file_range), from inside block 40 to
        // inside block 42.
        image.write_all_at(&pattern(5000, 5), 40 * 4096 + 7).unwrap();
        d.copied(40 * 4096 + 7, 5000);
        // Two pieces of one block, each reported: neither is whole.
        let (a, b) = (pattern(1000, 6), pattern(3096, 7));
        image.write_all_at(&a, 50 * 4096).unwrap();
        image.write_all_at(&b, 50 * 4096 + 1000).unwrap();
        d.wrote(50 * 4096, &a, false);
        d.wrote(50 * 4096 + 1000, &b, false);

        assert_eq!(d.units_heard(), 3 + 2 + 1 + 1);
        let want = sparse_digest(&image, ChunkHash::Xxh3).unwrap();
        assert_eq!(d.algorithm(), SPARSE_XXH3);
        assert_eq!(d.finish(&image).unwrap(), want);
        let all_copied = ImageDigest::new(len);
        all_copied.copied(0, len);
        assert_eq!(all_copied.finish(&image).unwrap(), want, "everything copied");
        // The writer's duty: a write nobody reports is not seen.
        assert_ne!(ImageDigest::new(len).finish(&image).unwrap(), want, "nothing reported");
        assert!(ImageDigest::new(len + 1).finish(&image).is_err(), "another length");
    }
}
