//! Issue 8: files other users control never steer what root writes, and
//! junk they plant beside an appliance never fails or hangs a build.
//!
//! Every attack runs as an unprivileged user (`setpriv` to nobody, or to a
//! test user for caches) inside a private scratch tree under /var/tmp; the
//! victims are files the test made there. The tests need root (they act as
//! other users); they print why and return early otherwise, except under CI.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cache::{fake_cache, need_root, open_scratch, unused_uid, TestUser};
use crate::util::*;

const NOBODY: u32 = 65534;

/// The system python (a python3 earlier on root's PATH may live where
/// other users cannot run it).
const PYTHON: &str = "/usr/bin/python3";

fn ready() -> bool {
    need_root() && have_tool("setpriv") && have_tool(PYTHON)
}

/// Run a python3 snippet as `uid:gid` with no supplementary groups;
/// `sys.argv[1:]` are `args`.
fn as_user(uid: u32, gid: u32, script: &str, args: &[&OsStr]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .args([PYTHON, "-c", script])
        .args(args);
    cmd
}

fn run_as(uid: u32, gid: u32, script: &str, args: &[&OsStr]) {
    let out = as_user(uid, gid, script, args).output().expect("run setpriv");
    assert!(out.status.success(), "attack step failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The next PIDs the kernel will hand out, with margin for other tests.
fn next_pids() -> std::ops::Range<u32> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").unwrap().trim().parse().unwrap();
    last + 1..last + 4000
}

/// A world-writable sticky directory (like /tmp) inside the scratch tree.
fn sticky_dir(tmp: &Path) -> PathBuf {
    let d = tmp.join("shared");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// A root-owned victim file with known content and mode.
fn victim(tmp: &Path, name: &str, mode: u32) -> PathBuf {
    let v = tmp.join(name);
    std::fs::write(&v, b"precious\n").unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(mode)).unwrap();
    v
}

fn assert_untouched(v: &Path, mode: u32) {
    let now = String::from_utf8_lossy(&std::fs::read(v).unwrap()).into_owned();
    assert!(
        now == "precious\n",
        "{} was written through; it now starts {:?}",
        v.display(),
        &now[..now.len().min(80)]
    );
    let md = std::fs::metadata(v).unwrap();
    assert_eq!(md.mode() & 0o7777, mode, "{} had its mode changed", v.display());
}

/// Run `guestfs-appliance ARGS`, failing the test (not hanging it) if it
/// does not finish within `limit`: a guard against hangs, not a timing
/// assertion.
fn ga_guarded(cwd: &Path, args: &[&OsStr], env: &[(&str, &OsStr)], limit: Duration) -> Run {
    let mut cmd = Command::new(bin("guestfs-appliance"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn guestfs-appliance");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "guestfs-appliance {args:?} hung (killed after {limit:?})\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    Run { output, shown: format!("command: guestfs-appliance {args:?}\ncwd: {}", cwd.display()) }
}

fn build_minimal(cwd: &Path, dir: &Path) -> Run {
    ga_guarded(
        cwd,
        &[
            OsStr::new("build"),
            OsStr::new("--minimal"),
            OsStr::new("--size"),
            OsStr::new("1G"),
            dir.as_os_str(),
        ],
        &[],
        Duration::from_secs(600),
    )
}

const PLANT_LINKS: &str = "import os,sys\nd,target,prefix,a,b=sys.argv[1:]\nfor p in range(int(a),int(b)):\n    os.symlink(target,os.path.join(d,prefix+str(p)))";

/// Item 2: symlinks planted at every predictable stamp temporary name in a
/// sticky shared parent redirect neither `build` nor `check`.
#[test]
fn issue8_planted_links_beside_dir_never_redirect_root() {
    if !ready() {
        return;
    }
    let tmp = open_scratch();
    let shared = sticky_dir(tmp.path());
    let v = victim(tmp.path(), "victim", 0o600);
    let dir = shared.join("app");
    let pids = next_pids();
    let (a, b) = (pids.start.to_string(), pids.end.to_string());
    for prefix in [".app.stamp.tmp", ".app.tmp"] {
        let args = [shared.as_os_str(), v.as_os_str(), OsStr::new(prefix), OsStr::new(&a), OsStr::new(&b)];
        run_as(NOBODY, NOBODY, PLANT_LINKS, &args);
    }
    build_minimal(tmp.path(), &dir).success();
    ga(tmp.path(), [OsStr::new("check"), dir.as_os_str()]).success();
    assert_untouched(&v, 0o600);
    let stamp = std::fs::symlink_metadata(shared.join(".app.stamp")).unwrap();
    assert!(stamp.is_file() && stamp.uid() == 0, "stamp not written as a new file");
}

/// Item 2: a planted `.DIR.lock` symlink is refused (one clear line), and
/// root creates nothing where it points.
#[test]
fn issue8_planted_lock_symlink_is_refused_and_creates_nothing() {
    if !ready() {
        return;
    }
    let tmp = open_scratch();
    let shared = sticky_dir(tmp.path());
    let target = tmp.path().join("created-through-the-link");
    run_as(
        NOBODY,
        NOBODY,
        "import os,sys\nos.symlink(sys.argv[1],sys.argv[2])",
        &[target.as_os_str(), shared.join(".app.lock").as_os_str()],
    );
    let run = build_minimal(tmp.path(), &shared.join("app")).expect_code(2);
    assert!(run.stderr().contains(".app.lock is a symlink"), "{}", run.shown_all());
    assert!(!target.exists(), "root created a file through the planted link");
    assert!(!shared.join("app").exists());
}

/// Item 2: a parent every user can write, without the sticky bit, is
/// refused before anything is created in it.
#[test]
fn issue8_world_writable_parent_without_sticky_bit_is_refused() {
    if !ready() {
        return;
    }
    let tmp = open_scratch();
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = build_minimal(tmp.path(), &open.join("app")).expect_code(2);
    assert!(run.stderr().contains("writable by other users and not sticky"), "{}", run.shown_all());
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0, "{}", run.shown_all());
}

/// Item 3: a directory is an appliance by content, not by names.
#[test]
fn issue8_a_home_directory_named_like_an_appliance_is_not_replaced() {
    if !ready() {
        return;
    }
    let tmp = open_scratch();
    let d = tmp.path().join("D");
    std::fs::create_dir_all(d.join("root/home")).unwrap();
    std::fs::write(d.join("root/home/thesis.tex"), b"chapter 1\n").unwrap();
    let run = build_minimal(tmp.path(), &d).expect_code(2);
    assert!(run.stderr().contains("is not an appliance"), "{}", run.shown_all());
    assert_eq!(std::fs::read(d.join("root/home/thesis.tex")).unwrap(), b"chapter 1\n");
    // Right names, wrong content: also refused.
    std::fs::remove_dir_all(d.join("root")).unwrap();
    for f in ["kernel", "initrd", "root", "README.fixed"] {
        std::fs::write(d.join(f), b"my notes\n").unwrap();
    }
    let run = build_minimal(tmp.path(), &d).expect_code(2);
    assert!(run.stderr().contains("kernel does not look like"), "{}", run.shown_all());
    assert_eq!(std::fs::read(d.join("root")).unwrap(), b"my notes\n");
}

/// Item 9: junk planted beside DIR by another user (a regular file named
/// like a staging directory, a FIFO as the stamp, non-empty `.DIR.old-PID`
/// directories for the next PIDs) neither fails nor hangs build, check or
/// --if-needed; a FIFO as the lock is refused at once.
#[test]
fn issue8_planted_junk_never_fails_or_hangs_a_build() {
    if !ready() {
        return;
    }
    let tmp = open_scratch();
    let shared = sticky_dir(tmp.path());
    let dir = shared.join("app");
    let pids = next_pids();
    let plant = "import os,sys\nd,a,b=sys.argv[1:]\nopen(os.path.join(d,'.app.build-99999'),'w').close()\nos.mkfifo(os.path.join(d,'.app.stamp'))\nos.mkfifo(os.path.join(d,'.other.lock'))\nfor p in range(int(a),int(b)):\n    o=os.path.join(d,'.app.old-%d'%p)\n    os.mkdir(o)\n    open(os.path.join(o,'x'),'w').close()";
    run_as(
        NOBODY,
        NOBODY,
        plant,
        &[
            shared.as_os_str(),
            OsStr::new(&pids.start.to_string()),
            OsStr::new(&(pids.start + 300).to_string()),
        ],
    );
    let limit = Duration::from_secs(600);
    build_minimal(tmp.path(), &dir).success();
    // And again over the existing appliance (the swap path).
    build_minimal(tmp.path(), &dir).success();
    ga_guarded(tmp.path(), &[OsStr::new("check"), dir.as_os_str()], &[], limit).success();
    ga_guarded(tmp.path(), &[OsStr::new("build"), OsStr::new("--if-needed"), dir.as_os_str()], &[], limit)
        .success();
    assert!(shared.join(".app.build-99999").is_file(), "someone else's file was removed");
    let run = build_minimal(tmp.path(), &shared.join("other")).expect_code(2);
    assert!(run.stderr().contains(".other.lock is a FIFO"), "{}", run.shown_all());
}

/// Item 9: when the new appliance is in place but the previous one cannot
/// be removed (here: a file in it is a mount point), the build succeeds and
/// says what was left.
#[test]
fn issue8_swap_is_reported_truthfully_when_the_old_appliance_stays() {
    if !ready() || !have_tool("mount") {
        return;
    }
    let tmp = open_scratch();
    let dir = tmp.path().join("app");
    build_minimal(tmp.path(), &dir).success();
    let pinned = tmp.path().join("pin");
    std::fs::write(&pinned, b"").unwrap();
    let readme = dir.join("README.fixed");
    let mounted = Command::new("mount").arg("--bind").arg(&pinned).arg(&readme).status().unwrap();
    assert!(mounted.success(), "mount --bind");
    let run = build_minimal(tmp.path(), &dir);
    // Whatever happened, unmount what we mounted before asserting.
    let leftover: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".app.build-"))
        .collect();
    for p in leftover.iter().map(|p| p.join("README.fixed")).chain([readme.clone()]) {
        let _ = Command::new("umount").arg(&p).stderr(Stdio::null()).status();
    }
    let run = run.success();
    assert!(run.stderr().contains("could not be removed"), "{}", run.shown_all());
    assert_eq!(leftover.len(), 1, "{}", run.shown_all());
    ga(tmp.path(), [OsStr::new("check"), dir.as_os_str()]).success();
}

