//! Issue 3, `cache`: prime a real user's libguestfs cache and prove with
//! real libguestfs debug output that the next launch reuses it; clean
//! leaves a cache whose lock another process holds alone, refuses caches it
//! must not trust, and removes caches of users that are gone.
//!
//! These tests need root (they create a user and files owned by other
//! uids); they print why and return early otherwise, except under CI.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use guestfs_appliance::cache::{self, ApplianceState};
use guestfs_appliance::host::users::{SystemUsers, UserDb};

use crate::util::*;

/// Root is needed for useradd/chown; under CI tests run as root.
pub fn need_root() -> bool {
    if !is_root() {
        assert!(!in_ci(), "cache tests run as root under CI");
        eprintln!("skipping: needs root");
    }
    is_root()
}

/// A system user created for one test and deleted (with its group) on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn create(tag: &str) -> TestUser {
        let name = format!("ga{tag}{}", std::process::id());
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("run useradd");
        assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
        let e = SystemUsers
            .by_name(&name)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} unknown to the user database after useradd"));
        TestUser { name, uid: e.uid, gid: e.gid }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        match Command::new("userdel").arg(&self.name).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("warning: userdel {}: {}", self.name, String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("warning: userdel {}: {e}", self.name),
        }
    }
}

/// A uid the user database does not know (a user that is "gone").
pub fn unused_uid(from: u32) -> u32 {
    (from..).find(|u| SystemUsers.by_uid(*u).unwrap().is_none()).unwrap()
}

