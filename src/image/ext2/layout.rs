//! Geometry of the image (groups, inode tables) and block allocation.
//!
//! Everything here is arithmetic, decided before a byte is written, so a
//! tree that does not fit fails early. The encoders live in `disk`, the
//! I/O in the parent module.

// Fixed sizes of the format: the geometry is computed from them and the
// encoders in `disk` write them.

/// Block size in bytes (what `mke2fs -t ext2` picks for images of 512 MiB
/// and more; fixed here so the layout is simple).
pub(super) const BLOCK_SIZE: u64 = 4096;
/// Inode size in bytes, as `mke2fs` on Debian 12.
pub(super) const INODE_SIZE: u64 = 256;
/// Blocks per group: one block bitmap block covers 8 * 4096 blocks.
pub(super) const BLOCKS_PER_GROUP: u64 = 8 * BLOCK_SIZE;
/// Size of a group descriptor without the 64bit feature.
pub(super) const DESC_SIZE: u64 = 32;

/// mke2fs's default `inode_ratio` for a "default" sized file system.
const INODE_RATIO: u64 = 16384;
/// Inodes held by one inode table block.
const INODES_PER_BLOCK: u64 = BLOCK_SIZE / INODE_SIZE;
/// At most one inode bitmap block per group.
const MAX_INODES_PER_GROUP: u64 = BLOCK_SIZE * 8;
/// A last group smaller than its metadata plus this many blocks is dropped
/// (mke2fs does the same so the tail group is not all overhead).
const MIN_TAIL_DATA: u64 = 50;

/// The shape of the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Geometry {
    /// `s_blocks_count`: blocks covered by groups (may be less than the file).
    pub(crate) blocks: u64,
    /// Number of block groups.
    pub(crate) groups: u64,
    /// Inodes per group (a multiple of the inodes per table block).
    pub(crate) inodes_per_group: u32,
    /// Blocks of the group descriptor table.
    pub(crate) gdt_blocks: u64,
}

/// A run of consecutive blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    /// First block.
    pub(crate) start: u64,
    /// Number of blocks.
    pub(crate) len: u64,
}

/// Whether group `g` holds a superblock backup (sparse_super: groups 0, 1
/// and powers of 3, 5 and 7).
pub(super) fn has_super(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            p *= base;
        }
        p == g
    })
}

impl Geometry {
    /// Plan a file system for an image of `size` bytes holding at least
    /// `inodes` inodes (all numbers up to the highest used one) and `blocks`
    /// allocated blocks outside the group metadata. `None` when it does not
    /// fit (or the size is beyond what 32-bit block numbers address).
    pub(super) fn plan(size: u64, inodes: u64, blocks: u64) -> Option<Geometry> {
        let mut total = size / BLOCK_SIZE;
        if total > u64::from(u32::MAX) {
            return None;
        }
        loop {
            if total == 0 {
                return None;
            }
            let groups = total.div_ceil(BLOCKS_PER_GROUP);
            let wanted = (total * BLOCK_SIZE / INODE_RATIO).max(inodes);
            let ipg = wanted.div_ceil(groups).next_multiple_of(INODES_PER_BLOCK).max(INODES_PER_BLOCK);
            if ipg > MAX_INODES_PER_GROUP {
                return None;
            }
            let geo = Geometry {
                blocks: total,
                groups,
                inodes_per_group: ipg as u32,
                gdt_blocks: (groups * DESC_SIZE).div_ceil(BLOCK_SIZE),
            };
            let last = groups - 1;
            let tail = geo.group_end(last) - geo.group_start(last);
            if tail < geo.overhead(last) + MIN_TAIL_DATA {
                if groups == 1 {
                    return None;
                }
                total = geo.group_start(last);
                continue;
            }
            let capacity: u64 = (0..groups).map(|g| geo.data_blocks(g)).sum();
            if u64::from(geo.inodes_count()) < inodes || capacity < blocks {
                return None;
            }
            return Some(geo);
        }
    }

    /// `s_inodes_count`.
    pub(super) fn inodes_count(&self) -> u32 {
        (self.groups * u64::from(self.inodes_per_group)) as u32
    }

    /// Blocks of one group's inode table.
    pub(super) fn inode_table_blocks(&self) -> u64 {
        u64::from(self.inodes_per_group) / INODES_PER_BLOCK
    }

    /// First block of group `g`.
    pub(super) fn group_start(&self, g: u64) -> u64 {
        g * BLOCKS_PER_GROUP
    }

    /// One past the last block of group `g`.
    pub(super) fn group_end(&self, g: u64) -> u64 {
        ((g + 1) * BLOCKS_PER_GROUP).min(self.blocks)
    }

