//! Issue 8, items 5, 6, 7, 8 and 16: hostile base archives (and pseudo-file
//! hostfiles) against the real binary. Archives are made here, with GNU tar
//! or header by header; nothing needs gigabytes of disk or memory: big
//! members are sparse or compress to almost nothing, and the memory bound is
//! checked by running the build under `prlimit --as` far below the member
//! sizes. Results are checked with e2fsck and debugfs.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bad_input::{assert_error_line, build_fails, gzip};
use crate::util::*;

/// Address-space limit for builds that must not hold member data: a
/// quarter of the 1 GiB members (the build itself needs about 15 MB).
const AS_LIMIT: u64 = 256 << 20;

fn prerequisites() -> bool {
    crate::build::prerequisites_pub() && have_tool("tar") && have_tool("prlimit")
}

/// A GNU tar header (magic `ustar  `) with a valid checksum; `edit` may set
/// any field first.
fn header(name: &str, typeflag: u8, size: u64, edit: impl FnOnce(&mut [u8; 512])) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"14000000000");
    h[156] = typeflag;
    h[257..265].copy_from_slice(b"ustar  \0");
    edit(&mut h);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().next_multiple_of(512), 0);
    v
}

/// An input directory holding exactly `files`.
fn input_dir(tmp: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let input = tmp.join("supermin.d");
    std::fs::create_dir_all(&input).unwrap();
    for (name, content) in files {
        std::fs::write(input.join(name), content).unwrap();
    }
    input
}

/// A sparse file of `len` bytes with `writes` at their offsets.
fn sparse_file(path: &Path, len: u64, writes: &[(u64, &[u8])]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    for (at, bytes) in writes {
        f.write_all_at(bytes, *at).unwrap();
    }
}