/// A scratch dir every user can traverse (tempdirs are 0700). It lives in
/// /var/tmp, not under the checkout, whose parent directories another user
/// may not be allowed to enter.
pub fn open_scratch() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new().prefix("ga-cache-test-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// A fake supermin-built cache owned by `uid`, with a lock file.
pub fn fake_cache(base: &Path, uid: u32) -> PathBuf {
    let cache = base.join(format!(".guestfs-{uid}"));
    std::fs::create_dir_all(cache.join("appliance.d")).unwrap();
    for f in ["kernel", "initrd", "root"] {
        std::fs::write(cache.join("appliance.d").join(f), vec![7u8; 64 << 10]).unwrap();
    }
    std::fs::write(cache.join("lock"), b"").unwrap();
    for entry in walkdir::WalkDir::new(&cache) {
        std::os::unix::fs::lchown(entry.unwrap().path(), Some(uid), Some(uid)).unwrap();
    }
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    cache
}

/// The caches `cache list --json PATH` reports under `base`.
fn listed(cwd: &Path, base: &Path) -> Vec<serde_json::Value> {
    use std::ffi::OsStr;
    let run =
        ga(cwd, [OsStr::new("cache"), OsStr::new("list"), OsStr::new("--json"), base.as_os_str()]).success();
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", run.shown_all()));
    assert_eq!(doc["version"], 1, "{}", run.shown_all());
    let canon = std::fs::canonicalize(base).unwrap();
    doc["caches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| Path::new(c["path"].as_str().unwrap()).starts_with(&canon))
        .cloned()
        .collect()
}

#[test]
fn primed_cache_is_reused_by_the_users_next_libguestfs_launch() {
    if !need_root()
        || !have_tool("guestfish")
        || !have_tool("setpriv")
        || !have_tool("useradd")
        || crate::bad_input::host_kernel().is_none()
    {
        return;
    }
    if guestfs_appliance::input::default_input_dirs(Path::new("/")).is_empty() {
        assert!(!in_ci(), "CI must install libguestfs (libguestfs-tools)");
        eprintln!("skipping: libguestfs's supermin.d is not installed");
        return;
    }
    let user = TestUser::create("prime");
    let tmp = open_scratch();
    let base = tmp.path().join("caches");
    let home = tmp.path().join("home");
    std::fs::create_dir(&base).unwrap();
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::lchown(&home, Some(user.uid), Some(user.gid)).unwrap();

    let run = ga(tmp.path(), ["cache", "prime", "--user", &user.name, "--cachedir", base.to_str().unwrap()])
        .success();
    assert!(
        run.stderr().contains(&format!(
            "primed {}",
            base.join(format!(".guestfs-{}", user.uid)).join("appliance.d").display()
        )),
        "{}",
        run.shown_all()
    );

    // Everything libguestfs and supermin will open belongs to the user.
    let cache = base.join(format!(".guestfs-{}", user.uid));
    let md = std::fs::symlink_metadata(&cache).unwrap();
    assert!(md.is_dir());
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (user.uid, user.gid, 0o755));
    for f in ["lock", "appliance.d", "appliance.d/kernel", "appliance.d/initrd", "appliance.d/root"] {
        let m = std::fs::symlink_metadata(cache.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "{f}");
    }
    let stamp = std::fs::symlink_metadata(cache.join(".appliance.d.stamp")).unwrap();
    assert_eq!(stamp.uid(), user.uid, "check's stamp is not the user's");
    // The remembered digests (written unless every host file hashed
    // changed within the racy window) are the user's too.
    if let Ok(hashes) = std::fs::symlink_metadata(cache.join(".appliance.d.hashes")) {
        assert_eq!(hashes.uid(), user.uid, "the remembered digests are not the user's");
    }
    // So is the remembered uncompressed kernel (x86_64), read-only to others.
    if std::env::consts::ARCH == "x86_64" {
        let v = std::fs::symlink_metadata(cache.join(".appliance.d.vmlinux")).unwrap();
        assert_eq!((v.uid(), v.mode() & 0o7777), (user.uid, 0o644), "the remembered vmlinux");
    }
    let host_inputs = cache::host_date_inputs(Path::new("/"));
    assert_eq!(cache::date_rule(&cache.join("appliance.d"), &host_inputs), ApplianceState::FreshByDate);

    // An appliance that is fresh by content but dated before the inputs
    // (e.g. after `apt-get update` rewrote the dpkg status file) would be
    // rebuilt by supermin: a second prime leaves the content alone and
    // fixes the dates.
    cache::touch_outputs(
        &cache.join("appliance.d"),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
    )
    .unwrap();
    assert!(cache::date_rule(&cache.join("appliance.d"), &host_inputs).is_stale());
    let root_before = std::fs::metadata(cache.join("appliance.d/root")).unwrap();
    let run = ga(tmp.path(), ["cache", "prime", "--user", &user.name, "--cachedir", base.to_str().unwrap()])
        .success();
    assert!(run.stderr().contains("already fresh"), "{}", run.shown_all());

    // The user's first launch: supermin --if-newer must skip the rebuild.
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={}", user.uid),
            &format!("--regid={}", user.gid),
            "--clear-groups",
            "guestfish",
            "-a",
            "/dev/null",
            "run",
        ])
        .current_dir(&home)
        .env_remove("LIBGUESTFS_PATH")
        .env_remove("SUPERMIN_KERNEL")
        .env_remove("SUPERMIN_MODULES")
        .env_remove("SUPERMIN_KERNEL_VERSION")
        .env_remove("TMPDIR")
        .env("HOME", &home)
        .env("LIBGUESTFS_CACHEDIR", &base)
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .env("LIBGUESTFS_DEBUG", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run guestfish as the test user");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let supermin: Vec<&str> = stderr.lines().filter(|l| l.starts_with("supermin:")).collect();
    let tail: Vec<&str> = stderr.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(
        out.status.success(),
        "guestfish failed: {:?}\nsupermin lines: {supermin:#?}\ntail:\n{}",
        out.status,
        tail.join("\n")
    );
    assert!(
        supermin.contains(&"supermin: if-newer: output does not need rebuilding"),
        "supermin rebuilt the primed cache: {supermin:#?}"
    );
    assert!(!supermin.iter().any(|l| l.starts_with("supermin: build:")), "{supermin:#?}");
    let drive = format!("file={},snapshot=on", cache.join("appliance.d/root").display());
    assert!(stderr.contains(&drive), "libguestfs did not boot the primed root ({drive})");
    assert!(stderr.contains("init: guestfs-appliance-init"), "our init did not run");
    let root_after = std::fs::metadata(cache.join("appliance.d/root")).unwrap();
    assert_eq!(root_before.ino(), root_after.ino(), "root was replaced");

    // list sees it: the user's, with an appliance, fresh by its manifest.
    let caches = listed(tmp.path(), &base);
    assert_eq!(caches.len(), 1, "{caches:#?}");
    let c = &caches[0];
    assert_eq!(c["user"], user.name.as_str());
    assert_eq!(c["uid"], user.uid);
    assert_eq!(c["appliance"], true);
    assert_eq!(c["state"], "fresh", "{c:#}");
    assert_eq!(c["locked"], false);
    assert!(c["allocated_bytes"].as_u64().unwrap() > 10 << 20, "{c:#}");
    // The qemu probe cache guestfish wrote is the user's, in the same dir.
    assert!(std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".stat")));
}

