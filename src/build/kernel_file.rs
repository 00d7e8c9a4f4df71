//! The appliance's `kernel` file: the uncompressed vmlinux qemu boots
//! through its PVH entry point ([`crate::image::vmlinux`] says why), or a
//! copy of the host's kernel file as supermin makes it
//! ([`KernelFormat`]).
//!
//! Decompressing Debian's kernel takes about a second of CPU (xz, one
//! stream, so one core), more than the rest of a build into /dev/shm. The
//! result depends only on the host kernel's content, so it is remembered
//! beside the appliance (`PARENT/.NAME.vmlinux`, like the stamp and the
//! digests of [`crate::hashcache`]) under that kernel's sha256: the next
//! build with the same host kernel copies it instead. The file starts with
//! a [`HEADER_LEN`]-byte JSON header (the source kernel's sha256, the
//! vmlinux's sha256 and size), the vmlinux follows at a block boundary (so
//! a copy can share blocks where the filesystem can). Both files have
//! holes where the vmlinux has 4 KiB blocks of zeros (about half of
//! Debian's: its page-aligned sections are padded with zeros), so each
//! takes about 31 MiB of memory on tmpfs, or disk, instead of 63. It is read only when
//! it can be believed (regular, one link, reached without following a link,
//! owned by us, root or the directory's owner, writable by nobody else),
//! and the bytes copied out of it are hashed on the way and must match its
//! header, else the kernel is decompressed again: it only saves work.
//! Once a remembered file has passed that check, its signature goes into
//! the build's [`HashCache`] (with the sha256 of the whole file, as every
//! entry there); while the file keeps that signature, the next builds copy
//! it with `copy_file_range` without hashing 63 MB again, the trust the
//! cache gives every host file it knows.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::{self, HashingWriter};
use crate::hashcache::HashCache;
use crate::image::holes::{self, HoleWriter};
use crate::image::vmlinux;
use crate::manifest::KernelFormat;
use crate::manifest::ManifestFile;
use crate::output::Staging;
use crate::safefs::Access;

/// The remembered vmlinux's suffix: `PARENT/.NAME.vmlinux`.
const SUFFIX: &str = "vmlinux";

/// Bytes before the vmlinux in the remembered file.
const HEADER_LEN: u64 = 4096;

/// Format version of the remembered file's header.
const HEADER_VERSION: u32 = 1;

/// Largest host kernel file we read into memory to decompress (Debian's is
/// 8 MB; the boot protocol's fields are 32-bit).
const MAX_BZIMAGE: u64 = 256 << 20;

/// What the `kernel` file became (`output.kernel_image` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelImage {
    /// The uncompressed ELF.
    Vmlinux,
    /// The host's file.
    Copy,
}

impl KernelImage {
    /// The manifest's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            KernelImage::Vmlinux => "vmlinux",
            KernelImage::Copy => "copy",
        }
    }
}

/// The written kernel: its record, what it is, and how it was made (for
/// `-v`).
pub(crate) struct KernelWritten {
    /// Size and sha256 of the `kernel` file.
    pub(crate) record: ManifestFile,
    /// What it is.
    pub(crate) image: KernelImage,
    /// How it was made, for the stage line.
    pub(crate) how: String,
}

/// The host kernel to write from.
pub(crate) struct KernelSource<'a> {
    /// Its path.
    pub(crate) path: &'a Path,
    /// Its sha256 (hex), as the plan found it.
    pub(crate) sha256: &'a str,
    /// The CPU the appliance is for.
    pub(crate) host_cpu: &'a str,
}

/// Header of the remembered vmlinux.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Header {
    version: u32,
    /// sha256 of the host kernel file it was decompressed from.
    source_sha256: String,
    /// sha256 of the vmlinux (the bytes after the header).
    sha256: String,
    /// Length of the vmlinux.
    size: u64,
}

