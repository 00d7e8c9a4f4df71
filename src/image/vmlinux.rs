//! The appliance kernel as the uncompressed ELF inside the host's bzImage
//! (`vmlinux`), which qemu boots directly through the kernel's PVH entry
//! point instead of letting the bzImage decompress itself in the guest.
//!
//! Why: under TCG the guest decompresses Debian's 8 MB xz bzImage into
//! 66 MB one emulated instruction at a time. Measured on the 2-core build
//! machine (issue 12), the stretch from SeaBIOS's banner to the kernel's
//! first instruction took 4.8-7.4 s with the bzImage and 0.7-0.9 s with the
//! vmlinux, and whole `guestfish -a /dev/null run` launches went from
//! 18.6 s to 13.0 s (mean of 5 alternating). qemu (4.0 and later, x86
//! machines) loads an ELF `-kernel` whose notes carry
//! `XEN_ELFNOTE_PHYS32_ENTRY` (kernels built with `CONFIG_PVH`, as
//! Debian's, Fedora's and Ubuntu's are) and passes it the initrd and the
//! command line; libguestfs only hands qemu the file name.
//!
//! What differs from booting the bzImage: the kernel runs at its link
//! address (the bzImage's decompressor is what randomizes it, KASLR), and
//! the file is about 8 times larger. `--kernel-format copy` keeps the
//! host's bzImage as supermin does.
//!
//! The bzImage layout is the x86 boot protocol's
//! (Documentation/arch/x86/boot.rst): the setup header at 0x1f1,
//! `payload_offset`/`payload_length` (protocol 2.08+) locating the
//! compressed ELF within the protected-mode part, which follows the
//! `setup_sects` real-mode sectors, and the payload's last four bytes
//! giving the decompressed size (little-endian), which bounds our output.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// Largest decompressed kernel we write: the boot protocol's size field is
/// 32 bits, and real kernels are well under this (Debian 12: 66 MB).
const MAX_VMLINUX: u64 = 1 << 30;

/// ELF note type of the 32-bit PVH entry point (Xen's public
/// `elfnote.h`), under the note name "Xen".
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The compressions of a bzImage payload we can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// `CONFIG_KERNEL_GZIP`.
    Gzip,
    /// `CONFIG_KERNEL_XZ` (Debian).
    Xz,
    /// `CONFIG_KERNEL_ZSTD` (Arch, Fedora, Ubuntu).
    Zstd,
    /// `CONFIG_KERNEL_LZMA` (the legacy `.lzma` format).
    Lzma,
}

impl Compression {
    /// Name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lzma => "lzma",
        }
    }
}