#[test]
fn clean_skips_locked_and_untrusted_caches_and_removes_orphans() {
    if !need_root() || !have_tool("python3") {
        return;
    }
    let tmp = open_scratch();
    let base = tmp.path().join("caches");
    std::fs::create_dir(&base).unwrap();
    let gone = unused_uid(3_900_000_000);
    let cache = fake_cache(&base, gone);

    // Another process holds the lock as supermin does (lockf, a POSIX
    // record lock) and says so on stdout.
    let holder = "import fcntl,sys\nf=open(sys.argv[1],'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\nsys.stdin.read()\n";
    let mut child = Command::new("python3")
        .args(["-c", holder])
        .arg(cache.join("lock"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start lock holder");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");

    let gone_s = gone.to_string();
    let clean = |extra: &[&str]| {
        let mut args = vec!["cache", "clean", "--user", &gone_s];
        args.extend_from_slice(extra);
        args.push(base.to_str().unwrap());
        ga(tmp.path(), &args).success()
    };
    let listing = listed(tmp.path(), &base);
    assert_eq!(listing.len(), 1, "{listing:#?}");
    assert_eq!(listing[0]["locked"], true, "{:#}", listing[0]);
    assert_eq!(listing[0]["user_exists"], false);

    let run = clean(&[]);
    assert!(run.stderr().contains("in use: its lock is held"), "{}", run.shown_all());
    assert!(run.stderr().contains("removed 0 caches"), "{}", run.shown_all());
    assert!(cache.join("appliance.d/root").is_file(), "a locked cache was touched");

    drop(child.stdin.take()); // the holder exits and its lock goes
    assert!(child.wait().unwrap().success());

    let run = clean(&["--dry-run"]);
    assert!(
        run.stderr().contains(&format!("would remove {} (user gone,", cache.display())),
        "{}",
        run.shown_all()
    );
    assert!(cache.join("appliance.d/root").is_file(), "--dry-run removed something");

    // Untrusted neighbours: a symlinked cache and one whose owner is not
    // the uid in its name. Both are left alone, and so is what they name.
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), b"keep").unwrap();
    let gone2 = unused_uid(gone + 1);
    let link = base.join(format!(".guestfs-{gone2}"));
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let gone3 = unused_uid(gone2 + 1);
    let liar = fake_cache(&base, gone3);
    std::os::unix::fs::lchown(&liar, Some(gone3 + 1), None).unwrap();

    let mut args = vec!["cache".to_string(), "clean".into()];
    for u in [gone, gone2, gone3] {
        args.extend(["--user".into(), u.to_string()]);
    }
    args.push(base.to_str().unwrap().into());
    let run = ga(tmp.path(), &args).success();
    let err = run.stderr();
    assert!(err.contains(&format!("removed {} (user gone,", cache.display())), "{}", run.shown_all());
    assert!(err.contains("removed 1 cache: freed"), "{}", run.shown_all());
    assert!(
        err.contains(&format!("left {} alone", link.display())) && err.contains("symlink"),
        "{}",
        run.shown_all()
    );
    assert!(
        err.contains(&format!("left {} alone", liar.display())) && err.contains("belongs to uid"),
        "{}",
        run.shown_all()
    );
    assert!(!cache.exists(), "the orphaned cache is still there");
    assert!(std::fs::symlink_metadata(&link).is_ok() && outside.join("precious").is_file());
    assert!(liar.join("appliance.d/root").is_file());
}

