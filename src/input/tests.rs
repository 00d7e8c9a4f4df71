//! Tests of the input walk and list rules against `tests/fixtures/supermin.d`,
//! temporary bad inputs, and libguestfs's real supermin.d when installed.

use super::*;
use crate::image::files::{Content, Data, Metadata};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/supermin.d")
}

fn read_one(bytes: &[u8]) -> Result<Inputs, String> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), bytes).unwrap();
    read_inputs(&[dir.path().to_owned()])
        .map_err(|e| e.to_string().replace(&dir.path().display().to_string(), "DIR"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Extract the base archives of `inputs` (scratch in a temporary
/// directory, a 1 GiB image) and unpack them into a fresh tree.
fn unpacked(inputs: &Inputs, default_time: i64) -> Result<(FileTree, usize), InputError> {
    let dir = tempfile::tempdir().unwrap();
    let mut scratch = Scratch::create_in(dir.path()).unwrap();
    let base = inputs.extract_base(&mut scratch, 1 << 30)?;
    let mut tree = FileTree::new(Metadata::new(0o755, 0, 0, 0));
    base.unpack(&mut tree, default_time)?;
    Ok((tree, base.member_count()))
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

#[test]
fn fixture_walk_order_kinds_and_lists() {
    let inputs = read_inputs(&[fixture()]).unwrap();
    let names: Vec<_> = inputs
        .files
        .iter()
        .map(|f| f.path.strip_prefix(fixture()).unwrap().to_str().unwrap().to_owned())
        .collect();
    // Sorted bytewise, hidden files included, subdirectories in place.
    assert_eq!(
        names,
        [".hidden", "base.tar.gz", "excludefiles", "hostfiles", "packages", "sub/packages-xfs"]
    );
    let kinds: Vec<_> = inputs.files.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            InputKind::Packages,
            InputKind::BaseArchive(Compression::Gzip),
            InputKind::Excludefiles,
            InputKind::Hostfiles,
            InputKind::Packages,
            InputKind::Packages,
        ]
    );
    assert_eq!(inputs.packages, ["hidden-pkg", "bash", "coreutils", "xfsprogs"]);
    assert_eq!(inputs.hostfiles, ["/etc/ld.so.cache", "/lib/lsb/*"]);
    let ex: Vec<_> = inputs.excludes.iter().map(ExcludePattern::as_str).collect();
    assert_eq!(ex, ["/usr/share/doc/*", "/var/log/*.log*"]);
    let raw = fs::read(fixture().join("packages")).unwrap();
    assert_eq!(inputs.files[4].sha256, <[u8; 32]>::from(Sha256::digest(&raw)));
    assert_eq!(unpacked(&inputs, 0).unwrap().1, 5);
}

#[test]
fn fixture_base_unpacks_like_gnu_tar() {
    let inputs = read_inputs(&[fixture()]).unwrap();
    let (tree, _) = unpacked(&inputs, 77).unwrap();
    let node = |p: &str| tree.node(tree.lookup(Path::new(p)).unwrap_or_else(|| panic!("{p} missing")));
    assert_eq!(node("/etc").meta, Metadata::new(0o755, 0, 0, 77), "implicit parent");
    assert_eq!(node("/usr").meta.uid, 2952, "explicit dir member restamps");
    assert_eq!(node("/usr").meta.gid, 1009);
    assert_eq!(node("/usr/bin").meta.perm, 0o755);
    let tool = tree.lookup(Path::new("/usr/bin/tool")).unwrap();
    assert_eq!(tree.node(tool).mode(), libc::S_IFREG | 0o4755);
    assert_eq!(tree.node(tool).meta.mtime, 1_000_000_000);
    assert_eq!(tree.lookup(Path::new("/usr/bin/tool2")), Some(tool));
    assert_eq!(node("/bin").content, Content::Symlink("usr/bin".into()));
    let Content::Regular(Data::Scratch(motd)) = &node("/etc/motd").content else {
        panic!("/etc/motd is not a file kept in the scratch file")
    };
    assert_eq!(motd.read_all().unwrap(), b"hello\n");
}

#[test]
fn several_inputs_and_single_files_concatenate_in_order() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a"), "zzz\n").unwrap();
    let inputs =
        read_inputs(&[fixture().join("sub"), dir.path().join("a"), fixture().join("packages")]).unwrap();
    assert_eq!(inputs.packages, ["xfsprogs", "zzz", "bash", "coreutils"]);
}

#[test]
fn symlinked_directories_are_followed_and_loops_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(fixture().join("sub"), dir.path().join("linked")).unwrap();
    let inputs = read_inputs(&[dir.path().to_owned()]).unwrap();
    assert_eq!(inputs.packages, ["xfsprogs"]);
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    let e = read_inputs(&[dir.path().to_owned()]).unwrap_err().to_string();
    assert!(e.contains("directory loop"), "{e}");
}