/// Why a kernel cannot be turned into a bootable vmlinux. Each says what
/// the file is; the caller adds its path and what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VmlinuxError {
    /// No x86 boot header.
    #[error("not an x86 bzImage (no \"HdrS\" boot header)")]
    NotBzImage,
    /// The header predates `payload_offset`.
    #[error("boot protocol {major}.{minor:02} is older than 2.08 and does not locate its payload")]
    OldProtocol {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// `payload_offset`/`payload_length` point outside the file.
    #[error("the boot header's payload ({offset} + {length} bytes) lies outside the {file_len}-byte file")]
    BadPayload {
        /// Payload start in the file.
        offset: u64,
        /// Payload length.
        length: u64,
        /// File length.
        file_len: u64,
    },
    /// A compression we do not undo (bzip2, lz4, lzo) or no known magic.
    #[error("the payload is compressed with {0}, which is not supported here")]
    Unsupported(&'static str),
    /// The decompressor failed (corrupt or truncated payload).
    #[error("decompressing its {compression} payload: {source}")]
    Decompress {
        /// The compression.
        compression: &'static str,
        /// What the decompressor said.
        source: io::Error,
    },
    /// The output did not have the size the payload's trailer promised.
    #[error("its payload decompressed to {got} bytes, the payload's trailer says {want}")]
    SizeMismatch {
        /// Bytes produced (at most `want + 1`: we stop there).
        got: u64,
        /// The trailer's size.
        want: u64,
    },
    /// The trailer promises more than [`MAX_VMLINUX`].
    #[error("its payload claims to decompress to {0} bytes, more than the 1 GiB we accept")]
    TooLarge(u64),
    /// The decompressed payload is not a 64-bit x86 ELF executable.
    #[error("its payload is not an x86-64 ELF executable")]
    NotElf,
    /// The ELF has no PVH entry note.
    #[error("it has no PVH entry point (the kernel was built without CONFIG_PVH), so qemu cannot boot it uncompressed")]
    NoPvhEntry,
    /// Writing the output failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The compressed ELF inside a bzImage.
#[derive(Debug)]
pub(crate) struct Payload<'a> {
    /// How it is compressed.
    pub(crate) compression: Compression,
    /// The compressed stream (the size trailer excluded).
    data: &'a [u8],
    /// The decompressed size, from the trailer.
    pub(crate) size: u64,
}

/// Locate and identify the payload of the bzImage `image`.
///
/// # Errors
/// Not a bzImage, a protocol before 2.08, a payload outside the file, an
/// unsupported compression or an oversized claim.
pub(crate) fn payload(image: &[u8]) -> Result<Payload<'_>, VmlinuxError> {
    if image.len() < 0x250 || &image[0x202..0x206] != b"HdrS" {
        return Err(VmlinuxError::NotBzImage);
    }
    let [minor, major] = [image[0x206], image[0x207]];
    if (major, minor) < (2, 8) {
        return Err(VmlinuxError::OldProtocol { major, minor });
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => u64::from(n),
    };
    let le32 =
        |at: usize| u64::from(u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]));
    let offset = (setup_sects + 1) * 512 + le32(0x248);
    let length = le32(0x24c);
    let file_len = image.len() as u64;
    if length < 4 || offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(VmlinuxError::BadPayload { offset, length, file_len });
    }
    let whole = &image[offset as usize..(offset + length) as usize];
    let (data, trailer) = whole.split_at(whole.len() - 4);
    let size = u64::from(u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]));
    let compression = match data {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Compression::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [0x5d, 0, 0, ..] => Compression::Lzma,
        [b'B', b'Z', b'h', ..] => return Err(VmlinuxError::Unsupported("bzip2")),
        [0x02, 0x21, 0x4c, 0x18, ..] => return Err(VmlinuxError::Unsupported("lz4")),
        [0x89, b'L', b'Z', b'O', ..] => return Err(VmlinuxError::Unsupported("lzo")),
        _ => return Err(VmlinuxError::Unsupported("an unknown method")),
    };
    if size > MAX_VMLINUX {
        return Err(VmlinuxError::TooLarge(size));
    }
    Ok(Payload { compression, data, size })
}

/// Decompress `payload` into `out`, which receives exactly
/// `payload.size` bytes or the call fails (never more than one byte past
/// it: a payload that would inflate further is cut off there).
///
/// # Errors
/// A corrupt payload, the wrong size, or `out` failing.
pub(crate) fn decompress(payload: &Payload, out: &mut impl Write) -> Result<u64, VmlinuxError> {
    let name = payload.compression.name();
    let failed = |source: io::Error| VmlinuxError::Decompress { compression: name, source };
    let reader: Box<dyn Read + '_> = match payload.compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(payload.data)),
        // One stream; what follows it in the payload (padding) is not read.
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(payload.data)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(payload.data).map_err(failed)?.single_frame())
        }
        Compression::Lzma => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX).map_err(|e| failed(e.into()))?;
            Box::new(liblzma::read::XzDecoder::new_stream(payload.data, stream))
        }
    };
    let mut limited = reader.take(payload.size + 1);
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(e)),
        };
        got += n as u64;
        if got > payload.size {
            return Err(VmlinuxError::SizeMismatch { got, want: payload.size });
        }
        out.write_all(&buf[..n])?;
    }
    if got != payload.size {
        return Err(VmlinuxError::SizeMismatch { got, want: payload.size });
    }
    Ok(got)
}

