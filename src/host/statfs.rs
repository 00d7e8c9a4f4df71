//! statfs(2): which kind of file system a path is on (the `f_type`
//! magic, named) and how full it is.
//!
//! Facts only; which kinds are fast or slow is `health/location.rs`'s
//! judgement. (`image/hostfile.rs` keeps its own list of pseudo file
//! systems whose files are never copied into an appliance.)

use std::path::Path;

/// tmpfs's `f_type`.
pub(crate) const TMPFS_MAGIC: u64 = 0x0102_1994;
/// ramfs's `f_type`.
pub(crate) const RAMFS_MAGIC: u64 = 0x8584_58f6;
/// FUSE's `f_type` (also virtiofs and glusterfs).
pub(crate) const FUSE_MAGIC: u64 = 0x6573_5546;
/// overlayfs's `f_type`.
pub(crate) const OVERLAY_MAGIC: u64 = 0x794c_7630;

/// Name of a statfs `f_type` magic.
pub(crate) fn fs_type_name(magic: u64) -> &'static str {
    match magic {
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0xEF53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x2fc1_2fc1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0xCA45_1A4E => "bcachefs",
        0x3153_464a => "jfs",
        0x5265_4973 => "reiserfs",
        0x4d44 => "vfat",
        0x2011_BAB0 => "exfat",
        0x5346_544e => "ntfs",
        0x7371_7368 => "squashfs",
        0x6969 => "nfs",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x517B => "smb",
        0x0102_1997 => "9p",
        0x00c3_6400 => "ceph",
        0x5346_414F => "afs",
        0x4750_4653 => "gpfs",
        0x0BD0_0BD0 => "lustre",
        0x6573_5546 => "fuse",
        0x794c_7630 => "overlay",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x6367_7270 => "cgroup2",
        _ => "unknown",
    }
}

/// What statfs says about a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsStat {
    /// `f_type`, as an unsigned 32-bit value.
    pub(crate) magic: u64,
    /// Size of the file system.
    pub(crate) total_bytes: u64,
    /// Bytes available to unprivileged users.
    pub(crate) free_bytes: u64,
    /// Inodes in total and free; `None` when the file system does not
    /// count them (btrfs says 0).
    pub(crate) inodes: Option<(u64, u64)>,
}

/// statfs `path`.
///
/// Errors: the errno of statfs(2) (missing path, permission).
pub(crate) fn stat(path: &Path) -> nix::Result<FsStat> {
    let st = nix::sys::statfs::statfs(path)?;
    let bsize = st.block_size() as u64;
    Ok(FsStat {
        magic: st.filesystem_type().0 as u64 & 0xffff_ffff,
        total_bytes: st.blocks() * bsize,
        free_bytes: st.blocks_available() * bsize,
        inodes: (st.files() > 0).then(|| (st.files(), st.files_free())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statfs_magics_are_named() {
        assert_eq!(fs_type_name(0x0102_1994), "tmpfs");
        assert_eq!(fs_type_name(0xEF53), "ext2/3/4");
        assert_eq!(fs_type_name(0x5846_5342), "xfs");
        assert_eq!(fs_type_name(0x9123_683E), "btrfs");
        assert_eq!(fs_type_name(0x6969), "nfs");
        assert_eq!(fs_type_name(0xFF53_4D42), "cifs");
        assert_eq!(fs_type_name(0x6573_5546), "fuse");
        assert_eq!(fs_type_name(0x794c_7630), "overlay");
        assert_eq!(fs_type_name(0x0102_1997), "9p");
        assert_eq!(fs_type_name(0x2fc1_2fc1), "zfs");
        assert_eq!(fs_type_name(0x1234), "unknown");
    }

    #[test]
    fn real_tmpfs_magic_matches_the_table() {
        let st = nix::sys::statfs::statfs("/dev/shm").unwrap();
        if fs_type_name(st.filesystem_type().0 as u64) != "tmpfs" {
            eprintln!("skipping: /dev/shm is not a tmpfs here");
        }
    }
}
