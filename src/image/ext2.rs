//! The ext2 root image writer: turns a [`FileTree`] into a write-once ext2
//! file system in a regular file, without mkfs, mounts or loop devices, and
//! reads back the superblock fields libguestfs cares about.
//!
//! The whole layout (inode numbers, every block of every file) is computed
//! before anything is written, so an image that is too small fails before
//! its file is touched. Metadata is then written with a few large `pwrite`s
//! (one per block group, plus coalesced runs of directory and indirect
//! blocks) while host file data is copied with `copy_file_range` on all
//! cores, data regions only (files up to 64 KiB whole), so holes stay holes
//! in the sparse image. Every write is told to the caller's digest. Files
//! kept in a scratch file ([`Data::Scratch`]) keep their holes inside the
//! file system too: only their data blocks (and the indirect blocks mapping
//! them) are allocated, as for any sparse ext2 file. Host files on pseudo
//! file systems (sysfs, procfs), whose `stat` size is not their content,
//! are read when the layout is made and stored as read. The
//! primary superblock goes last: an image whose build failed half-way has
//! no ext2 magic.
//!
//! The format is plain ext2 revision 1 as `mke2fs -t ext2` makes it on
//! Debian 12, minus `resize_inode`: 4 KiB blocks, 256-byte inodes,
//! `ext_attr dir_index filetype sparse_super large_file`
//! (docs/supermin-compat.md, "Root image format"): anything ext4-only makes
//! the appliance's `ext2` mount fail (docs/traps.md, "Root must mount as
//! ext2").
//! Directories are linear (the kernel adds htree indexes itself if a
//! directory grows at run time).
//!
//! Deciding what goes into the tree (packages, precedence, modules) is left
//! to the tree's producers; this module knows nothing about packages.
//! `disk` holds the on-disk encoders, `layout` the geometry and block
//! allocation, `copy` the parallel data copy.

mod copy;
mod disk;
mod layout;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::WrittenBytes;
use crate::image::files::{Content, Data, FileTree, Metadata, NodeId};
use crate::image::hostfile::{self, HostData, Probed};
use crate::image::scratch::ScratchData;

use copy::Sink;
use disk::{ftype, DirEntry, FIRST_INO, ROOT_INO};
use layout::{nth_block, Allocator, Extent, Geometry, BLOCK_SIZE, INODE_SIZE};

/// How to build the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ext2Options {
    /// Size of the image file in bytes (the file is sparse). Must be > 0.
    pub(crate) size: u64,
    /// File system UUID; the kernel command line names the root by it.
    /// libguestfs reads it from the `root` file at every launch
    /// (docs/libguestfs-side.md, "Root UUID"), so it need not be random: the
    /// build derives it from the fingerprint (`Manifest::root_uuid`), which
    /// keeps the image reproducible.
    pub(crate) uuid: [u8; 16],
    /// mkfs, last-write and last-check time of the file system, and the
    /// time stamps of a `lost+found` the writer creates. Seconds since the
    /// epoch.
    pub(crate) timestamp: i64,
    /// Volume label, at most 16 bytes.
    pub(crate) label: Option<String>,
}

/// What a successful [`write_image`] produced.
#[derive(Debug)]
pub(crate) struct Ext2Stats {
    /// Inodes in use, including the ten reserved ones.
    pub(crate) inodes: u64,
    /// Blocks in use, metadata included.
    pub(crate) blocks_used: u64,
    /// Block size in bytes (always 4096).
    pub(crate) block_size: u32,
    /// Bytes of regular file contents (sum of file sizes); the tests check
    /// that the data was written.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) data_bytes: u64,
    /// Host files that could not be read, with the reason, sorted by path.
    /// They are empty files in the image (as supermin does, with a warning):
    /// the caller decides how loudly to report them. A file that could be
    /// opened when the layout was made but not when its data was copied
    /// (it vanished in between) keeps its listed size and reads as zeros.
    pub(crate) unreadable: Vec<(PathBuf, io::Error)>,
}

