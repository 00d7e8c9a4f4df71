//! A streaming reader for the tar formats GNU tar writes: v7/ustar/POSIX
//! headers, GNU long names and links (`L`, `K`), PAX extended headers (`x`,
//! and `g` for uid, gid and mtime), GNU old-style sparse members (`S`, with
//! extension blocks) and PAX sparse members in formats 0.0, 0.1 and 1.0
//! (`tar --sparse --format=posix [--sparse-version=...]`).
//!
//! Memory is bounded whatever the archive says: member data is never held
//! (the caller pulls it with [`TarReader::read_data`]), names and link
//! targets are refused beyond [`NAME_MAX_BYTES`] before they are read, PAX
//! headers beyond [`PAX_MAX`], and sparse maps beyond [`SPARSE_MAX`]
//! segments. Numbers are octal or GNU base-256, checked for overflow.
//!
//! This module only decodes; what a member means for the appliance (paths,
//! owners, where data goes) is `archive.rs`'s business.

use std::io::{self, Read};

/// Tar block size.
const BLOCK: usize = 512;

/// Longest name or link target accepted, in bytes: Linux cannot resolve a
/// path of `PATH_MAX` (4096) bytes or more, terminating NUL included.
pub(crate) const NAME_MAX_BYTES: usize = crate::image::files::PATH_MAX - 1;

/// Largest PAX extended header accepted.
pub(super) const PAX_MAX: u64 = 8 << 20;

/// Most segments accepted in one sparse map.
pub(super) const SPARSE_MAX: usize = 1 << 20;

/// Why reading an archive stopped.
#[derive(Debug)]
pub(super) enum TarError {
    /// The underlying stream failed: a decompression error or an I/O error.
    Source(io::Error),
    /// The stream ended inside a header or inside a member's data.
    Truncated {
        /// The member being read, when known.
        member: Option<String>,
    },
    /// A header, extension or sparse map that is not valid tar.
    Format {
        /// The member, when known.
        member: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// A valid member we refuse to extract.
    Refused {
        /// The member, as it can be shown.
        member: String,
        /// Why.
        reason: String,
    },
}

/// The type of a member, from its typeflag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemberType {
    /// Regular (`0`, NUL, `7`, unknown flags as GNU tar extracts them, and
    /// sparse members).
    Regular,
    /// `1`.
    HardLink,
    /// `2`.
    Symlink,
    /// `3`.
    Char,
    /// `4`.
    Block,
    /// `5`, and GNU dumpdir `D`.
    Directory,
    /// `6`.
    Fifo,
}

/// One member's header, with every extension applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    /// Name as stored (long name, PAX `path` or sparse name applied).
    pub(crate) name: Vec<u8>,
    /// Link target (hard and symbolic links), as stored.
    pub(crate) link: Vec<u8>,
    /// Type.
    pub(crate) kind: MemberType,
    /// Mode bits as stored.
    pub(crate) mode: u64,
    /// Numeric owner.
    pub(crate) uid: u64,
    /// Numeric group.
    pub(crate) gid: u64,
    /// Modification time, seconds since the epoch.
    pub(crate) mtime: i64,
    /// Device numbers for `Char` and `Block`.
    pub(crate) dev: (u64, u64),
    /// Size of the file in bytes (the real size for a sparse member).
    pub(crate) size: u64,
    /// For a sparse member, its data segments `(offset, length)` in file
    /// order; their lengths add up to [`Member::data_len`]. `None`: the data
    /// is the whole file, `0..size`.
    pub(crate) sparse: Option<Vec<(u64, u64)>>,
    /// Bytes of member data still to read with [`TarReader::read_data`].
    pub(crate) data_len: u64,
}

/// Show a member name in an error: lossy UTF-8, long names shortened.
pub(super) fn shown(name: &[u8]) -> String {
    crate::image::files::shorten(name)
}

