//! Writes the finished appliance as a compressed tarball (`.tar.gz` or
//! `.tar.xz`), the output of `make-fixed-appliance --xz`, which libguestfs's
//! script makes with `tar -S -cf - appliance | xz --best`
//! (docs/supermin-compat.md, "make-fixed-appliance").
//!
//! This module owns the tar framing, sparse detection, parallel compression
//! and the atomic replacement of the output file. It does not decide which
//! files go in or what they are called on disk; the caller passes a
//! directory and names in order.
//!
//! - Sparse files (the 4 GiB root image holds ~670 MB of data) are stored as
//!   GNU old-style sparse members (typeflag `S`, the map in the header and
//!   extension blocks), exactly what GNU `tar -S` writes by default, so
//!   `tar -xf` restores a sparse file. Holes are found with
//!   SEEK_DATA/SEEK_HOLE and never read; allocated 4 KiB blocks of zeros
//!   count as holes too, so the archive depends on content, not allocation.
//! - Compression runs on all cores: gzip as independent members of fixed-size
//!   chunks, xz through liblzma's multi-threaded encoder (one standard stream
//!   of fixed-size blocks). Either way the output is byte-identical for the
//!   same input whatever the thread count.
//! - Everything streams: memory is a few chunk buffers plus the xz encoders'
//!   state, whatever the file sizes.

mod compress;
mod header;
mod sparse;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::safefs::{Access, PinnedDir, SafeFsError};

use header::{Kind, BLOCK};

/// Tar record size: GNU tar pads archives to 20 blocks, and so do we so that
/// `tar` tools that read whole records see what they expect.
const RECORD: u64 = 20 * BLOCK as u64;

/// Read buffer when copying file data into the tar stream.
const COPY_BUF: usize = 1 << 20;

/// The compressor around the tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compressor {
    /// gzip (level 3), written as concatenated members, one per 2 MiB of tar.
    Gzip,
    /// xz (preset 2, one stream of 4 MiB blocks, CRC64); readable by plain
    /// `xz -d` and `tar -xJf`.
    Xz,
}

/// How to write a tarball.
#[derive(Debug, Clone)]
pub(crate) struct TarballOptions {
    /// Which compressor to use.
    pub(crate) compression: Compressor,
    /// Top-level directory of the archive (`appliance`); members are stored as
    /// `prefix/NAME` after a `prefix/` directory member. An empty prefix
    /// stores bare names and no directory member.
    pub(crate) prefix: String,
    /// Modification time (seconds since the epoch) of every member, so that
    /// the output is reproducible.
    pub(crate) mtime: i64,
    /// Compression threads; 0 means one per available core.
    pub(crate) threads: usize,
    /// Permission bits of the archive file (before the umask): 0o600 when
    /// it holds files not for everyone (see `hostdata::private_hostfiles`).
    pub(crate) mode: u32,
}

/// What [`write_tarball`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TarballStats {
    /// Tar members written: the `prefix/` directory (if any) plus one per file.
    pub(crate) members: usize,
    /// File data bytes stored in the archive, holes excluded (headers and
    /// padding excluded too).
    pub(crate) data_bytes: u64,
    /// Size of the compressed output file.
    pub(crate) compressed_bytes: u64,
}