/// Errors from writing or reading an ext2 image.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Ext2Error {
    /// `Ext2Options::size` was zero.
    #[error("the ext2 image size is 0 bytes; give a size such as --size 4G")]
    ZeroSize,
    /// The tree does not fit; nothing was written.
    #[error(
        "the appliance does not fit in an ext2 image of {size} bytes: about {needed} bytes are \
         needed; raise --size"
    )]
    TooSmall {
        /// Smallest image size found to fit, in bytes (rounded up to a MiB).
        needed: u64,
        /// The size that was asked for.
        size: u64,
    },
    /// Beyond what ext2 without the 64bit feature addresses (16 TiB).
    #[error(
        "an ext2 image of {size} bytes is larger than ext2 with 4 KiB blocks supports (16 TiB); lower --size"
    )]
    TooLarge {
        /// The size that was asked for.
        size: u64,
    },
    /// The label does not fit the 16-byte superblock field.
    #[error("file system label {label:?} is longer than 16 bytes; use a shorter label")]
    LabelTooLong {
        /// The label given.
        label: String,
    },
    /// A file name is longer than ext2's 255 bytes.
    #[error("{path}: file name longer than 255 bytes cannot be stored in ext2")]
    NameTooLong {
        /// Path of the entry in the appliance.
        path: PathBuf,
    },
    /// A symlink target is empty or at least a block long.
    #[error("{path}: symlink target of {len} bytes cannot be stored (must be 1 to 4095 bytes)")]
    BadSymlink {
        /// Path of the symlink in the appliance.
        path: PathBuf,
        /// Length of its target.
        len: usize,
    },
    /// A file is larger than the kernel's ext2 driver accepts
    /// ([`MAX_FILE_SIZE`], about 2 TiB).
    #[error(
        "{path}: file of {len} bytes is too large for ext2 with 4 KiB blocks (at most {MAX_FILE_SIZE} bytes)"
    )]
    FileTooLarge {
        /// Path in the appliance.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// A directory has more subdirectories (or a file more hard links)
    /// than ext2's link count allows.
    #[error("{path}: {links} links exceed ext2's limit of {max}; split the directory")]
    TooManyLinks {
        /// Path in the appliance.
        path: PathBuf,
        /// The link count it would need.
        links: u64,
        /// The limit.
        max: u64,
    },
    /// `/lost+found` in the tree is not a directory; e2fsck and the kernel
    /// expect one.
    #[error("/lost+found in the appliance tree is not a directory; remove it from the inputs")]
    LostFoundNotDir,
    /// Writing the image failed.
    #[error("writing the ext2 image ({what}): {source}; check free space where the image is written")]
    Write {
        /// What was being written.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Copying a host file's data into the image failed.
    #[error("copying {path} into the ext2 image: {source}")]
    Copy {
        /// Host path of the file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Reading an image's superblock failed.
    #[error("reading the superblock of {path}: {source}")]
    Read {
        /// The image file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file has no ext2 magic (0xEF53 at byte 0x438).
    #[error("{path} is not an ext2/3/4 file system (no magic 0xEF53 at byte 0x438); rebuild the appliance")]
    NotExt2 {
        /// The image file.
        path: PathBuf,
    },
}

/// Largest regular file the kernel's ext2 driver accepts with 4 KiB blocks:
/// `ext2_max_size()` in the kernel's fs/ext2/super.c, where `i_blocks`
/// (512-byte units, data and indirect blocks together) must fit 32 bits.
/// About 2 TiB; sparse files are measured by their size, not their blocks.
pub(crate) const MAX_FILE_SIZE: u64 = max_file_size();

// The block map of any file we accept fits the indirect scheme.
const _: () = assert!(MAX_FILE_SIZE / BLOCK_SIZE <= disk::MAX_FILE_BLOCKS);

const fn max_file_size() -> u64 {
    let ppb = disk::PTRS_PER_BLOCK;
    // Blocks whose 512-byte sectors fit in a u32.
    let mut upper = u32::MAX as u64 / (BLOCK_SIZE / 512);
    let mut res = upper;
    upper -= 12;
    let mut meta = 1;
    upper -= ppb;
    meta += 1 + ppb;
    upper -= ppb * ppb;
    meta += 1 + upper.div_ceil(ppb) + upper.div_ceil(ppb * ppb);
    res -= meta;
    res * BLOCK_SIZE
}

/// The superblock fields callers need, as read by [`read_superblock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Superblock {
    /// File system UUID (bytes 0x468..0x478 of the image).
    pub(crate) uuid: [u8; 16],
    /// Block size in bytes.
    pub(crate) block_size: u32,
    /// Blocks in the file system.
    pub(crate) blocks: u64,
    /// Free blocks.
    pub(crate) free_blocks: u64,
    /// Inodes in the file system.
    pub(crate) inodes: u64,
    /// Free inodes.
    pub(crate) free_inodes: u64,
    /// Volume label (empty when none), lossily decoded.
    pub(crate) label: String,
    /// Creation time, seconds since the epoch.
    pub(crate) mkfs_time: i64,
}

/// Format a UUID as libguestfs prints it for `root=UUID=`: lowercase
/// `8-4-4-4-12` hex.
pub(crate) fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Read the primary superblock of an image file.
///
/// # Errors
/// [`Ext2Error::Read`] when the file cannot be read (or is shorter than
/// 2 KiB), [`Ext2Error::NotExt2`] when the magic at 0x438 is not 0xEF53.
pub(crate) fn read_superblock(image: &Path) -> Result<Superblock, Ext2Error> {
    let read_err = |source| Ext2Error::Read { path: image.to_owned(), source };
    let file = crate::bounded::open_regular(image).map_err(read_err)?;
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, 1024).map_err(read_err)?;
    if disk::get16(&sb, 0x38) != 0xEF53 {
        return Err(Ext2Error::NotExt2 { path: image.to_owned() });
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[0x68..0x78]);
    let label = &sb[0x78..0x88];
    let label = &label[..label.iter().position(|&b| b == 0).unwrap_or(16)];
    // 64bit file systems keep high halves at 0x150..; ours never set them
    // but reading them costs nothing when the feature (incompat 0x80) is on.
    let is64 = disk::get32(&sb, 0x60) & 0x80 != 0;
    let wide = |lo: usize, hi: usize| {
        u64::from(disk::get32(&sb, lo)) | if is64 { u64::from(disk::get32(&sb, hi)) << 32 } else { 0 }
    };
    Ok(Superblock {
        uuid,
        block_size: 1024u32 << disk::get32(&sb, 0x18).min(16),
        blocks: wide(0x04, 0x150),
        free_blocks: wide(0x0C, 0x158),
        inodes: u64::from(disk::get32(&sb, 0x00)),
        free_inodes: u64::from(disk::get32(&sb, 0x10)),
        label: String::from_utf8_lossy(label).into_owned(),
        mkfs_time: i64::from(disk::get32(&sb, 0x108)),
    })
}

/// Where a regular file's bytes come from after probing.
enum Source {
    /// Nothing to copy (empty, or unreadable on the host).
    Empty,
    Host(PathBuf),
    Inline(Arc<[u8]>),
    /// Stored blocks in a scratch file; `path` is the file's path in the
    /// appliance, for messages.
    Scratch {
        data: ScratchData,
        path: PathBuf,
    },
}

/// What kind of inode, with what the writer needs to fill it.
enum Kind {
    /// A directory; `None` is the writer-made lost+found.
    Dir(Option<NodeId>),
    Regular(Source),
    FastLink,
    SlowLink(Vec<u8>),
    Device,
    /// Fifo or socket: nothing beyond the mode.
    Special,
}

/// The plan for one inode.
struct Ino {
    kind: Kind,
    meta: Metadata,
    mode: u16,
    links: u64,
    size: u64,
    /// Allocated content blocks (directory, slow symlink or file data);
    /// for a file with holes, only the blocks holding data.
    content_blocks: u64,
    /// Indirect blocks mapping them.
    indirect: u64,
    /// Indirect blocks, then (for directories and slow symlinks) content.
    meta_extents: Vec<Extent>,
    /// Regular file data.
    data_extents: Vec<Extent>,
    i_block: [u32; 15],
}

impl Ino {
    fn indirect(&self) -> u64 {
        self.indirect
    }

    /// The logical blocks holding data, for a file with holes.
    fn runs(&self) -> Option<&[(u64, u64)]> {
        match &self.kind {
            Kind::Regular(Source::Scratch { data, .. }) => Some(data.runs()),
            _ => None,
        }
    }

    /// Directory and symlink content lives with the metadata (written in
    /// coalesced runs); file data lives in the data area (copied).
    fn content_in_meta(&self) -> bool {
        !matches!(self.kind, Kind::Regular(_))
    }

    fn ftype(&self) -> u8 {
        match self.kind {
            Kind::Dir(_) => ftype::DIR,
            Kind::Regular(_) => ftype::REG,
            Kind::FastLink | Kind::SlowLink(_) => ftype::LNK,
            Kind::Device if self.mode as u32 & libc::S_IFMT == libc::S_IFBLK => ftype::BLK,
            Kind::Device => ftype::CHR,
            Kind::Special if self.mode as u32 & libc::S_IFMT == libc::S_IFSOCK => ftype::SOCK,
            Kind::Special => ftype::FIFO,
        }
    }
}

/// ext2's limit for a directory's link count (`EXT2_LINK_MAX`).
const DIR_LINK_MAX: u64 = 32000;
/// The on-disk field is 16 bits; ext4 caps files at 65000.
const FILE_LINK_MAX: u64 = 65000;
/// lost+found gets 16 KiB so e2fsck can reconnect files without allocating.
const LOST_FOUND_BLOCKS: u64 = 4;
/// Coalesced metadata writes are flushed at this size.
const RUN_LIMIT: usize = 4 << 20;

/// The planned image: inode table (indexed by inode number) and name maps.
struct InodePlan<'t> {
    tree: &'t FileTree,
    /// Indexed by inode number; `None` for unused numbers (0, 1, 3..=10).
    inos: Vec<Option<Ino>>,
    /// Inode number of each tree node (0 = not in the image).
    ino_of: Vec<u32>,
    /// Tree node of `/lost+found`, when the tree has one.
    tree_lost_found: Option<NodeId>,
    unreadable: Vec<(PathBuf, io::Error)>,
}

