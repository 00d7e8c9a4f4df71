//! Reading supermin.d input directories: walking them, classifying each file
//! by content, and parsing package lists, hostfiles, excludefiles and base
//! tar archives into one [`Inputs`] value (docs/supermin-compat.md, "Input
//! walk", "Input classification", "Package lists", "Base archives",
//! "hostfiles" and "excludefiles").
//!
//! This module owns the on-disk input format only. Resolving package names
//! against the package database, applying excludes to package files and
//! copying hostfiles are left to `package/` and `compose.rs`; base archive
//! members are extracted by [`Inputs::extract_base`] (data into a scratch
//! file) and handed over through [`BaseMembers::unpack`] into the shared
//! [`FileTree`].
//!
//! Reading inputs ([`read_inputs`]) is cheap, because `check` does it: every
//! file is hashed as a stream, lists are decompressed (at most
//! [`LIST_MAX`] bytes), and a base archive is only decompressed far enough
//! to be recognised. It is unpacked once, by the build.
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
//! - a corrupt or truncated base archive fails the build before anything is
//!   written to the output; member paths with `..` are an error (GNU tar
//!   skips them with a warning), and so are names or link targets of
//!   `PATH_MAX` (4096) bytes or more, which Linux cannot resolve.
//! - base archives may not hold more member data than the root image
//!   (`--size`) or files larger than ext2 allows; sparse members and
//!   all-zero blocks stay holes in the image (supermin, through GNU tar and
//!   libext2fs, writes them out in full).
//! - PAX sparse members (formats 0.0, 0.1, 1.0) are extracted as GNU tar
//!   does; unknown sparse formats are refused.
//! - a non-directory member over a directory with contents is an error;
//!   GNU tar fails there too, which fails supermin's build.
//! - list files must be UTF-8 text.
//! - base archive owners are always numeric (GNU tar maps known user names
//!   to host ids; we never consult NSS).

mod archive;
mod classify;
mod embedded;
mod error;
mod exclude;
mod hostfiles;
mod source;

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::hashcache::HashCache;
use crate::image::files::FileTree;
use crate::image::scratch::Scratch;

pub(crate) use classify::Compression;
pub(crate) use embedded::embedded_minimal;
pub use embedded::MINIMAL_INIT_MARKER;
pub(crate) use error::{InputError, LIST_MAX};
pub(crate) use exclude::ExcludePattern;
pub(crate) use hostfiles::expand_hostfiles_probed;

/// What an input file turned out to be, judged by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum InputKind {
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
pub(crate) struct InputFile {
    /// Path as found (input directory joined with the names walked).
    pub(crate) path: PathBuf,
    /// What it is.
    pub(crate) kind: InputKind,
    /// sha256 of the file's bytes as stored (before decompression).
    pub(crate) sha256: [u8; 32],
}

/// Everything read from the input directories, in walk order.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    /// Every file seen, in walk order (for the manifest).
    pub(crate) files: Vec<InputFile>,
    /// Package names, concatenated in walk order, verbatim (no trimming;
    /// names that match no package are dropped later, as supermin does).
    pub(crate) packages: Vec<String>,
    /// Hostfiles glob patterns, in walk order; see [`expand_hostfiles`].
    pub(crate) hostfiles: Vec<String>,
    /// Exclude patterns, in walk order.
    pub(crate) excludes: Vec<ExcludePattern>,
    /// Base archives, in walk order.
    base: Vec<BaseSource>,
}

/// Where a base archive's members come from.
#[derive(Debug, Clone)]
enum BaseSource {
    /// A file, extracted at build time.
    File {
        /// The archive.
        path: PathBuf,
        /// Its compression.
        compression: Compression,
        /// Its sha256 when the inputs were read.
        sha256: [u8; 32],
    },
    /// The embedded minimal tree, already in memory.
    Embedded(archive::BaseArchive),
}

/// Base archive members extracted for one build (see
/// [`Inputs::extract_base`]). Their file data lives in the scratch file
/// given there, which must stay alive until the image is written.
#[derive(Debug, Clone)]
pub(crate) struct BaseMembers {
    archives: Vec<archive::BaseArchive>,
}

/// Read supermin.d inputs, each either a directory or a single file, in the
/// given order.
///
/// Directories are walked depth-first, pre-order, entries sorted bytewise,
/// hidden files included, symlinks to directories followed
/// (docs/supermin-compat.md, "Input walk"). Every file is hashed as a stream
/// and classified by content (docs/supermin-compat.md, "Input
/// classification"); lists are read into memory, base archives are only
/// recognised (see [`Inputs::extract_base`]).
///
/// Errors: the first [`InputError`] met, naming the file; nothing is
/// partially returned.
#[cfg(test)]
pub(crate) fn read_inputs(dirs: &[PathBuf]) -> Result<Inputs, InputError> {
    read_inputs_with(dirs, &mut HashCache::new())
}

