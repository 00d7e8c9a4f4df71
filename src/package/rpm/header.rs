//! rpm's header format as its sqlite backend stores it: one blob per
//! package, the header without its 8-byte magic. Read only as far as the
//! handler needs: the index, the tags' types, and string, string-array and
//! integer data.
//!
//! Layout (all numbers big-endian): `il` (u32, index entries), `dl` (u32,
//! data bytes), `il` entries of `{tag, type, offset, count}` (u32, u32,
//! i32, u32), then `dl` bytes of data. The first entry may be a region tag
//! (61–63, `RPMTAG_HEADERIMMUTABLE` for installed packages): its data is a
//! 16-byte trailer whose negated offset is the region's index size; entries
//! after the region ("dribble", added at install time, e.g. relocated
//! directory names) replace region entries of the same tag, as rpm's
//! `hdrblobImport` does.
//!
//! Nothing here trusts the blob: every offset and count is checked against
//! `dl` before it is used, the sizes are capped as rpm caps them
//! (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`), and anything out of range,
//! misaligned, of an unexpected type or ambiguous (a tag twice outside the
//! dribble rule) is an error. A blob allocates no more than its own size.

use std::collections::HashMap;

/// rpm's limit on index entries (`HEADER_TAGS_MAX`).
const TAGS_MAX: u32 = 0xffff;
/// rpm's limit on a header's data (`HEADER_DATA_MAX`, 256 MiB).
const DATA_MAX: u32 = 256 * 1024 * 1024;
/// Bytes of one index entry.
const ENTRY: usize = 16;

/// rpm's tag data types.
pub(super) const CHAR: u32 = 1;
pub(super) const INT8: u32 = 2;
pub(super) const INT16: u32 = 3;
pub(super) const INT32: u32 = 4;
pub(super) const INT64: u32 = 5;
pub(super) const STRING: u32 = 6;
pub(super) const BIN: u32 = 7;
pub(super) const STRING_ARRAY: u32 = 8;
pub(super) const I18NSTRING: u32 = 9;

/// One index entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: u32,
    offset: usize,
    count: usize,
}