/// Write `tree` as an ext2 file system into `image`, which is truncated and
/// set to `opts.size` bytes (sparse).
///
/// Returns statistics, including host files that could not be read (they
/// are empty in the image). Every write is told to `heard`: the bytes of
/// those that pass through this process's memory (metadata, and file data
/// where `copy_file_range` cannot be used), the place of those the kernel
/// copied; so a digest reads back only the latter. `probed` holds the host
/// files already probed ([`Probed`]); the rest are probed here.
///
/// # Errors
/// [`Ext2Error::ZeroSize`], [`Ext2Error::TooLarge`],
/// [`Ext2Error::LabelTooLong`], [`Ext2Error::TooSmall`] and the per-entry
/// errors (name, symlink, size, links) are reported before the image is
/// touched. [`Ext2Error::Write`] and [`Ext2Error::Copy`] come from I/O while
/// writing; the image then has no valid superblock.
pub(crate) fn write_image(
    tree: &FileTree,
    image: &File,
    opts: &Ext2Options,
    heard: &dyn WrittenBytes,
    probed: Probed,
) -> Result<Ext2Stats, Ext2Error> {
    if opts.size == 0 {
        return Err(Ext2Error::ZeroSize);
    }
    if opts.size / BLOCK_SIZE > u64::from(u32::MAX) {
        return Err(Ext2Error::TooLarge { size: opts.size });
    }
    let label = opts.label.as_deref().unwrap_or("").as_bytes();
    if label.len() > 16 {
        return Err(Ext2Error::LabelTooLong { label: opts.label.clone().unwrap_or_default() });
    }

    let mut plan = InodePlan::new(tree, opts.timestamp, probed)?;
    let max_ino = (plan.inos.len() - 1) as u64;
    let mut meta_total = 0u64;
    let mut data_total = 0u64;
    for ino in plan.inos.iter().flatten() {
        meta_total += ino.indirect();
        if ino.content_in_meta() {
            meta_total += ino.content_blocks;
        } else {
            data_total += ino.content_blocks;
        }
    }
    let geo = Geometry::plan(opts.size, max_ino, meta_total + data_total).ok_or_else(|| {
        Ext2Error::TooSmall { needed: needed_size(max_ino, meta_total + data_total), size: opts.size }
    })?;

    // Allocate: all metadata-like blocks first (so they coalesce into a few
    // runs), then file data, each file contiguous except across groups.
    let mut alloc = Allocator::new(&geo);
    let mut ok = true;
    for ino in plan.inos.iter_mut().flatten() {
        let n = ino.indirect() + if ino.content_in_meta() { ino.content_blocks } else { 0 };
        ok &= alloc.alloc(n, &mut ino.meta_extents);
    }
    for ino in plan.inos.iter_mut().flatten() {
        if !ino.content_in_meta() {
            ok &= alloc.alloc(ino.content_blocks, &mut ino.data_extents);
        }
    }
    if !ok {
        // Geometry::plan checked the total; reaching this is a bug, but say
        // something useful rather than panic.
        return Err(Ext2Error::TooSmall {
            needed: needed_size(max_ino, meta_total + data_total),
            size: opts.size,
        });
    }

    let write_err = |what: &str| {
        let what = what.to_owned();
        move |source| Ext2Error::Write { what, source }
    };
    // Start from an all-zero sparse file: unused inodes and blocks must read
    // as zeros, and whatever the file held before must not leak through.
    image.set_len(0).map_err(write_err("truncating"))?;
    image.set_len(opts.size).map_err(write_err("setting the size"))?;

    let sink = Sink { file: image, heard };

    // Counts for bitmaps, descriptors and the superblock.
    let ipg = u64::from(geo.inodes_per_group);
    let mut descs = Vec::with_capacity((geo.gdt_blocks * BLOCK_SIZE) as usize);
    let mut free_blocks = 0u64;
    let mut used_dirs = vec![0u32; geo.groups as usize];
    for (n, ino) in plan.inos.iter().enumerate() {
        if let Some(Ino { kind: Kind::Dir(_), .. }) = ino {
            used_dirs[((n as u64 - 1) / ipg) as usize] += 1;
        }
    }
    for g in 0..geo.groups {
        let used = geo.overhead(g) + alloc.used[g as usize];
        let free = geo.group_end(g) - geo.group_start(g) - used;
        free_blocks += free;
        let first = geo.group_start(g) + geo.super_blocks(g);
        disk::group_desc(
            &mut descs,
            &disk::GroupDesc {
                block_bitmap: first as u32,
                inode_bitmap: first as u32 + 1,
                inode_table: first as u32 + 2,
                free_blocks: free as u32,
                free_inodes: (ipg - used_inodes(g, ipg, max_ino)) as u32,
                used_dirs: used_dirs[g as usize],
            },
        );
    }
    descs.resize((geo.gdt_blocks * BLOCK_SIZE) as usize, 0);
    let free_inodes = u64::from(geo.inodes_count()) - max_ino;
    let info = disk::SuperInfo {
        free_blocks,
        free_inodes,
        uuid: opts.uuid,
        hash_seed: hash_seed(&opts.uuid),
        label,
        time: opts.timestamp.clamp(0, u32::MAX as i64) as u32,
    };

    // The data copy needs only each file's extents: it runs on its own
    // threads while this one writes the directory, symlink and indirect
    // blocks, then one write per group: [superblock + GDT copy] + bitmaps +
    // used part of the inode table. Group 0's superblock goes last (see
    // module docs).
    let write_metadata = || -> Result<(), Ext2Error> {
        let i_blocks = plan.write_meta_blocks(&sink)?;
        let mut buf = Vec::new();
        for g in 0..geo.groups {
            buf.clear();
            let mut at = geo.group_start(g) * BLOCK_SIZE;
            if disk_has_super(&geo, g) {
                if g == 0 {
                    at += BLOCK_SIZE;
                } else {
                    buf.extend_from_slice(&disk::superblock(&geo, &info, g as u32));
                    buf.resize(BLOCK_SIZE as usize, 0);
                }
                buf.extend_from_slice(&descs);
            }
            let used_i = used_inodes(g, ipg, max_ino);
            disk::bitmap(
                &mut buf,
                geo.overhead(g) + alloc.used[g as usize],
                geo.group_end(g) - geo.group_start(g),
            );
            disk::bitmap(&mut buf, used_i, ipg);
            let table_start = buf.len();
            let table_len = (used_i * INODE_SIZE).next_multiple_of(BLOCK_SIZE) as usize;
            buf.resize(table_start + table_len, 0);
            for k in 0..used_i {
                let n = (g * ipg + k + 1) as usize;
                if let Some(ino) = &plan.inos[n] {
                    let off = table_start + (k * INODE_SIZE) as usize;
                    encode_ino(&mut buf[off..off + INODE_SIZE as usize], ino, &i_blocks[n]);
                }
            }
            sink.write_at(&buf, at, false).map_err(write_err(&format!("metadata of group {g}")))?;
        }
        Ok(())
    };
    // Without a thread to spare, the data is copied after the metadata.
    let write_data = || plan.write_data(&sink);
    let (metadata, data) = std::thread::scope(|s| {
        let data = crate::cores::try_spawn(s, write_data);
        let metadata = write_metadata();
        let data = crate::cores::join_or_run(data, write_data)
            .unwrap_or_else(|_| Err(Ext2Error::Write { what: "file data".into(), source: copy::panicked() }));
        (metadata, data)
    });
    metadata?;
    let (data_bytes, copy_errors, gone) = data?;
    if let Some((path, source)) = copy_errors.into_iter().next() {
        return Err(Ext2Error::Copy { path, source });
    }

    // Block 0 whole (the boot sector's zeros, the superblock, zeros), so
    // that it is written, and heard, in one piece.
    let mut block0 = vec![0u8; 1024];
    block0.extend_from_slice(&disk::superblock(&geo, &info, 0));
    block0.resize(BLOCK_SIZE as usize, 0);
    sink.write_at(&block0, 0, false).map_err(write_err("the superblock"))?;

    let mut unreadable = plan.unreadable;
    unreadable.extend(gone);
    unreadable.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Ext2Stats {
        inodes: max_ino,
        blocks_used: geo.blocks - free_blocks,
        block_size: BLOCK_SIZE as u32,
        data_bytes,
        unreadable,
    })
}