/// A cache for `user` made as libguestfs makes it, holding a lock file.
fn user_cache(base: &Path, user: &TestUser) -> PathBuf {
    let cache = base.join(format!(".guestfs-{}", user.uid));
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("lock"), b"").unwrap();
    for p in [&cache, &cache.join("lock")] {
        std::os::unix::fs::lchown(p, Some(user.uid), Some(user.gid)).unwrap();
    }
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    cache
}

/// A config whose default inputs are the small fixture supermin.d.
fn small_config(tmp: &Path) -> PathBuf {
    let inputs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/supermin.d");
    let config = tmp.join("config.toml");
    std::fs::write(
        &config,
        format!("[appliance]\ninputs = [{:?}]\nsize = \"1G\"\n", inputs.display().to_string()),
    )
    .unwrap();
    config
}

fn prime(tmp: &Path, user: &TestUser, base: &Path, config: &Path) -> Run {
    ga_guarded(
        tmp,
        &[
            OsStr::new("cache"),
            OsStr::new("prime"),
            OsStr::new("--force"),
            OsStr::new("--user"),
            OsStr::new(&user.name),
            OsStr::new("--cachedir"),
            base.as_os_str(),
        ],
        &[("GUESTFS_APPLIANCE_CONFIG", config.as_os_str())],
        Duration::from_secs(600),
    )
}