#[test]
fn lists_are_verbatim_and_only_a_trailing_newline_is_dropped() {
    let i = read_one(b"bash \nco\r\n\nutil-linux").unwrap();
    assert_eq!(i.packages, ["bash ", "co\r", "", "util-linux"]);
    assert_eq!(split_lines("a\n\n"), ["a", ""]);
    assert!(split_lines("").is_empty());
}

#[test]
fn compressed_lists_and_empty_files() {
    let i = read_one(&gzip(b"/etc/hosts\n")).unwrap();
    assert_eq!(i.hostfiles, ["/etc/hosts"]);
    assert_eq!(i.files[0].kind, InputKind::Hostfiles);
    let i = read_one(&gzip(b"")).unwrap();
    assert_eq!(i.files[0].kind, InputKind::Empty);
    assert_eq!(read_one(b"").unwrap().files[0].kind, InputKind::Empty);
}

#[test]
fn excludefiles_errors_name_file_and_line() {
    let e = read_one(b"-/boot/*\n\n-/x\n").unwrap_err();
    assert_eq!(
        e,
        "DIR/f:2: excludefiles line does not start with '-'; every line must be -PATTERN (remove empty lines)"
    );
    let e = read_one(b"-/boot/*\n/usr/x\n").unwrap_err();
    assert!(e.starts_with("DIR/f:2:"), "{e}");
}

#[test]
fn bad_inputs_are_refused_with_advice() {
    let e = read_one(b"#!/bin/sh\n").unwrap_err();
    assert!(e.starts_with("DIR/f: unknown file type"), "{e}");
    let mut bz = b"BZh91AY&SY".to_vec();
    bz.extend_from_slice(&[0; 30]);
    assert_eq!(
        read_one(&bz).unwrap_err(),
        "DIR/f: bzip2-compressed file; supermin would misread it as a package list; recompress it with gzip or xz"
    );
    assert!(read_one(&gzip(b"070701...")).unwrap_err().contains("cpio"));
    let e = read_one(b"bash\n\xff\n").unwrap_err();
    assert!(e.starts_with("DIR/f:2: not valid UTF-8"), "{e}");
    let e = read_one(&gzip(b"bash\n")[..10]).unwrap_err();
    assert!(e.starts_with("DIR/f: corrupt or truncated gzip data"), "{e}");
    // A truncated base archive is recognised while reading (cheap, for
    // `check`) and fails when it is extracted.
    let tar = fs::read(fixture().join("base.tar.gz")).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&tar[..]), &mut plain).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), &plain[..600]).unwrap();
    let inputs = read_inputs(&[dir.path().to_owned()]).unwrap();
    assert_eq!(inputs.files[0].kind, InputKind::BaseArchive(Compression::None));
    let e = unpacked(&inputs, 0).unwrap_err().to_string();
    assert!(e.contains("/f: corrupt or truncated tar archive"), "{e}");
    let e = read_inputs(&[PathBuf::from("/nonexistent/supermin.d")]).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/supermin.d: "), "{e}");
}

#[test]
fn special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let e = read_inputs(&[dir.path().to_owned()]).unwrap_err().to_string();
    assert!(e.contains("fifo: not a regular file or directory"), "{e}");
}

