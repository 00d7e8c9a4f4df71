//! Base archives: stream a tar archive member by member, keeping each
//! member's metadata as a [`BaseEntry`] and its data in a scratch file, and
//! insert the entries into a [`FileTree`] the way GNU tar, run as root,
//! extracts them into supermin's scratch `base.d` (docs/supermin-compat.md,
//! "Base archives").
//!
//! Costs are bounded by what the image can hold, never by what an archive
//! claims: data is streamed (memory does not grow with member size), holes
//! of sparse members and all-zero blocks are never stored, every size is
//! checked against the root image before a byte of the member is read, and
//! names are limited to what Linux resolves (`PATH_MAX`). The archive is
//! decompressed here, once, while building; `check` only hashes it.
//!
//! Owners are numeric (like GNU tar as root when the archive's user names
//! are unknown: we never consult NSS, the binaries are static). What the
//! tree does with the entries later (merging with package files, writing
//! ext2) is left to others.

mod reader;

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::image::files::{Content, Data, FileTree, Metadata, Node};
use crate::image::scratch::Scratch;
use crate::printer::human_bytes;

use super::source::HashedFile;
use super::{classify, Compression, InputError};
use reader::{MemberType, TarError, TarReader};

/// What a base entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file with its data (in memory or in the scratch file).
    File(Data),
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
    pub(crate) path: PathBuf,
    /// Permission bits (`mode & 0o7777`).
    pub(crate) perm: u32,
    /// Numeric owner.
    pub(crate) uid: u32,
    /// Numeric group.
    pub(crate) gid: u32,
    /// Modification time; `None` means "the build's default time".
    pub(crate) mtime: Option<i64>,
    /// Type and payload.
    pub(crate) kind: EntryKind,
}

/// The members of one base archive, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseArchive {
    /// The input file, for error messages.
    pub(crate) source: PathBuf,
    /// Members in archive order.
    pub(crate) entries: Vec<BaseEntry>,
}

/// Most bytes of member names and link targets kept for all base archives
/// together: far above any real archive (libguestfs's hold a few KiB), low
/// enough that metadata cannot exhaust memory.
pub(crate) const NAMES_MAX: u64 = 256 << 20;

/// Limits shared by all the base archives of one build, and the scratch
/// file their data goes to.
pub(crate) struct Extraction<'a> {
    /// Where member data is stored.
    pub(crate) scratch: &'a mut Scratch,
    /// Size of the root image (`--size`): member data of all archives
    /// together must fit in it.
    pub(crate) image_size: u64,
    /// Member data accepted so far, in bytes.
    pub(crate) data: u64,
    /// Bytes of names and link targets kept so far.
    pub(crate) names: u64,
}

/// Buffer for streaming member data.
const COPY_BUF: usize = 256 << 10;

/// Extract one base archive file: decompress it as a stream, store member
/// data in the scratch file, and check that the file still has the
/// `sha256` it had when the inputs were read (it is read twice: hashed for
/// the fingerprint, then here).
///
/// Errors: [`InputError`] naming the archive and, where known, the member:
/// I/O, decompression, corrupt or truncated tar, refused members, sizes the
/// image cannot hold, no space for the scratch file, a changed file.
pub(crate) fn extract_file(
    source: &Path,
    compression: Compression,
    sha256: &[u8; 32],
    ex: &mut Extraction<'_>,
) -> Result<BaseArchive, InputError> {
    let io = |e| InputError::Io { path: source.to_owned(), source: e };
    let mut file = HashedFile::open(source)?;
    let stream = classify::decoder(compression, file.reader().map_err(io)?);
    let entries = read_entries(source, stream, ex).map_err(|e| match e {
        // A decoder error is the compressed data's fault; a plain read
        // error is the file's.
        ReadFailure::Source(e) if compression != Compression::None => {
            InputError::Decompress { path: source.to_owned(), format: compression.name(), source: e }
        }
        ReadFailure::Source(e) => io(e),
        ReadFailure::Input(e) => e,
    })?;
    // Trailing blocks the decompressor did not need are hashed too.
    if &file.finish().map_err(io)? != sha256 {
        return Err(InputError::Changed { path: source.to_owned() });
    }
    Ok(BaseArchive { source: source.to_owned(), entries })
}

/// Failure of [`read_entries`]: the stream itself, or anything else.
enum ReadFailure {
    Source(std::io::Error),
    Input(InputError),
}

impl From<InputError> for ReadFailure {
    fn from(e: InputError) -> Self {
        ReadFailure::Input(e)
    }
}

