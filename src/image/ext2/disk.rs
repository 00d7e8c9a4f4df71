//! On-disk encoders for ext2 revision 1: superblock, group descriptors,
//! inodes, directory blocks and indirect block trees. Pure functions over
//! byte buffers; where blocks go is decided by `layout`, and nothing here
//! does I/O.
//!
//! Field offsets follow the kernel's ext4 "Data Structures and Algorithms"
//! documentation (ext2 is the subset without extents, journal or flex_bg).

use super::layout::{Geometry, BLOCKS_PER_GROUP, BLOCK_SIZE, DESC_SIZE, INODE_SIZE};

/// Block numbers held by one indirect block.
pub(super) const PTRS_PER_BLOCK: u64 = BLOCK_SIZE / 4;
/// First non-reserved inode (`s_first_ino`).
pub(super) const FIRST_INO: u32 = 11;
/// The root directory's inode.
pub(super) const ROOT_INO: u32 = 2;
/// `i_extra_isize` and `s_{min,want}_extra_isize`, as libext2fs sets them
/// for 256-byte inodes (sizeof(ext2_inode_large) - 128).
const EXTRA_ISIZE: u16 = 32;

const COMPAT_EXT_ATTR: u32 = 0x0008;
const COMPAT_DIR_INDEX: u32 = 0x0020;
const INCOMPAT_FILETYPE: u32 = 0x0002;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
/// `user_xattr acl`, the default mount options mke2fs writes on Debian 12.
const DEFM_XATTR_USER_ACL: u32 = 0x0004 | 0x0008;
/// `signed_directory_hash`, what mke2fs sets on x86 (char is signed).
const FLAGS_SIGNED_HASH: u32 = 0x0001;
/// `half_md4`, mke2fs's default directory hash.
const HASH_HALF_MD4: u8 = 1;

/// Directory entry file type codes (the `filetype` feature).
pub(super) mod ftype {
    pub(crate) const REG: u8 = 1;
    pub(crate) const DIR: u8 = 2;
    pub(crate) const CHR: u8 = 3;
    pub(crate) const BLK: u8 = 4;
    pub(crate) const FIFO: u8 = 5;
    pub(crate) const SOCK: u8 = 6;
    pub(crate) const LNK: u8 = 7;
}

fn put16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn get16(buf: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([buf[off], buf[off + 1]])
}

pub(super) fn get32(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
}

/// Everything the superblock says beyond the geometry.
pub(super) struct SuperInfo<'a> {
    pub(crate) free_blocks: u64,
    pub(crate) free_inodes: u64,
    pub(crate) uuid: [u8; 16],
    pub(crate) hash_seed: [u8; 16],
    pub(crate) label: &'a [u8],
    pub(crate) time: u32,
}

/// Encode the 1024-byte superblock as stored in group `group` (backups
/// differ from the primary only in `s_block_group_nr`).
pub(super) fn superblock(geo: &Geometry, info: &SuperInfo, group: u32) -> [u8; 1024] {
    let mut sb = [0u8; 1024];
    put32(&mut sb, 0x00, geo.inodes_count());
    put32(&mut sb, 0x04, geo.blocks as u32);
    // 5% reserved for root, as mke2fs's default -m 5.
    put32(&mut sb, 0x08, (geo.blocks * 5 / 100) as u32);
    put32(&mut sb, 0x0C, info.free_blocks as u32);
    put32(&mut sb, 0x10, info.free_inodes as u32);
    put32(&mut sb, 0x14, 0); // s_first_data_block: 0 with 4 KiB blocks
    put32(&mut sb, 0x18, 2); // s_log_block_size: 1024 << 2
    put32(&mut sb, 0x1C, 2); // s_log_cluster_size (= block size without bigalloc)
    put32(&mut sb, 0x20, BLOCKS_PER_GROUP as u32);
    put32(&mut sb, 0x24, BLOCKS_PER_GROUP as u32);
    put32(&mut sb, 0x28, geo.inodes_per_group);
    put32(&mut sb, 0x2C, 0); // s_mtime: never mounted
    put32(&mut sb, 0x30, info.time); // s_wtime
    put16(&mut sb, 0x34, 0); // s_mnt_count
    put16(&mut sb, 0x36, 0xFFFF); // s_max_mnt_count = -1
    put16(&mut sb, 0x38, 0xEF53); // s_magic
    put16(&mut sb, 0x3A, 1); // s_state: clean
    put16(&mut sb, 0x3C, 1); // s_errors: continue
    put32(&mut sb, 0x40, info.time); // s_lastcheck
    put32(&mut sb, 0x4C, 1); // s_rev_level: dynamic
    put32(&mut sb, 0x54, FIRST_INO);
    put16(&mut sb, 0x58, INODE_SIZE as u16);
    put16(&mut sb, 0x5A, group as u16);
    put32(&mut sb, 0x5C, COMPAT_EXT_ATTR | COMPAT_DIR_INDEX);
    put32(&mut sb, 0x60, INCOMPAT_FILETYPE);
    put32(&mut sb, 0x64, RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE);
    sb[0x68..0x78].copy_from_slice(&info.uuid);
    sb[0x78..0x78 + info.label.len()].copy_from_slice(info.label);
    sb[0xEC..0xFC].copy_from_slice(&info.hash_seed);
    sb[0xFC] = HASH_HALF_MD4;
    put32(&mut sb, 0x100, DEFM_XATTR_USER_ACL);
    put32(&mut sb, 0x108, info.time); // s_mkfs_time
    put16(&mut sb, 0x15C, EXTRA_ISIZE); // s_min_extra_isize
    put16(&mut sb, 0x15E, EXTRA_ISIZE); // s_want_extra_isize
    put32(&mut sb, 0x160, FLAGS_SIGNED_HASH);
    sb
}