#[test]
fn clean_refuses_bad_durations_and_unknown_users() {
    let tmp = scratch();
    let run = ga(tmp.path(), ["cache", "clean", "--older-than", "3 days", tmp.path().to_str().unwrap()])
        .expect_code(2);
    assert!(run.stderr().contains("invalid duration \"3 days\""), "{}", run.shown_all());
    let run = ga(tmp.path(), ["cache", "clean", "--user", "no-such-user-ga", tmp.path().to_str().unwrap()])
        .expect_code(2);
    assert!(run.stderr().contains("no user \"no-such-user-ga\""), "{}", run.shown_all());
}

/// `libnss_wrapper.so` from libnss-wrapper, or `None` (a failure under CI).
fn nss_wrapper() -> Option<PathBuf> {
    let found = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
        .iter()
        .map(|d| Path::new(d).join("libnss_wrapper.so"))
        .find(|p| p.is_file());
    if found.is_none() {
        crate::qemu::skip("libnss_wrapper.so is not installed (Debian: libnss-wrapper)");
    }
    found
}

/// Issue 7 item 2: a user that exists only through NSS (LDAP, SSSD, systemd
/// DynamicUser; here nss_wrapper) is a user: `cache clean` keeps their
/// cache, and still removes the cache of a uid that exists nowhere. The
/// statically linked binaries read /etc/passwd and called that user gone.
#[test]
fn issue7_clean_keeps_caches_of_users_known_only_to_nss() {
    if !need_root() {
        return;
    }
    let Some(wrapper) = nss_wrapper() else { return };
    let tmp = open_scratch();
    let base = tmp.path().join("caches");
    std::fs::create_dir(&base).unwrap();
    let nss_only = unused_uid(3_800_000_000);
    let gone = unused_uid(nss_only + 1);
    let nss_cache = fake_cache(&base, nss_only);
    let gone_cache = fake_cache(&base, gone);
    let passwd = tmp.path().join("passwd");
    let group = tmp.path().join("group");
    std::fs::write(
        &passwd,
        format!("root:x:0:0:root:/root:/bin/bash\ngansstest:x:{nss_only}:{nss_only}:NSS only:/nonexistent:/usr/sbin/nologin\n"),
    )
    .unwrap();
    std::fs::write(&group, format!("root:x:0:\ngansstest:x:{nss_only}:\n")).unwrap();
    let env = [
        ("LD_PRELOAD", wrapper.as_os_str()),
        ("NSS_WRAPPER_PASSWD", passwd.as_os_str()),
        ("NSS_WRAPPER_GROUP", group.as_os_str()),
    ];
    let ga_bin = bin("guestfs-appliance");
    let would_remove = |run: &Run, cache: &Path| {
        run.stderr().contains(&format!("would remove {} (user gone,", cache.display()))
    };

    // Without the wrapper neither uid is a user: the control that shows the
    // test tells the two cases apart.
    let plain = ga(tmp.path(), ["cache", "clean", "--dry-run", base.to_str().unwrap()]).success();
    assert!(would_remove(&plain, &nss_cache) && would_remove(&plain, &gone_cache), "{}", plain.shown_all());

    let run =
        run_in(tmp.path(), &ga_bin, ["cache", "clean", "--dry-run", base.to_str().unwrap()], &env).success();
    assert!(
        !would_remove(&run, &nss_cache),
        "the NSS user's cache is listed for removal\n{}",
        run.shown_all()
    );
    assert!(would_remove(&run, &gone_cache), "{}", run.shown_all());
    assert!(nss_cache.join("appliance.d/root").is_file() && gone_cache.join("appliance.d/root").is_file());

    let list =
        run_in(tmp.path(), &ga_bin, ["cache", "list", "--json", base.to_str().unwrap()], &env).success();
    let doc: serde_json::Value = serde_json::from_str(&list.stdout()).unwrap();
    let entry = |uid: u32| {
        doc["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["uid"] == uid)
            .cloned()
            .unwrap_or_else(|| panic!("uid {uid} not listed\n{}", list.shown_all()))
    };
    assert_eq!(entry(nss_only)["user"], "gansstest", "{}", list.shown_all());
    assert_eq!(entry(nss_only)["user_exists"], true);
    assert_eq!(entry(gone)["user_exists"], false);

    // --user NAME resolves through NSS as well.
    let run = run_in(
        tmp.path(),
        &ga_bin,
        ["cache", "clean", "--dry-run", "--user", "gansstest", base.to_str().unwrap()],
        &env,
    )
    .success();
    assert!(run.stderr().contains("would remove 0 caches"), "{}", run.shown_all());
}

/// Whether another process could take `lock` now, as supermin's `--lock`
/// does (`lockf(F_TLOCK)`, a POSIX record lock): python3 tries, and says.
fn supermin_could_lock(lock: &Path) -> bool {
    let out = Command::new("python3")
        .args([
            "-c",
            "import fcntl,os,sys\nfd=os.open(sys.argv[1],os.O_WRONLY)\ntry:\n    fcntl.lockf(fd,fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n",
        ])
        .arg(lock)
        .output()
        .expect("run python3");
    match out.status.code() {
        Some(0) => true,
        Some(3) => false,
        _ => panic!("python3 lock probe failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Issue 9 item 4: `cache prime` keeps the cache's lock from the build to
/// the date touch. It used to release the build's lock and retake it to
/// date the outputs; in between, a supermin `--if-newer` (a libguestfs
/// launch) could take it, see outputs still carrying their inputs' dates
/// and rebuild. The library's seam runs between the build and the touch:
/// at that point another process (locking as supermin does) must find the
/// lock taken, whether prime builds (missing, or `--force`) or finds the
/// appliance fresh.
/// On the old code the lock was free at exactly that point.
#[test]
fn issue9_prime_holds_the_lock_from_build_to_date() {
    if !need_root() || !have_tool("python3") || crate::bad_input::host_kernel().is_none() {
        return;
    }
    let tmp = open_scratch();
    let base = tmp.path().join("caches");
    std::fs::create_dir(&base).unwrap();
    let inputs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/supermin.d");
    let config_path = tmp.path().join("config.toml");
    let config = guestfs_appliance::config::Config::parse(
        &format!("[appliance]\ninputs = [{:?}]\nsize = \"1G\"\n", inputs.display().to_string()),
        &config_path,
    )
    .unwrap();
    let printer = guestfs_appliance::printer::Printer::quiet();
    let uid = nix::unistd::geteuid().as_raw();
    let cache_dir = base.join(format!(".guestfs-{uid}"));
    let appliance = cache_dir.join("appliance.d");

    for (force, expect) in [(false, "built "), (false, "already fresh"), (true, "built ")] {
        let req = cache::PrimeRequest { user: None, cachedir: Some(base.clone()), force };
        let before = std::time::SystemTime::now();
        let mut seen = Vec::new();
        let primed = cache::prime_observed(&req, &config, &printer, &mut |lock| {
            assert_eq!(lock, cache_dir.join("lock"));
            assert!(appliance.join("root").is_file(), "the hook ran before the build");
            seen.push(supermin_could_lock(lock));
        })
        .unwrap();
        assert!(primed.outcome.contains(expect), "{expect}: {primed:?}");
        assert_eq!(seen, [false], "between build and date the lock was free ({expect})");
        // Dated after the build, and the lock is given back at the end.
        for f in ["kernel", "initrd", "root"] {
            let mtime = std::fs::symlink_metadata(appliance.join(f)).unwrap().modified().unwrap();
            assert!(mtime >= before, "{f} was not dated ({expect})");
        }
        assert!(supermin_could_lock(&cache_dir.join("lock")), "prime kept the lock ({expect})");
    }
}