/// Errors from [`write_tarball`]. The output path never holds a partial
/// archive after any of these.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TarballError {
    /// A member name is empty, absolute or contains `..`.
    #[error(
        "invalid tarball member name {name:?}: names must be relative paths inside the \
         appliance directory, without `..`"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The output path has no file name.
    #[error("invalid tarball output path {path}: it must name a file")]
    InvalidOutput {
        /// The output path as given.
        path: PathBuf,
    },
    /// An input file could not be opened or read.
    #[error("reading {path}: {source}")]
    Read {
        /// The input file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An input is not a regular file.
    #[error("{path} is not a regular file; only regular files can go into the tarball")]
    NotRegular {
        /// The input path.
        path: PathBuf,
    },
    /// An input file shrank while it was being archived.
    #[error("{path} changed while it was being archived; rebuild the appliance and try again")]
    Changed {
        /// The input file.
        path: PathBuf,
    },
    /// The output directory is not safe to write in (or another
    /// pinned-directory error; the message names the path).
    #[error(transparent)]
    Fs(#[from] SafeFsError),
    /// The temporary output file could not be created.
    #[error(
        "creating a temporary file in {dir}: {source}; check that the directory exists and \
         is writable, or choose another output directory"
    )]
    CreateTemp {
        /// The output directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The output file system is full (or over quota).
    #[error("writing {path}: no space left on device; free space or choose another output directory")]
    NoSpace {
        /// The final output path.
        path: PathBuf,
    },
    /// Any other failure writing, compressing, syncing or renaming the output.
    #[error("writing {path}: {source}")]
    Write {
        /// The final output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Write `files` (names relative to `dir`, in the given order) as
/// `prefix/NAME` members to `out`.
///
/// The archive is a GNU-format tar (sparse files as typeflag `S` members),
/// uid/gid 0, owner names `root`, each file's own permission bits, and
/// `opts.mtime` everywhere. `out` is replaced atomically: the archive is
/// written to `.NAME.tmpXXXX` beside it, fsynced and renamed over it; on any
/// error the temporary file is removed and `out` is left as it was.
///
/// # Errors
/// See [`TarballError`]: bad names, unreadable or non-regular inputs, an
/// input that changes while read, or failure to create/write/rename the
/// output (running out of space is reported as [`TarballError::NoSpace`]).
pub(crate) fn write_tarball(
    dir: &PinnedDir,
    files: &[&str],
    out: &Path,
    opts: &TarballOptions,
) -> Result<TarballStats, TarballError> {
    for name in files {
        check_name(name)?;
    }
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let (parent, base) =
        crate::paths::split(out).ok_or_else(|| TarballError::InvalidOutput { path: out.to_owned() })?;
    let create_err =
        |e: SafeFsError| TarballError::CreateTemp { dir: parent.to_owned(), source: io::Error::other(e) };
    let out_dir = PinnedDir::open(parent).map_err(create_err)?;
    out_dir.refuse_if_shared()?;
    let (tmp, file) = out_dir.create_replacement(base, opts.mode).map_err(create_err)?;
    let werr = |e| write_error(out, e);
    let (members, data_bytes, file) = match opts.compression {
        Compressor::Gzip => {
            let mut sink = compress::ParallelGzip::new(file, threads).map_err(werr)?;
            let (m, d) = write_members(&mut sink, dir, files, opts, out)?;
            (m, d, sink.finish().map_err(werr)?)
        }
        Compressor::Xz => {
            let mut sink = compress::xz_writer(file, threads).map_err(werr)?;
            let (m, d) = write_members(&mut sink, dir, files, opts, out)?;
            (m, d, sink.finish().map_err(werr)?)
        }
    };
    file.sync_all().map_err(werr)?;
    let compressed_bytes = file.metadata().map_err(werr)?.len();
    drop(file);
    tmp.commit().map_err(|e| write_error(out, io::Error::other(e)))?;
    Ok(TarballStats { members, data_bytes, compressed_bytes })
}

/// Refuse names that would escape the prefix directory.
fn check_name(name: &str) -> Result<(), TarballError> {
    let path = Path::new(name);
    let ok =
        !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(TarballError::InvalidName { name: name.to_owned() })
    }
}

/// Map an output error, singling out a full disk.
fn write_error(out: &Path, source: io::Error) -> TarballError {
    match source.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => TarballError::NoSpace { path: out.to_owned() },
        _ => TarballError::Write { path: out.to_owned(), source },
    }
}

/// The uncompressed tar stream: counts bytes for the final record padding
/// and maps write errors to the output path.
struct TarStream<'a, S: Write> {
    sink: &'a mut S,
    written: u64,
    out: &'a Path,
}