    /// Blocks taken by superblock and descriptor copies at a group's start.
    pub(super) fn super_blocks(&self, g: u64) -> u64 {
        if has_super(g) {
            1 + self.gdt_blocks
        } else {
            0
        }
    }

    /// Metadata blocks at the start of group `g`: superblock and GDT backup
    /// (if any), block bitmap, inode bitmap, inode table.
    pub(super) fn overhead(&self, g: u64) -> u64 {
        self.super_blocks(g) + 2 + self.inode_table_blocks()
    }

    /// First block after group `g`'s metadata.
    pub(super) fn data_start(&self, g: u64) -> u64 {
        self.group_start(g) + self.overhead(g)
    }

    /// Blocks available for allocation in group `g`.
    pub(super) fn data_blocks(&self, g: u64) -> u64 {
        self.group_end(g) - self.data_start(g)
    }
}

/// Hands out blocks linearly through the groups' data areas, so every
/// group's used blocks are a prefix of its data area (which keeps bitmaps
/// and free counts trivial).
pub(super) struct Allocator<'a> {
    geo: &'a Geometry,
    group: u64,
    next: u64,
    /// Blocks handed out per group.
    pub(crate) used: Vec<u64>,
}

impl<'a> Allocator<'a> {
    /// An allocator at the start of group 0's data area.
    pub(super) fn new(geo: &'a Geometry) -> Self {
        Allocator { geo, group: 0, next: geo.data_start(0), used: vec![0; geo.groups as usize] }
    }

    /// Allocate `n` blocks, appending the runs to `out`. The caller checked
    /// the total against [`Geometry::plan`], so running out is a bug; it
    /// returns false rather than panicking.
    pub(super) fn alloc(&mut self, mut n: u64, out: &mut Vec<Extent>) -> bool {
        while n > 0 {
            if self.group >= self.geo.groups {
                return false;
            }
            let end = self.geo.group_end(self.group);
            let take = n.min(end - self.next);
            if take > 0 {
                match out.last_mut() {
                    Some(last) if last.start + last.len == self.next => last.len += take,
                    _ => out.push(Extent { start: self.next, len: take }),
                }
                self.used[self.group as usize] += take;
                self.next += take;
                n -= take;
            }
            if self.next == end {
                self.group += 1;
                if self.group < self.geo.groups {
                    self.next = self.geo.data_start(self.group);
                }
            }
        }
        true
    }
}

/// The physical block of logical block `i` within a list of extents.
pub(super) fn nth_block(extents: &[Extent], mut i: u64) -> u64 {
    for e in extents {
        if i < e.len {
            return e.start + i;
        }
        i -= e.len;
    }
    // Callers only ask for blocks they allocated.
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_gib_matches_mke2fs() {
        let geo = Geometry::plan(4 << 30, 100, 1000).unwrap();
        assert_eq!(geo.blocks, 1_048_576);
        assert_eq!(geo.groups, 32);
        assert_eq!(geo.inodes_per_group, 8192);
        assert_eq!(geo.inodes_count(), 262_144);
        assert_eq!(geo.gdt_blocks, 1);
        assert_eq!(geo.overhead(0), 1 + 1 + 2 + 512);
        assert_eq!(geo.overhead(2), 2 + 512);
    }

    #[test]
    fn sparse_super_groups() {
        let with: Vec<u64> = (0..100).filter(|&g| has_super(g)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn tiny_tail_group_is_dropped() {
        let geo = Geometry::plan((BLOCKS_PER_GROUP + 10) * BLOCK_SIZE, 10, 10).unwrap();
        assert_eq!(geo.groups, 1);
        assert_eq!(geo.blocks, BLOCKS_PER_GROUP);
    }

    #[test]
    fn allocation_skips_group_metadata() {
        let geo = Geometry::plan(3 * BLOCKS_PER_GROUP * BLOCK_SIZE, 10, 10).unwrap();
        let mut a = Allocator::new(&geo);
        let mut ext = Vec::new();
        assert!(a.alloc(geo.data_blocks(0) + 5, &mut ext));
        assert_eq!(ext.len(), 2);
        assert_eq!(ext[1], Extent { start: geo.data_start(1), len: 5 });
        assert_eq!(nth_block(&ext, geo.data_blocks(0) + 1), geo.data_start(1) + 1);
        assert!(!a.alloc(3 * BLOCKS_PER_GROUP, &mut ext));
    }

    #[test]
    fn too_many_inodes_or_blocks_do_not_fit() {
        assert!(Geometry::plan(1 << 20, 100_000, 0).is_none());
        assert!(Geometry::plan(1 << 20, 10, 1 << 20).is_none());
        assert!(Geometry::plan(0, 10, 0).is_none());
    }
}
