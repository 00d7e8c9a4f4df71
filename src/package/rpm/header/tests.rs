//! The header parser and the direct reader's conversion on well-formed and
//! hostile blobs: every malformation is an error, never a panic, and no
//! count makes it allocate beyond the blob's size.

use std::path::Path;

use super::super::query::FileTable;
use super::super::sqlite::convert;
use super::*;

/// Index entries `(tag, type, offset, count)`.
type Entries<'a> = &'a [(u32, u32, i32, u32)];

/// A blob from index entries `(tag, type, offset, count)` and data.
fn blob(entries: &[(u32, u32, i32, u32)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    for &(tag, kind, offset, count) in entries {
        for n in [tag, kind, offset as u32, count] {
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(data);
    out
}

/// An installed package's header, as rpm stores it: an immutable region
/// (NAME, VERSION, RELEASE, ARCH, requirements, files) and one dribble
/// entry that replaces the region's DIRNAMES (a relocated install).
fn package() -> Vec<u8> {
    let mut data = Vec::new();
    let mut at = |bytes: &[u8], align: usize| {
        while data.len() % align != 0 {
            data.push(0);
        }
        let offset = data.len() as i32;
        data.extend_from_slice(bytes);
        offset
    };
    let name = at(b"fx\0", 1);
    let version = at(b"1.0\0", 1);
    let release = at(b"1\0", 1);
    let arch = at(b"noarch\0", 1);
    let epoch = at(&7u32.to_be_bytes(), 4);
    let rname = at(b"/bin/sh\0fx-lib\0", 1);
    let rflags = at(&[0u32.to_be_bytes(), 12u32.to_be_bytes()].concat(), 4);
    let rversion = at(b"\x002.0\0", 1);
    let provide = at(b"fx\0", 1);
    let dirs = at(b"/usr/share/fx/\0", 1);
    let indexes = at(&[0u32.to_be_bytes(), 1u32.to_be_bytes()].concat(), 4);
    let fflags = at(&[1u32.to_be_bytes(), 64u32.to_be_bytes()].concat(), 4);
    let modes = at(&[0o100_644u16.to_be_bytes(), 0o40_755u16.to_be_bytes()].concat(), 2);
    let bases = at(b"a b\0d\xff\0", 1);
    // The region trailer: its offset is minus the region's index size.
    let region_entries = 15;
    let trailer = at(&[63u32, 7, (-(16 * region_entries)) as u32, 16].map(u32::to_be_bytes).concat(), 1);
    let moved = at(b"/opt/fx/\0/opt/fx/d/\0", 1);
    blob(
        &[
            (63, 7, trailer, 16),
            (1000, 6, name, 1),
            (1001, 6, version, 1),
            (1002, 6, release, 1),
            (1003, 4, epoch, 1),
            (1022, 6, arch, 1),
            (1030, 3, modes, 2),
            (1037, 4, fflags, 2),
            (1047, 8, provide, 1),
            (1048, 4, rflags, 2),
            (1049, 8, rname, 2),
            (1050, 8, rversion, 2),
            (1116, 4, indexes, 2),
            (1117, 8, bases, 2),
            (1118, 8, dirs, 1),
            (1118, 8, moved, 2),
        ],
        &data,
    )
}

const ALL: [u32; 14] = [1000, 1001, 1002, 1003, 1022, 1030, 1037, 1047, 1048, 1049, 1050, 1116, 1117, 1118];

#[test]
fn an_installed_header_reads_as_the_query_prints_it() {
    let blob = package();
    let mut table = FileTable::default();
    let p = convert(&blob, &mut table).unwrap();
    assert_eq!(
        (p.pkg.name.as_str(), p.pkg.version.as_str(), p.pkg.arch.as_str()),
        ("fx", "7:1.0-1", "noarch")
    );
    assert_eq!(p.requires[1].display(), "fx-lib >= 2.0");
    assert_eq!(p.requires[0].version, "");
    assert_eq!(p.provides, ["fx"]);
    // The dribble entry replaced the region's directory names.
    assert_eq!(p.dirs, [b"/opt/fx/".to_vec(), b"/opt/fx/d/".to_vec()]);
    let files: Vec<_> = table.records(&p).collect();
    assert_eq!(files[0].path, Path::new("/opt/fx/a b"));
    assert_eq!((files[0].flags, files[0].mode), (1, 0o100_644));
    assert_eq!(files[1].path.as_os_str().as_encoded_bytes(), b"/opt/fx/d/d\xff");
    assert_eq!((files[1].flags, files[1].mode), (64, 0o40_755));
}

#[test]
fn every_truncation_is_an_error() {
    let blob = package();
    for len in 0..blob.len() {
        assert!(Header::parse(&blob[..len], &ALL).is_err(), "truncated to {len}");
    }
}

#[test]
fn every_corrupted_byte_is_an_error_or_a_clean_reading() {
    let blob = package();
    for i in 0..blob.len() {
        for value in [0x00, 0x7f, 0x80, 0xff] {
            let mut bad = blob.clone();
            bad[i] = value;
            // No panic, whatever the outcome.
            let _ = convert(&bad, &mut FileTable::default());
        }
    }
}

#[test]
fn sizes_beyond_rpms_limits_are_refused_before_allocating() {
    let mut huge = blob(&[], &[]);
    huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Header::parse(&huge, &ALL).unwrap_err().contains("entries"));
    let mut huge = blob(&[(1000, 6, 0, 1)], b"x\0");
    huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Header::parse(&huge, &ALL).unwrap_err().contains("data of"));
}

#[test]
fn offsets_and_counts_out_of_range_are_refused() {
    let cases: [(Entries<'_>, &[u8], &str); 8] = [
        (&[(1000, 6, 8, 1)], b"fx\0", "offset 8"),
        (&[(1000, 6, -4, 1)], b"fx\0", "offset -4"),
        (&[(1049, 8, 0, u32::MAX)], b"a\0b\0", "count"),
        (&[(1048, 4, 0, 2)], &[0; 4], "exceed"),
        (&[(1048, 4, 0, 0x4000_0001)], &[0; 8], "count"),
        (&[(1048, 4, 2, 1)], &[0; 8], "aligned"),
        (&[(1000, 6, 0, 1)], b"no nul", "runs past"),
        (&[(1000, 6, 0, 0)], b"fx\0", "count 0"),
    ];
    for (entries, data, expect) in cases {
        let err = Header::parse(&blob(entries, data), &ALL).and_then(|h| {
            h.string(1000)?;
            h.u32s(1048)?;
            h.strings(1049)?;
            Ok(())
        });
        assert!(err.as_ref().is_err_and(|e| e.contains(expect)), "{entries:?}: {err:?}, expected {expect:?}");
    }
}

#[test]
fn wrong_types_and_mismatched_arrays_are_refused() {
    // NAME as an INT32.
    let int_name = blob(&[(1000, 4, 0, 1)], &[0; 4]);
    let h = Header::parse(&int_name, &ALL).unwrap();
    assert!(h.string(1000).unwrap_err().contains("type 4"));
    // An unknown type.
    assert!(Header::parse(&blob(&[(1000, 10, 0, 1)], b"x\0"), &ALL).unwrap_err().contains("unknown type"));
    // Requirement names without flags and versions.
    let err = convert(&blob(&[(1049, 8, 0, 1)], b"x\0"), &mut FileTable::default()).unwrap_err();
    assert!(err.contains("requirement"), "{err}");
    // A directory index beyond the directory names.
    let data = [b"/d/\0f\0\0\0".as_slice(), &5u32.to_be_bytes(), &0u32.to_be_bytes(), &[0, 0]].concat();
    let entries = [(1118, 8, 0, 1), (1117, 8, 4, 1), (1116, 4, 8, 1), (1037, 4, 12, 1), (1030, 3, 16, 1)];
    let err = convert(&blob(&entries, &data), &mut FileTable::default()).unwrap_err();
    assert!(err.contains("directory index 5"), "{err}");
}

#[test]
fn a_tag_twice_is_refused_unless_a_dribble_entry_replaces_a_region_entry() {
    let twice = blob(&[(1000, 6, 0, 1), (1000, 6, 0, 1)], b"x\0");
    assert!(Header::parse(&twice, &ALL).unwrap_err().contains("twice"));
    // A region claiming more entries than the index has.
    let region = [63u32, 7, (-(16 * 5)) as u32, 16].map(u32::to_be_bytes).concat();
    let err = Header::parse(&blob(&[(63, 7, 0, 16)], &region), &ALL).unwrap_err();
    assert!(err.contains("region"), "{err}");
}