/// Write the `kernel` file of `format` into `staging`. `beside` is the
/// appliance directory whose remembered vmlinux may be used and refreshed
/// (`None`: a tarball-only build, nothing remembered); `hashes` may know
/// it by signature.
///
/// # Errors
/// Reading the host kernel or writing the file; with
/// [`KernelFormat::Uncompressed`], a kernel that cannot be booted
/// uncompressed.
pub(crate) fn write_kernel(
    format: KernelFormat,
    source: &KernelSource,
    staging: &Staging,
    beside: Option<&Path>,
    hashes: &mut HashCache,
) -> Result<KernelWritten> {
    let out = staging.path().join("kernel");
    let x86 = source.host_cpu == "x86_64";
    if format == KernelFormat::Copy || (format == KernelFormat::Auto && !x86) {
        return copy_kernel(source.path, staging, "copied".into());
    }
    if !x86 {
        bail!(
            "--kernel-format uncompressed: only x86_64 appliances can boot an uncompressed kernel (this one is for {}); use --kernel-format auto or copy",
            source.host_cpu
        );
    }
    let mut file = staging.create_file("kernel", 0o644)?;
    if let Some(dir) = beside {
        if let Some((record, known)) = reuse_remembered(dir, source.sha256, &mut file, hashes) {
            let how = format!(
                "uncompressed vmlinux reused from {} ({})",
                crate::stamp::beside_path(dir, SUFFIX).display(),
                if known { "known by signature" } else { "checked" }
            );
            return Ok(KernelWritten { record, image: KernelImage::Vmlinux, how });
        }
        rewind(&mut file).with_context(|| format!("writing {}", out.display()))?;
    }
    match decompress_into(source.path, &mut file) {
        Ok(record) => {
            if let Some(dir) = beside {
                // Best effort: a failure only costs the next build the
                // decompression.
                let _ = remember(dir, source.sha256, &record, &file, staging);
            }
            let how = format!("uncompressed from {}", source.path.display());
            Ok(KernelWritten { record, image: KernelImage::Vmlinux, how })
        }
        Err(DecompressError::Kernel(e)) if format == KernelFormat::Auto => {
            drop(file);
            staging.dir().remove_file("kernel")?;
            copy_kernel(source.path, staging, format!("copied as it is: {}: {e}", source.path.display()))
        }
        Err(DecompressError::Kernel(e)) => bail!(
            "{}: {e}; build with --kernel-format copy (or auto) to boot it as it is",
            source.path.display()
        ),
        Err(DecompressError::Io(e)) => Err(e).with_context(|| format!("writing {}", out.display())),
    }
}

/// Copy the host's file as it is.
fn copy_kernel(from: &Path, staging: &Staging, how: String) -> Result<KernelWritten> {
    let to = staging.path().join("kernel");
    let mut src =
        crate::bounded::open_regular(from).with_context(|| format!("opening {}", from.display()))?;
    let dst = staging.create_file("kernel", 0o644)?;
    let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, dst));
    io::copy(&mut src, &mut w)
        .with_context(|| format!("copying kernel {} to {}", from.display(), to.display()))?;
    let (_, size, hash) = w.finish().with_context(|| format!("writing {}", to.display()))?;
    let record = ManifestFile { name: "kernel".into(), size, algorithm: digest::SHA256.into(), hash };
    Ok(KernelWritten { record, image: KernelImage::Copy, how })
}

/// Why decompressing failed: the kernel (auto falls back to a copy), or
/// reading and writing files (always an error).
enum DecompressError {
    Kernel(vmlinux::VmlinuxError),
    Io(io::Error),
}

impl From<vmlinux::VmlinuxError> for DecompressError {
    fn from(e: vmlinux::VmlinuxError) -> Self {
        match e {
            vmlinux::VmlinuxError::Io(e) => DecompressError::Io(e),
            e => DecompressError::Kernel(e),
        }
    }
}

