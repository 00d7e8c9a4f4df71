//! [`InputError`]: what can go wrong reading supermin.d inputs, each
//! variant naming the file and saying what to do. A leaf: every file of
//! `input/` imports it, it imports none of them.

use std::path::PathBuf;

use crate::image::files::TreeError;

/// Largest list file (packages, hostfiles, excludefiles) accepted, after
/// decompression; real ones are a few KiB.
pub(crate) const LIST_MAX: u64 = 64 << 20;

/// Errors from reading inputs. Each names the file (and line or archive
/// member where relevant) and says what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    /// Reading a file or directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Something that is neither a regular file nor a directory.
    #[error("{}: not a regular file or directory; remove it from the supermin directory", .path.display())]
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },
    /// A directory symlink leads back to one of its own ancestors.
    #[error("{}: directory loop (a symlink points back to a parent); remove the symlink", .path.display())]
    DirLoop {
        /// The directory seen twice.
        path: PathBuf,
    },
    /// A cpio archive, which supermin does not accept either.
    #[error("{}: cpio archives are not supported in supermin directories; repack it as a tar archive (tar -czf NAME.tar.gz -C DIR .)", .path.display())]
    Cpio {
        /// The file.
        path: PathBuf,
    },
    /// A compression supermin does not recognise.
    #[error("{}: {format}-compressed file; {}; recompress it with gzip or xz", .path.display(),
        if *.misread { "supermin would misread it as a package list" } else { "supermin cannot read it either" })]
    UnsupportedCompression {
        /// The file.
        path: PathBuf,
        /// `bzip2`, `zstd` or `lz4`.
        format: &'static str,
        /// True when supermin would silently take it for a package list.
        misread: bool,
    },
    /// A tar archive in the old v7 format, without `ustar` magic.
    #[error("{}: v7 tar archive without 'ustar' magic, which supermin cannot recognise; recreate it with GNU or POSIX tar (tar --format=gnu)", .path.display())]
    V7Tar {
        /// The file.
        path: PathBuf,
    },
    /// Content that is no known input kind.
    #[error("{}: unknown file type in supermin directory (first byte 0x{first_byte:02x}); inputs must be tar archives or lists whose first byte is '/', '-' or a letter or digit: remove or fix this file", .path.display())]
    UnknownType {
        /// The file.
        path: PathBuf,
        /// Its first (decompressed) byte.
        first_byte: u8,
    },
    /// A gzip or xz stream that does not decompress.
    #[error("{}: corrupt or truncated {format} data ({source}); regenerate the file", .path.display())]
    Decompress {
        /// The file.
        path: PathBuf,
        /// `gzip` or `xz`.
        format: &'static str,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// A tar archive that does not parse to its end.
    #[error("{}: corrupt or truncated tar archive ({detail}): regenerate it", .path.display())]
    CorruptTar {
        /// The archive.
        path: PathBuf,
        /// What was wrong, naming the member when known.
        detail: String,
    },
    /// A tar member that must not be extracted.
    #[error("{}: member {member}: {reason}; fix the archive", .path.display())]
    BadMember {
        /// The archive.
        path: PathBuf,
        /// The member name as stored (shortened when very long).
        member: String,
        /// Why it is refused.
        reason: String,
    },
    /// Member data the root image cannot hold.
    #[error("{}: member {member}: {what} do not fit in the root image of {image_size} bytes ({}); build with a larger --size, or remove the member from the archive",
        .path.display(), crate::printer::human_bytes(*.image_size))]
    TooBig {
        /// The archive.
        path: PathBuf,
        /// The member name as stored.
        member: String,
        /// What does not fit ("its N bytes of data (1.0 GiB)").
        what: String,
        /// The root image size (`--size`).
        image_size: u64,
    },
    /// Storing member data in the scratch file failed.
    #[error("{}: member {member}: storing its data in a scratch file in {}: {source}; free some space there or build elsewhere",
        .path.display(), .dir.display())]
    Scratch {
        /// The archive.
        path: PathBuf,
        /// The member name as stored.
        member: String,
        /// Directory of the scratch file.
        dir: PathBuf,
        /// The OS error (e.g. no space left on device).
        source: std::io::Error,
    },
    /// An input file changed between reading the inputs and the build.
    #[error("{}: changed while the appliance was being built; run the build again", .path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// A non-directory member over a directory that has contents.
    #[error("{}: member {}: an earlier member made it a directory with contents, which GNU tar cannot replace (\"Cannot open: File exists\"; supermin's build fails); remove one of the two members", .path.display(), crate::image::files::short_path(.member))]
    ReplacesDirectory {
        /// The archive.
        path: PathBuf,
        /// The member's appliance path.
        member: PathBuf,
    },
    /// A list file beyond [`LIST_MAX`] bytes.
    #[error("{}: list file larger than {} once decompressed; supermin.d lists are a few KiB: remove or fix this file", .path.display(), crate::printer::human_bytes(LIST_MAX))]
    ListTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// An excludefiles line without the leading `-`.
    #[error("{}:{line}: excludefiles line does not start with '-'; every line must be -PATTERN (remove empty lines)", .path.display())]
    BadExcludeLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A list file that is not UTF-8 text.
    #[error("{}:{line}: not valid UTF-8; list files must be plain text", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the first bad byte.
        line: usize,
    },
    /// The file tree refused a base archive member.
    #[error("{}: unpacking {}: {source}", .path.display(), crate::image::files::short_path(.member))]
    Tree {
        /// The archive.
        path: PathBuf,
        /// The member's appliance path.
        member: PathBuf,
        /// The tree's error.
        source: TreeError,
    },
}