/// A parsed header: its index by tag and its data.
#[derive(Debug)]
pub(super) struct Header<'a> {
    data: &'a [u8],
    index: HashMap<u32, Entry>,
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl<'a> Header<'a> {
    /// Parses `blob`, keeping the entries of `wanted` tags only.
    ///
    /// # Errors
    /// What is wrong with the blob, in words.
    pub(super) fn parse(blob: &'a [u8], wanted: &[u32]) -> Result<Header<'a>, String> {
        if blob.len() < 8 {
            return Err(format!("header of {} bytes, shorter than its 8-byte preamble", blob.len()));
        }
        let (il, dl) = (be32(blob, 0), be32(blob, 4));
        if il == 0 || il > TAGS_MAX {
            return Err(format!("header index of {il} entries (1 to {TAGS_MAX} allowed)"));
        }
        if dl > DATA_MAX {
            return Err(format!("header data of {dl} bytes (at most {DATA_MAX} allowed)"));
        }
        let (il, dl) = (il as usize, dl as usize);
        let index_end = 8 + il * ENTRY;
        if blob.len() != index_end + dl {
            return Err(format!(
                "header of {} bytes, but its index ({il} entries) and data ({dl} bytes) need {}",
                blob.len(),
                index_end + dl
            ));
        }
        let (entries, data) = (&blob[8..index_end], &blob[index_end..]);
        let raw = |i: usize| {
            let e = &entries[i * ENTRY..];
            (be32(e, 0), be32(e, 4), be32(e, 8) as i32, be32(e, 12))
        };
        // The region: entries before `region_end` are the immutable part.
        let mut first = 0;
        let mut region_end = il;
        let (tag0, kind0, offset0, count0) = raw(0);
        if (61..=63).contains(&tag0) {
            let offset =
                usize::try_from(offset0).map_err(|_| format!("region tag {tag0} at offset {offset0}"))?;
            if kind0 != BIN || count0 != 16 || offset.checked_add(16).is_none_or(|end| end > dl) {
                return Err(format!("region tag {tag0} of type {kind0}, count {count0} at offset {offset}"));
            }
            let trailer_offset = be32(data, offset + 8) as i32;
            let size = trailer_offset.checked_neg().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            if size == 0 || size % ENTRY != 0 || size / ENTRY > il {
                return Err(format!("region tag {tag0} claims {trailer_offset} bytes of index"));
            }
            region_end = size / ENTRY;
            first = 1;
        }
        let mut index: HashMap<u32, Entry> = HashMap::with_capacity(wanted.len());
        let mut origin: HashMap<u32, bool> = HashMap::new();
        for i in first..il {
            let (tag, kind, offset, count) = raw(i);
            if !wanted.contains(&tag) {
                continue;
            }
            let offset = usize::try_from(offset)
                .ok()
                .filter(|&o| o < dl)
                .ok_or_else(|| format!("tag {tag}: offset {offset} outside the {dl} bytes of data"))?;
            let count = count as usize;
            if count == 0 || count > dl {
                return Err(format!("tag {tag}: count {count} for {dl} bytes of data"));
            }
            let (size, align) = match kind {
                CHAR | INT8 | BIN => (1, 1),
                INT16 => (2, 2),
                INT32 => (4, 4),
                INT64 => (8, 8),
                STRING | STRING_ARRAY | I18NSTRING => (0, 1),
                other => return Err(format!("tag {tag}: unknown type {other}")),
            };
            if offset % align != 0 {
                return Err(format!("tag {tag}: offset {offset} not aligned for type {kind}"));
            }
            if size > 0 && count.checked_mul(size).is_none_or(|n| n > dl - offset) {
                return Err(format!(
                    "tag {tag}: {count} values of {size} bytes at offset {offset} exceed the data"
                ));
            }
            let dribble = i >= region_end;
            match origin.insert(tag, dribble) {
                // A dribble entry replaces a region entry (rpm's rule).
                Some(false) if dribble => {}
                Some(_) => return Err(format!("tag {tag} appears twice")),
                None => {}
            }
            index.insert(tag, Entry { kind, offset, count });
        }
        Ok(Header { data, index })
    }

    /// The entry of `tag`, which must be of type `kind`.
    fn entry(&self, tag: u32, kind: u32) -> Result<Option<Entry>, String> {
        match self.index.get(&tag) {
            None => Ok(None),
            Some(e) if e.kind == kind => Ok(Some(*e)),
            Some(e) => Err(format!("tag {tag} is of type {}, expected {kind}", e.kind)),
        }
    }

    /// The `count` NUL-terminated strings at `offset`.
    fn strings_at(&self, tag: u32, e: Entry) -> Result<Vec<&'a [u8]>, String> {
        let mut out = Vec::with_capacity(e.count.min(self.data.len() - e.offset));
        let mut rest = &self.data[e.offset..];
        for _ in 0..e.count {
            let Some(nul) = rest.iter().position(|&c| c == 0) else {
                return Err(format!("tag {tag}: string {} runs past the data", out.len()));
            };
            out.push(&rest[..nul]);
            rest = &rest[nul + 1..];
        }
        Ok(out)
    }

    /// A `STRING` tag's value (count 1).
    pub(super) fn string(&self, tag: u32) -> Result<Option<&'a [u8]>, String> {
        let Some(e) = self.entry(tag, STRING)? else { return Ok(None) };
        if e.count != 1 {
            return Err(format!("tag {tag}: string of count {}", e.count));
        }
        Ok(self.strings_at(tag, e)?.pop())
    }

    /// A `STRING_ARRAY` tag's values.
    pub(super) fn strings(&self, tag: u32) -> Result<Option<Vec<&'a [u8]>>, String> {
        match self.entry(tag, STRING_ARRAY)? {
            None => Ok(None),
            Some(e) => self.strings_at(tag, e).map(Some),
        }
    }

    /// An `INT32` tag's values.
    pub(super) fn u32s(&self, tag: u32) -> Result<Option<Vec<u32>>, String> {
        let Some(e) = self.entry(tag, INT32)? else { return Ok(None) };
        let bytes = &self.data[e.offset..e.offset + 4 * e.count];
        Ok(Some(bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }

    /// An `INT16` tag's values, widened as rpm prints them (unsigned).
    pub(super) fn u16s(&self, tag: u32) -> Result<Option<Vec<u32>>, String> {
        let Some(e) = self.entry(tag, INT16)? else { return Ok(None) };
        let bytes = &self.data[e.offset..e.offset + 2 * e.count];
        Ok(Some(bytes.chunks_exact(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).collect()))
    }
}

#[cfg(test)]
mod tests;