/// Decompress the bzImage at `from` into `file` (empty) and check the
/// result has a PVH entry point.
fn decompress_into(from: &Path, file: &mut File) -> Result<ManifestFile, DecompressError> {
    let mut bytes = Vec::new();
    crate::bounded::open_regular(from)
        .and_then(|f| f.take(MAX_BZIMAGE + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            DecompressError::Io(io::Error::new(e.kind(), format!("reading {}: {e}", from.display())))
        })?;
    if bytes.len() as u64 > MAX_BZIMAGE {
        return Err(DecompressError::Io(io::Error::other(format!(
            "{}: larger than {} MiB, not a kernel",
            from.display(),
            MAX_BZIMAGE >> 20
        ))));
    }
    let payload = vmlinux::payload(&bytes)?;
    let mut w = HashingWriter::new(HoleWriter::new(file));
    vmlinux::decompress(&payload, &mut w)?;
    let (_, size, hash) = w.finish().map_err(DecompressError::Io)?;
    vmlinux::check_pvh_entry(file)?;
    Ok(ManifestFile { name: "kernel".into(), size, algorithm: digest::SHA256.into(), hash })
}

/// Empty `file` and put its offset back at 0.
fn rewind(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.rewind()
}

/// The remembered vmlinux beside `dir`, opened if it can be believed.
fn open_remembered(dir: &Path) -> Option<File> {
    let (parent, name) = crate::stamp::pinned(dir, SUFFIX)?;
    let file = parent.open_regular(&name, Access::Read).ok()??;
    crate::output::check_trusted(&parent, &name, &file).ok()?;
    let md = file.metadata().ok()?;
    // Root-owned but writable by others would let anyone choose our kernel.
    (md.mode() & 0o022 == 0).then_some(file)
}

/// Copy the remembered vmlinux into `out` (empty) if it was made from the
/// kernel `source_sha256` and its bytes still hash to what it says, or
/// `hashes` knows it by its signature (then they did when it was
/// checked). Returns the record and whether it was known.
fn reuse_remembered(
    dir: &Path,
    source_sha256: &str,
    out: &mut File,
    hashes: &mut HashCache,
) -> Option<(ManifestFile, bool)> {
    let mut file = open_remembered(dir)?;
    let mut head = vec![0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut head, 0).ok()?;
    let text = std::str::from_utf8(&head).ok()?.trim_end_matches([' ', '\n', '\0']);
    let header: Header = serde_json::from_str(text).ok()?;
    let len = file.metadata().ok()?.len();
    if header.version != HEADER_VERSION
        || header.source_sha256 != source_sha256
        || len != HEADER_LEN + header.size
    {
        return None;
    }
    let path = crate::stamp::beside_path(dir, SUFFIX);
    let record = |hash: String| ManifestFile {
        name: "kernel".into(),
        size: header.size,
        algorithm: digest::SHA256.into(),
        hash,
    };
    let reading = match hashes.lookup(&path, &file).ok()? {
        Ok(_) => {
            copy_payload(&file, out, header.size).ok()?;
            return Some((record(header.sha256.clone()), true));
        }
        Err(reading) => reading,
    };
    // Hash the payload (it must match the header) and the whole file (the
    // cache's entry) in one pass.
    let mut whole = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut whole, &head);
    file.seek(io::SeekFrom::Start(HEADER_LEN)).ok()?;
    let mut w = HashingWriter::new(HoleWriter::new(out));
    let mut src = file.try_clone().ok()?.take(header.size);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        sha2::Digest::update(&mut whole, &buf[..n]);
        w.write_all(&buf[..n]).ok()?;
    }
    let (_, size, hash) = w.finish().ok()?;
    if size != header.size || hash != header.sha256 {
        return None;
    }
    hashes.remember(&path, &file, reading, sha2::Digest::finalize(whole).into());
    Some((record(hash), false))
}

/// Copy the `size`-byte vmlinux after the header of the remembered `file`
/// into `out` (empty), in the kernel (`copy_file_range`: block sharing
/// where the file system can, one copy in the kernel on tmpfs), its holes
/// kept.
fn copy_payload(file: &File, out: &File, size: u64) -> io::Result<()> {
    holes::copy_data(file, HEADER_LEN, out, 0, size)
}

