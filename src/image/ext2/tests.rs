//! Round-trip tests of the ext2 writer, checked with the host's e2fsck and
//! debugfs (skipped with a message when they are missing, unless CI=true).

use super::*;
use crate::digest::{sparse_digest, ChunkHash, ImageDigest, Unheard};
use crate::image::files::Node;
use crate::test_support::tool;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

const T0: i64 = 1_700_000_000;

/// xorshift64*: a tiny deterministic PRNG, enough for test trees.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn meta(perm: u32, uid: u32, gid: u32, t: i64) -> Metadata {
    Metadata { perm, uid, gid, atime: t + 1, mtime: t, ctime: t + 2 }
}

fn inline(m: Metadata, bytes: Vec<u8>) -> Node {
    Node { meta: m, content: Content::Regular(Data::Inline(bytes.into())) }
}

/// A host file of `len` bytes (as listed) at `path`, owned by root.
fn host_node(perm: u32, path: &Path, len: u64) -> Node {
    Node { meta: meta(perm, 0, 0, T0), content: Content::Regular(Data::Host { path: path.to_owned(), len }) }
}

/// `tree` written into a 16 MiB image in a fresh directory, with the host
/// files `probed` already answers for: the directory, the image and the
/// writer's statistics.
fn write_small_image(tree: &FileTree, probed: Probed) -> (tempfile::TempDir, PathBuf, Ext2Stats) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("root");
    let file = File::create(&img).unwrap();
    let stats = write_image(tree, &file, &opts(16 << 20), &Unheard, probed).unwrap();
    (dir, img, stats)
}

fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
}

/// Host files live here during a test.
struct Fixture {
    dir: tempfile::TempDir,
    tree: FileTree,
    /// Expected content of every regular file path (host files read back).
    files: HashMap<PathBuf, Vec<u8>>,
}

fn host_file(dir: &Path, name: &str, chunks: &[(u64, Vec<u8>)], len: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let f = File::create(&path).unwrap();
    f.set_len(len).unwrap();
    let mut want = vec![0u8; len as usize];
    for (off, bytes) in chunks {
        f.write_all_at(bytes, *off).unwrap();
        want[*off as usize..*off as usize + bytes.len()].copy_from_slice(bytes);
    }
    (path, want)
}