#[test]
fn default_input_dirs_picks_first_existing_under_root() {
    let root = tempfile::tempdir().unwrap();
    assert!(default_input_dirs(root.path()).is_empty());
    fs::create_dir_all(root.path().join("usr/lib/guestfs/supermin.d")).unwrap();
    assert_eq!(default_input_dirs(root.path()), [root.path().join("usr/lib/guestfs/supermin.d")]);
    fs::create_dir_all(root.path().join("usr/lib64/guestfs/supermin.d")).unwrap();
    assert_eq!(default_input_dirs(root.path()), [root.path().join("usr/lib64/guestfs/supermin.d")]);
    if let Some(t) = multiarch_triplet() {
        let p = root.path().join(format!("usr/lib/{t}/guestfs/supermin.d"));
        fs::create_dir_all(&p).unwrap();
        assert_eq!(default_input_dirs(root.path()), [p]);
    }
}

/// libguestfs's real input (Debian 12: 4 tarballs, 3 lists). Skipped when
/// libguestfs is not installed, except under CI where it must be.
#[test]
fn libguestfs_installed_supermin_d() {
    let dirs = default_input_dirs(Path::new("/"));
    if dirs.is_empty() {
        assert!(!ci(), "libguestfs's supermin.d is required under CI (install libguestfs0)");
        eprintln!("skipping: libguestfs's supermin.d is not installed");
        return;
    }
    let inputs = read_inputs(&dirs).unwrap();
    assert!(inputs.packages.iter().any(|p| p == "bash"), "{:?}", inputs.packages);
    assert!(inputs.hostfiles.iter().any(|p| p == "/etc/ld.so.cache"));
    assert!(inputs.excludes.iter().any(|p| p.as_str() == "/lib/modules/*"));
    let bases = inputs.files.iter().filter(|f| matches!(f.kind, InputKind::BaseArchive(_))).count();
    assert!(bases >= 2, "{:?}", inputs.files);
    let (tree, _) = unpacked(&inputs, 0).unwrap();
    let init = tree.lookup(Path::new("/init")).expect("libguestfs ships /init in init.tar.gz");
    assert_eq!(tree.node(init).meta.perm, 0o755);
    assert!(tree.lookup(Path::new("/usr/sbin/guestfsd")).is_some());
}

/// `check` reads inputs: a base archive is hashed, not decompressed, so a
/// gzip bomb costs nothing there; a list is read up to LIST_MAX.
#[test]
fn reading_inputs_does_not_unpack_archives() {
    let dir = tempfile::tempdir().unwrap();
    // A valid tar header, then gzip data that is corrupt after 64 KiB: only
    // the build, which decompresses everything, notices.
    let mut tar = crate::input::archive::tests_support::one_member_tar(b"f", 1 << 20);
    tar.truncate(70_000);
    let gz = gzip(&tar);
    let cut = gz.len() - 20;
    fs::write(dir.path().join("base.tar.gz"), &gz[..cut]).unwrap();
    let inputs = read_inputs(&[dir.path().to_owned()]).unwrap();
    assert_eq!(inputs.files[0].kind, InputKind::BaseArchive(Compression::Gzip));
    assert_eq!(inputs.files[0].sha256, <[u8; 32]>::from(Sha256::digest(&gz[..cut])));
    let e = unpacked(&inputs, 0).unwrap_err().to_string();
    assert!(e.contains("base.tar.gz: corrupt or truncated gzip data"), "{e}");

    // A list that decompresses beyond LIST_MAX is refused, not read whole.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let line = b"package\n".repeat(1 << 16);
    for _ in 0..(LIST_MAX as usize / line.len() + 1) {
        enc.write_all(&line).unwrap();
    }
    let e = read_one(&enc.finish().unwrap()).unwrap_err();
    assert!(e.starts_with("DIR/f: list file larger than 64.0 MiB"), "{e}");
}

/// The archive is read twice (hashed by `read_inputs`, extracted by the
/// build); a change in between is an error, not a mismatched manifest.
#[test]
fn archive_changed_after_reading_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.tar");
    fs::write(&base, crate::input::archive::tests_support::one_member_tar(b"f", 10)).unwrap();
    let inputs = read_inputs(&[dir.path().to_owned()]).unwrap();
    fs::write(&base, crate::input::archive::tests_support::one_member_tar(b"g", 10)).unwrap();
    let e = unpacked(&inputs, 0).unwrap_err().to_string();
    assert!(e.contains("base.tar: changed while the appliance was being built"), "{e}");
}
