//! Tests of the tar reader: headers written by hand (hostile numbers,
//! extensions, unknown sparse formats) and archives written by real GNU tar
//! (`--format=gnu|posix`, `--sparse`, every `--sparse-version`).

use super::*;
use crate::test_support::tool;

/// A GNU-format header (magic `ustar  `) with a valid checksum; `edit` may
/// change any field before the checksum is computed.
pub(crate) fn raw_header(
    name: &[u8],
    typeflag: u8,
    size: u64,
    edit: impl FnOnce(&mut [u8; 512]),
) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = typeflag;
    h[257..265].copy_from_slice(b"ustar  \0");
    edit(&mut h);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// A base-256 size field holding `v`.
pub(crate) fn base256(v: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[0] = 0x80;
    f[4..].copy_from_slice(&v.to_be_bytes());
    f
}

/// `data` padded to whole blocks.
pub(crate) fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().next_multiple_of(512), 0);
    v
}

/// A PAX record `LEN key=value\n`.
pub(crate) fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// Every member of an archive, with its data read.
fn read_all(bytes: &[u8]) -> Result<Vec<(Member, Vec<u8>)>, TarError> {
    let mut r = TarReader::new(bytes);
    let mut out = Vec::new();
    while let Some(m) = r.next_member()? {
        let mut data = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = r.read_data(&mut buf)?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        out.push((m, data));
    }
    Ok(out)
}

fn err(bytes: &[u8]) -> String {
    format!("{:?}", read_all(bytes).unwrap_err())
}