/// Values of the PAX records that matter to us.
#[derive(Debug, Default, Clone)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    sparse: SparsePax,
}

/// The `GNU.sparse.*` records of one PAX header.
#[derive(Debug, Default, Clone)]
struct SparsePax {
    major: Option<u64>,
    minor: Option<u64>,
    name: Option<Vec<u8>>,
    /// `GNU.sparse.realsize` (1.0) or `GNU.sparse.size` (0.x).
    realsize: Option<u64>,
    /// `GNU.sparse.map` (0.1).
    map: Option<Vec<u8>>,
    /// Repeated `GNU.sparse.offset` / `GNU.sparse.numbytes` (0.0).
    offsets: Vec<u64>,
    numbytes: Vec<u64>,
    /// Any `GNU.sparse.*` record seen.
    any: bool,
}

/// Streaming tar reader over a decompressed stream.
pub(super) struct TarReader<R> {
    inner: R,
    /// Data bytes of the current member not yet read, then its padding.
    remaining: u64,
    padding: u64,
    /// The current member, for errors.
    current: Option<String>,
    /// uid, gid and mtime from global (`g`) headers.
    global: Pax,
    done: bool,
    skip_buf: Vec<u8>,
}

impl<R: Read> TarReader<R> {
    /// A reader at the start of an archive.
    pub(super) fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            current: None,
            global: Pax::default(),
            done: false,
            skip_buf: Vec::new(),
        }
    }

    /// The next member, or `None` at the end of the archive (a zero block,
    /// or the end of the stream at a header boundary, as GNU tar accepts).
    /// Unread data of the previous member is skipped.
    pub(super) fn next_member(&mut self) -> Result<Option<Member>, TarError> {
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        self.current = None;
        if self.done {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        loop {
            let mut header = [0u8; BLOCK];
            if !self.read_block(&mut header)? {
                self.done = true;
                return Ok(None);
            }
            if header.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let raw_name = field_str(&header[0..100]).to_vec();
            self.current = Some(shown(&raw_name));
            check_checksum(&header).map_err(|d| self.format(d))?;
            let size = self.number(&header[124..136], "size")?;
            match header[156] {
                b'L' | b'K' => {
                    if size > NAME_MAX_BYTES as u64 + 1 {
                        // Read only enough to name it.
                        let what = if header[156] == b'L' { "name" } else { "link target" };
                        let mut head = vec![0u8; size.min(120) as usize];
                        self.read_exact(&mut head)?;
                        let head = String::from_utf8_lossy(field_str(&head)).into_owned();
                        return Err(TarError::Refused {
                            member: format!("{head}... ({size} bytes)"),
                            reason: format!(
                                "its {what} is {size} bytes long (GNU long {what} record); Linux \
                                 cannot resolve paths of 4096 bytes or more (PATH_MAX)"
                            ),
                        });
                    }
                    let mut data = vec![0u8; size as usize];
                    self.read_exact(&mut data)?;
                    self.skip(padding(size))?;
                    let value = field_str(&data).to_vec();
                    if header[156] == b'L' {
                        long_name = Some(value);
                    } else {
                        long_link = Some(value);
                    }
                }
                b'x' | b'g' => {
                    if size > PAX_MAX {
                        return Err(self.refused(format!(
                            "PAX extended header of {size} bytes (at most {PAX_MAX} accepted)"
                        )));
                    }
                    let mut data = vec![0u8; size as usize];
                    self.read_exact(&mut data)?;
                    self.skip(padding(size))?;
                    if header[156] == b'x' {
                        pax = Some(parse_pax(&data).map_err(|d| self.format(d))?);
                    } else {
                        let g = parse_pax(&data).map_err(|d| self.format(d))?;
                        self.global.uid = g.uid.or(self.global.uid);
                        self.global.gid = g.gid.or(self.global.gid);
                        self.global.mtime = g.mtime.or(self.global.mtime);
                    }
                }
                // A GNU volume label is not a file.
                b'V' => {
                    self.skip(size + padding(size))?;
                    long_name = None;
                    long_link = None;
                    pax = None;
                }
                b'M' => {
                    return Err(self
                        .refused("GNU multi-volume continuation member; give the complete archive".into()))
                }
                _ => return self.member(&header, size, long_name, long_link, pax).map(Some),
            }
        }
    }

    /// Build the member from its header and the extensions before it.
    fn member(
        &mut self,
        header: &[u8; BLOCK],
        header_size: u64,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Option<Pax>,
    ) -> Result<Member, TarError> {
        let pax = pax.unwrap_or_default();
        let typeflag = header[156];
        let kind = match typeflag {
            b'1' => MemberType::HardLink,
            b'2' => MemberType::Symlink,
            b'3' => MemberType::Char,
            b'4' => MemberType::Block,
            b'5' | b'D' => MemberType::Directory,
            b'6' => MemberType::Fifo,
            _ => MemberType::Regular,
        };
        let posix = &header[257..263] == b"ustar\0";
        let name = if let Some(n) = pax.sparse.name.clone().or(pax.path.clone()).or(long_name) {
            n
        } else {
            let name = field_str(&header[0..100]);
            let prefix = if posix { field_str(&header[345..500]) } else { b"" };
            if prefix.is_empty() {
                name.to_vec()
            } else {
                [prefix, b"/", name].concat()
            }
        };
        self.current = Some(shown(&name));
        let link =
            pax.linkpath.clone().or(long_link).unwrap_or_else(|| field_str(&header[157..257]).to_vec());
        for (what, value) in [("name", &name), ("link target", &link)] {
            if value.len() > NAME_MAX_BYTES {
                return Err(self.refused(format!(
                    "its {what} is {} bytes long; Linux cannot resolve paths of 4096 bytes or more \
                     (PATH_MAX)",
                    value.len()
                )));
            }
        }
        let mode = self.number(&header[100..108], "mode")?;
        let uid = match pax.uid.or(self.global.uid) {
            Some(v) => v,
            None => self.number(&header[108..116], "uid")?,
        };
        let gid = match pax.gid.or(self.global.gid) {
            Some(v) => v,
            None => self.number(&header[116..124], "gid")?,
        };
        let mtime = match pax.mtime.or(self.global.mtime) {
            Some(v) => v,
            None => parse_time(&header[136..148]).map_err(|d| self.format(format!("mtime: {d}")))?,
        };
        let dev = if matches!(kind, MemberType::Char | MemberType::Block) {
            (self.number(&header[329..337], "device major")?, self.number(&header[337..345], "device minor")?)
        } else {
            (0, 0)
        };
        let stored = pax.size.unwrap_or(header_size);
        self.remaining = stored;
        self.padding = padding(stored);
        let mut member = Member {
            name,
            link,
            kind,
            mode,
            uid,
            gid,
            mtime,
            dev,
            size: stored,
            sparse: None,
            data_len: stored,
        };
        if typeflag == b'S' {
            self.gnu_sparse(header, &mut member)?;
        } else if pax.sparse.any {
            if kind != MemberType::Regular {
                return Err(self.format("GNU.sparse records on a member that is not a regular file".into()));
            }
            self.pax_sparse(&pax.sparse, &mut member)?;
        }
        Ok(member)
    }

    /// GNU old-style sparse (`S`): four map entries in the header, more in
    /// extension blocks, the real size at offset 483.
    fn gnu_sparse(&mut self, header: &[u8; BLOCK], m: &mut Member) -> Result<(), TarError> {
        let mut map = Vec::new();
        self.sparse_entries(&header[386..482], &mut map)?;
        let mut extended = header[482] != 0;
        while extended {
            let mut ext = [0u8; BLOCK];
            if !self.read_block(&mut ext)? {
                return Err(TarError::Truncated { member: self.current.clone() });
            }
            self.sparse_entries(&ext[..504], &mut map)?;
            extended = ext[504] != 0;
        }
        let realsize = self.number(&header[483..495], "sparse real size")?;
        m.size = realsize;
        self.check_map(&map, realsize, m.data_len)?;
        m.sparse = Some(map);
        Ok(())
    }

    /// Entries of 24 bytes (offset, numbytes); an empty offset field ends
    /// the list.
    fn sparse_entries(&self, area: &[u8], map: &mut Vec<(u64, u64)>) -> Result<(), TarError> {
        for entry in area.chunks_exact(24) {
            if entry[0] == 0 {
                break;
            }
            let off = self.number(&entry[..12], "sparse offset")?;
            let len = self.number(&entry[12..], "sparse length")?;
            self.push_segment(map, off, len)?;
        }
        Ok(())
    }

    fn push_segment(&self, map: &mut Vec<(u64, u64)>, off: u64, len: u64) -> Result<(), TarError> {
        if map.len() >= SPARSE_MAX {
            return Err(self.refused(format!("sparse map of more than {SPARSE_MAX} segments")));
        }
        map.push((off, len));
        Ok(())
    }

    /// PAX sparse members, formats 0.0, 0.1 and 1.0.
    fn pax_sparse(&mut self, sp: &SparsePax, m: &mut Member) -> Result<(), TarError> {
        let realsize = sp.realsize.ok_or_else(|| {
            self.format("GNU.sparse records without GNU.sparse.realsize or GNU.sparse.size".into())
        })?;
        let mut map = Vec::new();
        let version = (sp.major.unwrap_or(0), sp.minor.unwrap_or(0));
        match version {
            (1, 0) => {
                // The map is at the start of the data: decimal numbers, one
                // per line (count, then offset/length pairs), padded to a
                // block.
                let mut used = 0u64;
                let count = self.map_number(&mut used)?;
                if count > SPARSE_MAX as u64 {
                    return Err(self.refused(format!("sparse map of more than {SPARSE_MAX} segments")));
                }
                for _ in 0..count {
                    let off = self.map_number(&mut used)?;
                    let len = self.map_number(&mut used)?;
                    self.push_segment(&mut map, off, len)?;
                }
                let pad = padding(used);
                self.read_exact_data(pad)?;
                m.data_len = self.remaining;
            }
            (0, 0 | 1) if sp.map.is_some() => {
                let text = sp.map.as_deref().unwrap_or_default();
                let numbers: Vec<&[u8]> =
                    if text.is_empty() { Vec::new() } else { text.split(|&b| b == b',').collect() };
                if numbers.len() % 2 != 0 {
                    return Err(self.format("GNU.sparse.map has an odd number of values".into()));
                }
                for pair in numbers.chunks(2) {
                    let off = decimal(pair[0]).ok_or_else(|| self.format("bad GNU.sparse.map".into()))?;
                    let len = decimal(pair[1]).ok_or_else(|| self.format("bad GNU.sparse.map".into()))?;
                    self.push_segment(&mut map, off, len)?;
                }
            }
            (0, 0 | 1) if !sp.offsets.is_empty() || !sp.numbytes.is_empty() => {
                if sp.offsets.len() != sp.numbytes.len() {
                    return Err(self
                        .format("GNU.sparse.offset and GNU.sparse.numbytes records do not pair up".into()));
                }
                for (&off, &len) in sp.offsets.iter().zip(&sp.numbytes) {
                    self.push_segment(&mut map, off, len)?;
                }
            }
            (0, 0 | 1) => {
                return Err(self.format("GNU.sparse records without a sparse map".into()));
            }
            (major, minor) => {
                return Err(self.refused(format!(
                    "PAX sparse format {major}.{minor} is not supported (GNU tar writes 0.0, 0.1 \
                     and 1.0); recreate the archive with tar --sparse --format=gnu"
                )));
            }
        }
        m.size = realsize;
        self.check_map(&map, realsize, m.data_len)?;
        m.sparse = Some(map);
        Ok(())
    }

    /// One decimal number and its newline from the data area (format 1.0).
    fn map_number(&mut self, used: &mut u64) -> Result<u64, TarError> {
        let mut digits = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            if self.remaining == 0 {
                return Err(self.format("sparse map runs past the member's data".into()));
            }
            self.read_exact(&mut byte)?;
            self.remaining -= 1;
            *used += 1;
            if byte[0] == b'\n' {
                break;
            }
            if digits.len() >= 20 {
                return Err(self.format("number too long in sparse map".into()));
            }
            digits.push(byte[0]);
        }
        decimal(&digits).ok_or_else(|| self.format("bad number in sparse map".into()))
    }

    /// Consume `n` bytes of the member's data area (map padding).
    fn read_exact_data(&mut self, n: u64) -> Result<(), TarError> {
        if n > self.remaining {
            return Err(self.format("sparse map runs past the member's data".into()));
        }
        self.skip(n)?;
        self.remaining -= n;
        Ok(())
    }

    /// Segments ascending, not overlapping, inside the real size, and
    /// adding up to the stored data.
    fn check_map(&self, map: &[(u64, u64)], realsize: u64, data: u64) -> Result<(), TarError> {
        let mut end = 0u64;
        let mut total = 0u64;
        for &(off, len) in map {
            let seg_end = off.checked_add(len).filter(|&e| e <= realsize);
            let Some(seg_end) = seg_end.filter(|_| off >= end) else {
                return Err(self.format(format!(
                    "sparse segment {off}+{len} overlaps another or lies outside the file's {realsize} bytes"
                )));
            };
            end = seg_end;
            total += len;
        }
        if total != data {
            return Err(
                self.format(format!("sparse map lists {total} bytes of data but the member stores {data}"))
            );
        }
        Ok(())
    }

    /// Read up to `buf.len()` bytes of the current member's data; 0 at its
    /// end.
    ///
    /// # Errors
    /// [`TarError::Truncated`] when the stream ends first; [`TarError::Source`].
    pub(super) fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let want = (buf.len() as u64).min(self.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Source(e)),
            }
        };
        if n == 0 {
            return Err(TarError::Truncated { member: self.current.clone() });
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Read a whole block; false at a clean end of stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut block[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(TarError::Truncated { member: self.current.clone() }),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Source(e)),
            }
        }
        Ok(true)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => return Err(TarError::Truncated { member: self.current.clone() }),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Source(e)),
            }
        }
        Ok(())
    }

    /// Read and drop `n` bytes.
    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        if n == 0 {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.skip_buf);
        buf.resize(64 << 10, 0);
        let result = (|| {
            while n > 0 {
                let want = n.min(buf.len() as u64) as usize;
                self.read_exact(&mut buf[..want])?;
                n -= want as u64;
            }
            Ok(())
        })();
        self.skip_buf = buf;
        result
    }

    fn number(&self, field: &[u8], what: &str) -> Result<u64, TarError> {
        parse_number(field).map_err(|d| self.format(format!("{what}: {d}")))
    }

    fn format(&self, detail: String) -> TarError {
        TarError::Format { member: self.current.clone(), detail }
    }

    fn refused(&self, reason: String) -> TarError {
        TarError::Refused { member: self.current.clone().unwrap_or_default(), reason }
    }
}

