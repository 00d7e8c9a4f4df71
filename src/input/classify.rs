//! Content sniffing for supermin.d files (docs/supermin-compat.md, "Input
//! classification") and the
//! decompression layer.
//!
//! Like supermin, a file's kind comes from its bytes, never its name. This
//! module only answers "what is this and what are its (decompressed)
//! bytes"; parsing lists and tar archives is left to `mod.rs` and
//! `archive.rs`.
//!
//! Deliberate differences from supermin, each turning a silent misreading or
//! a vague "unknown file type" into an error that says what to do:
//! - bzip2 (`BZh1`..`BZh9` followed by a block or end-of-stream magic) would
//!   be read by supermin as a package list, because `B` is alphanumeric. We
//!   refuse it.
//! - zstd (`28 b5 2f fd`) and lz4 (`04 22 4d 18`, legacy `02 21 4c 18`) are
//!   refused with the same advice: recompress with gzip or xz.
//! - All cpio variants (`070701`, `070702`, `070707`) are refused; supermin
//!   only recognises `070701` and would take the others for package lists.
//! - A v7 tar header (valid header checksum but no `ustar` magic) is refused;
//!   supermin reads it as a package list or "unknown file type".

use std::io::Read;
use std::path::Path;

use super::InputError;

/// The compression layer of an input file (gzip and xz only, as supermin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Compression {
    /// Not compressed.
    None,
    /// gzip (`1f 8b 08`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
}

impl Compression {
    /// Short lower-case name for messages and manifests.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
        }
    }
}

/// What the content layer of a file is, after decompression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// A tar archive with `ustar` magic.
    Tar,
    /// A list whose first byte is `/`.
    Hostfiles,
    /// A list whose first byte is `-`.
    Excludefiles,
    /// A list whose first byte is ASCII alphanumeric.
    Packages,
    /// Zero bytes.
    Empty,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Detect the compression layer (gzip and xz only, as supermin).
pub(crate) fn compression_of(bytes: &[u8]) -> Compression {
    if bytes.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if bytes.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// A reader of the decompressed stream. Concatenated gzip members and xz
/// streams are read like `zcat`/`xzcat` do. Read errors from it are the
/// decoder's (corrupt or truncated data) or the underlying reader's.
pub(crate) fn decoder<'a, R: Read + 'a>(compression: Compression, inner: R) -> Box<dyn Read + 'a> {
    match compression {
        Compression::None => Box::new(std::io::BufReader::with_capacity(256 << 10, inner)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(inner)),
    }
}

/// Read up to `limit` decompressed bytes from `stream` (all of them when
/// it is shorter).
///
/// Errors: [`InputError::Decompress`] (or [`InputError::Io`] for an
/// uncompressed file) naming `path`.
pub(crate) fn read_up_to(
    path: &Path,
    compression: Compression,
    stream: &mut dyn Read,
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<(), InputError> {
    stream.take(limit).read_to_end(out).map(drop).map_err(|source| match compression {
        Compression::None => InputError::Io { path: path.to_owned(), source },
        _ => InputError::Decompress { path: path.to_owned(), format: compression.name(), source },
    })
}

/// Classify the (decompressed) content of a file, first match wins, in
/// supermin's order (docs/supermin-compat.md, "Input classification"), with
/// the refusals listed in the
/// module documentation checked first.
///
/// Errors: [`InputError::Cpio`], [`InputError::UnsupportedCompression`],
/// [`InputError::V7Tar`], [`InputError::UnknownType`], each naming `path`.
pub(crate) fn classify(path: &Path, bytes: &[u8]) -> Result<Content, InputError> {
    let unsupported = |format: &'static str, misread: bool| InputError::UnsupportedCompression {
        path: path.to_owned(),
        format,
        misread,
    };
    if bytes.len() >= 262 && &bytes[257..262] == b"ustar" {
        return Ok(Content::Tar);
    }
    if bytes.starts_with(b"07070") && matches!(bytes.get(5), Some(b'1' | b'2' | b'7')) {
        return Err(InputError::Cpio { path: path.to_owned() });
    }
    if is_bzip2(bytes) {
        return Err(unsupported("bzip2", true));
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(unsupported("zstd", false));
    }
    if bytes.starts_with(&[0x04, 0x22, 0x4d, 0x18]) || bytes.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        return Err(unsupported("lz4", false));
    }
    if is_v7_tar(bytes) {
        return Err(InputError::V7Tar { path: path.to_owned() });
    }
    match bytes.first() {
        None => Ok(Content::Empty),
        Some(b'/') if bytes.len() >= 2 => Ok(Content::Hostfiles),
        Some(b'-') if bytes.len() >= 2 => Ok(Content::Excludefiles),
        Some(c) if c.is_ascii_alphanumeric() => Ok(Content::Packages),
        Some(&c) => Err(InputError::UnknownType { path: path.to_owned(), first_byte: c }),
    }
}

/// `BZh` + block size digit + the block magic (pi) or end-of-stream magic
/// (sqrt pi), so a package list starting with "BZh" is not mistaken.
fn is_bzip2(bytes: &[u8]) -> bool {
    const BLOCK: &[u8] = &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    const EOS: &[u8] = &[0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
    bytes.len() >= 10
        && bytes.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&bytes[3])
        && (&bytes[4..10] == BLOCK || &bytes[4..10] == EOS)
}