/// Check that `file` (a decompressed kernel) is an x86-64 ELF executable
/// with a PVH entry note, reading only its headers and notes.
///
/// # Errors
/// Not such an ELF ([`VmlinuxError::NotElf`]), no PVH note
/// ([`VmlinuxError::NoPvhEntry`]), or reading failed.
pub(crate) fn check_pvh_entry(file: &File) -> Result<(), VmlinuxError> {
    let len = file.metadata()?.len();
    let mut eh = [0u8; 64];
    if len < 64 {
        return Err(VmlinuxError::NotElf);
    }
    file.read_exact_at(&mut eh, 0)?;
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
    // \x7fELF, 64-bit, little-endian, executable, x86-64, 56-byte phdrs.
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 || u16_at(&eh, 16) != 2 || u16_at(&eh, 18) != 62 {
        return Err(VmlinuxError::NotElf);
    }
    let (phoff, phentsize, phnum) = (u64_at(&eh, 32), u16_at(&eh, 54), u64::from(u16_at(&eh, 56)));
    if phentsize != 56 || phoff.checked_add(phnum * 56).is_none_or(|end| end > len) {
        return Err(VmlinuxError::NotElf);
    }
    let mut ph = vec![0u8; (phnum * 56) as usize];
    file.read_exact_at(&mut ph, phoff)?;
    for p in ph.chunks_exact(56) {
        const PT_NOTE: u32 = 4;
        let (offset, size) = (u64_at(p, 8), u64_at(p, 32));
        // Notes are a few hundred bytes; a larger one is not a kernel's.
        if u32_at(p, 0) != PT_NOTE || size > 1 << 20 || offset.checked_add(size).is_none_or(|e| e > len) {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        file.read_exact_at(&mut notes, offset)?;
        if has_pvh_note(&notes) {
            return Ok(());
        }
    }
    Err(VmlinuxError::NoPvhEntry)
}

/// Whether an ELF note segment holds `XEN_ELFNOTE_PHYS32_ENTRY` under the
/// name "Xen" (each note: namesz, descsz, type, then name and descriptor,
/// each padded to 4 bytes).
fn has_pvh_note(mut notes: &[u8]) -> bool {
    let pad = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let word =
            |at: usize| u32::from_le_bytes([notes[at], notes[at + 1], notes[at + 2], notes[at + 3]]) as usize;
        let (namesz, descsz, kind) = (word(0), word(4), word(8) as u32);
        let Some(end) = pad(namesz).checked_add(pad(descsz)).and_then(|n| n.checked_add(12)) else {
            return false;
        };
        if end > notes.len() {
            return false;
        }
        if &notes[12..12 + namesz] == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            return true;
        }
        notes = &notes[end..];
    }
    false
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal x86-64 ELF executable: header, one PT_NOTE program header,
    /// and a note segment holding `notes` (name, type).
    pub(crate) fn elf_with_notes(notes: &[(&[u8], u32)]) -> Vec<u8> {
        let mut seg = Vec::new();
        for (name, kind) in notes {
            seg.extend((name.len() as u32).to_le_bytes());
            seg.extend(4u32.to_le_bytes());
            seg.extend(kind.to_le_bytes());
            seg.extend(*name);
            seg.resize(seg.len().div_ceil(4) * 4, 0);
            seg.extend(0x0100_0000u32.to_le_bytes());
        }
        let mut elf = vec![0u8; 64 + 56];
        elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        elf[16..18].copy_from_slice(&2u16.to_le_bytes());
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut elf[64..120];
        ph[..4].copy_from_slice(&4u32.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[32..40].copy_from_slice(&(seg.len() as u64).to_le_bytes());
        elf.extend(seg);
        // Some "code" after the notes, so compression has work to do.
        elf.extend((0..20_000u32).map(|i| (i % 251) as u8));
        elf
    }

    /// A bzImage-shaped file: real-mode sectors with a protocol 2.15
    /// header, then `compressed` (+ the size trailer) at `payload_offset`.
    pub(crate) fn bzimage(compressed: &[u8], size: u32) -> Vec<u8> {
        let setup_sects = 3u8;
        let pm = (usize::from(setup_sects) + 1) * 512;
        let mut img = vec![0u8; pm + 100];
        img[0x1f1] = setup_sects;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(compressed.len() as u32 + 4).to_le_bytes());
        img.extend(compressed);
        img.extend(size.to_le_bytes());
        img.extend([0u8; 300]); // what follows the payload in a real bzImage
        img
    }

    fn xz(raw: &[u8]) -> Vec<u8> {
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(raw).unwrap();
        enc.finish().unwrap()
    }

    fn round_trip(compressed: &[u8], raw: &[u8], compression: Compression) {
        let img = bzimage(compressed, raw.len() as u32);
        let p = payload(&img).unwrap();
        assert_eq!(p.compression, compression);
        let mut out = Vec::new();
        assert_eq!(decompress(&p, &mut out).unwrap(), raw.len() as u64);
        assert_eq!(out, raw);
    }

    #[test]
    fn every_supported_compression_round_trips() {
        let raw = elf_with_notes(&[(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY)]);
        round_trip(&xz(&raw), &raw, Compression::Xz);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&raw).unwrap();
        round_trip(&gz.finish().unwrap(), &raw, Compression::Gzip);
        round_trip(&zstd::stream::encode_all(&raw[..], 19).unwrap(), &raw, Compression::Zstd);
        let opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
        let stream = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
        let mut lz = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        lz.write_all(&raw).unwrap();
        round_trip(&lz.finish().unwrap(), &raw, Compression::Lzma);
    }

    #[test]
    fn a_size_trailer_that_lies_is_an_error_not_a_short_or_long_kernel() {
        let raw = elf_with_notes(&[]);
        let c = xz(&raw);
        for want in [raw.len() as u32 - 1, raw.len() as u32 + 1] {
            let img = bzimage(&c, want);
            let err = decompress(&payload(&img).unwrap(), &mut Vec::new()).unwrap_err();
            assert!(matches!(err, VmlinuxError::SizeMismatch { .. }), "{err}");
        }
        let img = bzimage(&c, u32::MAX);
        assert!(matches!(payload(&img).unwrap_err(), VmlinuxError::TooLarge(_)));
    }

    #[test]
    fn bad_headers_and_payloads_are_named() {
        assert!(matches!(payload(&[0u8; 4096]).unwrap_err(), VmlinuxError::NotBzImage));
        assert!(matches!(payload(b"short").unwrap_err(), VmlinuxError::NotBzImage));
        let raw = elf_with_notes(&[]);
        let mut img = bzimage(&xz(&raw), raw.len() as u32);
        img[0x206..0x208].copy_from_slice(&0x0207u16.to_le_bytes());
        assert!(matches!(payload(&img).unwrap_err(), VmlinuxError::OldProtocol { major: 2, minor: 7 }));
        let mut img = bzimage(&xz(&raw), raw.len() as u32);
        img[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(payload(&img).unwrap_err(), VmlinuxError::BadPayload { .. }));
        for (magic, name) in
            [(&b"BZh9"[..], "bzip2"), (&[0x02, 0x21, 0x4c, 0x18][..], "lz4"), (b"????", "an unknown method")]
        {
            let img = bzimage(magic, 10);
            match payload(&img).unwrap_err() {
                VmlinuxError::Unsupported(n) => assert_eq!(n, name),
                e => panic!("{e}"),
            }
        }
        // A truncated stream: the decompressor's error, named.
        let c = xz(&raw);
        let img = bzimage(&c[..c.len() / 2], raw.len() as u32);
        let err = decompress(&payload(&img).unwrap(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().starts_with("decompressing its xz payload"), "{err}");
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn the_pvh_note_is_found_among_others_and_its_absence_is_named() {
        let ok = elf_with_notes(&[(b"GNU\0", 3), (b"Linux\0", 6), (b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY)]);
        check_pvh_entry(&file_with(&ok)).unwrap();
        for notes in [&[(&b"Xen\0"[..], 17u32)][..], &[(b"Xe\0", XEN_ELFNOTE_PHYS32_ENTRY)], &[]] {
            let no = elf_with_notes(notes);
            assert!(matches!(check_pvh_entry(&file_with(&no)).unwrap_err(), VmlinuxError::NoPvhEntry));
        }
        let mut not_x86 = ok.clone();
        not_x86[18] = 183; // aarch64
        assert!(matches!(check_pvh_entry(&file_with(&not_x86)).unwrap_err(), VmlinuxError::NotElf));
        assert!(matches!(check_pvh_entry(&file_with(b"\x7fELF")).unwrap_err(), VmlinuxError::NotElf));
        // A note segment claiming more than the file holds is skipped.
        let mut lying = ok;
        lying[64 + 32..64 + 40].copy_from_slice(&(1u64 << 19).to_le_bytes());
        assert!(matches!(check_pvh_entry(&file_with(&lying)).unwrap_err(), VmlinuxError::NoPvhEntry));
    }
}