/// A random tree with every inode type; `big` adds the large pieces (a
/// directory of thousands of entries, a file past double indirect, a sparse
/// file crossing a block group).
fn fixture(seed: u64, big: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut tree = FileTree::new(meta(0o755, 0, 0, T0));
    let mut files = HashMap::new();
    let add = |files: &mut HashMap<PathBuf, Vec<u8>>, tree: &mut FileTree, p: &str, node: Node| {
        if let Content::Regular(Data::Inline(b)) = &node.content {
            files.insert(PathBuf::from(p), b.to_vec());
        }
        tree.insert(Path::new(p), node).unwrap();
    };
    // Nested directories with random files.
    let mut dirs = vec![String::new()];
    for i in 0..40 {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let d = format!("{parent}/d{i}");
        add(&mut files, &mut tree, &d, Node { meta: meta(0o755, 0, 0, T0 + i), content: Content::Directory });
        dirs.push(d);
    }
    for i in 0..200 {
        let parent = &dirs[rng.below(dirs.len() as u64) as usize];
        let len = [0, 1, 100, 4095, 4096, 4097, 20000][rng.below(7) as usize];
        let bytes = rng.bytes(len);
        let t = rng.below(1 << 31) as i64;
        add(&mut files, &mut tree, &format!("{parent}/f{i}"), inline(meta(0o644, 0, 0, t), bytes));
    }
    // Special modes and owners.
    add(&mut files, &mut tree, "/suid", inline(meta(0o4755, 100_000, 200_000, T0), b"#!/bin/sh\n".to_vec()));
    add(&mut files, &mut tree, "/sgid", Node { meta: meta(0o2775, 0, 50, T0), content: Content::Directory });
    add(&mut files, &mut tree, "/tmp", Node { meta: meta(0o1777, 0, 0, T0), content: Content::Directory });
    add(&mut files, &mut tree, "/future", inline(meta(0o600, 70_000, 65_536, 3_000_000_000), b"y".to_vec()));
    // Symlinks, devices, fifo, socket.
    let fast = Node { meta: meta(0o777, 0, 0, T0), content: Content::Symlink("d0/f1".into()) };
    add(&mut files, &mut tree, "/fast", fast);
    let long = format!("/{}", "x/".repeat(70));
    let slow = Node { meta: meta(0o777, 0, 0, T0), content: Content::Symlink(long.into()) };
    add(&mut files, &mut tree, "/slow", slow);
    let nodes = [
        ("/null", Content::CharDevice(makedev(1, 3))),
        ("/sda1", Content::BlockDevice(makedev(8, 1))),
        ("/bigdev", Content::CharDevice(makedev(300, 70000))),
        ("/fifo", Content::Fifo),
        ("/sock", Content::Socket),
    ];
    for (p, c) in nodes {
        add(&mut files, &mut tree, p, Node { meta: meta(0o640, 5, 6, T0), content: c });
    }
    // Hard links.
    add(&mut files, &mut tree, "/hl", inline(meta(0o644, 0, 0, T0), b"linked".to_vec()));
    tree.hard_link(Path::new("/d0/hl2"), Path::new("/hl")).unwrap();
    tree.hard_link(Path::new("/sgid/hl3"), Path::new("/hl")).unwrap();
    files.insert(PathBuf::from("/d0/hl2"), b"linked".to_vec());
    files.insert(PathBuf::from("/sgid/hl3"), b"linked".to_vec());
    // Host files: a tiny one, one past double indirect, an unreadable one.
    let host = |files: &mut HashMap<PathBuf, Vec<u8>>,
                tree: &mut FileTree,
                p: &str,
                name: &str,
                chunks: &[(u64, Vec<u8>)],
                len| {
        let (path, want) = host_file(dir.path(), name, chunks, len);
        let node = Node { meta: meta(0o644, 0, 0, T0), content: Content::Regular(Data::Host { path, len }) };
        tree.insert(Path::new(p), node).unwrap();
        files.insert(PathBuf::from(p), want);
    };
    host(&mut files, &mut tree, "/host-tiny", "tiny", &[(0, b"hello".to_vec())], 5);
    let n = (4 << 20) + (48 << 10) + 12345;
    host(&mut files, &mut tree, "/host-dind", "dind", &[(0, rng.bytes(n as usize))], n);
    // Listed with a larger size than the file has: copy stops at EOF.
    let missing = dir.path().join("does-not-exist");
    let node = Node {
        meta: meta(0o644, 0, 0, T0),
        content: Content::Regular(Data::Host { path: missing, len: 1000 }),
    };
    tree.insert(Path::new("/unreadable"), node).unwrap();
    files.insert(PathBuf::from("/unreadable"), Vec::new());
    if big {
        // Sparse host file spanning group 0 into group 1.
        let len = 130 << 20;
        let chunks = [(0, rng.bytes(5000)), (129 << 20, rng.bytes(100)), (len - 7, rng.bytes(7))];
        host(&mut files, &mut tree, "/sparse", "sparse", &chunks, len);
        add(
            &mut files,
            &mut tree,
            "/many",
            Node { meta: meta(0o755, 0, 0, T0), content: Content::Directory },
        );
        for i in 0..6500 {
            let name = format!("/many/entry-with-a-longish-name-{i:05}");
            let len = rng.below(3) as usize;
            add(&mut files, &mut tree, &name, inline(meta(0o644, 0, 0, T0), rng.bytes(len)));
        }
    }
    Fixture { dir, tree, files }
}

fn opts(size: u64) -> Ext2Options {
    Ext2Options {
        size,
        uuid: *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x10\x32\x54\x76\x98\xba\xdc\xfe",
        timestamp: T0,
        label: Some("guestfs-root".into()),
    }
}