/// Per-group numbers that go into a group descriptor.
pub(super) struct GroupDesc {
    pub(crate) block_bitmap: u32,
    pub(crate) inode_bitmap: u32,
    pub(crate) inode_table: u32,
    pub(crate) free_blocks: u32,
    pub(crate) free_inodes: u32,
    pub(crate) used_dirs: u32,
}

/// Append one 32-byte group descriptor to `out`.
pub(super) fn group_desc(out: &mut Vec<u8>, d: &GroupDesc) {
    let mut b = [0u8; DESC_SIZE as usize];
    put32(&mut b, 0, d.block_bitmap);
    put32(&mut b, 4, d.inode_bitmap);
    put32(&mut b, 8, d.inode_table);
    put16(&mut b, 12, d.free_blocks as u16);
    put16(&mut b, 14, d.free_inodes as u16);
    put16(&mut b, 16, d.used_dirs as u16);
    out.extend_from_slice(&b);
}

/// A bitmap block with the first `used` bits set and every bit from
/// `valid` on set as well (e2fsck wants the padding past the end of a
/// short group set).
pub(super) fn bitmap(out: &mut Vec<u8>, used: u64, valid: u64) {
    let start = out.len();
    out.resize(start + BLOCK_SIZE as usize, 0);
    let block = &mut out[start..];
    let set = |block: &mut [u8], from: u64, to: u64| {
        for bit in from..to {
            block[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    };
    set(block, 0, used);
    set(block, valid, BLOCK_SIZE * 8);
}

/// The inode fields the writer decides.
pub(super) struct InodeFields {
    pub(crate) mode: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
    pub(crate) atime: i64,
    pub(crate) ctime: i64,
    pub(crate) mtime: i64,
    pub(crate) links: u16,
    /// Allocated blocks (data + indirect), in file system blocks.
    pub(crate) blocks: u64,
    pub(crate) i_block: [u32; 15],
}

/// Split a time into the 32-bit field and the epoch bits of `*_extra`.
/// Times are clamped to 0..=u32::MAX seconds; values past 2038 need epoch
/// bit 1 because the kernel reads the base field as signed.
fn encode_time(t: i64) -> (u32, u32) {
    let t = t.clamp(0, u32::MAX as i64) as u64;
    (t as u32, (t >> 32) as u32 | u32::from(t > i32::MAX as u64))
}

/// Encode a 256-byte inode into `out` (which must be `INODE_SIZE` long).
pub(super) fn inode(out: &mut [u8], f: &InodeFields) {
    let (atime, atime_x) = encode_time(f.atime);
    let (ctime, ctime_x) = encode_time(f.ctime);
    let (mtime, mtime_x) = encode_time(f.mtime);
    put16(out, 0x00, f.mode);
    put16(out, 0x02, f.uid as u16);
    put32(out, 0x04, f.size as u32);
    put32(out, 0x08, atime);
    put32(out, 0x0C, ctime);
    put32(out, 0x10, mtime);
    put16(out, 0x18, f.gid as u16);
    put16(out, 0x1A, f.links);
    put32(out, 0x1C, (f.blocks * (BLOCK_SIZE / 512)) as u32);
    for (i, b) in f.i_block.iter().enumerate() {
        put32(out, 0x28 + 4 * i, *b);
    }
    put32(out, 0x6C, (f.size >> 32) as u32); // i_size_high (large_file)
    put16(out, 0x78, (f.uid >> 16) as u16);
    put16(out, 0x7A, (f.gid >> 16) as u16);
    put16(out, 0x80, EXTRA_ISIZE);
    put32(out, 0x84, ctime_x);
    put32(out, 0x88, mtime_x);
    put32(out, 0x8C, atime_x);
    // crtime: the inode is born with its change time, as far as we know.
    put32(out, 0x90, ctime);
    put32(out, 0x94, ctime_x);
}

/// Number of indirect blocks needed to map `n` data blocks.
pub(super) fn indirect_blocks(n: u64) -> u64 {
    let p = PTRS_PER_BLOCK;
    let mut rest = n.saturating_sub(12);
    let mut total = 0;
    // Levels 1, 2, 3: a tree of that depth maps up to p^level blocks.
    for level in 1..=3u32 {
        if rest == 0 {
            break;
        }
        let cap = p.pow(level);
        let here = rest.min(cap);
        // Blocks in a partial tree of this depth: sum over depths d of
        // ceil(here / p^(level - d)) for d = 0..level.
        for d in 0..level {
            total += here.div_ceil(p.pow(level - d));
        }
        rest -= here;
    }
    total
}

/// Largest number of data blocks the indirect scheme maps.
pub(super) const MAX_FILE_BLOCKS: u64 =
    12 + PTRS_PER_BLOCK + PTRS_PER_BLOCK * PTRS_PER_BLOCK + PTRS_PER_BLOCK.pow(3);

/// Number of indirect blocks needed to map the logical blocks in `runs`
/// (ascending, disjoint `(first, count)` runs; everything else is a hole,
/// mapped by no block). Agrees with [`indirect_blocks`] for `[(0, n)]`.
pub(super) fn indirect_blocks_for(runs: &[(u64, u64)]) -> u64 {
    map_blocks(runs, &|_| 0, &|_| 0, None).1
}

/// Build the block map of an inode whose logical blocks `runs` hold data
/// (ascending, disjoint `(first, count)` runs, all below
/// [`MAX_FILE_BLOCKS`]; other blocks are holes: pointer 0, and no indirect
/// block is made for a stretch of holes).
///
/// `data(k)` gives the physical block of the `k`-th block holding data (in
/// logical order); `ind(j)` the physical block of the `j`-th indirect block
/// in allocation order (parents before children, left to right, single
/// before double before triple tree). Returns `i_block` and appends the
/// indirect blocks' contents, in that same order, to `out`.
pub(super) fn block_map(
    runs: &[(u64, u64)],
    data: &dyn Fn(u64) -> u32,
    ind: &dyn Fn(u64) -> u32,
    out: &mut Vec<u8>,
) -> [u32; 15] {
    map_blocks(runs, data, ind, Some(out)).0
}

/// The one walk behind [`block_map`] and [`indirect_blocks_for`]: visit the
/// data blocks in logical order, opening an indirect block whenever a data
/// block needs one that is not open yet. Logical order makes that a
/// pre-order walk of the trees, which is the allocation order `ind` uses.
/// Without `out`, only counts. Linear in the number of data blocks.
fn map_blocks(
    runs: &[(u64, u64)],
    data: &dyn Fn(u64) -> u32,
    ind: &dyn Fn(u64) -> u32,
    mut out: Option<&mut Vec<u8>>,
) -> ([u32; 15], u64) {
    let p = PTRS_PER_BLOCK;
    let mut i_block = [0u32; 15];
    let mut next = 0u64;
    // For each tree (single, double, triple) and depth: the open block's key
    // (logical index within the tree divided by what one block spans) and
    // its offset in `out`.
    let mut open = [[None::<(u64, usize)>; 3]; 3];
    let mut rank = 0u64;
    for &(first, count) in runs {
        for i in first..first + count {
            let k = rank;
            rank += 1;
            if i < 12 {
                if out.is_some() {
                    i_block[i as usize] = data(k);
                }
                continue;
            }
            let (levels, j) = if i < 12 + p {
                (1usize, i - 12)
            } else if i < 12 + p + p * p {
                (2, i - 12 - p)
            } else {
                (3, i - 12 - p - p * p)
            };
            let mut parent: Option<usize> = None;
            for (depth, opened) in open[levels - 1].iter_mut().enumerate().take(levels) {
                let key = j / p.pow((levels - depth) as u32);
                let slot = match *opened {
                    Some((open_key, slot)) if open_key == key => slot,
                    _ => {
                        let idx = next;
                        next += 1;
                        let mut slot = 0;
                        if let Some(out) = out.as_deref_mut() {
                            slot = out.len();
                            out.resize(slot + BLOCK_SIZE as usize, 0);
                            let phys = ind(idx);
                            match parent {
                                None => i_block[11 + levels] = phys,
                                Some(at) => put32(&mut out[at..], ((key % p) * 4) as usize, phys),
                            }
                        }
                        *opened = Some((key, slot));
                        slot
                    }
                };
                parent = Some(slot);
            }
            if let (Some(out), Some(at)) = (out.as_deref_mut(), parent) {
                put32(&mut out[at..], ((j % p) * 4) as usize, data(k));
            }
        }
    }
    (i_block, next)
}

/// One directory entry to pack.
pub(super) struct DirEntry<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) ino: u32,
    pub(crate) ftype: u8,
}

