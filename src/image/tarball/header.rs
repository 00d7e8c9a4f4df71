//! GNU tar header blocks: plain members, directories, GNU long names and GNU
//! "old" sparse members (typeflag `S`).
//!
//! This module only turns a member description into 512-byte blocks; it does
//! no I/O and knows nothing about compression or how the sparse map was found.
//! The layout is GNU tar's `struct posix_header` with the GNU extensions
//! (`struct oldgnu_header`, `struct sparse_header`) from GNU tar's
//! `src/tar.h`; GNU tar (the default `--format=gnu`) writes exactly this for
//! `tar -S`, and every GNU tar extracts it as a sparse file by default.

/// Size of one tar block.
pub(super) const BLOCK: usize = 512;

/// Sparse map entries that fit in the main `S` header.
const SPARSE_IN_HEADER: usize = 4;

/// Sparse map entries per GNU sparse extension block.
const SPARSE_IN_EXTENSION: usize = 21;

/// Longest name the header's `name` field holds; longer ones need a GNU
/// `././@LongLink` (typeflag `L`) member first.
const NAME_LEN: usize = 100;

/// What kind of member a header describes.
pub(super) enum Kind<'a> {
    /// A directory (typeflag `5`), size 0.
    Directory,
    /// A regular file (typeflag `0`) with `size` data bytes following.
    Regular {
        /// Bytes of data that follow the header.
        size: u64,
    },
    /// A GNU old-style sparse file (typeflag `S`).
    Sparse {
        /// Apparent size of the extracted file.
        real_size: u64,
        /// `(offset, length)` of each stored data segment, ascending; the
        /// segments' bytes follow the header blocks back to back. A final
        /// `(real_size, 0)` entry marks a trailing hole (GNU tar does the
        /// same).
        map: &'a [(u64, u64)],
    },
}

/// Encode one member's header blocks (any long-name member, the header
/// itself and any sparse extension blocks) and append them to `out`.
///
/// `name` is the member name as stored (directories end in `/`); `mode` the
/// permission bits; `mtime` seconds since the epoch. Owner is uid/gid 0,
/// user/group name `root`, so the output does not depend on who runs us.
pub(super) fn encode(out: &mut Vec<u8>, name: &[u8], mode: u32, mtime: i64, kind: &Kind<'_>) {
    if name.len() > NAME_LEN {
        // GNU long name: a pseudo member whose data is the NUL-terminated name.
        let mut long = name.to_vec();
        long.push(0);
        let block = base_block(b"././@LongLink", 0o644, 0, long.len() as u64, b'L');
        push_block(out, block);
        out.extend_from_slice(&long);
        pad_to_block(out);
    }
    let short = &name[..name.len().min(NAME_LEN)];
    match kind {
        Kind::Directory => push_block(out, base_block(short, mode, mtime, 0, b'5')),
        Kind::Regular { size } => push_block(out, base_block(short, mode, mtime, *size, b'0')),
        Kind::Sparse { real_size, map } => {
            let stored: u64 = map.iter().map(|&(_, len)| len).sum();
            let mut block = base_block(short, mode, mtime, stored, b'S');
            let (first, mut rest) = map.split_at(map.len().min(SPARSE_IN_HEADER));
            put_sparse_entries(&mut block[386..482], first);
            block[482] = u8::from(!rest.is_empty());
            put_num(&mut block[483..495], *real_size);
            push_block(out, block);
            while !rest.is_empty() {
                let (these, more) = rest.split_at(rest.len().min(SPARSE_IN_EXTENSION));
                let mut ext = [0u8; BLOCK];
                put_sparse_entries(&mut ext[..504], these);
                ext[504] = u8::from(!more.is_empty());
                // Extension blocks carry no checksum.
                out.extend_from_slice(&ext);
                rest = more;
            }
        }
    }
}

