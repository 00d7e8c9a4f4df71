//! Base archives: parse a tar stream fully into [`BaseEntry`] values, and
//! insert parsed entries into a [`FileTree`] the way GNU tar, run as root,
//! extracts them into supermin's scratch `base.d` (reference §1.3, §4.3).
//!
//! Parsing happens once, in `read_inputs`, so a corrupt archive fails before
//! any work is done. Owners are numeric (like GNU tar as root when the
//! archive's user names are unknown: we never consult NSS, the binaries are
//! static). What the tree does with the entries later (merging with package
//! files, writing ext2) is left to others.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::image::files::{Content, Data, FileTree, Metadata, Node};

use super::InputError;

/// What a base entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file with its bytes.
    File(Arc<[u8]>),
    /// A directory.
    Dir,
    /// A symbolic link with its exact target text.
    Symlink(OsString),
    /// A hard link to an earlier member (absolute appliance path).
    HardLink(PathBuf),
    /// A character device (`dev_t`).
    Char(u64),
    /// A block device (`dev_t`).
    Block(u64),
    /// A named pipe.
    Fifo,
}

/// One member of a base archive (or of the embedded minimal tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseEntry {
    /// Absolute appliance path, normalised (no `.`/`..`, not `/` itself).
    pub path: PathBuf,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time; `None` means "the build's default time".
    pub mtime: Option<i64>,
    /// Type and payload.
    pub kind: EntryKind,
}

/// The parsed members of one base archive, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseArchive {
    /// The input file, for error messages.
    pub source: PathBuf,
    /// Members in archive order.
    pub entries: Vec<BaseEntry>,
}

/// Parse a whole (decompressed) tar stream.
///
/// Errors: [`InputError::CorruptTar`] for bad checksums, truncated headers
/// or member data; [`InputError::BadMember`] for a member path or hard-link
/// target containing `..`.
pub(crate) fn parse_tar(source: &Path, bytes: &[u8]) -> Result<BaseArchive, InputError> {
    let corrupt = |detail: String| InputError::CorruptTar { path: source.to_owned(), detail };
    let mut archive = tar::Archive::new(bytes);
    let mut entries = Vec::new();
    let iter = archive.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in iter {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let raw_path = entry.path_bytes().into_owned();
        let member = String::from_utf8_lossy(&raw_path).into_owned();
        let header = entry.header();
        let entry_type = header.entry_type();
        let field =
            |what: &str, e: std::io::Error| corrupt(format!("member {member}: {what}: {e}"));
        let perm = header.mode().map_err(|e| field("mode", e))? & 0o7777;
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .map_err(|_| corrupt(format!("member {member}: {what} {v} out of range")))
        };
        let uid = id(header.uid().map_err(|e| field("uid", e))?, "uid")?;
        let gid = id(header.gid().map_err(|e| field("gid", e))?, "gid")?;
        let mtime = header.mtime().map_err(|e| field("mtime", e))?;
        let dev = || -> Result<u64, InputError> {
            let major = header.device_major().map_err(|e| field("device major", e))?.unwrap_or(0);
            let minor = header.device_minor().map_err(|e| field("device minor", e))?.unwrap_or(0);
            Ok(makedev(major, minor))
        };
        let link_target = || -> Result<OsString, InputError> {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| corrupt(format!("member {member}: link without a target")))?;
            Ok(std::ffi::OsStr::from_bytes(&link).to_os_string())
        };
        use tar::EntryType as T;
        let kind = match entry_type {
            T::XGlobalHeader => continue,
            // GNU volume label: not a file.
            t if t.as_byte() == b'V' => continue,
            // GNU dumpdir ('D') is a directory with a listing we ignore.
            t if t == T::Directory || t.as_byte() == b'D' => EntryKind::Dir,
            T::Symlink => EntryKind::Symlink(link_target()?),
            T::Link => {
                let target = link_target()?;
                let target = member_path(source, &target.to_string_lossy(), target.as_bytes())?
                    .ok_or_else(|| bad_member(source, &member, "hard link to the archive root"))?;
                EntryKind::HardLink(target)
            }
            T::Char => EntryKind::Char(dev()?),
            T::Block => EntryKind::Block(dev()?),
            T::Fifo => EntryKind::Fifo,
            // Regular, contiguous, GNU sparse, and unknown types (which GNU
            // tar extracts as regular files).
            _ => EntryKind::File(Arc::from(Vec::new())),
        };
        let kind = match kind {
            EntryKind::File(_) => {
                let expected = entry.size();
                let mut data = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
                entry.read_to_end(&mut data).map_err(|e| field("data", e))?;
                // The tar crate stops quietly at end of input; a short member
                // means the archive was truncated.
                if (data.len() as u64) < expected {
                    return Err(corrupt(format!(
                        "member {member}: {} of {expected} bytes present",
                        data.len()
                    )));
                }
                EntryKind::File(Arc::from(data))
            }
            other => other,
        };
        let Some(path) = member_path(source, &member, &raw_path)? else {
            // `./` itself: GNU tar would restamp the extraction directory,
            // which supermin never copies into the image (§4.2).
            continue;
        };
        let mtime = i64::try_from(mtime).unwrap_or(i64::MAX);
        entries.push(BaseEntry { path, perm, uid, gid, mtime: Some(mtime), kind });
    }
    Ok(BaseArchive { source: source.to_owned(), entries })
}