/// A 512-byte tar header whose checksum field (octal at 148..156) equals the
/// sum of its bytes with that field read as spaces. Text lists never pass.
fn is_v7_tar(bytes: &[u8]) -> bool {
    let Some(header) = bytes.get(..512) else { return false };
    let field = &header[148..156];
    let digits: Vec<u8> =
        field.iter().copied().skip_while(|&c| c == b' ').take_while(|c| (b'0'..=b'7').contains(c)).collect();
    let Some(stored) = std::str::from_utf8(&digits).ok().and_then(|s| u32::from_str_radix(s, 8).ok()) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    stored == sum && header[0] != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn kind(bytes: &[u8]) -> Result<Content, String> {
        classify(Path::new("F"), bytes).map_err(|e| e.to_string())
    }

    fn tar_with(name: &str, format: &str) -> Vec<u8> {
        let mut header = match format {
            "gnu" => tar::Header::new_gnu(),
            "ustar" => tar::Header::new_ustar(),
            _ => tar::Header::new_old(),
        };
        header.set_path(name).unwrap();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header, &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn lists_by_first_byte() {
        assert_eq!(kind(b"bash\ncoreutils\n"), Ok(Content::Packages));
        assert_eq!(kind(b"0ad\n"), Ok(Content::Packages));
        assert_eq!(kind(b"/etc/ld.so.cache\n"), Ok(Content::Hostfiles));
        assert_eq!(kind(b"-/boot/*\n"), Ok(Content::Excludefiles));
        assert_eq!(kind(b""), Ok(Content::Empty));
        // Only the first byte decides, later lines are not checked.
        assert_eq!(kind(b"/x\nbash\n"), Ok(Content::Hostfiles));
        // Length rules: a lone "/" or "-" is unknown, a lone letter a list.
        assert!(kind(b"/").unwrap_err().contains("unknown file type"));
        assert_eq!(kind(b"a"), Ok(Content::Packages));
    }

    #[test]
    fn unknown_first_byte_names_file_and_advice() {
        let e = kind(b"# comment\nbash\n").unwrap_err();
        assert!(e.starts_with("F: unknown file type"), "{e}");
        assert!(e.contains("0x23"), "{e}");
        assert!(kind(b" bash\n").is_err());
    }

    #[test]
    fn tar_formats() {
        assert_eq!(kind(&tar_with("etc/x", "gnu")), Ok(Content::Tar));
        assert_eq!(kind(&tar_with("etc/x", "ustar")), Ok(Content::Tar));
        let e = kind(&tar_with("etc/x", "v7")).unwrap_err();
        assert!(e.contains("v7 tar"), "{e}");
    }

    #[test]
    fn refused_formats() {
        let e = kind(b"070701000000").unwrap_err();
        assert!(e.contains("cpio"), "{e}");
        assert!(kind(b"070707000000").unwrap_err().contains("cpio"));
        let mut bz = b"BZh91AY&SY".to_vec();
        bz.extend_from_slice(&[0; 20]);
        let e = kind(&bz).unwrap_err();
        assert!(e.contains("bzip2-compressed file; supermin would misread it as a package list"), "{e}");
        assert!(e.contains("recompress it with gzip or xz"), "{e}");
        // A package literally named BZh... is still a package list.
        assert_eq!(kind(b"BZh9-utils\n"), Ok(Content::Packages));
        let e = kind(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap_err();
        assert!(e.contains("zstd-compressed") && e.contains("gzip or xz"), "{e}");
        assert!(kind(&[0x04, 0x22, 0x4d, 0x18, 0]).unwrap_err().contains("lz4"));
    }

    #[test]
    fn compression_round_trip() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"bash\n").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(compression_of(&gz), Compression::Gzip);
        let decompress = |bytes: &[u8], c: Compression| {
            let mut out = Vec::new();
            read_up_to(Path::new("F"), c, &mut decoder(c, bytes), 1 << 20, &mut out).map(|()| out)
        };
        assert_eq!(decompress(&gz, Compression::Gzip).unwrap(), b"bash\n");
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(b"-/boot/*\n").unwrap();
        let xz = xz.finish().unwrap();
        assert_eq!(compression_of(&xz), Compression::Xz);
        assert_eq!(decompress(&xz, Compression::Xz).unwrap(), b"-/boot/*\n");
        // Truncated gzip fails and names the file.
        let e = decompress(&gz[..gz.len() - 6], Compression::Gzip).unwrap_err();
        assert!(e.to_string().starts_with("F: corrupt or truncated gzip"), "{e}");
        // The limit bounds what is read, whatever the stream holds.
        let mut big = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        big.write_all(&vec![b'a'; 10 << 20]).unwrap();
        let big = big.finish().unwrap();
        let mut out = Vec::new();
        let mut d = decoder(Compression::Gzip, &big[..]);
        read_up_to(Path::new("F"), Compression::Gzip, &mut d, 4096, &mut out).unwrap();
        assert_eq!(out.len(), 4096);
        // gzip magic with a non-deflate method byte is not gzip.
        assert_eq!(compression_of(&[0x1f, 0x8b, 0x07]), Compression::None);
    }
}