/// Remember `vmlinux` (described by `record`, made from the kernel
/// `source_sha256`) beside `dir`, unsynced (it is checked before use). It
/// is written in the staging directory and renamed into place, so a build
/// killed meanwhile leaves nothing that the next build's cleanup of
/// leftover staging directories does not remove. Given to the parent's
/// owner when we are root and the parent is someone else's, as the stamp
/// is.
fn remember(
    dir: &Path,
    source_sha256: &str,
    record: &ManifestFile,
    vmlinux: &File,
    staging: &Staging,
) -> io::Result<()> {
    let (parent, name) = crate::stamp::pinned(dir, SUFFIX).ok_or_else(|| io::Error::other("no parent"))?;
    let header = Header {
        version: HEADER_VERSION,
        source_sha256: source_sha256.into(),
        sha256: record.hash.clone(),
        size: record.size,
    };
    let mut head = serde_json::to_vec(&header).map_err(io::Error::other)?;
    if head.len() as u64 >= HEADER_LEN {
        return Err(io::Error::other("header too long"));
    }
    head.resize(HEADER_LEN as usize - 1, b' ');
    head.push(b'\n');
    let owner = crate::stamp::beside_owner(&parent)?;
    let (tmp, mut file) = staging.dir().create_temp_file(".vmlinux", 0o644).map_err(io::Error::other)?;
    let written = (|| {
        file.write_all(&head)?;
        if vmlinux.metadata()?.len() != record.size {
            return Err(io::Error::other("the staged kernel changed size"));
        }
        holes::copy_data(vmlinux, 0, &file, HEADER_LEN, record.size)?;
        if let Some((uid, gid)) = owner {
            crate::safefs::chown_keeping_mode(&file, uid, gid, 0o644).map_err(io::Error::from)?;
        }
        staging.dir().rename(&tmp, &parent, &name, nix::fcntl::RenameFlags::empty()).map_err(io::Error::other)
    })();
    if written.is_err() {
        let _ = staging.dir().remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::vmlinux::tests::{bzimage, elf_with_notes};

    /// A bzImage-shaped kernel whose payload (xz) is a tiny ELF with a PVH
    /// note (or without), written to `dir/name`. Returns its sha256 and the
    /// ELF.
    fn fake_kernel(dir: &Path, name: &str, pvh: bool) -> (String, Vec<u8>) {
        fake_kernel_with(dir, name, pvh, &[])
    }

    /// [`fake_kernel`] whose ELF is followed by `tail`.
    fn fake_kernel_with(dir: &Path, name: &str, pvh: bool, tail: &[u8]) -> (String, Vec<u8>) {
        let notes: &[(&[u8], u32)] = if pvh { &[(b"Xen\0", 18)] } else { &[(b"Linux\0", 6)] };
        let mut elf = elf_with_notes(notes);
        elf.extend_from_slice(tail);
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&elf).unwrap();
        let img = bzimage(&enc.finish().unwrap(), elf.len() as u32);
        std::fs::write(dir.join(name), &img).unwrap();
        (digest::sha256_hex(&img), elf)
    }

    /// Write the kernel beside `tmp/app` with nothing known by signature.
    fn write(
        tmp: &Path,
        format: KernelFormat,
        cpu: &str,
        kernel: &str,
        sha: &str,
    ) -> (Result<KernelWritten>, Vec<u8>) {
        write_knowing(tmp, format, cpu, kernel, sha, &mut HashCache::new())
    }

    /// [`write`] with the digests `hashes` knows.
    fn write_knowing(
        tmp: &Path,
        format: KernelFormat,
        cpu: &str,
        kernel: &str,
        sha: &str,
        hashes: &mut HashCache,
    ) -> (Result<KernelWritten>, Vec<u8>) {
        let target = tmp.join("app");
        let staging = Staging::create(&target).unwrap();
        let path = tmp.join(kernel);
        let src = KernelSource { path: &path, sha256: sha, host_cpu: cpu };
        let r = write_kernel(format, &src, &staging, Some(&target), hashes);
        let bytes = std::fs::read(staging.path().join("kernel")).unwrap_or_default();
        (r, bytes)
    }

    /// A remembered vmlinux that passed the check is known by its
    /// signature afterwards (its whole file's sha256 in the cache), and
    /// copied without hashing while it keeps that signature; rewritten, it
    /// has another signature and is checked again, and a flipped byte is
    /// caught.
    #[test]
    fn a_checked_remembered_kernel_is_known_by_signature_until_it_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let (sha, elf) = fake_kernel(tmp.path(), "vmlinuz", true);
        let mut hashes = HashCache::keeping_every_digest();
        let build = |hashes: &mut HashCache| {
            let (r, bytes) = write_knowing(tmp.path(), KernelFormat::Auto, "x86_64", "vmlinuz", &sha, hashes);
            let w = r.unwrap();
            assert_eq!(
                (bytes.as_slice(), w.record.hash.as_str()),
                (elf.as_slice(), digest::sha256_hex(&elf).as_str())
            );
            w.how
        };
        assert!(build(&mut hashes).starts_with("uncompressed from"));
        assert!(build(&mut hashes).ends_with("(checked)"));
        let remembered = tmp.path().join(".app.vmlinux");
        let whole = std::fs::read(&remembered).unwrap();
        let file = File::open(&remembered).unwrap();
        assert_eq!(
            hashes.lookup(&remembered, &file).unwrap().ok(),
            Some(digest::sha256_stream(&mut &whole[..]).unwrap())
        );
        assert!(build(&mut hashes).ends_with("(known by signature)"));
        assert!(build(&mut hashes).ends_with("(known by signature)"));

        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&remembered, &flipped).unwrap();
        assert!(build(&mut hashes).starts_with("uncompressed from"), "a flipped byte is caught");
    }

    /// The vmlinux's 4 KiB blocks of zeros are holes in the appliance's
    /// `kernel` and in the remembered file, however it was made:
    /// decompressed, copied after a check, or known by signature.
    #[test]
    fn zero_blocks_of_the_kernel_are_holes_in_both_files() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let mut tail = vec![0u8; 256 << 10];
        tail.extend_from_slice(&[1u8; 10]);
        let (sha, elf) = fake_kernel_with(tmp.path(), "vmlinuz", true, &tail);
        let mut hashes = HashCache::keeping_every_digest();
        let allocated = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        let mut hows = Vec::new();
        for _ in 0..3 {
            let target = tmp.path().join("app");
            let staging = Staging::create(&target).unwrap();
            let path = tmp.path().join("vmlinuz");
            let src = KernelSource { path: &path, sha256: &sha, host_cpu: "x86_64" };
            let w = write_kernel(KernelFormat::Auto, &src, &staging, Some(&target), &mut hashes).unwrap();
            let kernel = staging.path().join("kernel");
            assert!(std::fs::read(&kernel).unwrap() == elf, "{}: content differs", w.how);
            assert!(allocated(&kernel) < 64 << 10, "{}: {} bytes allocated", w.how, allocated(&kernel));
            let remembered = tmp.path().join(".app.vmlinux");
            assert!(allocated(&remembered) < 64 << 10, "{}: remembered file not sparse", w.how);
            hows.push(w.how);
        }
        assert!(hows[0].starts_with("uncompressed from"), "{hows:?}");
        assert!(hows[1].ends_with("(checked)") && hows[2].ends_with("(known by signature)"), "{hows:?}");
    }

    #[test]
    fn uncompressed_then_remembered_then_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let (sha, elf) = fake_kernel(tmp.path(), "vmlinuz", true);
        let (r, bytes) = write(tmp.path(), KernelFormat::Auto, "x86_64", "vmlinuz", &sha);
        let w = r.unwrap();
        assert_eq!((w.image, bytes.as_slice()), (KernelImage::Vmlinux, elf.as_slice()));
        assert_eq!(w.record.hash, digest::sha256_hex(&elf));
        assert!(w.how.starts_with("uncompressed from"), "{}", w.how);
        let remembered = tmp.path().join(".app.vmlinux");
        assert_eq!(std::fs::read(&remembered).unwrap().len() as u64, HEADER_LEN + elf.len() as u64);

        let (r, bytes) = write(tmp.path(), KernelFormat::Uncompressed, "x86_64", "vmlinuz", &sha);
        let w = r.unwrap();
        assert!(w.how.contains("reused from"), "{}", w.how);
        assert_eq!((bytes, w.record.hash), (elf.clone(), digest::sha256_hex(&elf)));

        // Nothing is left behind but the remembered file.
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".app.vmlinux", "vmlinuz"]);
        // Another host kernel: not reused.
        let (r, _) = write(tmp.path(), KernelFormat::Auto, "x86_64", "vmlinuz", &"0".repeat(64));
        assert!(r.unwrap().how.starts_with("uncompressed from"));
    }

    #[test]
    fn a_damaged_or_writable_remembered_kernel_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let (sha, elf) = fake_kernel(tmp.path(), "vmlinuz", true);
        write(tmp.path(), KernelFormat::Auto, "x86_64", "vmlinuz", &sha).0.unwrap();
        let remembered = tmp.path().join(".app.vmlinux");
        let mut bytes = std::fs::read(&remembered).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&remembered, &bytes).unwrap();
        let (r, out) = write(tmp.path(), KernelFormat::Auto, "x86_64", "vmlinuz", &sha);
        assert!(r.unwrap().how.starts_with("uncompressed from"), "a flipped byte is caught");
        assert_eq!(out, elf);

        // Made again by that build; now world-writable: ignored.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&remembered, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (r, _) = write(tmp.path(), KernelFormat::Auto, "x86_64", "vmlinuz", &sha);
        assert!(r.unwrap().how.starts_with("uncompressed from"));
        // A symlink in its place is not followed.
        std::fs::remove_file(&remembered).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::write(&elsewhere, b"x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &remembered).unwrap();
        let (r, _) = write(tmp.path(), KernelFormat::Auto, "x86_64", "vmlinuz", &sha);
        assert!(r.unwrap().how.starts_with("uncompressed from"));
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"x", "not written through the link");
    }

    #[test]
    fn auto_copies_what_cannot_boot_uncompressed_and_uncompressed_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let (sha, _) = fake_kernel(tmp.path(), "nopvh", false);
        let host = std::fs::read(tmp.path().join("nopvh")).unwrap();
        let (r, bytes) = write(tmp.path(), KernelFormat::Auto, "x86_64", "nopvh", &sha);
        let w = r.unwrap();
        assert_eq!((w.image, bytes.as_slice()), (KernelImage::Copy, host.as_slice()));
        assert!(w.how.contains("no PVH entry point"), "{}", w.how);
        let (r, _) = write(tmp.path(), KernelFormat::Uncompressed, "x86_64", "nopvh", &sha);
        let err = format!("{:#}", r.err().unwrap());
        assert!(
            err.contains("nopvh: it has no PVH entry point") && err.contains("--kernel-format copy"),
            "{err}"
        );

        let (sha, _) = fake_kernel(tmp.path(), "vmlinuz", true);
        let host = std::fs::read(tmp.path().join("vmlinuz")).unwrap();
        for (format, cpu) in [(KernelFormat::Copy, "x86_64"), (KernelFormat::Auto, "aarch64")] {
            let (r, bytes) = write(tmp.path(), format, cpu, "vmlinuz", &sha);
            assert_eq!((r.unwrap().image, bytes), (KernelImage::Copy, host.clone()));
        }
        let (r, _) = write(tmp.path(), KernelFormat::Uncompressed, "aarch64", "vmlinuz", &sha);
        assert!(format!("{:#}", r.err().unwrap()).contains("only x86_64"));
    }
}