/// Item 1: the cache's owner plants symlinks at every predictable stamp
/// temporary name, and races to swap the staging directory for a link to
/// root's files; `cache prime --user` as root writes through none of them.
#[test]
fn issue8_cache_owner_cannot_steer_prime() {
    if !ready() || !have_tool("useradd") {
        return;
    }
    let user = TestUser::create("att");
    let tmp = open_scratch();
    let base = tmp.path().join("caches");
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let cache = user_cache(&base, &user);
    let config = small_config(tmp.path());
    let v = victim(tmp.path(), "victim", 0o640);
    let pids = next_pids();
    let (a, b) = (pids.start.to_string(), pids.end.to_string());
    let args = [
        cache.as_os_str(),
        v.as_os_str(),
        OsStr::new(".appliance.d.stamp.tmp"),
        OsStr::new(&a),
        OsStr::new(&b),
    ];
    run_as(user.uid, user.gid, PLANT_LINKS, &args);
    prime(tmp.path(), &user, &base, &config).success();
    assert_untouched(&v, 0o640);
    let stamp = std::fs::symlink_metadata(cache.join(".appliance.d.stamp")).unwrap();
    assert!(stamp.is_file() && stamp.uid() == user.uid, "stamp is the user's regular file");

    // The staging swap: as soon as a staging directory appears (and its
    // root image, if the user can see it), move it away and put a link to
    // a directory of root's files in its place.
    let vdir = tmp.path().join("victims");
    std::fs::create_dir(&vdir).unwrap();
    for f in ["kernel", "initrd", "root", "README.fixed", "manifest.toml"] {
        victim(&vdir, f, 0o600);
    }
    let watcher = "import os,sys,time\nd,v=sys.argv[1:]\nend=time.time()+600\nwhile time.time()<end:\n    s=[n for n in os.listdir(d) if n.startswith('.appliance.d.build-')]\n    if s:\n        p=os.path.join(d,s[0]); t0=time.time()\n        while not os.path.exists(os.path.join(p,'root')) and time.time()-t0<0.5: time.sleep(0.005)\n        os.rename(p,os.path.join(d,'stolen')); os.symlink(v,p); sys.exit(0)\n    time.sleep(0.005)\nsys.exit(3)";
    let w = as_user(user.uid, user.gid, watcher, &[cache.as_os_str(), vdir.as_os_str()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = prime(tmp.path(), &user, &base, &config);
    let watched = w.wait_with_output().unwrap();
    assert!(watched.status.success(), "the attack did not run: {}", String::from_utf8_lossy(&watched.stderr));
    for f in ["kernel", "initrd", "root", "README.fixed", "manifest.toml"] {
        assert_untouched(&vdir.join(f), 0o600);
    }
    // Truthful: either refused, or what is published is a real directory.
    if run.code() == Some(0) {
        assert!(
            std::fs::symlink_metadata(cache.join("appliance.d")).unwrap().is_dir(),
            "{}",
            run.shown_all()
        );
    } else {
        assert!(run.stderr().contains("moved or replaced while building"), "{}", run.shown_all());
    }
}

/// Items 10 and 11: two `cache clean` runs racing over the same caches both
/// succeed; a cache that is a mount point is left alone, contents intact.
#[test]
fn issue8_parallel_cleans_and_mounted_caches() {
    if !ready() || !have_tool("mount") {
        return;
    }
    let tmp = open_scratch();
    let base = tmp.path().join("caches");
    std::fs::create_dir(&base).unwrap();
    let first = unused_uid(3_900_000);
    let mut uid = first;
    for _ in 0..3 {
        let mut made = Vec::new();
        while made.len() < 40 {
            if guestfs_appliance::host::users::UserDb::by_uid(
                &guestfs_appliance::host::users::SystemUsers,
                uid,
            )
            .unwrap()
            .is_none()
            {
                made.push(fake_cache(&base, uid));
            }
            uid += 1;
        }
        let spawn = || {
            Command::new(bin("guestfs-appliance"))
                .args([OsStr::new("cache"), OsStr::new("clean"), base.as_os_str()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            assert!(out.status.success(), "a racing clean failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(made.iter().all(|c| !c.exists()), "a gone user's cache is left");
    }

    // A cache that is a mount point (of a gone user).
    let gone = unused_uid(uid);
    let mounted = base.join(format!(".guestfs-{gone}"));
    std::fs::create_dir(&mounted).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0755"])
        .arg("tmpfs")
        .arg(&mounted)
        .status();
    assert!(ok.unwrap().success(), "mount tmpfs");
    std::fs::create_dir(mounted.join("appliance.d")).unwrap();
    std::fs::write(mounted.join("appliance.d/kernel"), b"k").unwrap();
    std::fs::write(mounted.join("lock"), b"").unwrap();
    for e in walkdir::WalkDir::new(&mounted) {
        std::os::unix::fs::lchown(e.unwrap().path(), Some(gone), Some(gone)).unwrap();
    }
    let run = ga(tmp.path(), [OsStr::new("cache"), OsStr::new("clean"), base.as_os_str()]);
    let kept = mounted.join("appliance.d/kernel").is_file();
    let _ = Command::new("umount").arg(&mounted).status();
    let run = run.success();
    assert!(run.stderr().contains("mount point"), "{}", run.shown_all());
    assert!(kept, "files inside the mounted cache were deleted\n{}", run.shown_all());
}
