//! Issue 2 end to end: build real appliances from this host, validate them
//! with e2fsprogs, cpio and file, boot them in qemu, and drive the
//! libguestfs one with real guestfish.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use guestfs_appliance::manifest::Manifest;

use crate::qemu;
use crate::util::*;

/// Build into `dir` with extra args; panics with full context on failure.
fn build(cwd: &Path, args: &[&str], dir: &Path) -> Run {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    all.push(dir.to_str().unwrap());
    ga(cwd, &all).success()
}

fn tool_output(argv: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// For other test modules.
pub fn prerequisites_pub() -> bool {
    prerequisites()
}

fn prerequisites() -> bool {
    crate::bad_input::host_kernel().is_some()
        && have_tool("e2fsck")
        && have_tool("debugfs")
        && have_tool("cpio")
        && have_tool("file")
}

#[test]
fn minimal_appliance_is_valid_and_boots_its_init() {
    if !prerequisites() || !have_tool("qemu-system-x86_64") {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let run = build(tmp.path(), &["--minimal"], &dir);
    assert!(run.stderr().contains("built "), "summary line missing\n{}", run.shown_all());

    for f in ["kernel", "initrd", "root", "README.fixed", "manifest.toml"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(!std::fs::symlink_metadata(dir.join("kernel")).unwrap().file_type().is_symlink());
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.fingerprint, m.compute_fingerprint());
    assert!(m.packages.iter().any(|p| p.name == "bash"), "{:?}", m.packages);

    // The root: 4 GiB sparse, clean for e2fsck, holds /init from the base.
    let root = dir.join("root");
    assert_eq!(std::fs::metadata(&root).unwrap().len(), 4 << 30);
    assert!(allocated(&root) < 2 << 30, "root is not sparse");
    let (code, text) = tool_output(&["e2fsck", "-fn", root.to_str().unwrap()]);
    assert_eq!(code, 0, "e2fsck: {text}");
    let (_, stat) = tool_output(&["debugfs", "-R", "stat /init", root.to_str().unwrap()]);
    assert!(stat.contains("Type: regular"), "{stat}");
    let (_, uuid) = tool_output(&["debugfs", "-R", "stats", root.to_str().unwrap()]);
    assert!(uuid.contains(&m.output.root_uuid), "UUID {} not in: {uuid}", m.output.root_uuid);
    let (_, ls) = tool_output(&[
        "debugfs",
        "-R",
        &format!("ls -p /usr/lib/modules/{}", m.kernel.version),
        root.to_str().unwrap(),
    ]);
    assert!(ls.contains("modules.dep"), "{ls}");

    // The initrd: newc, our static init, the module list.
    let initrd = dir.join("initrd");
    let (_, kind) = tool_output(&["file", "-b", initrd.to_str().unwrap()]);
    assert!(kind.contains("ASCII cpio archive (SVR4 with no CRC)"), "{kind}");
    let listing = std::process::Command::new("cpio")
        .args(["-it", "--quiet"])
        .stdin(std::fs::File::open(&initrd).unwrap())
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    for needed in ["init", "modules", "virtio_scsi.ko", "sd_mod.ko", "ext4.ko"] {
        assert!(names.lines().any(|l| l == needed), "{needed} not in initrd: {names}");
    }

    let log = qemu::boot(
        &dir.join("kernel"),
        &initrd,
        &[&root],
        &format!("console=ttyS0 panic=1 root=UUID={}", m.output.root_uuid),
        Duration::from_secs(300),
    );
    assert!(log.contains(guestfs_appliance::input::MINIMAL_INIT_MARKER), "{log}");
}

/// Issue 12: the kernel file is the host kernel's uncompressed ELF with a
/// PVH entry point by default (qemu boots it without the guest
/// decompressing anything), remembered beside the appliance for the next
/// build; `--kernel-format copy` is the host's file byte for byte, and
/// boots too.
#[test]
fn the_kernel_is_the_uncompressed_vmlinux_by_default_and_a_copy_on_request() {
    if !prerequisites() || !have_tool("qemu-system-x86_64") || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let run = build(tmp.path(), &["-v", "--minimal", "--size", "1G"], &dir);
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.output.kernel_image, "vmlinux");
    assert!(run.stderr().contains("kernel: uncompressed from"), "{}", run.shown_all());
    let (_, what) = tool_output(&["file", "-b", dir.join("kernel").to_str().unwrap()]);
    assert!(what.starts_with("ELF 64-bit LSB executable, x86-64"), "{what}");
    let (_, notes) = tool_output(&["readelf", "-n", dir.join("kernel").to_str().unwrap()]);
    assert!(notes.contains("(0x00000012)"), "no XEN_ELFNOTE_PHYS32_ENTRY: {notes}");
    let kernel = &m.outputs[0];
    assert_eq!((kernel.name.as_str(), kernel.hash.clone()), ("kernel", sha256(&dir.join("kernel"))));
    let remembered = tmp.path().join(".appliance.vmlinux");
    assert!(remembered.is_file());
    // The vmlinux's blocks of zeros (about half of a distribution kernel)
    // are holes in both files.
    for file in [dir.join("kernel"), remembered.clone()] {
        let md = std::fs::metadata(&file).unwrap();
        assert!(md.blocks() * 512 < md.len() * 3 / 4, "{}: not sparse: {md:?}", file.display());
    }

    // Rebuilt (another size): the remembered vmlinux is used, same bytes.
    let before = sha256(&dir.join("kernel"));
    let run = build(tmp.path(), &["-v", "--minimal", "--size", "2G"], &dir);
    assert!(run.stderr().contains("kernel: uncompressed vmlinux reused from"), "{}", run.shown_all());
    assert_eq!(sha256(&dir.join("kernel")), before);

    // The copy: the host's file, which the same initrd and root boot.
    let copy = tmp.path().join("copy");
    build(tmp.path(), &["-q", "--minimal", "--size", "1G", "--kernel-format", "copy"], &copy);
    let mc = Manifest::read(&copy).unwrap();
    assert_eq!(mc.output.kernel_image, "copy");
    assert_eq!(sha256(&copy.join("kernel")), sha256(Path::new(&mc.kernel.path)));
    let log = qemu::boot(
        &copy.join("kernel"),
        &copy.join("initrd"),
        &[&copy.join("root")],
        &format!("console=ttyS0 panic=1 root=UUID={}", mc.output.root_uuid),
        Duration::from_secs(300),
    );
    assert!(log.contains(guestfs_appliance::input::MINIMAL_INIT_MARKER), "{log}");

    // The format is part of what `check` compares: a copy is stale for auto.
    let out = ga(tmp.path(), ["check", "--kernel-format", "auto", copy.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{}", out.shown_all());
    assert!(out.shown_all().contains("kernel-format"), "{}", out.shown_all());
}

#[test]
fn same_host_state_gives_byte_identical_appliances() {
    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    build(tmp.path(), &["-q", "--minimal", "--size", "1G"], &a);
    build(tmp.path(), &["-q", "--minimal", "--size", "1G"], &b);
    for f in ["kernel", "initrd", "root"] {
        assert_eq!(sha256(&a.join(f)), sha256(&b.join(f)), "{f} differs between builds");
    }
    let ma = Manifest::read(&a).unwrap();
    let mb = Manifest::read(&b).unwrap();
    assert_eq!(ma.fingerprint, mb.fingerprint);
    assert_eq!(ma.output.root_uuid, mb.output.root_uuid);
}

#[test]
fn rebuild_replaces_the_appliance_and_leaves_nothing_behind() {
    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    build(tmp.path(), &["-q", "--minimal", "--size", "1G"], &dir);
    build(tmp.path(), &["-q", "--minimal", "--size", "2G"], &dir);
    assert_eq!(std::fs::metadata(dir.join("root")).unwrap().len(), 2 << 30);
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The host files' digests are remembered beside the stamp unless they
    // all changed within the racy window (a just-installed kernel).
    names.retain(|n| n != ".appliance.hashes");
    let mut want = vec![".appliance.lock", ".appliance.stamp", "appliance"];
    if std::env::consts::ARCH == "x86_64" {
        want.insert(2, ".appliance.vmlinux");
    }
    assert_eq!(names, want);
}

#[test]
fn tarball_keeps_the_root_sparse() {
    if !prerequisites() || !have_tool("tar") {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let tar = tmp.path().join("appliance.tar.gz");
    build(tmp.path(), &["-q", "--minimal", "--tar", tar.to_str().unwrap()], &dir);
    let out = tmp.path().join("x");
    std::fs::create_dir(&out).unwrap();
    let (code, text) = tool_output(&["tar", "-C", out.to_str().unwrap(), "-xzf", tar.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let root = out.join("appliance/root");
    assert_eq!(std::fs::metadata(&root).unwrap().len(), 4 << 30);
    assert!(allocated(&root) < 2 << 30, "extracted root is not sparse");
    for f in ["kernel", "initrd", "root", "README.fixed"] {
        assert_eq!(sha256(&out.join("appliance").join(f)), sha256(&dir.join(f)), "{f}");
    }
}

/// libguestfs's own supermin.d, if installed.
fn libguestfs_input() -> Option<PathBuf> {
    let dirs = guestfs_appliance::input::default_input_dirs(Path::new("/"));
    if dirs.is_empty() {
        assert!(!in_ci(), "CI must install libguestfs (libguestfs-tools)");
        eprintln!("skipping: libguestfs's supermin.d is not installed");
    }
    dirs.into_iter().next()
}

#[test]
fn libguestfs_appliance_runs_a_real_guestfish_session() {
    if !prerequisites() || !have_tool("guestfish") || libguestfs_input().is_none() {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    // Issue 8, item 15: with a hostfile only its owner may read, the root
    // image is 0600; libguestfs, run by that owner (root here), boots it.
    let (extra, secret) = private_hostfile_input(tmp.path());
    let input = libguestfs_input().unwrap();
    build(tmp.path(), &["--input", input.to_str().unwrap(), "--input", extra.to_str().unwrap()], &dir);
    assert_eq!(mode_of(&dir.join("root")), 0o600, "{} is in the image", secret.display());
    let (code, text) = tool_output(&["e2fsck", "-fn", dir.join("root").to_str().unwrap()]);
    assert_eq!(code, 0, "e2fsck: {text}");

    let disk = tmp.path().join("disk.img");
    let script = "sparse disk.img 64M\n\
                  run\n\
                  part-disk /dev/sda mbr\n\
                  mkfs ext4 /dev/sda1\n\
                  mount /dev/sda1 /\n\
                  write /hello \"written through our appliance\"\n\
                  cat /hello\n\
                  umount /\n";
    let out = std::process::Command::new("guestfish")
        .current_dir(tmp.path())
        .env("LIBGUESTFS_PATH", &dir)
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .env("LIBGUESTFS_DEBUG", "1")
        .env("LIBGUESTFS_CACHEDIR", tmp.path())
        .arg("--")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run guestfish");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String =
        stderr.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        out.status.success(),
        "guestfish failed: {:?}\nstdout:\n{stdout}\nstderr tail:\n{tail}",
        out.status
    );
    assert!(stdout.contains("written through our appliance"), "stdout:\n{stdout}\nstderr tail:\n{tail}");
    // libguestfs booted our kernel, not a supermin-built one.
    let our_kernel = dir.join("kernel");
    assert!(
        stderr.contains(&*our_kernel.to_string_lossy()),
        "libguestfs did not use {}",
        our_kernel.display()
    );
    assert!(!stderr.contains("supermin: build"), "libguestfs ran supermin");
    assert!(disk.exists());
}

/// Permission bits of a file.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// An input directory (in `tmp`, made 0755) whose hostfiles name a file
/// only its owner may read (0600) and a world-readable one. Returns the
/// input and the private file.
fn private_hostfile_input(tmp: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = tmp.join("secret.txt");
    std::fs::write(&secret, "not for everyone\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = tmp.join("public.txt");
    std::fs::write(&public, "for everyone\n").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let input = tmp.join("extra.d");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("hostfiles"), format!("{}\n{}\n", secret.display(), public.display())).unwrap();
    (input, secret)
}

/// Issue 8, item 15: hostfiles that not everyone may read on the host are
/// listed in one warning, and the root image and tarball get mode 0600;
/// without them both stay 0644.
#[test]
fn issue8_private_hostfiles_are_named_and_make_the_image_private() {
    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let (input, secret) = private_hostfile_input(tmp.path());
    std::fs::write(input.join("packages"), "bash\n").unwrap();
    let dir = tmp.path().join("appliance");
    let tar = tmp.path().join("appliance.tar.gz");
    let args = ["--input", input.to_str().unwrap(), "--size", "1G", "--tar", tar.to_str().unwrap()];
    let run = build(tmp.path(), &args, &dir);
    let stderr = run.stderr();
    let private: Vec<&str> =
        stderr.lines().filter(|l| l.contains("warning:") && l.contains("not everyone may read")).collect();
    assert_eq!(private.len(), 1, "{}", run.shown_all());
    assert!(private[0].contains(&*secret.to_string_lossy()), "{}", run.shown_all());
    assert!(!private[0].contains("public.txt"), "{}", run.shown_all());
    assert_eq!(mode_of(&dir.join("root")), 0o600);
    assert_eq!(mode_of(&tar), 0o600);
    for public in ["kernel", "initrd", "README.fixed", "manifest.toml"] {
        assert_eq!(mode_of(&dir.join(public)), 0o644, "{public}");
    }

    std::fs::write(input.join("hostfiles"), format!("{}\n", tmp.path().join("public.txt").display()))
        .unwrap();
    let run = build(tmp.path(), &args, &dir);
    assert!(!run.stderr().contains("not everyone may read"), "{}", run.shown_all());
    assert_eq!(mode_of(&dir.join("root")), 0o644);
    assert_eq!(mode_of(&tar), 0o644);
}

#[test]
fn killed_build_leaves_the_previous_appliance_and_next_build_cleans_up() {
    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    build(tmp.path(), &["-q", "--minimal", "--size", "1G"], &dir);
    let before: Vec<_> = ["kernel", "initrd", "root", "README.fixed", "manifest.toml"]
        .iter()
        .map(|f| (f.to_string(), sha256(&dir.join(f))))
        .collect();

    // Start a build and SIGKILL it once its staging directory exists.
    let mut child = std::process::Command::new(bin("guestfs-appliance"))
        .args(["build", "-q", "--minimal", "--size", "2G"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Staging is `.appliance.build-PID.RANDOM` (unpredictable, issue 8).
    let prefix = format!(".appliance.build-{}.", child.id());
    let find_staging = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut found = find_staging();
    while found.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
        found = find_staging();
    }
    let staging = found.unwrap_or_else(|| panic!("the build never created {prefix}*"));
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "build finished before it could be killed");

    for (f, sum) in &before {
        assert_eq!(&sha256(&dir.join(f)), sum, "{f} changed after a killed build");
    }
    // The next build removes the leftovers and replaces the appliance.
    build(tmp.path(), &["-q", "--minimal", "--size", "2G"], &dir);
    assert!(!staging.exists(), "leftover {} not removed", staging.display());
    assert_eq!(std::fs::metadata(dir.join("root")).unwrap().len(), 2 << 30);
}

#[test]
fn concurrent_builds_of_one_dir_take_turns() {
    if !prerequisites() {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(bin("guestfs-appliance"))
                .args(["build", "-q", "--minimal", "--size", "1G"])
                .arg(&dir)
                .output_spawn()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (code, text) = tool_output(&["e2fsck", "-fn", dir.join("root").to_str().unwrap()]);
    assert_eq!(code, 0, "e2fsck: {text}");
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.fingerprint, m.compute_fingerprint());
}

/// Spawn with stdout/stderr captured.
trait OutputSpawn {
    fn output_spawn(&mut self) -> std::process::Child;
}

impl OutputSpawn for std::process::Command {
    fn output_spawn(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    }
}

#[test]
fn make_fixed_appliance_xz_names_the_tarball_after_libguestfs() {
    if !prerequisites() || !have_tool("xz") || !have_tool("tar") || libguestfs_input().is_none() {
        return;
    }
    let tmp = scratch();
    // The drop-in reads no configuration: a config path that would stop
    // guestfs-appliance (it must exist when named) changes nothing here.
    let missing = tmp.path().join("no-such-config.toml");
    let run = run_in(
        tmp.path(),
        &bin("make-fixed-appliance"),
        ["-q", "--xz"],
        &[("GUESTFS_APPLIANCE_CONFIG", missing.as_os_str())],
    )
    .success();
    let version = guestfs_appliance::commands::make_fixed::libguestfs_version(Path::new("/"));
    let tarball = tmp.path().join(format!("appliance-{version}.tar.xz"));
    assert!(tarball.is_file(), "{} missing\n{}", tarball.display(), run.shown_all());
    let (code, text) = tool_output(&["xz", "-t", tarball.to_str().unwrap()]);
    assert_eq!(code, 0, "xz -t: {text}");
    let (code, listing) = tool_output(&["tar", "-tJf", tarball.to_str().unwrap()]);
    assert_eq!(code, 0, "{listing}");
    for member in ["appliance/kernel", "appliance/initrd", "appliance/root", "appliance/README.fixed"] {
        assert!(listing.lines().any(|l| l == member), "{member} not in {listing}");
    }
    // Only the tarball is left in the current directory.
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec![format!("appliance-{version}.tar.xz")]);
}

/// Threads are a speed-up, never a requirement: a user at the thread limit
/// (`ulimit -u`, a cgroup's `pids.max`) gets the same appliance, built on
/// one thread, where `Scope::spawn` used to panic. Root is exempt from
/// `RLIMIT_NPROC`, so both builds run as a fresh test user (who has no
/// other process, so a limit of one leaves the build alone), one of them
/// with that limit.
#[test]
fn a_build_that_can_start_no_thread_is_the_same_build() {
    if !prerequisites()
        || !crate::cache::need_root()
        || !have_tool("setpriv")
        || !have_tool("prlimit")
        || !have_tool("useradd")
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let user = crate::cache::TestUser::create("nothr");
    let tmp = crate::cache::open_scratch();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::lchown(&work, Some(user.uid), Some(user.gid)).unwrap();
    // Our binary where the user can run it.
    let ga = tmp.path().join("guestfs-appliance");
    std::fs::copy(bin("guestfs-appliance"), &ga).unwrap();
    std::fs::set_permissions(&ga, std::fs::Permissions::from_mode(0o755)).unwrap();
    let build_as_user = |limit: Option<&str>, dir: &str| {
        let mut argv: Vec<String> = Vec::new();
        if let Some(limit) = limit {
            argv.extend(["prlimit".into(), format!("--nproc={limit}")]);
        }
        argv.extend([
            "setpriv".into(),
            format!("--reuid={}", user.uid),
            format!("--regid={}", user.gid),
            "--clear-groups".into(),
        ]);
        argv.extend([ga.to_str().unwrap(), "build", "--minimal"].map(String::from));
        argv.push(work.join(dir).to_str().unwrap().to_string());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (code, text) = tool_output(&argv);
        assert_eq!(code, 0, "{argv:?}:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
        Manifest::read(&work.join(dir)).unwrap()
    };
    let threaded = build_as_user(None, "threads");
    let alone = build_as_user(Some("1:1"), "alone");
    let hashes =
        |m: &Manifest| m.outputs.iter().map(|o| (o.name.clone(), o.hash.clone())).collect::<Vec<_>>();
    assert_eq!(hashes(&alone), hashes(&threaded));
    let (code, text) = tool_output(&["e2fsck", "-fn", work.join("alone/root").to_str().unwrap()]);
    assert_eq!(code, 0, "e2fsck: {text}");
    // A gzip tarball needs its threads: without them, a clean error.
    let tar = work.join("alone.tar.gz");
    let (code, text) = tool_output(&[
        "prlimit",
        "--nproc=1:1",
        "setpriv",
        &format!("--reuid={}", user.uid),
        &format!("--regid={}", user.gid),
        "--clear-groups",
        ga.to_str().unwrap(),
        "build",
        "--minimal",
        "--tar",
        tar.to_str().unwrap(),
    ]);
    assert!(code != 0 && code != 101, "exit {code}: {text}");
    assert!(text.contains("starting a gzip thread") && !text.contains("panicked"), "{text}");
    assert!(!tar.exists());
}

/// The remembered vmlinux, once checked, is known by its signature to the
/// builds after, including `build --if-needed` (whose freshness check saves
/// the digests it used, which do not include the vmlinux) and a build after
/// `check`: they copy it without hashing its 63 MB again. (The remembered
/// file must be older than the digest cache's racy window, 3 s, to be
/// believed by signature.)
#[test]
fn the_checked_vmlinux_stays_known_through_check_and_if_needed_builds() {
    if !prerequisites() || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    let d = dir.to_str().unwrap();
    build(tmp.path(), &["--minimal"], &dir);
    std::thread::sleep(Duration::from_millis(3200));
    let how = |run: &Run| {
        run.stderr()
            .lines()
            .find(|l| l.contains("kernel: uncompressed vmlinux reused"))
            .unwrap_or("")
            .to_string()
    };
    let run = ga(tmp.path(), ["build", "-v", "--minimal", d]).success();
    assert!(how(&run).contains("(checked)"), "{}", run.shown_all());
    for size in ["5G", "4G"] {
        let run = ga(tmp.path(), ["build", "-v", "--if-needed", "--minimal", "--size", size, d]).success();
        assert!(run.stderr().contains("stale"), "{}", run.shown_all());
        assert!(how(&run).contains("(known by signature)"), "{}", run.shown_all());
    }
    // A check that recomputes (another option) saves its digests; the
    // vmlinux's stays.
    ga(tmp.path(), ["check", "--minimal", "--size", "5G", d]);
    let run = ga(tmp.path(), ["build", "-v", "--minimal", "--size", "5G", d]).success();
    assert!(how(&run).contains("(known by signature)"), "{}", run.shown_all());
}
