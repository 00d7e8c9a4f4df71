//! Reading supermin.d input directories: walking them, classifying each file
//! by content, and parsing package lists, hostfiles, excludefiles and base
//! tar archives into one [`Inputs`] value (reference §1, §2.4, §2.5).
//!
//! This module owns the on-disk input format only. Resolving package names
//! against the package database, applying excludes to package files and
//! copying hostfiles are left to `package/` and `appliance.rs`; base archive
//! entries are handed over through [`Inputs::unpack_base`] into the shared
//! [`FileTree`].
//!
//! Compatibility: the walk, classification and list rules are supermin's.
//! Deliberate differences, all of them turning a silent misreading or a
//! vague failure into an error that names the file and says what to do:
//! - bzip2, zstd and lz4 compressed files are refused ("FILE: bzip2-compressed
//!   file; supermin would misread it as a package list; recompress it with
//!   gzip or xz") instead of being read as a package list (bzip2) or failing
//!   as "unknown file type" (zstd, lz4).
//! - every cpio variant is refused, not just `070701`; a v7 tar (no `ustar`
//!   magic) is refused instead of being misread.
//! - base archives are parsed completely while reading inputs, so a corrupt
//!   or truncated archive fails before anything is built; member paths with
//!   `..` are an error (GNU tar skips them with a warning).
//! - list files must be UTF-8 text.
//! - base archive owners are always numeric (GNU tar maps known user names
//!   to host ids; we never consult NSS).

mod archive;
mod classify;
mod embedded;
mod fnmatch;
mod hostfiles;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image::files::{FileTree, TreeError};

pub use embedded::{embedded_minimal, MINIMAL_INIT_MARKER};
pub use fnmatch::{fnmatch, ExcludePattern};
pub use hostfiles::{expand_hostfiles, expand_hostfiles_probed};

/// The compression layer of an input file (gzip and xz only, as supermin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`1f 8b 08`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
}

impl Compression {
    /// Short lower-case name for messages and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
        }
    }
}

/// What an input file turned out to be, judged by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// A package list (first byte alphanumeric).
    Packages,
    /// A base tar archive, with the compression it was stored with.
    BaseArchive(Compression),
    /// A list of host file globs (first byte `/`).
    Hostfiles,
    /// A list of `-PATTERN` exclude lines (first byte `-`).
    Excludefiles,
    /// An empty file (possibly compressed), ignored.
    Empty,
}

/// One file found while walking the inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Path as found (input directory joined with the names walked).
    pub path: PathBuf,
    /// What it is.
    pub kind: InputKind,
    /// sha256 of the file's bytes as stored (before decompression).
    pub sha256: [u8; 32],
}

/// Everything read from the input directories, in walk order.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Every file seen, in walk order (for the manifest).
    pub files: Vec<InputFile>,
    /// Package names, concatenated in walk order, verbatim (no trimming;
    /// names that match no package are dropped later, as supermin does).
    pub packages: Vec<String>,
    /// Hostfiles glob patterns, in walk order; see [`expand_hostfiles`].
    pub hostfiles: Vec<String>,
    /// Exclude patterns, in walk order.
    pub excludes: Vec<ExcludePattern>,
    /// Parsed base archives, in walk order.
    base: Vec<archive::BaseArchive>,
}

/// Errors from reading inputs. Each names the file (and line or archive
/// member where relevant) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
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
        /// The member name as stored.
        member: String,
        /// Why it is refused.
        reason: &'static str,
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
    #[error("{}: unpacking {}: {source}", .path.display(), .member.display())]
    Tree {
        /// The archive.
        path: PathBuf,
        /// The member's appliance path.
        member: PathBuf,
        /// The tree's error.
        source: TreeError,
    },
}

/// Read supermin.d inputs, each either a directory or a single file, in the
/// given order.
///
/// Directories are walked depth-first, pre-order, entries sorted bytewise,
/// hidden files included, symlinks to directories followed (reference
/// §1.1). Every file is read once into memory, hashed and classified by
/// content (§1.2); base archives are decompressed and parsed completely.
///
/// Errors: the first [`InputError`] met, naming the file; nothing is
/// partially returned.
pub fn read_inputs(dirs: &[PathBuf]) -> Result<Inputs, InputError> {
    let mut inputs = Inputs {
        files: Vec::new(),
        packages: Vec::new(),
        hostfiles: Vec::new(),
        excludes: Vec::new(),
        base: Vec::new(),
    };
    for dir in dirs {
        walk(dir, &mut Vec::new(), &mut inputs)?;
    }
    Ok(inputs)
}

fn walk(path: &Path, ancestors: &mut Vec<(u64, u64)>, out: &mut Inputs) -> Result<(), InputError> {
    let io = |source| InputError::Io { path: path.to_owned(), source };
    // `metadata` follows symlinks: a symlink to a directory is a directory.
    let md = std::fs::metadata(path).map_err(io)?;
    if md.is_dir() {
        let key = (md.dev(), md.ino());
        if ancestors.contains(&key) {
            return Err(InputError::DirLoop { path: path.to_owned() });
        }
        let mut names = std::fs::read_dir(path)
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect::<Result<Vec<_>, _>>())
            .map_err(io)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        ancestors.push(key);
        for name in names {
            walk(&path.join(name), ancestors, out)?;
        }
        ancestors.pop();
        Ok(())
    } else if md.is_file() {
        read_file(path, out)
    } else {
        Err(InputError::NotAFile { path: path.to_owned() })
    }
}