fn disk_has_super(geo: &Geometry, g: u64) -> bool {
    geo.super_blocks(g) > 0
}

/// Inodes in use in group `g` (inode numbers 1..=max_ino are all in use).
fn used_inodes(g: u64, ipg: u64, max_ino: u64) -> u64 {
    max_ino.saturating_sub(g * ipg).min(ipg)
}

/// The directory hash seed, derived from the UUID so the image stays
/// reproducible (mke2fs uses a random one).
fn hash_seed(uuid: &[u8; 16]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::new().chain_update(b"guestfs-appliance ext2 hash seed").chain_update(uuid).finalize();
    let mut seed = [0u8; 16];
    seed.copy_from_slice(&digest[..16]);
    seed
}

/// Smallest size (whole MiB) that fits, found by doubling and bisection.
fn needed_size(inodes: u64, blocks: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let fits = |mib: u64| Geometry::plan(mib * MIB, inodes, blocks).is_some();
    let limit = u64::from(u32::MAX) * BLOCK_SIZE / MIB;
    let mut hi = 1u64;
    while !fits(hi) {
        if hi >= limit {
            return limit * MIB;
        }
        hi = (hi * 2).min(limit);
    }
    let mut lo = hi / 2; // does not fit (or 0)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi * MIB
}

/// Encode `ino` with its block map `i_block` (written apart from the plan,
/// see [`InodePlan::write_meta_blocks`]).
fn encode_ino(out: &mut [u8], ino: &Ino, i_block: &[u32; 15]) {
    disk::inode(
        out,
        &disk::InodeFields {
            mode: ino.mode,
            uid: ino.meta.uid,
            gid: ino.meta.gid,
            size: ino.size,
            atime: ino.meta.atime,
            ctime: ino.meta.ctime,
            mtime: ino.meta.mtime,
            links: ino.links as u16,
            blocks: ino.content_blocks + ino.indirect(),
            i_block: *i_block,
        },
    );
}