/// Padding after `size` bytes of data, up to the next block.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// A NUL-terminated header field.
fn field_str(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// The header checksum, accepting the unsigned and the (historical) signed
/// sum as GNU tar does.
fn check_checksum(header: &[u8; BLOCK]) -> Result<(), String> {
    let stored = parse_number(&header[148..156]).map_err(|d| format!("checksum: {d}"))?;
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in header.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err("header checksum mismatch".into())
    }
}

/// A numeric header field: octal (leading spaces, ended by space or NUL;
/// empty means 0), or GNU base-256 (first byte 0x80; negative values, first
/// byte 0xff, are refused). Overflow past 64 bits is an error, never a wrap.
pub(super) fn parse_number(field: &[u8]) -> Result<u64, String> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                return Err("negative base-256 number".into());
            }
            let mut v = u64::from(first & 0x3f);
            for &b in &field[1..] {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or("base-256 number larger than 64 bits")?;
            }
            return Ok(v);
        }
    }
    let text = field.iter().skip_while(|&&b| b == b' ');
    let mut v = 0u64;
    for &b in text {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or("octal number larger than 64 bits")?;
            }
            b' ' | 0 => break,
            other => return Err(format!("invalid octal digit 0x{other:02x}")),
        }
    }
    Ok(v)
}