fn entry_len(name_len: usize) -> usize {
    (8 + name_len).next_multiple_of(4)
}

/// Pack directory entries into blocks (entries never straddle a block; the
/// last entry of each block stretches to its end). With `out`, the blocks
/// are appended; either way the number of blocks is returned, at least
/// `min_blocks` (extra blocks hold one empty entry each, like mke2fs's
/// lost+found).
pub(super) fn pack_dir(
    entries: &mut dyn Iterator<Item = DirEntry>,
    min_blocks: u64,
    mut out: Option<&mut Vec<u8>>,
) -> u64 {
    let bs = BLOCK_SIZE as usize;
    let mut blocks = 1u64;
    let mut used = 0usize; // bytes used in the current block
    let mut last: Option<usize> = None; // offset in `out` of the last entry's rec_len
    let base = out.as_ref().map_or(0, |o| o.len());
    if let Some(o) = out.as_deref_mut() {
        o.resize(base + bs, 0);
    }
    for e in entries {
        let len = entry_len(e.name.len());
        if used + len > bs {
            // Close the block: the last entry takes the rest.
            if let (Some(o), Some(at)) = (out.as_deref_mut(), last) {
                let rec = get16(o, at) as usize + (bs - used);
                put16(o, at, rec as u16);
            }
            blocks += 1;
            used = 0;
            if let Some(o) = out.as_deref_mut() {
                o.resize(base + blocks as usize * bs, 0);
            }
        }
        if let Some(o) = out.as_deref_mut() {
            let at = base + (blocks as usize - 1) * bs + used;
            put32(o, at, e.ino);
            put16(o, at + 4, len as u16);
            o[at + 6] = e.name.len() as u8;
            o[at + 7] = e.ftype;
            o[at + 8..at + 8 + e.name.len()].copy_from_slice(e.name);
            last = Some(at + 4);
        }
        used += len;
    }
    if let (Some(o), Some(at)) = (out.as_deref_mut(), last) {
        let rec = get16(o, at) as usize + (bs - used);
        put16(o, at, rec as u16);
    }
    while blocks < min_blocks {
        blocks += 1;
        if let Some(o) = out.as_deref_mut() {
            let at = o.len();
            o.resize(at + bs, 0);
            // An unused entry (inode 0) covering the whole block.
            put16(o, at + 4, bs as u16);
        }
    }
    blocks
}