/// Run GNU tar in `dir` writing the archive to stdout.
fn gnu_tar(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("tar").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `debugfs -R CMD image`: stdout.
fn debugfs(image: &Path, cmd: &str) -> Vec<u8> {
    let out = Command::new("debugfs").args(["-R", cmd]).arg(image).output().unwrap();
    assert!(out.status.success(), "debugfs {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn stat(image: &Path, path: &str) -> String {
    String::from_utf8_lossy(&debugfs(image, &format!("stat \"{path}\""))).into_owned()
}

/// The `Blockcount:` (512-byte sectors) of a `stat`.
fn blockcount(stat: &str) -> u64 {
    let at = stat.find("Blockcount: ").unwrap_or_else(|| panic!("no Blockcount in {stat}"));
    stat[at + 12..].split_whitespace().next().unwrap().parse().unwrap()
}

/// `len` bytes of `path` at `offset`, read through the image's block map.
fn read_at(image: &Path, path: &str, offset: u64, len: usize) -> Vec<u8> {
    let out = debugfs(image, &format!("bmap \"{path}\" {}", offset / 4096));
    let block: u64 = String::from_utf8_lossy(&out).trim().parse().unwrap();
    assert_ne!(block, 0, "{path}: no block at {offset}");
    let mut buf = vec![0u8; len];
    std::fs::File::open(image).unwrap().read_exact_at(&mut buf, block * 4096 + offset % 4096).unwrap();
    buf
}

fn assert_fsck_clean(image: &Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(image).output().unwrap();
    assert!(
        out.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `guestfs-appliance build ARGS DIR`, under `prlimit --as=LIMIT` if given.
fn build_ok(tmp: &Path, args: &[&str], dir: &Path, limit: Option<u64>) -> Run {
    let ga_bin = bin("guestfs-appliance");
    let mut argv: Vec<String> = Vec::new();
    let program = match limit {
        Some(bytes) => {
            argv.extend([format!("--as={bytes}"), "--".into(), ga_bin.display().to_string()]);
            crate::qemu::tool("prlimit").unwrap()
        }
        None => ga_bin,
    };
    argv.push("build".into());
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.push(dir.display().to_string());
    run_in(tmp, &program, &argv, &[]).success()
}

/// Item 5: a 1 GiB and a 10 GiB GNU sparse member and a gzip holding a
/// 1 GiB member of zeros. Before: 2.1 GB of memory for the 1 GiB member,
/// stored fully allocated; an abort for the 10 GiB one; 3.2 GB and
/// "corrupt gzip" for the zeros. Now: a build in 256 MiB of address space,
/// holes in the image, the data where it belongs.
#[test]
fn sparse_and_zero_members_stay_holes_in_bounded_memory() {
    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sparse_file(&src.join("big1"), 1 << 30, &[(512 << 20, b"middle"), ((1 << 30) - 3, b"end")]);
    sparse_file(&src.join("big10"), 10 << 30, &[(5 << 30, b"far away")]);
    let sparse = gnu_tar(&src, &["--sparse", "--format=gnu", "-czf", "-", "big1", "big10"]);
    assert!(sparse.len() < 16 << 10, "GNU tar did not store the members sparse");
    // 1 GiB of zeros in one ordinary member: about 4.6 MB of gzip.
    let mut zeros = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    zeros.write_all(&header("zeros", b'0', 1 << 30, |_| ())).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        zeros.write_all(&chunk).unwrap();
    }
    zeros.write_all(&[0u8; 1024]).unwrap();
    let zeros = zeros.finish().unwrap();
    let input = input_dir(tmp.path(), &[("sparse.tar.gz", &sparse), ("zeros.tar.gz", &zeros)]);

    let dir = tmp.path().join("appliance");
    build_ok(tmp.path(), &["-q", "--input", input.to_str().unwrap(), "--size", "2G"], &dir, Some(AS_LIMIT));
    let root = dir.join("root");
    assert_fsck_clean(&root);

    let s = stat(&root, "/big1");
    assert!(s.contains("Size: 1073741824"), "{s}");
    assert!(blockcount(&s) <= 64, "/big1 is not sparse in the image: {s}");
    assert_eq!(read_at(&root, "/big1", 512 << 20, 6), b"middle");
    assert_eq!(read_at(&root, "/big1", (1 << 30) - 3, 3), b"end");
    let s = stat(&root, "/big10");
    assert!(s.contains("Size: 10737418240"), "{s}");
    assert!(blockcount(&s) <= 64, "/big10 is not sparse in the image: {s}");
    assert_eq!(read_at(&root, "/big10", 5 << 30, 8), b"far away");
    let s = stat(&root, "/zeros");
    assert!(s.contains("Size: 1073741824") && blockcount(&s) == 0, "{s}");
}

/// Item 5: sizes the image cannot hold are refused from the header, before
/// any allocation: 2^62 bytes in GNU base-256 (was: SIGABRT, no error
/// line), and 3 GiB for a 1 GiB image, naming member, sizes and `--size`.
#[test]
fn hostile_sizes_are_refused_before_reading() {
    if crate::bad_input::host_kernel().is_none() {
        return;
    }
    let tmp = scratch();
    let huge = header("huge", b'0', 0, |h| {
        h[124..136].fill(0);
        h[124] = 0x80;
        h[128..136].copy_from_slice(&(1u64 << 62).to_be_bytes());
    });
    let input = input_dir(tmp.path(), &[("base.tar.gz", &gzip(&huge))]);
    build_fails(
        tmp.path(),
        &["--input", input.to_str().unwrap()],
        &["base.tar.gz", "member huge", "4611686018427387904 bytes", "larger than ext2 can hold"],
    );

    let tmp = scratch();
    let mut big = header("big", b'0', 3 << 30, |_| ()).to_vec();
    big.extend([b'x'; 4096]);
    let input = input_dir(tmp.path(), &[("base.tar.gz", &gzip(&big))]);
    build_fails(
        tmp.path(),
        &["--input", input.to_str().unwrap(), "--size", "1G"],
        &["member big", "3221225472 bytes", "root image of 1073741824 bytes", "--size"],
    );
}

/// Item 5: member data now goes to disk, not memory, so running out of
/// space is the failure left (running out of memory used to be reported as
/// "corrupt or truncated gzip data"). It is named for what it is.
#[test]
fn out_of_space_for_member_data_is_named() {
    if !is_root() {
        eprintln!("skipping: needs root to mount a small tmpfs");
        return;
    }
    let tmp = scratch();
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(!in_ci(), "cannot mount a tmpfs under CI");
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(small.clone());
    // 32 MiB that neither compress nor contain a zero block.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..32 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8 | 1
        })
        .collect();
    let mut tar = header("noise", b'0', data.len() as u64, |_| ()).to_vec();
    tar.extend(&data);
    tar.extend([0u8; 1024]);
    let input = input_dir(tmp.path(), &[("base.tar", &tar)]);
    let dir = small.join("appliance");
    let before = crate::bad_input::previous_appliance(&dir);
    let run = ga(&small, ["build", "--input", input.to_str().unwrap(), "appliance"]).expect_code(2);
    assert_error_line(&run, &["base.tar", "member noise", "scratch file in", "No space left on device"]);
    crate::bad_input::assert_unchanged(&dir, &before);
    crate::bad_input::assert_no_leftovers(&small);
}

/// Item 6: a path 100,000 directories deep (a 200 KB GNU long name, a few
/// hundred bytes of gzip) ran for minutes; now it is refused at once,
/// naming the archive and the member, shortened. A path 2,000 deep, within
/// PATH_MAX, as GNU tar archives it, still builds.
#[test]
fn path_deeper_than_path_max_is_refused() {
    if crate::bad_input::host_kernel().is_none() {
        return;
    }
    let tmp = scratch();
    let name = format!("{}x\0", "a/".repeat(100_000));
    let mut tar = header("././@LongLink", b'L', name.len() as u64, |_| ()).to_vec();
    tar.extend(padded(name.as_bytes()));
    tar.extend(header("x", b'0', 0, |_| ()));
    tar.extend([0u8; 1024]);
    let gz = gzip(&tar);
    assert!(gz.len() < 2048, "{} bytes", gz.len());
    let input = input_dir(tmp.path(), &[("deep.tar.gz", &gz)]);
    let run_needles = ["deep.tar.gz", "member a/a/a/a/", "200002 bytes", "PATH_MAX"];
    build_fails(tmp.path(), &["--input", input.to_str().unwrap()], &run_needles);

    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let src = tmp.path().join("src");
    let deep = "d/".repeat(2000);
    std::fs::create_dir_all(src.join(&deep)).unwrap();
    std::fs::write(src.join(&deep).join("f"), b"deep\n").unwrap();
    let tar = gnu_tar(&src, &["--format=gnu", "-czf", "-", "d"]);
    let input = input_dir(tmp.path(), &[("deep.tar.gz", &tar)]);
    let dir = tmp.path().join("appliance");
    build_ok(tmp.path(), &["-q", "--input", input.to_str().unwrap(), "--size", "1G"], &dir, None);
    let root = dir.join("root");
    assert_fsck_clean(&root);
    assert_eq!(debugfs(&root, &format!("cat /{deep}f")), b"deep\n");
}

/// Item 7: PAX sparse members (GNU tar `--format=posix`, sparse formats 0.0,
/// 0.1 and 1.0) used to come out as `/GNUSparseFile.NNN/NAME` holding the
/// sparse map (0.1, 1.0) or as a short file of the data segments only
/// (0.0). They are extracted under their names, sparse.
#[test]
fn pax_sparse_members_are_extracted_under_their_names() {
    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut files = Vec::new();
    for version in ["0.0", "0.1", "1.0"] {
        let name = format!("f{}", version.replace('.', ""));
        sparse_file(&src.join(&name), 10 << 20, &[(5_000_000, b"hello"), (8 << 20, &[9u8; 8192])]);
        let sparse_version = format!("--sparse-version={version}");
        let tar = gnu_tar(&src, &["--sparse", "--format=posix", &sparse_version, "-cf", "-", &name]);
        files.push((format!("{name}.tar"), tar));
    }
    let list: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    let input = input_dir(tmp.path(), &list);

    let dir = tmp.path().join("appliance");
    build_ok(tmp.path(), &["-q", "--input", input.to_str().unwrap(), "--size", "1G"], &dir, None);
    let root = dir.join("root");
    assert_fsck_clean(&root);
    let listing = String::from_utf8_lossy(&debugfs(&root, "ls -l /")).into_owned();
    assert!(!listing.contains("GNUSparseFile"), "{listing}");
    for name in ["f00", "f01", "f10"] {
        let path = format!("/{name}");
        let s = stat(&root, &path);
        assert!(s.contains("Size: 10485760"), "{path}: {s}");
        assert!(blockcount(&s) <= 8 * 8, "{path} is not sparse: {s}");
        assert_eq!(read_at(&root, &path, 5_000_000, 5), b"hello", "{path}");
        assert_eq!(read_at(&root, &path, (8 << 20) + 8191, 1), [9], "{path}");
    }
}

/// Item 7: a PAX sparse format GNU tar does not write is refused, never
/// extracted as a file holding its map.
#[test]
fn unknown_pax_sparse_format_is_refused() {
    if crate::bad_input::host_kernel().is_none() {
        return;
    }
    let tmp = scratch();
    let records =
        ["GNU.sparse.major=2", "GNU.sparse.minor=0", "GNU.sparse.name=f", "GNU.sparse.realsize=100"]
            .iter()
            .map(|kv| {
                let body = format!(" {kv}\n");
                format!("{}{body}", body.len() + 2)
            })
            .collect::<String>();
    let mut tar = header("PaxHeaders/f", b'x', records.len() as u64, |_| ()).to_vec();
    tar.extend(padded(records.as_bytes()));
    tar.extend(header("GNUSparseFile.1/f", b'0', 0, |_| ()));
    tar.extend([0u8; 1024]);
    let input = input_dir(tmp.path(), &[("base.tar", &tar)]);
    build_fails(
        tmp.path(),
        &["--input", input.to_str().unwrap()],
        &["base.tar", "member f", "PAX sparse format 2.0 is not supported"],
    );
}

/// Item 8: a file member over a directory an earlier member filled was
/// silently dropped. GNU tar as root fails there ("Cannot open: File
/// exists", exit 2), which fails supermin's build: refused, naming both.
#[test]
fn file_over_a_populated_directory_is_refused() {
    if crate::bad_input::host_kernel().is_none() {
        return;
    }
    let tmp = scratch();
    let mut first = header("d/", b'5', 0, |_| ()).to_vec();
    first.extend(header("d/inner", b'0', 2, |_| ()));
    first.extend(padded(b"a\n"));
    first.extend([0u8; 1024]);
    let mut second = header("d", b'0', 5, |_| ()).to_vec();
    second.extend(padded(b"file\n"));
    second.extend([0u8; 1024]);
    let input = input_dir(tmp.path(), &[("1-base.tar", &first), ("2-base.tar", &second)]);
    build_fails(
        tmp.path(),
        &["--input", input.to_str().unwrap()],
        &["2-base.tar", "member /d", "directory with contents", "remove one of the two members"],
    );
}

/// Item 16: sysfs files were padded with NULs to their stat size (4096),
/// procfs files came out empty. They hold what `read` returns.
#[test]
fn pseudo_file_hostfiles_are_copied_as_read() {
    if !prerequisites() {
        return;
    }
    let sysfs = "/sys/devices/system/cpu/online";
    let procfs = "/proc/sys/kernel/ostype";
    let tmp = scratch();
    let list = format!("{sysfs}\n{procfs}\n");
    let input = input_dir(tmp.path(), &[("hostfiles", list.as_bytes())]);
    let dir = tmp.path().join("appliance");
    build_ok(tmp.path(), &["-q", "--input", input.to_str().unwrap(), "--size", "1G"], &dir, None);
    let root = dir.join("root");
    assert_fsck_clean(&root);
    for path in [sysfs, procfs] {
        let want = std::fs::read(path).unwrap();
        assert!(!want.is_empty() && want.len() < 100, "{path}: {want:?}");
        assert_eq!(debugfs(&root, &format!("cat {path}")), want, "{path}");
        let s = stat(&root, path);
        assert!(s.contains(&format!("Size: {}\n", want.len())), "{path}: {s}");
    }
}