/// [`read_inputs`], taking the digests of files whose signature `hashes`
/// knows from it: such a base archive is only read as far as its
/// classification needs.
///
/// Errors: as [`read_inputs`].
pub(crate) fn read_inputs_with(dirs: &[PathBuf], hashes: &mut HashCache) -> Result<Inputs, InputError> {
    let mut inputs = Inputs {
        files: Vec::new(),
        packages: Vec::new(),
        hostfiles: Vec::new(),
        excludes: Vec::new(),
        base: Vec::new(),
    };
    for dir in dirs {
        walk(dir, &mut Vec::new(), &mut inputs, hashes)?;
    }
    Ok(inputs)
}

fn walk(
    path: &Path,
    ancestors: &mut Vec<(u64, u64)>,
    out: &mut Inputs,
    hashes: &mut HashCache,
) -> Result<(), InputError> {
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
            walk(&path.join(name), ancestors, out, hashes)?;
        }
        ancestors.pop();
        Ok(())
    } else if md.is_file() {
        read_file(path, out, hashes)
    } else {
        Err(InputError::NotAFile { path: path.to_owned() })
    }
}

fn read_file(path: &Path, out: &mut Inputs, hashes: &mut HashCache) -> Result<(), InputError> {
    let io = |source| InputError::Io { path: path.to_owned(), source };
    let mut file = source::HashedFile::open(path)?;
    let known = hashes.lookup(path, file.file()).map_err(io)?;
    let mut raw = file.reader().map_err(io)?;
    // The compression magic is in the first 6 bytes.
    let mut magic = Vec::with_capacity(8);
    (&mut raw).take(6).read_to_end(&mut magic).map_err(io)?;
    let compression = classify::compression_of(&magic);
    let mut stream = classify::decoder(compression, std::io::Cursor::new(magic).chain(raw));
    // Enough decompressed bytes to classify (a tar header is 512 bytes).
    let mut data = Vec::new();
    classify::read_up_to(path, compression, &mut stream, 4096, &mut data)?;
    let content = classify::classify(path, &data)?;
    if content != classify::Content::Tar && data.len() == 4096 {
        classify::read_up_to(path, compression, &mut stream, LIST_MAX + 1 - 4096, &mut data)?;
        if data.len() as u64 > LIST_MAX {
            return Err(InputError::ListTooLarge { path: path.to_owned() });
        }
    }
    drop(stream);
    let sha256 = match known {
        // Known for this signature: the rest of the file need not be read.
        Ok(sha256) => sha256,
        Err(reading) => {
            let sha256 = file.finish().map_err(io)?;
            hashes.remember(path, file.file(), reading, sha256);
            sha256
        }
    };
    let kind = match content {
        classify::Content::Tar => {
            out.base.push(BaseSource::File { path: path.to_owned(), compression, sha256 });
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
                let pattern = ExcludePattern::parse(line)
                    .ok_or_else(|| InputError::BadExcludeLine { path: path.to_owned(), line: i + 1 })?;
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
    input_dir_candidates().into_iter().map(|rel| root.join(rel)).find(|p| p.is_dir()).into_iter().collect()
}

impl Inputs {
    /// Extract every base archive, in walk order, for a root image of
    /// `image_size` bytes: members are streamed from the (decompressed)
    /// archive, their data stored in `scratch` without its holes and
    /// all-zero blocks. Costs are bounded by the image, not the archives:
    /// a member whose data does not fit in the image together with the
    /// members before it is refused before it is read, as are files larger
    /// than ext2 allows and names Linux cannot resolve.
    ///
    /// Errors: the first [`InputError`], naming the archive and member.
    pub(crate) fn extract_base(
        &self,
        scratch: &mut Scratch,
        image_size: u64,
    ) -> Result<BaseMembers, InputError> {
        let mut ex = archive::Extraction { scratch, image_size, data: 0, names: 0 };
        let mut archives = Vec::with_capacity(self.base.len());
        for b in &self.base {
            archives.push(match b {
                BaseSource::File { path, compression, sha256 } => {
                    archive::extract_file(path, *compression, sha256, &mut ex)?
                }
                BaseSource::Embedded(a) => a.clone(),
            });
        }
        Ok(BaseMembers { archives })
    }
}

impl BaseMembers {
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
    /// refuses an insertion (e.g. a hard link to a missing member);
    /// [`InputError::ReplacesDirectory`] for a file over a directory with
    /// contents, where GNU tar fails.
    pub(crate) fn unpack(&self, tree: &mut FileTree, default_time: i64) -> Result<(), InputError> {
        for a in &self.archives {
            archive::unpack(a, tree, default_time)?;
        }
        Ok(())
    }

    /// Number of base archive members (all archives), for `-v`.
    pub(crate) fn member_count(&self) -> usize {
        self.archives.iter().map(|a| a.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests;