fn read_file(path: &Path, out: &mut Inputs) -> Result<(), InputError> {
    let bytes =
        std::fs::read(path).map_err(|source| InputError::Io { path: path.to_owned(), source })?;
    let sha256 = Sha256::digest(&bytes).into();
    let compression = classify::compression_of(&bytes);
    let data = classify::decompress(path, &bytes, compression)?;
    let kind = match classify::classify(path, &data)? {
        classify::Content::Tar => {
            out.base.push(archive::parse_tar(path, &data)?);
            InputKind::BaseArchive(compression)
        }
        classify::Content::Packages => {
            out.packages.extend(text_lines(path, &data)?);
            InputKind::Packages
        }
        classify::Content::Hostfiles => {
            out.hostfiles.extend(text_lines(path, &data)?);
            InputKind::Hostfiles
        }
        classify::Content::Excludefiles => {
            for (i, line) in text_lines(path, &data)?.iter().enumerate() {
                let pattern = ExcludePattern::parse(line).ok_or_else(|| {
                    InputError::BadExcludeLine { path: path.to_owned(), line: i + 1 }
                })?;
                out.excludes.push(pattern);
            }
            InputKind::Excludefiles
        }
        classify::Content::Empty => InputKind::Empty,
    };
    out.files.push(InputFile { path: path.to_owned(), kind, sha256 });
    Ok(())
}

/// Decode a list file as UTF-8 and split it with [`split_lines`].
fn text_lines(path: &Path, data: &[u8]) -> Result<Vec<String>, InputError> {
    let text = std::str::from_utf8(data).map_err(|e| InputError::NotUtf8 {
        path: path.to_owned(),
        line: 1 + data[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count(),
    })?;
    Ok(split_lines(text))
}

/// Split on `\n`, keeping every line verbatim (no trimming, `\r` kept), and
/// dropping only the empty string after a final newline, as supermin does.
fn split_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// Where libguestfs installs its supermin appliance, relative to `/`, in the
/// order we look: Debian's multiarch directory for this host, then the
/// Fedora/SUSE and Arch locations.
fn input_dir_candidates() -> Vec<String> {
    let mut out = Vec::new();
    if let Some(triplet) = multiarch_triplet() {
        out.push(format!("usr/lib/{triplet}/guestfs/supermin.d"));
    }
    out.push("usr/lib64/guestfs/supermin.d".to_owned());
    out.push("usr/lib/guestfs/supermin.d".to_owned());
    out
}

/// Debian's multiarch triplet for the architecture we were built for.
fn multiarch_triplet() -> Option<&'static str> {
    Some(match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le-linux-gnu",
        "powerpc64" => "powerpc64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "loongarch64" => "loongarch64-linux-gnu",
        "mips64" if cfg!(target_endian = "little") => "mips64el-linux-gnuabi64",
        _ => return None,
    })
}

/// libguestfs's installed supermin.d under `root`, if any: the first of
/// `/usr/lib/<triplet>/guestfs/supermin.d` (triplet from this build's
/// architecture), `/usr/lib64/guestfs/supermin.d`,
/// `/usr/lib/guestfs/supermin.d` that is a directory.
///
/// Returns zero or one host path (joined onto `root`); never fails.
pub fn default_input_dirs(root: &Path) -> Vec<PathBuf> {
    input_dir_candidates()
        .into_iter()
        .map(|rel| root.join(rel))
        .find(|p| p.is_dir())
        .into_iter()
        .collect()
}

impl Inputs {
    /// Insert every base archive's members into `tree`, archives in walk
    /// order, as GNU tar run as root would extract them into one directory:
    /// archive uid/gid/mode/mtime (numeric ids), missing parents created
    /// 0755 root:root stamped `default_time`, member paths `./x` and `x`
    /// relative to `/`, hard links as tree hard links, later files
    /// replacing earlier ones, and an explicit directory member restamping
    /// an existing directory (GNU tar's default `--overwrite-dir`, which is
    /// how libguestfs's `/etc` ends up owned by the Debian build user).
    /// Embedded entries without an mtime get `default_time`.
    ///
    /// Errors: [`InputError::Tree`] naming archive and member when the tree
    /// refuses an insertion (e.g. a hard link to a missing member).
    pub fn unpack_base(&self, tree: &mut FileTree, default_time: i64) -> Result<(), InputError> {
        for a in &self.base {
            archive::unpack(a, tree, default_time)?;
        }
        Ok(())
    }

    /// Number of base archive members parsed (all archives), for `-v`.
    pub fn base_member_count(&self) -> usize {
        self.base.iter().map(|a| a.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests;
