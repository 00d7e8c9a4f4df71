//! Tests of base archive extraction and unpacking: members written with the
//! `tar` crate, hostile headers written by hand (see `reader::tests`), and
//! GNU tar's behaviour where supermin depends on it.

use super::reader::tests::{base256, padded, pax_record, raw_header};
use super::*;
use crate::image::scratch::ScratchData;

/// Build a tar in memory: (name, type, mode, uid, data-or-linkname).
pub(crate) fn make_tar(members: &[(&str, tar::EntryType, u32, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for &(name, ty, mode, uid, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(uid));
        h.set_mtime(1_000_000);
        if matches!(ty, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        if matches!(ty, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_size(0);
            b.append_link(&mut h, name, std::str::from_utf8(data).unwrap()).unwrap();
        } else {
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// Extract a (decompressed) tar stream for an image of `image_size` bytes.
fn parse_sized(source: &str, bytes: &[u8], image_size: u64) -> Result<BaseArchive, InputError> {
    let dir = tempfile::tempdir().unwrap();
    let mut scratch = Scratch::create_in(dir.path()).unwrap();
    let mut ex = Extraction { scratch: &mut scratch, image_size, data: 0, names: 0 };
    let source = Path::new(source);
    match read_entries(source, bytes, &mut ex) {
        Ok(entries) => Ok(BaseArchive { source: source.to_owned(), entries }),
        Err(ReadFailure::Input(e)) => Err(e),
        Err(ReadFailure::Source(e)) => Err(InputError::Io { path: source.to_owned(), source: e }),
    }
}

fn parse_tar(source: &str, bytes: &[u8]) -> Result<BaseArchive, InputError> {
    parse_sized(source, bytes, 1 << 30)
}

/// The scratch data of a file entry.
fn scratch_of(kind: &EntryKind) -> &ScratchData {
    match kind {
        EntryKind::File(Data::Scratch(d)) => d,
        other => panic!("not a scratch file: {other:?}"),
    }
}

fn content(kind: &EntryKind) -> Vec<u8> {
    match kind {
        EntryKind::File(Data::Inline(b)) => b.to_vec(),
        other => scratch_of(other).read_all().unwrap(),
    }
}

fn tree() -> FileTree {
    FileTree::new(Metadata::new(0o755, 0, 0, 5))
}

#[test]
fn parses_members_and_normalises_paths() {
    use tar::EntryType as T;
    let bytes = make_tar(&[
        ("./etc/a.conf", T::Regular, 0o644, 0, b"hello"),
        ("usr/sbin/", T::Directory, 0o755, 2952, b""),
        ("usr/sbin/d", T::Regular, 0o4755, 2952, b"bin"),
        ("usr/sbin/h", T::Link, 0o755, 0, b"./usr/sbin/d"),
        ("bin", T::Symlink, 0o777, 0, b"usr/bin"),
        ("empty", T::Regular, 0o644, 0, b""),
    ]);
    let a = parse_tar("A", &bytes).unwrap();
    let paths: Vec<_> = a.entries.iter().map(|e| e.path.to_str().unwrap()).collect();
    assert_eq!(paths, ["/etc/a.conf", "/usr/sbin", "/usr/sbin/d", "/usr/sbin/h", "/bin", "/empty"]);
    assert_eq!(content(&a.entries[0].kind), b"hello");
    assert_eq!(a.entries[2].perm, 0o4755);
    assert_eq!(a.entries[2].uid, 2952);
    assert_eq!(a.entries[2].mtime, Some(1_000_000));
    assert_eq!(a.entries[3].kind, EntryKind::HardLink(PathBuf::from("/usr/sbin/d")));
    assert_eq!(a.entries[4].kind, EntryKind::Symlink("usr/bin".into()));
    assert_eq!(a.entries[5].kind, EntryKind::File(Data::Inline(Arc::from(Vec::new()))));
}

#[test]
fn dotdot_is_refused() {
    // The tar crate's builder refuses `..`, so patch the name in place.
    let mut bytes = make_tar(&[("xx/evil", tar::EntryType::Regular, 0o644, 0, b"x")]);
    bytes[..7].copy_from_slice(b"../evil");
    let mut h = tar::Header::from_byte_slice(&bytes[..512]).clone();
    h.set_cksum();
    bytes[..512].copy_from_slice(h.as_bytes());
    let e = parse_tar("A.tar", &bytes).unwrap_err().to_string();
    assert!(e.contains("A.tar") && e.contains("../evil") && e.contains(".."), "{e}");
}

#[test]
fn truncated_and_corrupt_archives_fail() {
    let bytes = make_tar(&[("f", tar::EntryType::Regular, 0o644, 0, &[7u8; 2000])]);
    let e = parse_tar("T", &bytes[..1024]).unwrap_err().to_string();
    assert!(e.starts_with("T: corrupt or truncated tar archive (member f: the archive ends"), "{e}");
    assert!(e.contains("regenerate"), "{e}");
    let mut bad = bytes.clone();
    bad[0] = b'g'; // checksum no longer matches
    let e = parse_tar("T", &bad).unwrap_err().to_string();
    assert!(e.contains("member g: header checksum mismatch"), "{e}");
    // Truncated in the middle of a header.
    let e = parse_tar("T", &bytes[..100]).unwrap_err().to_string();
    assert!(e.contains("ends inside a header"), "{e}");
}

/// Issue 8, item 5: a GNU base-256 size of 2^62 aborted the process. It is
/// refused from the header, naming the member and the image size.
#[test]
fn sizes_the_image_cannot_hold_are_refused_before_reading() {
    let mut bytes = raw_header(b"huge", b'0', 0, |h| h[124..136].copy_from_slice(&base256(1 << 62))).to_vec();
    bytes.extend([0u8; 1024]);
    let e = parse_sized("H.tar", &bytes, 1 << 30).unwrap_err().to_string();
    assert!(e.starts_with("H.tar: member huge: "), "{e}");
    assert!(e.contains("4611686018427387904 bytes") && e.contains("larger than ext2 can hold"), "{e}");

    // Fits ext2 but not the image: refused before its (absent) data is read.
    let bytes = raw_header(b"big", b'0', 3 << 30, |_| ()).to_vec();
    let e = parse_sized("B.tar", &bytes, 1 << 30).unwrap_err().to_string();
    assert!(
        e.contains("member big: its 3221225472 bytes of data (3.0 GiB) do not fit in the root image of 1073741824 bytes (1.0 GiB); build with a larger --size"),
        "{e}"
    );

    // Together: the second member crosses the line.
    let mut bytes = raw_header(b"a", b'0', 3000, |_| ()).to_vec();
    bytes.extend(padded(&[1u8; 3000]));
    bytes.extend(raw_header(b"b", b'0', 3000, |_| ()));
    let e = parse_sized("C.tar", &bytes, 5000).unwrap_err().to_string();
    assert!(e.contains("member b: with it, base archives hold 6000 bytes"), "{e}");
}

/// Issue 8, item 5: a sparse member stays sparse: the map is honoured, the
/// holes are never stored, and its size may exceed the image.
#[test]
fn sparse_member_larger_than_the_image_keeps_its_holes() {
    let ten_gib: u64 = 10 << 30;
    let mut bytes = raw_header(b"sparse", b'S', 4096, |h| {
        h[386..397].copy_from_slice(format!("{:011o}", 5u64 << 30).as_bytes());
        h[398..409].copy_from_slice(format!("{:011o}", 4096).as_bytes());
        h[483..495].copy_from_slice(&base256(ten_gib));
    })
    .to_vec();
    bytes.extend(padded(&[0xabu8; 4096]));
    let a = parse_sized("S.tar", &bytes, 1 << 30).unwrap();
    let d = scratch_of(&a.entries[0].kind);
    assert_eq!(d.len(), ten_gib);
    assert_eq!(d.runs(), &[((5u64 << 30) / 4096, 1)]);
}

/// Blocks of zeros in ordinary members become holes too: a member full of
/// zeros stores nothing.
#[test]
fn zero_blocks_are_not_stored() {
    let mut data = vec![0u8; 64 << 10];
    data[40_000] = 1;
    let a = parse_tar("Z", &make_tar(&[("z", tar::EntryType::Regular, 0o644, 0, &data)])).unwrap();
    let d = scratch_of(&a.entries[0].kind);
    assert_eq!(d.runs(), &[(9, 1)]);
    assert_eq!(d.read_all().unwrap(), data);
}

/// Issue 8, item 7: PAX sparse members used to come out as
/// `/GNUSparseFile.NNN/name` holding the map. Format 1.0, written by hand.
#[test]
fn pax_sparse_1_0_is_extracted_under_its_real_name() {
    let rec = pax_record("GNU.sparse.major", "1")
        + &pax_record("GNU.sparse.minor", "0")
        + &pax_record("GNU.sparse.name", "etc/real")
        + &pax_record("GNU.sparse.realsize", "100000");
    let map = padded(b"2\n0\n3\n90000\n4\n");
    let mut bytes = raw_header(b"x", b'x', rec.len() as u64, |_| ()).to_vec();
    bytes.extend(padded(rec.as_bytes()));
    bytes.extend(raw_header(b"./GNUSparseFile.77/real", b'0', map.len() as u64 + 7, |_| ()));
    let mut data = map.clone();
    data.extend_from_slice(b"abcWXYZ");
    bytes.extend(padded(&data));
    let a = parse_tar("P.tar", &bytes).unwrap();
    assert_eq!(a.entries.len(), 1);
    assert_eq!(a.entries[0].path, PathBuf::from("/etc/real"));
    let back = content(&a.entries[0].kind);
    assert_eq!(back.len(), 100_000);
    assert_eq!(&back[..3], b"abc");
    assert_eq!(&back[90_000..90_004], b"WXYZ");
    assert!(back[3..90_000].iter().all(|&b| b == 0));
}

/// Issue 8, item 6: a path Linux cannot resolve is refused, naming the
/// archive and (a shortened) member; a deep path within PATH_MAX unpacks.
#[test]
fn paths_beyond_path_max_are_refused_and_deep_ones_unpack() {
    let deep = "d/".repeat(2040) + "f";
    let bytes = make_tar(&[(&deep, tar::EntryType::Regular, 0o644, 0, b"x")]);
    let a = parse_tar("D.tar", &bytes).unwrap();
    let mut t = tree();
    unpack(&a, &mut t, 0).unwrap();
    assert!(t.lookup(&PathBuf::from(format!("/{deep}"))).is_some());

    let deeper = "d/".repeat(3000) + "f";
    let bytes = make_tar(&[(&deeper, tar::EntryType::Regular, 0o644, 0, b"x")]);
    let e = parse_tar("E.tar", &bytes).unwrap_err().to_string();
    assert!(e.starts_with("E.tar: member d/d/d/"), "{e}");
    assert!(e.contains("... (6002 bytes): its name is 6002 bytes long") && e.contains("PATH_MAX"), "{e}");
    assert!(e.len() < 400, "one short line: {e}");

    // Deeper than PATH_MAX through a symlink: refused by the tree.
    let half = "e/".repeat(1500);
    let bytes = make_tar(&[
        (&format!("{half}x"), tar::EntryType::Regular, 0o644, 0, b"x"),
        ("l", tar::EntryType::Symlink, 0o777, 0, half.trim_end_matches('/').as_bytes()),
        (&format!("l/{half}y"), tar::EntryType::Regular, 0o644, 0, b"y"),
    ]);
    let a = parse_tar("S.tar", &bytes).unwrap();
    let e = unpack(&a, &mut tree(), 0).unwrap_err().to_string();
    assert!(e.starts_with("S.tar: unpacking /l/e/e/"), "{e}");
    assert!(e.contains("PATH_MAX"), "{e}");
}

#[test]
fn unpack_creates_parents_and_keeps_metadata() {
    use tar::EntryType as T;
    let a = parse_tar(
        "A",
        &make_tar(&[
            ("./etc/x/a", T::Regular, 0o600, 7, b"1"),
            ("etc/h", T::Link, 0, 0, b"etc/x/a"),
            ("dev/null", T::Char, 0o666, 0, b""),
        ]),
    )
    .unwrap();
    let mut t = tree();
    unpack(&a, &mut t, 42).unwrap();
    let etc = t.node(t.lookup(Path::new("/etc")).unwrap());
    assert_eq!(etc.meta, Metadata::new(0o755, 0, 0, 42));
    let f = t.lookup(Path::new("/etc/x/a")).unwrap();
    assert_eq!(t.node(f).meta.perm, 0o600);
    assert_eq!(t.node(f).meta.uid, 7);
    assert_eq!(t.node(f).meta.mtime, 1_000_000);
    assert_eq!(t.node(f).meta.ctime, 42);
    assert_eq!(t.lookup(Path::new("/etc/h")), Some(f));
    assert_eq!(t.link_count(f), 2);
    let null = t.node(t.lookup(Path::new("/dev/null")).unwrap());
    assert_eq!(null.content, Content::CharDevice(0x0103));
}

#[test]
fn later_archives_overwrite_files_and_restamp_dirs() {
    use tar::EntryType as T;
    let first = parse_tar("1", &make_tar(&[("etc/f", T::Regular, 0o644, 0, b"old")])).unwrap();
    let second = parse_tar(
        "2",
        &make_tar(&[("etc/", T::Directory, 0o750, 2952, b""), ("etc/f", T::Regular, 0o644, 0, b"new")]),
    )
    .unwrap();
    let mut t = tree();
    unpack(&first, &mut t, 1).unwrap();
    unpack(&second, &mut t, 1).unwrap();
    let etc = t.node(t.lookup(Path::new("/etc")).unwrap());
    assert_eq!((etc.meta.uid, etc.meta.perm), (2952, 0o750), "GNU tar --overwrite-dir");
    let f = t.node(t.lookup(Path::new("/etc/f")).unwrap());
    let Content::Regular(Data::Scratch(d)) = &f.content else { panic!("{:?}", f.content) };
    assert_eq!(d.read_all().unwrap(), b"new");
}

/// Issue 8, item 8: a file member over a directory with contents was
/// silently dropped. GNU tar fails there ("Cannot open: File exists",
/// exit 2) and so does supermin; we refuse, naming archive and member. Over
/// an empty directory GNU tar succeeds, and so do we.
#[test]
fn non_directory_over_a_populated_directory_is_refused() {
    use tar::EntryType as T;
    let first = parse_tar(
        "1.tar",
        &make_tar(&[("d/inner", T::Regular, 0o644, 0, b"a"), ("e/", T::Directory, 0o755, 0, b"")]),
    )
    .unwrap();
    for (name, kind, data) in
        [("d", T::Regular, &b"file"[..]), ("./d", T::Symlink, b"elsewhere"), ("d", T::Fifo, b"")]
    {
        let second = parse_tar("2.tar", &make_tar(&[(name, kind, 0o644, 0, data)])).unwrap();
        let mut t = tree();
        unpack(&first, &mut t, 0).unwrap();
        let e = unpack(&second, &mut t, 0).unwrap_err().to_string();
        assert!(
            e.starts_with("2.tar: member /d: an earlier member made it a directory with contents"),
            "{e}"
        );
        assert!(e.contains("remove one of the two members"), "{e}");
    }
    // The empty directory is replaced, as GNU tar does.
    let second = parse_tar("2.tar", &make_tar(&[("e", T::Regular, 0o644, 0, b"file")])).unwrap();
    let mut t = tree();
    unpack(&first, &mut t, 0).unwrap();
    unpack(&second, &mut t, 0).unwrap();
    let e = t.node(t.lookup(Path::new("/e")).unwrap());
    assert!(matches!(e.content, Content::Regular(_)));
}

#[test]
fn dangling_hard_link_names_archive_and_member() {
    let a = parse_tar("L.tar", &make_tar(&[("a", tar::EntryType::Link, 0, 0, b"nope")])).unwrap();
    let e = unpack(&a, &mut tree(), 0).unwrap_err().to_string();
    assert!(e.contains("L.tar") && e.contains("/a"), "{e}");
}

#[test]
fn makedev_matches_glibc() {
    assert_eq!(makedev(1, 3), 0x0103);
    assert_eq!(makedev(259, 0x12345), (259 << 8) | 0x45 | (0x123 << 20));
}