impl<S: Write> TarStream<'_, S> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), TarballError> {
        self.sink.write_all(bytes).map_err(|e| write_error(self.out, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Write the directory member, every file, and the end-of-archive marker.
/// Returns (members, data bytes).
fn write_members<S: Write>(
    sink: &mut S,
    dir: &PinnedDir,
    files: &[&str],
    opts: &TarballOptions,
    out: &Path,
) -> Result<(usize, u64), TarballError> {
    let mut tar = TarStream { sink, written: 0, out };
    let mut members = 0;
    let mut data_bytes = 0;
    let mut hdr = Vec::with_capacity(4 * BLOCK);
    let member_name = |name: &str| -> Vec<u8> {
        if opts.prefix.is_empty() {
            name.as_bytes().to_vec()
        } else {
            format!("{}/{name}", opts.prefix).into_bytes()
        }
    };
    if !opts.prefix.is_empty() {
        header::encode(&mut hdr, &member_name(""), 0o755, opts.mtime, &Kind::Directory);
        tar.put(&hdr)?;
        members += 1;
    }
    let mut buf = vec![0u8; COPY_BUF];
    for name in files {
        let path = dir.child(name);
        let file = match dir.open_regular(name, Access::Read) {
            Ok(Some(f)) => f,
            Ok(None) => {
                let source = io::Error::from(io::ErrorKind::NotFound);
                return Err(TarballError::Read { path, source });
            }
            Err(SafeFsError::NotRegular { .. }) => return Err(TarballError::NotRegular { path }),
            Err(e) => return Err(TarballError::Read { path, source: io::Error::other(e) }),
        };
        data_bytes += write_file(&mut tar, &file, &path, &member_name(name), opts.mtime, &mut hdr, &mut buf)?;
        members += 1;
    }
    // End of archive: two zero blocks, then pad to a whole record.
    let end = 2 * BLOCK as u64;
    let total = tar.written + end;
    let pad = (RECORD - total % RECORD) % RECORD;
    let zeros = vec![0u8; (end + pad) as usize];
    tar.put(&zeros)?;
    Ok((members, data_bytes))
}

/// Write one file member; returns the data bytes stored.
fn write_file<S: Write>(
    tar: &mut TarStream<'_, S>,
    file: &File,
    path: &Path,
    name: &[u8],
    mtime: i64,
    hdr: &mut Vec<u8>,
    buf: &mut [u8],
) -> Result<u64, TarballError> {
    let read_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            TarballError::Changed { path: path.to_owned() }
        } else {
            TarballError::Read { path: path.to_owned(), source }
        }
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(TarballError::NotRegular { path: path.to_owned() });
    }
    let size = meta.len();
    let mode = meta.permissions().mode();
    let mut segments = sparse::data_segments(file, size).map_err(read_err)?;
    let stored: u64 = segments.iter().map(|&(_, len)| len).sum();
    hdr.clear();
    if stored == size {
        header::encode(hdr, name, mode, mtime, &Kind::Regular { size });
    } else {
        if segments.last().is_none_or(|&(o, l)| o + l < size) {
            // A trailing hole: GNU tar marks the real end with an empty
            // segment, and so do we.
            segments.push((size, 0));
        }
        header::encode(hdr, name, mode, mtime, &Kind::Sparse { real_size: size, map: &segments });
    }
    tar.put(hdr)?;
    for &(offset, len) in &segments {
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(buf.len() as u64) as usize;
            sparse::read_full(file, pos, &mut buf[..n]).map_err(read_err)?;
            tar.put(&buf[..n])?;
            pos += n as u64;
        }
    }
    let pad = header::padding(stored);
    if pad > 0 {
        tar.put(&[0u8; BLOCK][..pad])?;
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tool;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::process::Command;

    const ROOT_SIZE: u64 = 64 << 20;
    const MTIME: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC
    const FILES: [&str; 5] = ["kernel", "initrd", "root", "README.fixed", "holes"];

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Pseudo-random bytes (xorshift), so data does not compress to nothing.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// An appliance-like directory: kernel, initrd, a 64 MiB sparse root
    /// with 34 data extents (one ending at EOF) and an allocated all-zero
    /// extent, a
    /// README, and a file that is one hole.
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("kernel"), noise(300_000, 1)).unwrap();
        std::fs::write(p.join("initrd"), b"070701 cpio-ish\n".repeat(10_000)).unwrap();
        std::fs::set_permissions(p.join("initrd"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let root = File::create(p.join("root")).unwrap();
        root.set_len(ROOT_SIZE).unwrap();
        root.write_all_at(&noise(1 << 20, 2), 0).unwrap();
        root.write_all_at(&noise(5000, 3), 10 << 20).unwrap();
        root.write_all_at(&[0u8; 65536], 20 << 20).unwrap();
        root.write_all_at(&noise(3 << 20, 4), 30 << 20).unwrap();
        root.write_all_at(&noise(1000, 5), ROOT_SIZE - 1000).unwrap();
        // Enough extents that the sparse map needs extension blocks.
        for i in 0..30u64 {
            root.write_all_at(&noise(100, 6 + i), (40 << 20) + i * 65536).unwrap();
        }
        std::fs::write(p.join("README.fixed"), "This is the fixed appliance.\n").unwrap();
        File::create(p.join("holes")).unwrap().set_len(100_000).unwrap();
        dir
    }

    fn opts(compression: Compressor, threads: usize) -> TarballOptions {
        TarballOptions { compression, prefix: "appliance".into(), mtime: MTIME, threads, mode: 0o644 }
    }

    fn round_trip(compression: Compressor, name: &str, checker: &str) {
        let (Some(tar), Some(check)) = (tool("tar"), tool(checker)) else {
            return;
        };
        let src = fixture();
        let outdir = tempfile::tempdir().unwrap();
        let out = outdir.path().join(name);
        let stats = write_tarball(&PinnedDir::open(src.path()).unwrap(), &FILES, &out, &opts(compression, 2))
            .unwrap();
        assert_eq!(stats.members, 6);
        // root: 1 MiB + two 4 KiB blocks (5000 bytes) + 3 MiB + the last
        // 4 KiB block + 30 small blocks; allocated zeros are not stored.
        let root_data = (1 << 20) + 8192 + (3 << 20) + 4096 + 30 * 4096;
        assert_eq!(stats.data_bytes, 300_000 + 160_000 + root_data + 29);
        assert_eq!(stats.compressed_bytes, std::fs::metadata(&out).unwrap().len());

        run(Command::new(check).arg("-t").arg(&out));
        let listing = run(Command::new(&tar)
            .env("TZ", "UTC")
            .args(["--numeric-owner", "--full-time", "-tvf"])
            .arg(&out));
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 6, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x 0/0"), "{}", lines[0]);
        assert!(lines[0].ends_with("2023-11-14 22:13:20 appliance/"), "{}", lines[0]);
        assert!(lines[2].starts_with("-rw------- 0/0"), "{}", lines[2]);
        for (line, file) in lines[1..].iter().zip(FILES) {
            assert!(line.ends_with(&format!(" appliance/{file}")), "{line}");
        }
        assert!(lines[3].contains(&format!(" {ROOT_SIZE} ")), "{}", lines[3]);

        let dest = tempfile::tempdir().unwrap();
        run(Command::new(&tar).arg("-xf").arg(&out).arg("-C").arg(dest.path()));
        for file in FILES {
            let a = std::fs::read(src.path().join(file)).unwrap();
            let b = std::fs::read(dest.path().join("appliance").join(file)).unwrap();
            assert!(a == b, "{file} differs after extraction");
        }
        let root = std::fs::metadata(dest.path().join("appliance/root")).unwrap();
        assert_eq!(root.len(), ROOT_SIZE);
        assert!(root.blocks() * 512 < 8 << 20, "root not sparse: {} blocks", root.blocks());
        let holes = std::fs::metadata(dest.path().join("appliance/holes")).unwrap();
        assert_eq!((holes.len(), holes.blocks()), (100_000, 0));

        // Reproducible, and independent of the thread count.
        let again = outdir.path().join("again");
        write_tarball(&PinnedDir::open(src.path()).unwrap(), &FILES, &again, &opts(compression, 1)).unwrap();
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap());
        // Nothing else left beside the outputs.
        assert_eq!(std::fs::read_dir(outdir.path()).unwrap().count(), 2);
    }

    #[test]
    fn gzip_round_trip_keeps_content_order_and_holes() {
        round_trip(Compressor::Gzip, "appliance.tar.gz", "gzip");
    }

    #[test]
    fn xz_round_trip_keeps_content_order_and_holes() {
        round_trip(Compressor::Xz, "appliance.tar.xz", "xz");
    }

    #[test]
    fn missing_output_dir_is_named_and_nothing_is_left() {
        let src = fixture();
        let out = src.path().join("no-such-dir/appliance.tar.gz");
        let err =
            write_tarball(&PinnedDir::open(src.path()).unwrap(), &FILES, &out, &opts(Compressor::Gzip, 2))
                .unwrap_err();
        assert!(matches!(err, TarballError::CreateTemp { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("no-such-dir") && msg.contains("choose another"), "{msg}");
    }

    #[test]
    fn failed_write_removes_temp_and_keeps_old_output() {
        let src = fixture();
        let outdir = tempfile::tempdir().unwrap();
        let out = outdir.path().join("appliance.tar.xz");
        std::fs::write(&out, b"old").unwrap();
        let files = ["kernel", "missing"];
        let err =
            write_tarball(&PinnedDir::open(src.path()).unwrap(), &files, &out, &opts(Compressor::Xz, 2))
                .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(outdir.path()).unwrap().count(), 1);
    }

    #[test]
    fn names_escaping_the_prefix_are_refused() {
        let src = fixture();
        let out = src.path().join("x.tar.gz");
        for bad in ["", "/etc/passwd", "../root", "a/../../b"] {
            let err = write_tarball(
                &PinnedDir::open(src.path()).unwrap(),
                &[bad],
                &out,
                &opts(Compressor::Gzip, 1),
            )
            .unwrap_err();
            assert!(matches!(err, TarballError::InvalidName { .. }), "{bad}: {err:?}");
        }
        assert!(!out.exists());
    }

    #[test]
    fn non_regular_input_is_refused() {
        let src = fixture();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        let out = src.path().join("x.tar.gz");
        let err =
            write_tarball(&PinnedDir::open(src.path()).unwrap(), &["sub"], &out, &opts(Compressor::Gzip, 1))
                .unwrap_err();
        assert!(matches!(err, TarballError::NotRegular { .. }), "{err:?}");
        assert!(!out.exists());
    }
}