/// Collects blocks at increasing addresses into few large writes.
struct RunWriter<'a> {
    sink: &'a Sink<'a>,
    start: u64,
    buf: Vec<u8>,
}

impl RunWriter<'_> {
    fn push(&mut self, block: u64, data: &[u8]) -> Result<(), Ext2Error> {
        let next = self.start + (self.buf.len() as u64) / BLOCK_SIZE;
        if !self.buf.is_empty() && (block != next || self.buf.len() >= RUN_LIMIT) {
            self.flush()?;
        }
        if self.buf.is_empty() {
            self.start = block;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Ext2Error> {
        if !self.buf.is_empty() {
            self.sink.write_at(&self.buf, self.start * BLOCK_SIZE, false).map_err(|source| {
                Ext2Error::Write { what: "directory and indirect blocks".into(), source }
            })?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// [`hostfile::probe`]'s answer for every host file in `tree`, indexed by
/// node (`None` for other nodes): taken from `probed` where it is there,
/// else probed on all cores.
fn probe_host_files(tree: &FileTree, probed: &mut Probed) -> Vec<Option<io::Result<HostData>>> {
    let mut by_node: Vec<Option<io::Result<HostData>>> = (0..tree.node_count()).map(|_| None).collect();
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut missing_ids: Vec<NodeId> = Vec::new();
    for id in (0..tree.node_count()).filter(|&id| tree.is_reachable(id)) {
        if let Content::Regular(Data::Host { path, .. }) = &tree.node(id).content {
            match probed.take(path) {
                Some(answer) => by_node[id] = Some(answer),
                None => {
                    missing.push(path.clone());
                    missing_ids.push(id);
                }
            }
        }
    }
    if !missing.is_empty() {
        // A panicked share's files stay `None`: plan_node probes them again.
        let mut fresh = Probed::probe_all(&missing);
        for (id, path) in missing_ids.into_iter().zip(&missing) {
            by_node[id] = fresh.take(path);
        }
    }
    by_node
}

impl<'t> InodePlan<'t> {
    /// Number the inodes and size every one of them. Host files are opened
    /// (and closed again, on all cores) before the layout, so unreadable
    /// ones are known: those `probed` does not answer for are opened here.
    fn new(tree: &'t FileTree, timestamp: i64, probed: Probed) -> Result<Self, Ext2Error> {
        // The host files not yet probed are probed on all cores while this
        // thread walks the tree (the walk is serial, and the probe only
        // needs the nodes).
        let probed = std::sync::Mutex::new(probed);
        let probe = || probe_host_files(tree, &mut probed.lock().unwrap_or_else(|e| e.into_inner()));
        let (mut probes, walk) = crate::cores::alongside(probe, || tree.walk());
        let mut ino_of = vec![0u32; tree.node_count()];
        let mut entries = vec![0u64; tree.node_count()];
        ino_of[FileTree::ROOT] = ROOT_INO;
        let tree_lost_found =
            tree.children(FileTree::ROOT).find(|(n, _)| n.as_bytes() == b"lost+found").map(|(_, id)| id);
        if let Some(id) = tree_lost_found {
            if !tree.node(id).content.is_dir() {
                return Err(Ext2Error::LostFoundNotDir);
            }
            ino_of[id] = FIRST_INO;
        }
        let mut next = FIRST_INO + 1;
        let mut first_path: Vec<(u32, &Path, NodeId)> = Vec::new();
        for (path, id) in &walk {
            entries[*id] += 1;
            if ino_of[*id] == 0 {
                ino_of[*id] = next;
                next += 1;
            }
            if entries[*id] == 1 {
                first_path.push((ino_of[*id], path, *id));
            }
            if let Some(name) = path.file_name() {
                if name.len() > 255 {
                    return Err(Ext2Error::NameTooLong { path: path.clone() });
                }
            }
        }
        let mut plan = InodePlan {
            tree,
            inos: (0..next).map(|_| None).collect(),
            ino_of,
            tree_lost_found,
            unreadable: Vec::new(),
        };
        if tree_lost_found.is_none() {
            let meta = Metadata::new(0o700, 0, 0, timestamp);
            plan.inos[FIRST_INO as usize] = Some(Ino {
                kind: Kind::Dir(None),
                meta,
                mode: (libc::S_IFDIR | 0o700) as u16,
                links: 2,
                size: LOST_FOUND_BLOCKS * BLOCK_SIZE,
                content_blocks: LOST_FOUND_BLOCKS,
                indirect: disk::indirect_blocks(LOST_FOUND_BLOCKS),
                meta_extents: Vec::new(),
                data_extents: Vec::new(),
                i_block: [0; 15],
            });
        }
        for (n, path, id) in first_path {
            let probe = probes.get_mut(id).and_then(Option::take);
            let ino = plan.plan_node(id, path, entries[id], probe)?;
            plan.inos[n as usize] = Some(ino);
        }
        Ok(plan)
    }

    /// Plan inode `id` (first reached as `path`, with `entries` names);
    /// `probe` is [`hostfile::probe`]'s answer for a host file.
    fn plan_node(
        &mut self,
        id: NodeId,
        path: &Path,
        entries: u64,
        probe: Option<io::Result<HostData>>,
    ) -> Result<Ino, Ext2Error> {
        let node = self.tree.node(id);
        let mut size = 0u64;
        let mut content_blocks = 0u64;
        let mut i_block = [0u32; 15];
        let mut links = entries;
        let kind = match &node.content {
            Content::Directory => {
                let subdirs =
                    self.tree.children(id).filter(|(_, c)| self.tree.node(*c).content.is_dir()).count()
                        as u64
                        + u64::from(id == FileTree::ROOT && self.tree_lost_found.is_none());
                links = 2 + subdirs;
                if links > DIR_LINK_MAX {
                    return Err(Ext2Error::TooManyLinks { path: path.to_owned(), links, max: DIR_LINK_MAX });
                }
                let min = if Some(id) == self.tree_lost_found { LOST_FOUND_BLOCKS } else { 1 };
                let mut it =
                    self.dir_entries(id).into_iter().map(|(name, _)| DirEntry { name, ino: 0, ftype: 0 });
                content_blocks = disk::pack_dir(&mut it, min, None);
                size = content_blocks * BLOCK_SIZE;
                Kind::Dir(Some(id))
            }
            Content::Regular(data) => {
                let source = match data {
                    Data::Inline(bytes) => {
                        size = bytes.len() as u64;
                        if bytes.is_empty() {
                            Source::Empty
                        } else {
                            Source::Inline(bytes.clone())
                        }
                    }
                    Data::Host { path: host, len } => match probe
                        .unwrap_or_else(|| hostfile::probe(host, &mut hostfile::PseudoByDevice::default()))
                    {
                        Ok(HostData::Regular) if *len > 0 => {
                            size = *len;
                            Source::Host(host.clone())
                        }
                        Ok(HostData::Regular) => Source::Empty,
                        // sysfs/procfs: what `read` returned, not the
                        // `stat` size (4096 or 0).
                        Ok(HostData::Read(bytes)) if !bytes.is_empty() => {
                            size = bytes.len() as u64;
                            Source::Inline(Arc::from(bytes))
                        }
                        Ok(HostData::Read(_)) => Source::Empty,
                        Err(e) => {
                            self.unreadable.push((host.clone(), e));
                            Source::Empty
                        }
                    },
                    Data::Scratch(data) => {
                        size = data.len();
                        Source::Scratch { data: data.clone(), path: path.to_owned() }
                    }
                };
                if size > MAX_FILE_SIZE {
                    return Err(Ext2Error::FileTooLarge { path: path.to_owned(), len: size });
                }
                content_blocks = match &source {
                    Source::Scratch { data, .. } => data.stored_blocks(),
                    _ => size.div_ceil(BLOCK_SIZE),
                };
                Kind::Regular(source)
            }
            Content::Symlink(target) => {
                let t = target.as_bytes();
                size = t.len() as u64;
                // Fast symlinks need a NUL within i_block's 60 bytes (e2fsck
                // checks strnlen < 60); slow ones one within the block.
                if t.is_empty() || t.len() >= BLOCK_SIZE as usize {
                    return Err(Ext2Error::BadSymlink { path: path.to_owned(), len: t.len() });
                }
                if t.len() < 60 {
                    let mut raw = [0u8; 60];
                    raw[..t.len()].copy_from_slice(t);
                    for (i, chunk) in raw.chunks(4).enumerate() {
                        i_block[i] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    }
                    Kind::FastLink
                } else {
                    content_blocks = 1;
                    Kind::SlowLink(t.to_vec())
                }
            }
            Content::CharDevice(dev) | Content::BlockDevice(dev) => {
                i_block = disk::device_block(*dev);
                Kind::Device
            }
            Content::Fifo | Content::Socket => Kind::Special,
        };
        if !node.content.is_dir() && links > FILE_LINK_MAX {
            return Err(Ext2Error::TooManyLinks { path: path.to_owned(), links, max: FILE_LINK_MAX });
        }
        let mut ino = Ino {
            kind,
            meta: node.meta,
            mode: node.mode() as u16,
            links,
            size,
            content_blocks,
            indirect: 0,
            meta_extents: Vec::new(),
            data_extents: Vec::new(),
            i_block,
        };
        ino.indirect = match ino.runs() {
            Some(runs) => disk::indirect_blocks_for(runs),
            None => disk::indirect_blocks(content_blocks),
        };
        Ok(ino)
    }

    /// Entries of a tree directory: `.`, `..`, the writer's lost+found for
    /// the root, then the children in sorted order.
    fn dir_entries(&self, id: NodeId) -> Vec<(&[u8], NodeId)> {
        // NodeId usize::MAX stands for the writer-made lost+found.
        let mut out: Vec<(&[u8], NodeId)> = vec![(b".", id), (b"..", self.tree.parent(id))];
        if id == FileTree::ROOT && self.tree_lost_found.is_none() {
            out.push((b"lost+found", usize::MAX));
        }
        out.extend(self.tree.children(id).map(|(n, c)| (n.as_bytes(), c)));
        out
    }

    fn ino_and_type(&self, id: NodeId) -> (u32, u8) {
        if id == usize::MAX {
            return (FIRST_INO, ftype::DIR);
        }
        let n = self.ino_of[id];
        let ft = self.inos[n as usize].as_ref().map_or(0, Ino::ftype);
        (n, ft)
    }

    /// Build every inode's block map and write directory, symlink and
    /// indirect blocks, coalesced into runs. Returns each inode's `i_block`
    /// by number: the plan's, or the block map just built (the plan is only
    /// read, so the data copy can read it meanwhile).
    fn write_meta_blocks(&self, sink: &Sink) -> Result<Vec<[u32; 15]>, Ext2Error> {
        let mut run = RunWriter { sink, start: 0, buf: Vec::with_capacity(RUN_LIMIT) };
        let mut blocks = Vec::new();
        let mut i_blocks: Vec<[u32; 15]> =
            self.inos.iter().map(|ino| ino.as_ref().map_or([0; 15], |ino| ino.i_block)).collect();
        for (slot, ino) in i_blocks.iter_mut().zip(&self.inos) {
            let Some(ino) = ino else { continue };
            if ino.content_blocks == 0 {
                continue;
            }
            blocks.clear();
            let k = ino.indirect();
            let meta = &ino.meta_extents;
            let dense = [(0, ino.content_blocks)];
            let runs = ino.runs().unwrap_or(&dense);
            let i_block = if ino.content_in_meta() {
                disk::block_map(
                    runs,
                    &|i| nth_block(meta, k + i) as u32,
                    &|j| nth_block(meta, j) as u32,
                    &mut blocks,
                )
            } else {
                let data = &ino.data_extents;
                disk::block_map(
                    runs,
                    &|i| nth_block(data, i) as u32,
                    &|j| nth_block(meta, j) as u32,
                    &mut blocks,
                )
            };
            match &ino.kind {
                Kind::Dir(node) => {
                    let min = ino.content_blocks;
                    match node {
                        Some(id) => {
                            let entries = self.dir_entries(*id);
                            let mut it = entries.into_iter().map(|(name, c)| {
                                let (ino, ftype) = self.ino_and_type(c);
                                DirEntry { name, ino, ftype }
                            });
                            disk::pack_dir(&mut it, min, Some(&mut blocks));
                        }
                        None => {
                            let mut it = [
                                DirEntry { name: b".", ino: FIRST_INO, ftype: ftype::DIR },
                                DirEntry { name: b"..", ino: ROOT_INO, ftype: ftype::DIR },
                            ]
                            .into_iter();
                            disk::pack_dir(&mut it, min, Some(&mut blocks));
                        }
                    }
                }
                Kind::SlowLink(target) => {
                    let at = blocks.len();
                    blocks.resize(at + BLOCK_SIZE as usize, 0);
                    blocks[at..at + target.len()].copy_from_slice(target);
                }
                _ => {}
            }
            for (b, data) in blocks.chunks(BLOCK_SIZE as usize).enumerate() {
                run.push(nth_block(meta, b as u64), data)?;
            }
            *slot = i_block;
        }
        run.flush()?;
        Ok(i_blocks)
    }

    /// Write inline file data and copy host files. Returns the total file
    /// bytes, copy failures (path, error) in inode order, and the files
    /// that could no longer be opened (they are unreadable: empty).
    fn write_data(&self, sink: &Sink) -> Result<(u64, Vec<copy::Failure>, Vec<copy::Failure>), Ext2Error> {
        let mut data_bytes = 0u64;
        let mut jobs = Vec::new();
        for ino in self.inos.iter().flatten() {
            let Kind::Regular(source) = &ino.kind else {
                continue;
            };
            data_bytes += ino.size;
            match source {
                Source::Empty => {}
                Source::Inline(bytes) => {
                    let mut off = 0usize;
                    for e in &ino.data_extents {
                        let n = ((e.len * BLOCK_SIZE) as usize).min(bytes.len() - off);
                        sink.write_at(&bytes[off..off + n], e.start * BLOCK_SIZE, off + n == bytes.len())
                            .map_err(|source| Ext2Error::Write { what: "inline file data".into(), source })?;
                        off += n;
                    }
                }
                Source::Host(path) => jobs.push(copy::Job {
                    name: path,
                    source: copy::From::Host,
                    len: ino.size,
                    extents: &ino.data_extents,
                }),
                Source::Scratch { data, path } => {
                    let (file, offset) = data.source();
                    jobs.push(copy::Job {
                        name: path,
                        source: copy::From::Scratch { file, offset },
                        len: ino.content_blocks * BLOCK_SIZE,
                        extents: &ino.data_extents,
                    })
                }
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut failures = Vec::new();
        let mut gone = Vec::new();
        let copied = copy::copy_all(sink, &jobs, threads)
            .map_err(|source| Ext2Error::Write { what: "file data".into(), source })?;
        for (i, err) in copied {
            let path = jobs[i].name.to_owned();
            match err {
                copy::JobError::Open(e) => gone.push((path, e)),
                copy::JobError::Copy(e) => failures.push((path, e)),
            }
        }
        Ok((data_bytes, failures, gone))
    }
}