/// Read every member of a (decompressed) tar stream.
fn read_entries<R: Read>(
    source: &Path,
    stream: R,
    ex: &mut Extraction<'_>,
) -> Result<Vec<BaseEntry>, ReadFailure> {
    let corrupt = |detail: String| InputError::CorruptTar { path: source.to_owned(), detail };
    let tar_error = |e: TarError| match e {
        TarError::Source(e) => ReadFailure::Source(e),
        TarError::Truncated { member } => ReadFailure::Input(corrupt(match member {
            Some(m) => format!("member {m}: the archive ends inside it"),
            None => "the archive ends inside a header".into(),
        })),
        TarError::Format { member, detail } => ReadFailure::Input(corrupt(match member {
            Some(m) => format!("member {m}: {detail}"),
            None => detail,
        })),
        TarError::Refused { member, reason } => {
            ReadFailure::Input(InputError::BadMember { path: source.to_owned(), member, reason })
        }
    };
    let mut reader = TarReader::new(stream);
    let mut entries = Vec::new();
    let mut buf = vec![0u8; COPY_BUF];
    while let Some(m) = reader.next_member().map_err(tar_error)? {
        let member = reader::shown(&m.name);
        let bad = |reason: String| InputError::BadMember {
            path: source.to_owned(),
            member: member.clone(),
            reason,
        };
        ex.names += (m.name.len() + m.link.len()) as u64;
        if ex.names > NAMES_MAX {
            return Err(bad(format!(
                "the base archives' member names add up to more than {}; split them or build \
                 from fewer files",
                human_bytes(NAMES_MAX)
            ))
            .into());
        }
        check_size(source, &member, &m, ex)?;
        let perm = (m.mode & 0o7777) as u32;
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| corrupt(format!("member {member}: {what} {v} out of range")))
        };
        let uid = id(m.uid, "uid")?;
        let gid = id(m.gid, "gid")?;
        let path = member_path(&m.name).map_err(|reason| bad(reason.into()))?;
        let kind = match m.kind {
            MemberType::Directory => EntryKind::Dir,
            MemberType::Symlink => {
                if m.link.is_empty() {
                    return Err(corrupt(format!("member {member}: symlink without a target")).into());
                }
                EntryKind::Symlink(std::ffi::OsStr::from_bytes(&m.link).to_os_string())
            }
            MemberType::HardLink => {
                let target = member_path(&m.link)
                    .map_err(|reason| bad(format!("hard link target: {reason}")))?
                    .ok_or_else(|| bad("hard link to the archive root".into()))?;
                EntryKind::HardLink(target)
            }
            MemberType::Char => EntryKind::Char(device(&m, &corrupt, &member)?),
            MemberType::Block => EntryKind::Block(device(&m, &corrupt, &member)?),
            MemberType::Fifo => EntryKind::Fifo,
            MemberType::Regular => {
                EntryKind::File(store_data(&mut reader, &m, ex, &mut buf).map_err(|e| match e {
                    StoreFailure::Tar(e) => tar_error(e),
                    StoreFailure::Scratch(e) => ReadFailure::Input(InputError::Scratch {
                        path: source.to_owned(),
                        member: member.clone(),
                        dir: ex.scratch.dir().to_owned(),
                        source: e,
                    }),
                })?)
            }
        };
        let Some(path) = path else {
            // `./` itself: GNU tar would restamp the extraction directory,
            // which supermin never copies into the image
            // (docs/supermin-compat.md, "Precedence").
            continue;
        };
        entries.push(BaseEntry { path, perm, uid, gid, mtime: Some(m.mtime), kind });
    }
    Ok(entries)
}

/// Refuse a member whose size the image cannot hold, before reading it:
/// a file larger than ext2 allows, or data that does not fit in the root
/// image together with the data of the members before it.
fn check_size(
    source: &Path,
    member: &str,
    m: &reader::Member,
    ex: &mut Extraction<'_>,
) -> Result<(), InputError> {
    use crate::image::ext2::MAX_FILE_SIZE;
    let bad =
        |reason: String| InputError::BadMember { path: source.to_owned(), member: member.to_owned(), reason };
    if m.kind == MemberType::Regular && m.size > MAX_FILE_SIZE {
        return Err(bad(format!(
            "a file of {} bytes ({}) is larger than ext2 can hold ({})",
            m.size,
            human_bytes(m.size),
            human_bytes(MAX_FILE_SIZE)
        )));
    }
    let total = ex.data.saturating_add(m.data_len);
    if total > ex.image_size {
        let what = if ex.data == 0 || m.data_len > ex.image_size {
            format!("its {} bytes of data ({})", m.data_len, human_bytes(m.data_len))
        } else {
            format!("with it, base archives hold {total} bytes of data ({})", human_bytes(total))
        };
        return Err(InputError::TooBig {
            path: source.to_owned(),
            member: member.to_owned(),
            what,
            image_size: ex.image_size,
        });
    }
    ex.data = total;
    Ok(())
}