#[test]
fn numbers_octal_and_base256_without_overflow() {
    assert_eq!(parse_number(b"0000644\0"), Ok(0o644));
    assert_eq!(parse_number(b"  755 \0"), Ok(0o755));
    assert_eq!(parse_number(b"\0\0\0"), Ok(0));
    assert_eq!(parse_number(&base256(1 << 62)), Ok(1 << 62));
    assert!(parse_number(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().contains("64 bits"));
    assert!(parse_number(&[0xff; 12]).unwrap_err().contains("negative"));
    assert!(parse_number(b"12a4").unwrap_err().contains("octal"));
    assert_eq!(parse_time(&[0xff; 12]), Ok(-1));
    let mut t = [0xffu8; 12];
    t[11] = 0x00;
    assert_eq!(parse_time(&t), Ok(-256));
    assert_eq!(pax_time(b"1796087915.659849401"), Some(1_796_087_915));
    assert_eq!(pax_time(b"-12.5"), Some(-13));
    assert_eq!(pax_time(b"-12"), Some(-12));
    assert_eq!(pax_time(b"x"), None);
}

#[test]
fn huge_base256_size_is_reported_not_allocated() {
    // 2^62 bytes announced, none present: the header decodes, and reading
    // the data fails as truncated without allocating anything like it.
    let mut bytes = raw_header(b"big", b'0', 0, |h| h[124..136].copy_from_slice(&base256(1 << 62))).to_vec();
    bytes.extend_from_slice(&[7u8; 1024]);
    let mut r = TarReader::new(&bytes[..]);
    let m = r.next_member().unwrap().unwrap();
    assert_eq!((m.size, m.data_len), (1 << 62, 1 << 62));
    let mut buf = [0u8; 4096];
    let mut got = 0;
    let e = loop {
        match r.read_data(&mut buf) {
            Ok(n) => got += n,
            Err(e) => break e,
        }
    };
    assert_eq!(got, 1024);
    assert!(matches!(e, TarError::Truncated { member: Some(ref m) } if m == "big"), "{e:?}");
}

#[test]
fn gnu_long_names_and_ustar_prefixes() {
    let long = "d/".repeat(100) + "file";
    let mut bytes = raw_header(b"././@LongLink", b'L', long.len() as u64 + 1, |_| ()).to_vec();
    bytes.extend(padded(format!("{long}\0").as_bytes()));
    bytes.extend(raw_header(b"short", b'0', 2, |_| ()));
    bytes.extend(padded(b"hi"));
    // POSIX ustar: prefix + '/' + name.
    bytes.extend(raw_header(b"name", b'5', 0, |h| {
        h[257..265].copy_from_slice(b"ustar\x0000");
        h[345..351].copy_from_slice(b"prefix");
    }));
    // GNU magic: the prefix area is not a prefix (it holds times).
    bytes.extend(raw_header(b"gnu", b'5', 0, |h| h[345..351].copy_from_slice(b"000000")));
    bytes.extend([0u8; 1024]);
    let all = read_all(&bytes).unwrap();
    assert_eq!(all[0].0.name, long.as_bytes());
    assert_eq!(all[0].1, b"hi");
    assert_eq!(all[1].0.name, b"prefix/name");
    assert_eq!(all[1].0.kind, MemberType::Directory);
    assert_eq!(all[2].0.name, b"gnu");
}

#[test]
fn names_linux_cannot_resolve_are_refused_before_reading_them() {
    // A 200,000-byte GNU long name (a 100,000-deep path) is not read.
    let size = 200_001u64;
    let mut bytes = raw_header(b"././@LongLink", b'L', size, |_| ()).to_vec();
    bytes.extend(padded(&b"a/".repeat(300)));
    let e = err(&bytes);
    assert!(e.contains("Refused") && e.contains("200001 bytes") && e.contains("PATH_MAX"), "{e}");
    assert!(e.contains("a/a/a/a/") && e.contains("..."), "shortened name: {e}");
    // The same through a PAX path record.
    let rec = pax_record("path", &"b/".repeat(2100));
    let mut bytes = raw_header(b"PaxHeaders/x", b'x', rec.len() as u64, |_| ()).to_vec();
    bytes.extend(padded(rec.as_bytes()));
    bytes.extend(raw_header(b"x", b'0', 0, |_| ()));
    let e = err(&bytes);
    assert!(e.contains("Refused") && e.contains("4200 bytes"), "{e}");
    // 4095 bytes is fine.
    let name = "c/".repeat(2047) + "c";
    assert_eq!(name.len(), 4095);
    let rec = pax_record("path", &name);
    let mut bytes = raw_header(b"PaxHeaders/x", b'x', rec.len() as u64, |_| ()).to_vec();
    bytes.extend(padded(rec.as_bytes()));
    bytes.extend(raw_header(b"x", b'0', 0, |_| ()));
    assert_eq!(read_all(&bytes).unwrap()[0].0.name.len(), 4095);
}

#[test]
fn pax_records_override_the_header_and_globals_apply() {
    let global = pax_record("uid", "77") + &pax_record("mtime", "-5.25");
    let local = pax_record("gid", "88")
        + &pax_record("size", "3")
        + &pax_record("linkpath", "target")
        + &pax_record("SCHILY.xattr.user.x", "ignored");
    let mut bytes = raw_header(b"g", b'g', global.len() as u64, |_| ()).to_vec();
    bytes.extend(padded(global.as_bytes()));
    bytes.extend(raw_header(b"x", b'x', local.len() as u64, |_| ()));
    bytes.extend(padded(local.as_bytes()));
    bytes.extend(raw_header(b"f", b'0', 0, |_| ()));
    bytes.extend(padded(b"abc"));
    bytes.extend(raw_header(b"g2", b'0', 0, |_| ()));
    let all = read_all(&bytes).unwrap();
    let (m, data) = &all[0];
    assert_eq!((m.uid, m.gid, m.mtime, m.size), (77, 88, -6, 3));
    assert_eq!(data, b"abc");
    assert_eq!(m.link, b"target");
    // The local header applies once; the global one stays.
    assert_eq!((all[1].0.uid, all[1].0.gid), (77, 0));
    let bad = "9 path\n";
    let mut bytes = raw_header(b"x", b'x', bad.len() as u64, |_| ()).to_vec();
    bytes.extend(padded(bad.as_bytes()));
    assert!(err(&bytes).contains("malformed PAX record"));
}

#[test]
fn corrupt_and_truncated_headers() {
    let mut h = raw_header(b"f", b'0', 1, |_| ());
    h[0] = b'g';
    assert!(err(&h).contains("checksum mismatch"));
    let h = raw_header(b"f", b'0', 1, |_| ());
    assert!(matches!(read_all(&h[..300]), Err(TarError::Truncated { member: None })));
    assert!(matches!(read_all(&h), Err(TarError::Truncated { member: Some(_) })));
    // No end blocks: the stream ends at a header boundary, which is fine.
    let mut ok = h.to_vec();
    ok.extend(padded(b"x"));
    assert_eq!(read_all(&ok).unwrap().len(), 1);
    // A multi-volume continuation cannot be extracted alone.
    assert!(err(&raw_header(b"m", b'M', 0, |_| ())).contains("multi-volume"));
}

#[test]
fn gnu_old_sparse_with_extension_blocks() {
    // Six segments: four in the header, two in one extension block.
    let segs: Vec<(u64, u64)> = (0..6).map(|i| (i * 10_000, 100)).collect();
    let mut bytes = raw_header(b"sp", b'S', 600, |h| {
        for (i, (o, l)) in segs.iter().take(4).enumerate() {
            h[386 + i * 24..][..11].copy_from_slice(format!("{o:011o}").as_bytes());
            h[398 + i * 24..][..11].copy_from_slice(format!("{l:011o}").as_bytes());
        }
        h[482] = 1;
        h[483..494].copy_from_slice(format!("{:011o}", 1_000_000).as_bytes());
    })
    .to_vec();
    let mut ext = [0u8; 512];
    for (i, (o, l)) in segs.iter().skip(4).enumerate() {
        ext[i * 24..][..11].copy_from_slice(format!("{o:011o}").as_bytes());
        ext[12 + i * 24..][..11].copy_from_slice(format!("{l:011o}").as_bytes());
    }
    bytes.extend(ext);
    bytes.extend(padded(&[1u8; 600]));
    let all = read_all(&bytes).unwrap();
    let m = &all[0].0;
    assert_eq!(m.size, 1_000_000);
    assert_eq!(m.sparse.as_deref(), Some(&segs[..]));
    assert_eq!(all[0].1.len(), 600);
}

#[test]
fn bad_sparse_maps_are_refused() {
    // Overlapping segments.
    let bytes = raw_header(b"sp", b'S', 20, |h| {
        h[386..397].copy_from_slice(b"00000000000");
        h[398..409].copy_from_slice(b"00000000012");
        h[410..421].copy_from_slice(b"00000000005");
        h[422..433].copy_from_slice(b"00000000010");
        h[483..494].copy_from_slice(b"00000001000");
    });
    assert!(err(&bytes).contains("overlaps"), "{}", err(&bytes));
    // Data that does not add up.
    let bytes = raw_header(b"sp", b'S', 20, |h| {
        h[386..397].copy_from_slice(b"00000000000");
        h[398..409].copy_from_slice(b"00000000005");
        h[483..494].copy_from_slice(b"00000001000");
    });
    assert!(err(&bytes).contains("lists 5 bytes of data but the member stores 20"));
}

#[test]
fn unknown_pax_sparse_formats_are_refused_not_misread() {
    let rec = pax_record("GNU.sparse.major", "2")
        + &pax_record("GNU.sparse.minor", "0")
        + &pax_record("GNU.sparse.name", "f")
        + &pax_record("GNU.sparse.realsize", "100");
    let mut bytes = raw_header(b"x", b'x', rec.len() as u64, |_| ()).to_vec();
    bytes.extend(padded(rec.as_bytes()));
    bytes.extend(raw_header(b"GNUSparseFile.1/f", b'0', 0, |_| ()));
    let e = err(&bytes);
    assert!(e.contains("Refused") && e.contains("PAX sparse format 2.0"), "{e}");
    assert!(e.contains("member: \"f\""), "names the real member: {e}");
}

/// A 10 MiB file with data at two places, archived by GNU tar in every
/// sparse flavour: all read back as the same name, size, map and bytes.
#[test]
fn gnu_tar_sparse_formats_read_back_exactly() {
    let Some(tar) = tool("tar") else { return };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    let file = std::fs::File::create(&f).unwrap();
    file.set_len(10 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(b"hello", 5_000_000).unwrap();
    file.write_all_at(&[9u8; 8192], 8 << 20).unwrap();
    drop(file);
    let want = std::fs::read(&f).unwrap();
    for args in [
        &["--format=gnu"][..],
        &["--format=posix"],
        &["--format=posix", "--sparse-version=0.0"],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
    ] {
        let out = std::process::Command::new(&tar)
            .current_dir(dir.path())
            .arg("--sparse")
            .args(args)
            .args(["-cf", "-", "f"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(out.stdout.len() < 64 << 10, "{args:?}: GNU tar did not store it sparse");
        let all = read_all(&out.stdout).unwrap();
        assert_eq!(all.len(), 1, "{args:?}");
        let (m, data) = &all[0];
        assert_eq!(m.name, b"f", "{args:?}");
        assert_eq!(m.size, 10 << 20, "{args:?}");
        let map = m.sparse.as_deref().unwrap_or_else(|| panic!("{args:?}: not sparse"));
        let mut rebuilt = vec![0u8; m.size as usize];
        let mut at = 0usize;
        for &(off, len) in map {
            rebuilt[off as usize..(off + len) as usize].copy_from_slice(&data[at..at + len as usize]);
            at += len as usize;
        }
        assert_eq!(at, data.len(), "{args:?}");
        assert!(rebuilt == want, "{args:?}: content differs");
    }
}