fn run(cmd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// e2fsck -fn must exit 0 and say nothing beyond its pass headers.
fn assert_fsck_clean(image: &Path) {
    let Some(e2fsck) = tool("e2fsck") else { return };
    let (ok, text) = run(&e2fsck, &["-fn", image.to_str().unwrap()]);
    assert!(ok, "e2fsck failed:\n{text}");
    for line in text.lines() {
        let expected = line.starts_with("Pass ")
            || line.starts_with("e2fsck ")
            || line.contains(" files (")
            || line.is_empty();
        assert!(expected, "unexpected e2fsck output {line:?} in:\n{text}");
    }
}

fn debugfs_stat(debugfs: &Path, image: &Path, path: &str) -> String {
    let (ok, text) = run(debugfs, &["-R", &format!("stat \"{path}\""), image.to_str().unwrap()]);
    assert!(ok, "{text}");
    text
}

/// A file's bytes as `debugfs -R 'cat PATH'` prints them.
fn debugfs_cat(debugfs: &Path, image: &Path, path: &str) -> Vec<u8> {
    let out = Command::new(debugfs)
        .args(["-R", &format!("cat \"{path}\""), image.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The digest built from what the writer reports equals reading the
/// image back, on both copy paths: into /dev/shm from the fixture's file
/// system the host data passes through our buffer and is hashed there
/// (`copy_file_range` refuses across file systems); beside the fixture the
/// kernel copies it and only those blocks are read back. Metadata is heard
/// either way.
#[test]
fn digest_heard_during_the_copy_equals_reading_the_image_back() {
    let fx = fixture(0xd16e, true);
    let size = 192 << 20;
    let beside = tempfile::tempdir_in(fx.dir.path()).unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut heard_units = Vec::new();
    for img_dir in [shm.path(), beside.path()] {
        let file =
            File::options().read(true).write(true).create_new(true).open(img_dir.join("root")).unwrap();
        let heard = ImageDigest::new(size);
        write_image(&fx.tree, &file, &opts(size), &heard, Probed::default()).unwrap();
        heard_units.push(heard.units_heard());
        assert_eq!(heard.finish(&file).unwrap(), sparse_digest(&file, ChunkHash::Xxh3).unwrap());
    }
    let cross =
        std::fs::metadata(fx.dir.path()).unwrap().dev() != std::fs::metadata(shm.path()).unwrap().dev();
    // Metadata and inline files are heard on both paths; host-dind alone
    // is over a thousand more blocks where our buffer copies it.
    let (through_buffer, kernel_copied) = (heard_units[0], heard_units[1]);
    assert!(kernel_copied > 0, "metadata is heard");
    if cross {
        assert!(through_buffer > kernel_copied + 1000, "{through_buffer} vs {kernel_copied} blocks heard");
    }
}

#[test]
fn random_tree_round_trips_through_e2fsck_and_debugfs() {
    let fx = fixture(0x5eed, true);
    let img_dir = tempfile::tempdir().unwrap();
    let img = img_dir.path().join("root");
    let file = File::create(&img).unwrap();
    let stats = write_image(&fx.tree, &file, &opts(192 << 20), &Unheard, Probed::default()).unwrap();
    drop(file);
    assert_eq!(stats.block_size, 4096);
    assert_eq!(stats.unreadable.len(), 1, "{:?}", stats.unreadable);
    assert!(stats.unreadable[0].0.ends_with("does-not-exist"));
    assert!(stats.data_bytes > 130 << 20);
    // The image stays sparse: holes of the sparse host file are not written.
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(allocated < 60 << 20, "image allocates {allocated} bytes");

    let sb = read_superblock(&img).unwrap();
    assert_eq!(sb.uuid, opts(0).uuid);
    assert_eq!(sb.label, "guestfs-root");
    assert_eq!(sb.block_size, 4096);
    assert_eq!(sb.mkfs_time, T0);
    assert_eq!(sb.blocks, (192 << 20) / 4096);
    assert_eq!(sb.blocks - sb.free_blocks, stats.blocks_used);
    assert_eq!(sb.inodes - sb.free_inodes, stats.inodes);

    assert_fsck_clean(&img);
    let Some(debugfs) = tool("debugfs") else {
        return;
    };

    // Every regular file and symlink comes back with the same content.
    let out = img_dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (ok, text) = run(&debugfs, &["-R", &format!("rdump / {}", out.display()), img.to_str().unwrap()]);
    assert!(ok, "{text}");
    let mut checked = 0;
    for (path, id) in fx.tree.walk() {
        let got = out.join(path.strip_prefix("/").unwrap());
        match &fx.tree.node(id).content {
            Content::Regular(_) => {
                let want = &fx.files[&path];
                let have = std::fs::read(&got).unwrap();
                assert!(have == *want, "{} differs ({} vs {} bytes)", path.display(), have.len(), want.len());
                checked += 1;
            }
            Content::Symlink(t) => assert_eq!(&std::fs::read_link(&got).unwrap(), Path::new(t)),
            Content::Directory => assert!(got.is_dir(), "{}", path.display()),
            _ => {}
        }
    }
    assert!(checked > 6700, "{checked}");
    assert!(out.join("lost+found").is_dir());

    // Metadata samples.
    let s = debugfs_stat(&debugfs, &img, "/suid");
    assert!(s.contains("Mode:  04755"), "{s}");
    assert!(s.contains("User: 100000   Group: 200000"), "{s}");
    assert!(s.contains("mtime: 0x6553f100"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/future");
    assert!(s.contains("User: 70000   Group: 65536"), "{s}");
    assert!(s.contains("mtime: 0xb2d05e00:00000001"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/sgid");
    assert!(s.contains("Mode:  02775"), "{s}");
    assert!(s.contains("Links: 2"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/tmp");
    assert!(s.contains("Mode:  01777"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/hl");
    assert!(s.contains("Links: 3"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/bigdev");
    assert!(s.contains("Type: character special"), "{s}");
    assert!(s.contains("Device major/minor number: 300:70000"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/sda1");
    assert!(s.contains("Type: block special"), "{s}");
    assert!(s.contains("Device major/minor number: 08:01"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/fifo");
    assert!(s.contains("Type: FIFO"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/sock");
    assert!(s.contains("Type: socket"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/");
    let subdirs = fx.tree.children(FileTree::ROOT).filter(|(_, c)| fx.tree.node(*c).content.is_dir()).count();
    assert!(s.contains(&format!("Links: {}", 2 + subdirs + 1)), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/lost+found");
    assert!(s.contains("Mode:  0700") && s.contains("Size: 16384"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/unreadable");
    assert!(s.contains("Size: 0"), "{s}");
    assert!(debugfs_stat(&debugfs, &img, "/host-dind").contains("(DIND)"));
    drop(fx.dir);
}

#[test]
fn same_tree_gives_identical_bytes() {
    let fx = fixture(7, false);
    let dir = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    for name in ["a", "b"] {
        let path = dir.path().join(name);
        let file = File::create(&path).unwrap();
        // Leftover content must not leak into the image.
        (&file).write_all(&[0xAA; 100_000]).unwrap();
        write_image(&fx.tree, &file, &opts(48 << 20), &Unheard, Probed::default()).unwrap();
        images.push(std::fs::read(&path).unwrap());
    }
    assert!(images[0] == images[1], "two builds differ");
    assert_fsck_clean(&dir.path().join("a"));
}

#[test]
fn too_small_fails_before_writing() {
    let fx = fixture(9, false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root");
    let file = File::create(&path).unwrap();
    let err = write_image(&fx.tree, &file, &opts(2 << 20), &Unheard, Probed::default()).unwrap_err();
    let Ext2Error::TooSmall { needed, size } = &err else { panic!("{err}") };
    assert_eq!(*size, 2 << 20);
    assert!(*needed > 5 << 20 && *needed < 16 << 20, "{needed}");
    assert!(err.to_string().contains("--size"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert!(read_superblock(&path).is_err());
    // The size it names is enough.
    write_image(&fx.tree, &file, &opts(*needed), &Unheard, Probed::default()).unwrap();
    assert_fsck_clean(&path);
    assert!(matches!(
        write_image(&fx.tree, &file, &opts(0), &Unheard, Probed::default()),
        Err(Ext2Error::ZeroSize)
    ));
}

#[test]
fn tree_lost_found_and_small_images_are_clean() {
    let mut tree = FileTree::new(meta(0o700, 10, 20, T0));
    tree.insert(Path::new("/lost+found"), Node { meta: meta(0o755, 3, 3, T0), content: Content::Directory })
        .unwrap();
    tree.insert(Path::new("/lost+found/x"), inline(meta(0o644, 0, 0, T0), b"x".to_vec())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root");
    let file = File::create(&path).unwrap();
    let mut o = opts(1 << 20);
    o.label = None;
    write_image(&tree, &file, &o, &Unheard, Probed::default()).unwrap();
    assert_eq!(read_superblock(&path).unwrap().label, "");
    assert_fsck_clean(&path);
    let Some(debugfs) = tool("debugfs") else {
        return;
    };
    let s = debugfs_stat(&debugfs, &path, "/lost+found");
    assert!(s.contains("Inode: 11 ") && s.contains("User:     3"), "{s}");
    let s = debugfs_stat(&debugfs, &path, "/");
    assert!(s.contains("Mode:  0700") && s.contains("User:    10"), "{s}");
}

#[test]
fn uuid_is_formatted_like_libguestfs() {
    assert_eq!(format_uuid(&opts(0).uuid), "01234567-89ab-cdef-1032-547698badcfe");
}

#[test]
fn not_ext2_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    assert!(matches!(read_superblock(&path), Err(Ext2Error::NotExt2 { .. })));
    assert!(matches!(read_superblock(&dir.path().join("nope")), Err(Ext2Error::Read { .. })));
}

/// Issue 8, item 5: data kept in a scratch file keeps its holes inside the
/// file system: a 10 GiB file with two blocks of data in a 64 MiB image,
/// holes in the direct, single, double and triple ranges, a file of zeros
/// that allocates nothing. e2fsck agrees, and the data is where debugfs
/// says it is.
#[test]
fn scratch_files_keep_their_holes_in_the_image() {
    use crate::image::scratch::Scratch;
    let dir = tempfile::tempdir().unwrap();
    let mut scratch = Scratch::create_in(dir.path()).unwrap();
    let mut add = |tree: &mut FileTree, path: &str, len: u64, chunks: &[(u64, &[u8])]| {
        let mut w = scratch.writer(len);
        for &(at, bytes) in chunks {
            w.write_at(at, bytes).unwrap();
        }
        let data = w.finish().unwrap();
        tree.insert(
            Path::new(path),
            Node { meta: meta(0o644, 0, 0, T0), content: Content::Regular(Data::Scratch(data)) },
        )
        .unwrap();
    };
    let mut tree = FileTree::new(meta(0o755, 0, 0, T0));
    let big: u64 = 10 << 30;
    let far = 5u64 << 30;
    add(&mut tree, "/big", big, &[(0, b"head"), (far, b"far away")]);
    // One block in each of the direct, single, double and triple ranges.
    let p = 1024u64;
    let marks: Vec<(u64, Vec<u8>)> = [3u64, 12 + 7, 12 + p + 2 * p + 5, 12 + p + p * p + 3 * p * p + 9]
        .iter()
        .map(|&b| (b * 4096 + 10, format!("block {b}").into_bytes()))
        .collect();
    let chunks: Vec<(u64, &[u8])> = marks.iter().map(|(o, b)| (*o, &b[..])).collect();
    let holey_len = (12 + p + p * p + 4 * p * p) * 4096;
    add(&mut tree, "/holey", holey_len, &chunks);
    add(&mut tree, "/zeros", 1 << 20, &[(0, &vec![0u8; 1 << 20])]);
    let dense: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8 + 1).collect();
    add(&mut tree, "/dense", dense.len() as u64, &[(0, &dense)]);

    let img = dir.path().join("root");
    let file = File::create(&img).unwrap();
    write_image(&tree, &file, &opts(64 << 20), &Unheard, Probed::default()).unwrap();
    drop(file);
    assert_fsck_clean(&img);
    let Some(debugfs) = tool("debugfs") else { return };
    let s = debugfs_stat(&debugfs, &img, "/big");
    assert!(s.contains(&format!("Size: {big}")), "{s}");
    // Two data blocks, plus the triple-indirect chain for the far one
    // (3 blocks): 5 blocks of 8 sectors.
    assert!(s.contains("Blockcount: 40\n"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/holey");
    // 4 data blocks; single (1), double (2), triple (3) indirect blocks.
    assert!(s.contains("Blockcount: 80\n"), "{s}");
    let s = debugfs_stat(&debugfs, &img, "/zeros");
    assert!(s.contains("Size: 1048576") && s.contains("Blockcount: 0\n"), "{s}");
    assert!(debugfs_cat(&debugfs, &img, "/dense") == dense, "dense file content");

    // Data where the block map says, zeros elsewhere.
    let image = File::open(&img).unwrap();
    let block_of = |path: &str, logical: u64| -> u64 {
        let out = Command::new(&debugfs)
            .args(["-R", &format!("bmap {path} {logical}"), img.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or_else(|_| panic!("bmap {path} {logical}: {text:?}"))
    };
    let read = |block: u64, off: u64, n: usize| {
        let mut buf = vec![0u8; n];
        image.read_exact_at(&mut buf, block * 4096 + off).unwrap();
        buf
    };
    assert_eq!(read(block_of("/big", 0), 0, 4), b"head");
    assert_eq!(read(block_of("/big", far / 4096), 0, 8), b"far away");
    assert_eq!(block_of("/big", 1), 0, "a hole has no block");
    for (off, bytes) in &marks {
        assert_eq!(read(block_of("/holey", off / 4096), off % 4096, bytes.len()), *bytes);
    }
}

/// Issue 8, item 16: pseudo-files are stored as `read` returns them, not
/// padded to their `stat` size (sysfs: 4096) or left empty (procfs: 0).
#[test]
fn pseudo_files_are_stored_as_read() {
    let online = Path::new("/sys/devices/system/cpu/online");
    let ostype = Path::new("/proc/sys/kernel/ostype");
    let mut tree = FileTree::new(meta(0o755, 0, 0, T0));
    for (name, path) in [("/online", online), ("/ostype", ostype)] {
        let len = std::fs::metadata(path).unwrap().len();
        tree.insert(Path::new(name), host_node(0o444, path, len)).unwrap();
    }
    let (_dir, img, stats) = write_small_image(&tree, Probed::default());
    assert!(stats.unreadable.is_empty(), "{:?}", stats.unreadable);
    assert_fsck_clean(&img);
    let Some(debugfs) = tool("debugfs") else { return };
    for (name, host) in [("/online", online), ("/ostype", ostype)] {
        let want = std::fs::read(host).unwrap();
        assert_eq!(debugfs_cat(&debugfs, &img, name), want, "{name}");
        let s = debugfs_stat(&debugfs, &img, name);
        assert!(s.contains(&format!("Size: {}\n", want.len())), "{name}: {s}");
    }
}

/// Host files probed ahead (as the build does while it composes the tree)
/// are taken at their answer; the others are probed by the writer. A file
/// that was missing when probed ahead stays unreadable even if it appears
/// before the writer runs: the answer is used, not asked again.
#[test]
fn answers_probed_ahead_are_used_and_the_rest_probed_here() {
    let host = tempfile::tempdir().unwrap();
    let (a, b) = (host.path().join("a"), host.path().join("b"));
    let probed = Probed::probe_all(std::slice::from_ref(&b));
    std::fs::write(&a, b"hello").unwrap();
    std::fs::write(&b, b"late").unwrap();
    let mut tree = FileTree::new(meta(0o755, 0, 0, T0));
    for (name, path, len) in [("/a", &a, 5), ("/b", &b, 4)] {
        tree.insert(Path::new(name), host_node(0o644, path, len)).unwrap();
    }
    let (_dir, img, stats) = write_small_image(&tree, probed);
    let unreadable: Vec<_> = stats.unreadable.iter().map(|(p, e)| (p.clone(), e.kind())).collect();
    assert_eq!(unreadable, vec![(b.clone(), io::ErrorKind::NotFound)]);
    assert_fsck_clean(&img);
    let Some(debugfs) = tool("debugfs") else { return };
    assert_eq!(debugfs_cat(&debugfs, &img, "/a"), b"hello");
    assert!(debugfs_stat(&debugfs, &img, "/b").contains("Size: 0\n"));
}