/// Encode a device number the way Linux stores it in `i_block`: the old
/// 8:8 encoding in `i_block[0]` when both parts fit in 8 bits, else the
/// kernel's `new_encode_dev` in `i_block[1]` (fs/ext4/inode.c).
pub(super) fn device_block(rdev: u64) -> [u32; 15] {
    let major = (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)) as u32;
    let minor = (((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)) as u32;
    let mut b = [0u32; 15];
    if major < 256 && minor < 256 {
        b[0] = (major << 8) | minor;
    } else {
        b[1] = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indirect_counts_match_the_tree_builder() {
        let p = PTRS_PER_BLOCK;
        for n in [0, 1, 12, 13, 12 + p, 13 + p, 12 + p + p * p, 13 + p + p * p, 12 + p + 5 * p + 3] {
            let mut out = Vec::new();
            block_map(&[(0, n)], &|i| i as u32 + 1000, &|j| j as u32 + 1, &mut out);
            assert_eq!(out.len() as u64 / BLOCK_SIZE, indirect_blocks(n), "n = {n}");
            assert_eq!(indirect_blocks_for(&[(0, n)]), indirect_blocks(n), "n = {n}");
        }
        assert_eq!(indirect_blocks(13), 1);
        assert_eq!(indirect_blocks(12 + p + 1), 3);
    }

    #[test]
    fn double_indirect_pointers_land_in_children() {
        let p = PTRS_PER_BLOCK;
        let n = 12 + p + p + 2;
        let mut out = Vec::new();
        let ib = block_map(&[(0, n)], &|i| i as u32 + 100_000, &|j| j as u32 + 1, &mut out);
        assert_eq!(ib[11], 100_011);
        assert_eq!(ib[12], 1);
        assert_eq!(ib[13], 2);
        // Block 2 (index 1) is the double indirect block: children 3 and 4.
        let dind = &out[BLOCK_SIZE as usize..];
        assert_eq!(get32(dind, 0), 3);
        assert_eq!(get32(dind, 4), 4);
        assert_eq!(get32(dind, 8), 0);
        let second_child = &out[3 * BLOCK_SIZE as usize..];
        assert_eq!(get32(second_child, 0), (100_000 + 12 + 2 * p) as u32);
        assert_eq!(get32(second_child, 4), (100_000 + 12 + 2 * p + 1) as u32);
        assert_eq!(get32(second_child, 8), 0);
    }

    #[test]
    fn holes_get_no_pointers_and_no_indirect_blocks() {
        let p = PTRS_PER_BLOCK;
        // Block 3, one block deep in the double tree, one far into the triple.
        let far = 12 + p + p * p + 5 * p * p + 7 * p + 9;
        let runs = [(3, 1), (12 + p + 2 * p + 1, 1), (far, 2)];
        let mut out = Vec::new();
        let ib = block_map(&runs, &|k| k as u32 + 500, &|j| j as u32 + 10, &mut out);
        // Double: root + one child; triple: root + one level-2 + one level-1.
        assert_eq!(out.len() as u64 / BLOCK_SIZE, 5);
        assert_eq!(indirect_blocks_for(&runs), 5);
        let mut want = [0u32; 15];
        want[3] = 500;
        want[13] = 10;
        want[14] = 12;
        assert_eq!(ib, want);
        let block = |n: usize| &out[n * BLOCK_SIZE as usize..(n + 1) * BLOCK_SIZE as usize];
        let nonzero = |b: &[u8]| {
            (0..p as usize)
                .filter(|&s| get32(b, s * 4) != 0)
                .map(|s| (s, get32(b, s * 4)))
                .collect::<Vec<_>>()
        };
        assert_eq!(nonzero(block(0)), [(2, 11)], "double root points at its third child");
        assert_eq!(nonzero(block(1)), [(1, 501)]);
        assert_eq!(nonzero(block(2)), [(5, 13)], "triple root");
        assert_eq!(nonzero(block(3)), [(7, 14)]);
        assert_eq!(nonzero(block(4)), [(9, 502), (10, 503)]);
        // A file of holes only needs nothing.
        assert_eq!(indirect_blocks_for(&[]), 0);
    }

    #[test]
    fn devices_use_old_and_new_encodings() {
        // 8:1 (makedev) fits the old encoding.
        assert_eq!(device_block((8 << 8) | 1)[0], 0x0801);
        // major 300, minor 70000 (glibc makedev layout).
        let (ma, mi) = (300u64, 70000u64);
        let dev = ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12);
        let b = device_block(dev);
        assert_eq!(b[0], 0);
        assert_eq!(b[1], (70000 & 0xff) | (300 << 8) | ((70000 & !0xff) << 12));
    }

    #[test]
    fn times_past_2038_use_the_epoch_bit() {
        assert_eq!(encode_time(-5), (0, 0));
        assert_eq!(encode_time(1_700_000_000), (1_700_000_000, 0));
        assert_eq!(encode_time(3_000_000_000), (3_000_000_000, 1));
        assert_eq!(encode_time(i64::MAX), (u32::MAX, 1));
    }
}