/// Append zero bytes until `out` holds whole blocks.
pub(super) fn pad_to_block(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// Number of zero bytes that pad `len` data bytes to whole blocks.
pub(super) fn padding(len: u64) -> usize {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// Checksum the block and append it.
fn push_block(out: &mut Vec<u8>, mut block: [u8; BLOCK]) {
    // The checksum is computed with its own field read as eight spaces, then
    // stored as six octal digits, NUL, space (what GNU tar writes).
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}");
    block[148..154].copy_from_slice(&digits.as_bytes()[digits.len() - 6..]);
    block[154] = 0;
    block[155] = b' ';
    out.extend_from_slice(&block);
}

/// The fields every member shares, without checksum.
fn base_block(name: &[u8], mode: u32, mtime: i64, size: u64, typeflag: u8) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    put_num(&mut b[100..108], u64::from(mode & 0o7777));
    put_num(&mut b[108..116], 0);
    put_num(&mut b[116..124], 0);
    put_num(&mut b[124..136], size);
    put_signed(&mut b[136..148], mtime);
    b[156] = typeflag;
    // GNU magic "ustar " + version " \0" (not POSIX "ustar\0" "00"): GNU tar
    // only honours the `S` sparse fields under this magic.
    b[257..265].copy_from_slice(b"ustar  \0");
    b[265..269].copy_from_slice(b"root");
    b[297..301].copy_from_slice(b"root");
    b
}

/// Write `(offset, numbytes)` pairs, 12 + 12 bytes each; unused entries stay
/// NUL, which is how GNU tar finds the end of the list.
fn put_sparse_entries(area: &mut [u8], entries: &[(u64, u64)]) {
    for (slot, &(offset, len)) in area.chunks_exact_mut(24).zip(entries) {
        put_num(&mut slot[..12], offset);
        put_num(&mut slot[12..], len);
    }
}

/// Store `v` in a numeric field: octal digits and a NUL when it fits, else
/// GNU base-256 (first byte 0x80, big-endian value), which GNU tar reads for
/// sizes and offsets of 8 GiB and more.
fn put_num(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if digits >= 22 || v < 1u64 << (3 * digits) {
        let s = format!("{v:0digits$o}");
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        put_base256(field, i128::from(v));
    }
}

/// Like [`put_num`] for a value that may be negative (mtime before 1970).
fn put_signed(field: &mut [u8], v: i64) {
    match u64::try_from(v) {
        Ok(u) => put_num(field, u),
        Err(_) => put_base256(field, i128::from(v)),
    }
}

/// GNU base-256: two's complement big-endian, first byte's top bit set
/// (0x80 for non-negative, 0xff fill for negative values).
fn put_base256(field: &mut [u8], v: i128) {
    let bytes = v.to_be_bytes();
    let n = field.len();
    let fill = if v < 0 { 0xff } else { 0 };
    field.fill(fill);
    let take = (n - 1).min(bytes.len());
    field[n - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    field[0] = if v < 0 { 0xff } else { 0x80 };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(block: &[u8]) -> bool {
        let mut copy = block.to_vec();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        let stored = std::str::from_utf8(&block[148..154]).unwrap();
        u32::from_str_radix(stored, 8).unwrap() == sum
    }

    #[test]
    fn numeric_fields_switch_to_base256_when_octal_overflows() {
        let mut f = [0u8; 12];
        put_num(&mut f, 0o777);
        assert_eq!(&f, b"00000000777\0");
        put_num(&mut f, 8 << 30); // 8 GiB: 12 octal digits, too wide
        assert_eq!(f[0], 0x80);
        assert_eq!(u64::from_be_bytes(f[4..].try_into().unwrap()), 8 << 30);
        put_signed(&mut f, -1);
        assert!(f.iter().all(|&b| b == 0xff));
    }

    #[test]
    fn sparse_header_spills_into_extension_blocks() {
        let map: Vec<(u64, u64)> = (0..30).map(|i| (i * 8192, 512)).collect();
        let mut out = Vec::new();
        encode(&mut out, b"a/root", 0o644, 0, &Kind::Sparse { real_size: 1 << 20, map: &map });
        // header + two extension blocks (21 + 5 entries after the first 4)
        assert_eq!(out.len(), 3 * BLOCK);
        assert!(checksum_ok(&out[..BLOCK]));
        assert_eq!(out[156], b'S');
        assert_eq!(out[482], 1);
        assert_eq!(out[BLOCK + 504], 1);
        assert_eq!(out[2 * BLOCK + 504], 0);
        assert_eq!(&out[124..136], format!("{:011o}\0", 30 * 512).as_bytes());
        assert_eq!(&out[483..495], format!("{:011o}\0", 1 << 20).as_bytes());
    }

    #[test]
    fn long_names_get_a_gnu_longlink_member() {
        let name = vec![b'x'; 150];
        let mut out = Vec::new();
        encode(&mut out, &name, 0o644, 0, &Kind::Regular { size: 0 });
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(out[156], b'L');
        assert_eq!(&out[BLOCK..BLOCK + 150], &name[..]);
        assert_eq!(out[BLOCK + 150], 0);
        assert!(checksum_ok(&out[2 * BLOCK..]));
    }
}