/// A time field: like [`parse_number`], but GNU base-256 may be negative
/// (two's complement, first byte 0xff) for times before 1970.
fn parse_time(field: &[u8]) -> Result<i64, String> {
    match field.first() {
        Some(&first) if first & 0xc0 == 0xc0 => {
            let mut v = i128::from(first as i8);
            for &b in &field[1..] {
                v = v * 256 + i128::from(b);
                if v < i128::from(i64::MIN) {
                    return Err("base-256 time out of range".into());
                }
            }
            i64::try_from(v).map_err(|_| "base-256 time out of range".into())
        }
        _ => parse_number(field).map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
    }
}

/// An unsigned decimal number (PAX values, sparse maps).
fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let mut v = 0u64;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// A PAX time: `[-]SECONDS[.FRACTION]`, rounded down to whole seconds.
fn pax_time(text: &[u8]) -> Option<i64> {
    let (negative, text) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = i64::try_from(decimal(int)?).ok()?;
    if negative {
        let round = i64::from(frac.iter().any(|&b| b != b'0'));
        Some(-secs - round)
    } else {
        Some(secs)
    }
}

/// Parse PAX records (`LEN KEY=VALUE\n`).
fn parse_pax(data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        if rest[0] == 0 {
            break; // NUL padding some writers add
        }
        let bad = || "malformed PAX record".to_string();
        let space = rest.iter().take(21).position(|&b| b == b' ').ok_or_else(bad)?;
        let len = decimal(&rest[..space]).ok_or_else(bad)? as usize;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[space + 1..len - 1];
        rest = &rest[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let num = |what: &str| decimal(value).ok_or_else(|| format!("PAX record {what}: not a number"));
        if key.starts_with(b"GNU.sparse.") {
            pax.sparse.any = true;
        }
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(num("size")?),
            b"uid" => pax.uid = Some(num("uid")?),
            b"gid" => pax.gid = Some(num("gid")?),
            b"mtime" => pax.mtime = Some(pax_time(value).ok_or("PAX record mtime: not a time")?),
            b"GNU.sparse.major" => pax.sparse.major = Some(num("GNU.sparse.major")?),
            b"GNU.sparse.minor" => pax.sparse.minor = Some(num("GNU.sparse.minor")?),
            b"GNU.sparse.name" => pax.sparse.name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                pax.sparse.realsize = Some(num("GNU.sparse.realsize")?)
            }
            b"GNU.sparse.map" => pax.sparse.map = Some(value.to_vec()),
            b"GNU.sparse.offset" => pax.sparse.offsets.push(num("GNU.sparse.offset")?),
            b"GNU.sparse.numbytes" => pax.sparse.numbytes.push(num("GNU.sparse.numbytes")?),
            _ => {}
        }
        if pax.sparse.offsets.len() > SPARSE_MAX {
            return Err(format!("sparse map of more than {SPARSE_MAX} segments"));
        }
    }
    Ok(pax)
}

#[cfg(test)]
pub(super) mod tests;