fn bad_member(source: &Path, member: &str, reason: &'static str) -> InputError {
    InputError::BadMember { path: source.to_owned(), member: member.to_owned(), reason }
}

/// Turn a member name (`./etc/x`, `etc/x`, `/etc/x`) into an absolute
/// appliance path. A leading `/` is dropped as GNU tar does ("Removing
/// leading `/'"); since we extract into an in-memory tree rooted at the
/// appliance's `/`, that cannot escape anything. `..` is refused outright
/// (GNU tar skips such members; silently losing a file is worse).
/// Returns `None` for the root itself.
fn member_path(source: &Path, member: &str, raw: &[u8]) -> Result<Option<PathBuf>, InputError> {
    let mut out = PathBuf::from("/");
    let mut any = false;
    for comp in Path::new(std::ffi::OsStr::from_bytes(raw)).components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(c) => {
                out.push(c);
                any = true;
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(bad_member(source, member, "its path contains '..'"))
            }
        }
    }
    Ok(any.then_some(out))
}

/// glibc's `makedev` encoding, computed here so no unsafe FFI is needed.
fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

/// Insert the entries of `archive` into `tree`, in order.
///
/// Missing parents are created 0755 root:root stamped `default_time` (what
/// GNU tar does as root with umask 022). An explicit directory member that
/// finds an existing directory updates its metadata, as GNU tar's default
/// `--overwrite-dir` does: this is why libguestfs's `/etc` ends up owned by
/// the Debian build user (reference §4.4) although `base.tar.gz` created it
/// first. Non-directories replace what was there; hard links share a node.
/// ctime is `default_time` (on disk it is the extraction time).
///
/// Errors: [`InputError::Tree`] naming the archive and member when the tree
/// refuses an insertion (e.g. a hard link to a missing member).
pub(crate) fn unpack(
    archive: &BaseArchive,
    tree: &mut FileTree,
    default_time: i64,
) -> Result<(), InputError> {
    let parent_meta = Metadata::new(0o755, 0, 0, default_time);
    for e in &archive.entries {
        let wrap = |source| InputError::Tree {
            path: archive.source.clone(),
            member: e.path.clone(),
            source,
        };
        let parent = e.path.parent().unwrap_or(Path::new("/"));
        tree.create_dir_all(parent, parent_meta).map_err(wrap)?;
        let mtime = e.mtime.unwrap_or(default_time);
        let meta = Metadata {
            perm: e.perm,
            uid: e.uid,
            gid: e.gid,
            atime: mtime,
            mtime,
            ctime: default_time,
        };
        let content = match &e.kind {
            EntryKind::HardLink(target) => {
                tree.hard_link(&e.path, target).map_err(wrap)?;
                continue;
            }
            EntryKind::Dir => {
                if let Some(id) = tree.lookup(&e.path) {
                    if tree.node(id).content.is_dir() {
                        tree.node_mut(id).meta = meta;
                        continue;
                    }
                }
                Content::Directory
            }
            EntryKind::File(bytes) => Content::Regular(Data::Inline(bytes.clone())),
            EntryKind::Symlink(t) => Content::Symlink(t.clone()),
            EntryKind::Char(dev) => Content::CharDevice(*dev),
            EntryKind::Block(dev) => Content::BlockDevice(*dev),
            EntryKind::Fifo => Content::Fifo,
        };
        tree.insert(&e.path, Node { meta, content }).map_err(wrap)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a tar in memory: (name, type, mode, uid, data-or-linkname).
    pub(crate) fn make_tar(members: &[(&str, tar::EntryType, u32, u32, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for &(name, ty, mode, uid, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(ty);
            h.set_mode(mode);
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(uid));
            h.set_mtime(1_000_000);
            if matches!(ty, tar::EntryType::Char | tar::EntryType::Block) {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            }
            if matches!(ty, tar::EntryType::Symlink | tar::EntryType::Link) {
                h.set_size(0);
                b.append_link(&mut h, name, std::str::from_utf8(data).unwrap()).unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn tree() -> FileTree {
        FileTree::new(Metadata::new(0o755, 0, 0, 5))
    }

    #[test]
    fn parses_members_and_normalises_paths() {
        use tar::EntryType as T;
        let bytes = make_tar(&[
            ("./etc/a.conf", T::Regular, 0o644, 0, b"hello"),
            ("usr/sbin/", T::Directory, 0o755, 2952, b""),
            ("usr/sbin/d", T::Regular, 0o4755, 2952, b"bin"),
            ("usr/sbin/h", T::Link, 0o755, 0, b"./usr/sbin/d"),
            ("bin", T::Symlink, 0o777, 0, b"usr/bin"),
        ]);
        let a = parse_tar(Path::new("A"), &bytes).unwrap();
        let paths: Vec<_> = a.entries.iter().map(|e| e.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["/etc/a.conf", "/usr/sbin", "/usr/sbin/d", "/usr/sbin/h", "/bin"]);
        assert_eq!(a.entries[0].kind, EntryKind::File(Arc::from(&b"hello"[..])));
        assert_eq!(a.entries[2].perm, 0o4755);
        assert_eq!(a.entries[2].uid, 2952);
        assert_eq!(a.entries[2].mtime, Some(1_000_000));
        assert_eq!(a.entries[3].kind, EntryKind::HardLink(PathBuf::from("/usr/sbin/d")));
        assert_eq!(a.entries[4].kind, EntryKind::Symlink("usr/bin".into()));
    }

    #[test]
    fn dotdot_is_refused() {
        // The tar crate's builder refuses `..`, so patch the name in place.
        let mut bytes = make_tar(&[("xx/evil", tar::EntryType::Regular, 0o644, 0, b"x")]);
        bytes[..7].copy_from_slice(b"../evil");
        let mut h = tar::Header::from_byte_slice(&bytes[..512]).clone();
        h.set_cksum();
        bytes[..512].copy_from_slice(h.as_bytes());
        let e = parse_tar(Path::new("A.tar"), &bytes).unwrap_err().to_string();
        assert!(e.contains("A.tar") && e.contains("../evil") && e.contains(".."), "{e}");
    }

    #[test]
    fn truncated_and_corrupt_archives_fail() {
        let bytes = make_tar(&[("f", tar::EntryType::Regular, 0o644, 0, &[7u8; 2000])]);
        let e = parse_tar(Path::new("T"), &bytes[..1024]).unwrap_err().to_string();
        assert!(e.starts_with("T: corrupt or truncated tar archive"), "{e}");
        assert!(e.contains("regenerate"), "{e}");
        let mut bad = bytes.clone();
        bad[0] = b'g'; // checksum no longer matches
        assert!(parse_tar(Path::new("T"), &bad).is_err());
        // Truncated in the middle of a header.
        assert!(parse_tar(Path::new("T"), &bytes[..100]).is_err());
    }

    #[test]
    fn unpack_creates_parents_and_keeps_metadata() {
        use tar::EntryType as T;
        let a = parse_tar(
            Path::new("A"),
            &make_tar(&[
                ("./etc/x/a", T::Regular, 0o600, 7, b"1"),
                ("etc/h", T::Link, 0, 0, b"etc/x/a"),
                ("dev/null", T::Char, 0o666, 0, b""),
            ]),
        )
        .unwrap();
        let mut t = tree();
        unpack(&a, &mut t, 42).unwrap();
        let etc = t.node(t.lookup(Path::new("/etc")).unwrap());
        assert_eq!(etc.meta, Metadata::new(0o755, 0, 0, 42));
        let f = t.lookup(Path::new("/etc/x/a")).unwrap();
        assert_eq!(t.node(f).meta.perm, 0o600);
        assert_eq!(t.node(f).meta.uid, 7);
        assert_eq!(t.node(f).meta.mtime, 1_000_000);
        assert_eq!(t.node(f).meta.ctime, 42);
        assert_eq!(t.lookup(Path::new("/etc/h")), Some(f));
        assert_eq!(t.link_count(f), 2);
        let null = t.node(t.lookup(Path::new("/dev/null")).unwrap());
        assert_eq!(null.content, Content::CharDevice(0x0103));
    }

    #[test]
    fn later_archives_overwrite_files_and_restamp_dirs() {
        use tar::EntryType as T;
        let first =
            parse_tar(Path::new("1"), &make_tar(&[("etc/f", T::Regular, 0o644, 0, b"old")]))
                .unwrap();
        let second = parse_tar(
            Path::new("2"),
            &make_tar(&[
                ("etc/", T::Directory, 0o750, 2952, b""),
                ("etc/f", T::Regular, 0o644, 0, b"new"),
            ]),
        )
        .unwrap();
        let mut t = tree();
        unpack(&first, &mut t, 1).unwrap();
        unpack(&second, &mut t, 1).unwrap();
        let etc = t.node(t.lookup(Path::new("/etc")).unwrap());
        assert_eq!((etc.meta.uid, etc.meta.perm), (2952, 0o750), "GNU tar --overwrite-dir");
        let f = t.node(t.lookup(Path::new("/etc/f")).unwrap());
        assert_eq!(f.content, Content::Regular(Data::Inline(Arc::from(&b"new"[..]))));
    }

    #[test]
    fn dangling_hard_link_names_archive_and_member() {
        let a =
            parse_tar(Path::new("L.tar"), &make_tar(&[("a", tar::EntryType::Link, 0, 0, b"nope")]))
                .unwrap();
        let e = unpack(&a, &mut tree(), 0).unwrap_err().to_string();
        assert!(e.contains("L.tar") && e.contains("/a"), "{e}");
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(1, 3), 0x0103);
        assert_eq!(makedev(259, 0x12345), (259 << 8) | 0x45 | (0x123 << 20));
    }
}