fn device(
    m: &reader::Member,
    corrupt: &dyn Fn(String) -> InputError,
    member: &str,
) -> Result<u64, InputError> {
    let part = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| corrupt(format!("member {member}: device {what} {v} out of range")))
    };
    Ok(makedev(part(m.dev.0, "major")?, part(m.dev.1, "minor")?))
}

/// Why storing a member's data failed.
enum StoreFailure {
    Tar(TarError),
    Scratch(std::io::Error),
}

/// Stream a regular member's data into the scratch file, segment by
/// segment (holes between sparse segments are never written).
fn store_data<R: Read>(
    reader: &mut TarReader<R>,
    m: &reader::Member,
    ex: &mut Extraction<'_>,
    buf: &mut [u8],
) -> Result<Data, StoreFailure> {
    if m.size == 0 {
        return Ok(Data::Inline(Arc::from(Vec::new())));
    }
    let dense = [(0, m.size)];
    let segments = m.sparse.as_deref().unwrap_or(&dense);
    let mut w = ex.scratch.writer(m.size);
    for &(offset, len) in segments {
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            let n = reader.read_data(&mut buf[..want]).map_err(StoreFailure::Tar)?;
            if n == 0 {
                return Err(StoreFailure::Tar(TarError::Format {
                    member: Some(reader::shown(&m.name)),
                    detail: "member data shorter than its sparse map".into(),
                }));
            }
            w.write_at(at, &buf[..n]).map_err(StoreFailure::Scratch)?;
            at += n as u64;
        }
    }
    w.finish().map(Data::Scratch).map_err(StoreFailure::Scratch)
}

/// Turn a member name (`./etc/x`, `etc/x`, `/etc/x`) into an absolute
/// appliance path. A leading `/` is dropped as GNU tar does ("Removing
/// leading `/'"); since we extract into an in-memory tree rooted at the
/// appliance's `/`, that cannot escape anything. `..` is refused outright
/// (GNU tar skips such members; silently losing a file is worse).
/// Returns `None` for the root itself.
fn member_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    let mut out = PathBuf::from("/");
    let mut any = false;
    for comp in Path::new(std::ffi::OsStr::from_bytes(raw)).components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(c) => {
                out.push(c);
                any = true;
            }
            Component::ParentDir | Component::Prefix(_) => return Err("its path contains '..'"),
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
/// the Debian build user (docs/supermin-compat.md, "Base archives")
/// although `base.tar.gz` created it
/// first. Non-directories replace what was there (an empty directory too);
/// hard links share a node. ctime is `default_time` (on disk it is the
/// extraction time).
///
/// Errors: [`InputError::ReplacesDirectory`] for a non-directory member
/// over a directory that has contents: GNU tar cannot remove it ("Cannot
/// open: File exists"), exits 2, and supermin fails, so we refuse too.
/// [`InputError::Tree`] naming the archive and member when the tree refuses
/// an insertion (e.g. a hard link to a missing member, a path too long).
pub(crate) fn unpack(
    archive: &BaseArchive,
    tree: &mut FileTree,
    default_time: i64,
) -> Result<(), InputError> {
    let parent_meta = Metadata::new(0o755, 0, 0, default_time);
    for e in &archive.entries {
        let wrap = |source| InputError::Tree { path: archive.source.clone(), member: e.path.clone(), source };
        let parent = e.path.parent().unwrap_or(Path::new("/"));
        tree.create_dir_all(parent, parent_meta).map_err(wrap)?;
        let mtime = e.mtime.unwrap_or(default_time);
        let meta =
            Metadata { perm: e.perm, uid: e.uid, gid: e.gid, atime: mtime, mtime, ctime: default_time };
        if !matches!(e.kind, EntryKind::Dir) {
            if let Some(id) = tree.lookup(&e.path) {
                if tree.node(id).content.is_dir() && tree.child_count(id) > 0 {
                    return Err(InputError::ReplacesDirectory {
                        path: archive.source.clone(),
                        member: e.path.clone(),
                    });
                }
            }
        }
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
            EntryKind::File(data) => Content::Regular(data.clone()),
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
mod tests;

/// Archives for tests elsewhere in `input`.
#[cfg(test)]
pub(crate) mod tests_support {
    /// A GNU tar holding one regular file `name` of `size` bytes (0, 1, 2,
    /// ... 250, repeated: no all-zero block).
    pub(crate) fn one_member_tar(name: &[u8], size: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8 + 1).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut h, std::str::from_utf8(name).unwrap(), &data[..]).unwrap();
        b.into_inner().unwrap()
    }
}
