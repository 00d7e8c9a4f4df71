//! Issue 3: exact freshness. A fixture root shares the host's installed
//! files and dpkg file lists but has its own copy of the status file, /boot
//! and modules.dep, which the tests edit to simulate upgrades, removals,
//! new packages and new kernels without touching the host.

use std::path::{Path, PathBuf};

use guestfs_appliance::build::{self, ApplianceSpec, SourceOverrides};
use guestfs_appliance::config::Config;
use guestfs_appliance::printer::Printer;

use crate::util::*;

pub(crate) struct Fixture {
    _tmp: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) input: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) kernel_version: String,
}

impl Fixture {
    /// None (after printing why) when the host lacks a dpkg db or kernel.
    pub(crate) fn new() -> Option<Fixture> {
        let (kernel, version) = crate::bad_input::host_kernel()?;
        let tmp = scratch();
        let root = tmp.path().join("root");
        let dpkg = root.join("var/lib/dpkg");
        std::fs::create_dir_all(&dpkg).unwrap();
        std::fs::copy("/var/lib/dpkg/status", dpkg.join("status")).unwrap();
        if Path::new("/var/lib/dpkg/diversions").exists() {
            std::fs::copy("/var/lib/dpkg/diversions", dpkg.join("diversions")).unwrap();
        }
        std::os::unix::fs::symlink("/var/lib/dpkg/info", dpkg.join("info")).unwrap();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::copy(&kernel, root.join("boot").join(format!("vmlinuz-{version}"))).unwrap();
        let modules = root.join("lib/modules").join(&version);
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::copy(
            Path::new("/lib/modules").join(&version).join("modules.dep"),
            modules.join("modules.dep"),
        )
        .unwrap();
        let input = tmp.path().join("supermin.d");
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("packages"), "bash\n").unwrap();
        let dir = tmp.path().join("appliance");
        Some(Fixture { root, input, dir, kernel_version: version, _tmp: tmp })
    }

    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.root.display().to_string(),
            "--input".into(),
            self.input.display().to_string(),
            self.dir.display().to_string(),
        ]
    }

    /// What a build records, without writing images: the manifest of the
    /// plan for this host state (the root image is irrelevant to `check`).
    fn record_build(&self) {
        let src = SourceOverrides {
            inputs: vec![self.input.clone()],
            root: Some(self.root.clone()),
            ..Default::default()
        };
        let req = ApplianceSpec::from_config(&src, &Config::default()).unwrap();
        let plan = build::plan(&req, &Printer::quiet()).unwrap();
        std::fs::create_dir_all(&self.dir).unwrap();
        std::fs::write(self.dir.join("manifest.toml"), plan.manifest.to_toml()).unwrap();
    }

    fn check(&self, extra: &[&str]) -> Run {
        let mut args = vec!["check".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(self.args());
        ga(self.dir.parent().unwrap(), &args)
    }

    fn status(&self) -> PathBuf {
        self.root.join("var/lib/dpkg/status")
    }

    /// Rewrite the status file through `edit` (new inode, like dpkg does).
    pub(crate) fn edit_status(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.status()).unwrap();
        let tmp = self.status().with_extension("new");
        std::fs::write(&tmp, edit(text)).unwrap();
        std::fs::rename(&tmp, self.status()).unwrap();
    }
}

/// The Version line of package `name` in a status text.
pub(crate) fn version_of(status: &str, name: &str) -> String {
    let stanza =
        status.split("\n\n").find(|s| s.lines().next() == Some(&format!("Package: {name}"))).unwrap();
    stanza.lines().find_map(|l| l.strip_prefix("Version: ")).unwrap().to_string()
}

pub(crate) fn set_field(status: String, name: &str, field: &str, value: &str) -> String {
    status
        .split("\n\n")
        .map(|stanza| {
            if stanza.lines().next() == Some(&format!("Package: {name}")) {
                let prefix = format!("{field}: ");
                let mut found = false;
                let mut lines: Vec<String> = stanza
                    .lines()
                    .map(|l| {
                        if l.starts_with(&prefix) {
                            found = true;
                            format!("{prefix}{value}")
                        } else {
                            l.to_string()
                        }
                    })
                    .collect();
                if !found {
                    lines.insert(1, format!("{prefix}{value}"));
                }
                lines.join("\n")
            } else {
                stanza.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn remove_stanza(status: String, name: &str) -> String {
    status
        .split("\n\n")
        .filter(|s| s.lines().next() != Some(&format!("Package: {name}")))
        .collect::<Vec<_>>()
        .join("\n\n")
}

const FAKE_PACKAGE: &str =
    "Package: zz-guestfs-appliance-test\nStatus: install ok installed\nPriority: optional\n\
Section: misc\nInstalled-Size: 1\nMaintainer: nobody <nobody@example.org>\nArchitecture: all\nVersion: 1.0\n\
Description: test package\n";

#[test]
fn untouched_touched_and_reinstalled_databases_stay_fresh() {
    let Some(fx) = Fixture::new() else { return };
    fx.record_build();
    fx.check(&[]).success();
    // Second answer comes from the stamp; same verdict.
    let run = fx.check(&["--json"]).success();
    assert!(run.stdout().contains("\"method\": \"stamp\""), "{}", run.shown_all());
    // touch: new times, same content.
    std::thread::sleep(std::time::Duration::from_millis(10));
    let text = std::fs::read(fx.status()).unwrap();
    std::fs::write(fx.status(), &text).unwrap();
    let run = fx.check(&["--json"]).success();
    assert!(run.stdout().contains("\"method\": \"computed\""), "{}", run.shown_all());
    // Reinstall (dpkg rewrites the file: new inode, same content).
    fx.edit_status(|s| s);
    fx.check(&[]).success();
}

#[test]
fn installing_a_package_outside_the_closure_stays_fresh() {
    let Some(fx) = Fixture::new() else { return };
    fx.record_build();
    fx.edit_status(|s| format!("{}\n\n{FAKE_PACKAGE}", s.trim_end()));
    fx.check(&[]).success();
}

#[test]
fn upgrading_a_package_inside_the_closure_is_stale_and_named() {
    let Some(fx) = Fixture::new() else { return };
    fx.record_build();
    let old = version_of(&std::fs::read_to_string(fx.status()).unwrap(), "bash");
    let new = format!("{old}+test1");
    fx.edit_status(|s| set_field(s, "bash", "Version", &new));
    let run = fx.check(&[]).expect_code(1);
    let line = format!("package upgraded: bash:amd64 {old} → {new}");
    assert!(run.stdout().lines().any(|l| l == line), "want {line:?}\n{}", run.shown_all());
    assert_eq!(run.stdout().lines().count(), 1, "{}", run.shown_all());
}

#[test]
fn removing_and_adding_packages_inside_the_closure_is_stale() {
    let Some(fx) = Fixture::new() else { return };
    fx.record_build();
    // Add: bash gains a dependency on a newly installed package.
    fx.edit_status(|s| {
        let deps = s
            .split("\n\n")
            .find(|st| st.starts_with("Package: bash\n"))
            .and_then(|st| st.lines().find_map(|l| l.strip_prefix("Depends: ")).map(str::to_string))
            .unwrap_or_default();
        let s = format!("{}\n\n{FAKE_PACKAGE}", s.trim_end());
        let deps = if deps.is_empty() {
            "zz-guestfs-appliance-test".into()
        } else {
            format!("{deps}, zz-guestfs-appliance-test")
        };
        set_field(s, "bash", "Depends", &deps)
    });
    let run = fx.check(&[]).expect_code(1);
    assert!(
        run.stdout().lines().any(|l| l == "package added: zz-guestfs-appliance-test:all 1.0"),
        "{}",
        run.shown_all()
    );
    // Remove: the requested package itself goes away.
    fx.record_build();
    let version = version_of(&std::fs::read_to_string(fx.status()).unwrap(), "bash");
    fx.edit_status(|s| remove_stanza(s, "bash"));
    let run = fx.check(&["--json"]).expect_code(1);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(json["status"], "stale");
    let changes = json["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["kind"] == "package-removed"
            && c["package"] == "bash:amd64"
            && c["version"] == version),
        "{}",
        run.shown_all()
    );
}

#[test]
fn changed_input_and_newer_kernel_are_stale() {
    let Some(fx) = Fixture::new() else { return };
    fx.record_build();
    std::fs::write(fx.input.join("packages"), "bash\ncoreutils\n").unwrap();
    let run = fx.check(&[]).expect_code(1);
    let want = format!("input changed: {}", fx.input.join("packages").display());
    assert!(run.stdout().lines().any(|l| l == want), "{}", run.shown_all());

    fx.record_build();
    // A newer kernel: same image with its version string patched, and its
    // modules directory.
    let newer = fx.kernel_version.replacen(|c: char| c.is_ascii_digit(), "9", 1);
    assert_eq!(newer.len(), fx.kernel_version.len());
    let mut image =
        std::fs::read(fx.root.join("boot").join(format!("vmlinuz-{}", fx.kernel_version))).unwrap();
    let at = image.windows(fx.kernel_version.len()).position(|w| w == fx.kernel_version.as_bytes()).unwrap();
    image[at..at + newer.len()].copy_from_slice(newer.as_bytes());
    std::fs::write(fx.root.join("boot").join(format!("vmlinuz-{newer}")), image).unwrap();
    let modules = fx.root.join("lib/modules").join(&newer);
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(modules.join("modules.dep"), "").unwrap();
    let run = fx.check(&[]).expect_code(1);
    assert!(
        run.stdout().lines().any(|l| l.starts_with("kernel changed: ") && l.contains(&newer)),
        "{}",
        run.shown_all()
    );
}

#[test]
fn missing_or_broken_appliance_cannot_be_told() {
    let Some(fx) = Fixture::new() else { return };
    let run = fx.check(&[]).expect_code(2);
    assert!(run.stderr().contains("no appliance at"), "{}", run.shown_all());
    std::fs::create_dir_all(&fx.dir).unwrap();
    std::fs::write(fx.dir.join("manifest.toml"), "garbage = [").unwrap();
    let run = fx.check(&[]).expect_code(2);
    assert!(run.stderr().contains("manifest.toml"), "{}", run.shown_all());
    // A broken host database.
    fx.record_build();
    std::fs::write(fx.status(), "Package bash\n").unwrap();
    let run = fx.check(&[]).expect_code(2);
    assert!(run.stderr().contains("status"), "{}", run.shown_all());
}

#[test]
fn real_build_is_fresh_and_if_needed_builds_once() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("appliance");
    // Four concurrent cron/hook runs on a missing appliance: one builds, the
    // others wait for the lock and find it fresh.
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(bin("guestfs-appliance"))
                .args(["build", "--if-needed", "--minimal", "--size", "1G"])
                .arg(&dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut built = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        built += stderr.lines().filter(|l| l.starts_with("built ")).count();
    }
    assert_eq!(built, 1, "exactly one of four concurrent runs must build");
    ga(tmp.path(), ["check", "--minimal", "--size", "1G", dir.to_str().unwrap()]).success();
    // Fresh: silent, and the appliance is not rebuilt.
    let before = sha256(&dir.join("manifest.toml"));
    let run = ga(tmp.path(), ["build", "--if-needed", "--minimal", "--size", "1G", dir.to_str().unwrap()])
        .success();
    assert_eq!(run.stderr(), "", "{}", run.shown_all());
    assert_eq!(sha256(&dir.join("manifest.toml")), before);
    // A changed option makes it stale: it rebuilds and says why.
    let run = ga(tmp.path(), ["build", "--if-needed", "--minimal", "--size", "2G", dir.to_str().unwrap()])
        .success();
    assert!(run.stderr().contains("option changed: size"), "{}", run.shown_all());
    assert_eq!(std::fs::metadata(dir.join("root")).unwrap().len(), 2 << 30);
}

/// `debugfs -R "cat PATH"` of a root image.
fn image_cat(root: &Path, path: &str) -> String {
    let out = std::process::Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(root)
        .output()
        .expect("run debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 7, item 3: hostfiles are content. A new `/etc/ld.so.cache`-like
/// file (same size, same mtime: only its bytes and ctime differ) is a
/// change `check` names, and `build --if-needed` rebuilds; a new match of a
/// glob is one too. Neither is hidden by the stat-level stamp.
#[test]
fn issue7_changed_hostfile_is_named_and_rebuilt() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    // Buildable: an empty modules.dep puts no modules in the initrd.
    std::fs::write(fx.root.join("lib/modules").join(&fx.kernel_version).join("modules.dep"), "").unwrap();
    let conf = fx.root.join("etc/guestfs-appliance-test.conf");
    std::fs::create_dir_all(fx.root.join("etc/guestfs-appliance-test.d")).unwrap();
    std::fs::write(&conf, "one\n").unwrap();
    std::fs::write(fx.root.join("etc/guestfs-appliance-test.d/a.conf"), "a\n").unwrap();
    // The fixture's dpkg info is a symlink to the host's: not for the image.
    std::fs::write(fx.input.join("excludefiles"), "-/var/lib/dpkg/*\n").unwrap();
    std::fs::write(
        fx.input.join("hostfiles"),
        "/etc/guestfs-appliance-test.conf\n/etc/guestfs-appliance-test.d/*.conf\n",
    )
    .unwrap();
    let cwd = fx.dir.parent().unwrap();
    let mut build = vec!["build".to_string(), "-q".into(), "--size".into(), "64M".into()];
    build.extend(fx.args());
    ga(cwd, &build).success();
    assert_eq!(image_cat(&fx.dir.join("root"), "/etc/guestfs-appliance-test.conf"), "one\n");
    let dir = fx.dir.to_str().unwrap();
    let run = ga(cwd, ["check", "--json", dir]).success();
    assert!(run.stdout().contains("\"method\": \"stamp\""), "{}", run.shown_all());

    let mtime = std::fs::metadata(&conf).unwrap().modified().unwrap();
    std::fs::write(&conf, "two\n").unwrap();
    std::fs::File::options().write(true).open(&conf).unwrap().set_modified(mtime).unwrap();
    let run = ga(cwd, ["check", dir]).expect_code(1);
    assert_eq!(run.stdout(), "hostfile changed: /etc/guestfs-appliance-test.conf\n", "{}", run.shown_all());

    let run = ga(cwd, ["build", "--if-needed", dir]).success();
    assert!(
        run.stderr().contains("built ")
            && run.stderr().contains("hostfile changed: /etc/guestfs-appliance-test.conf"),
        "{}",
        run.shown_all()
    );
    assert_eq!(image_cat(&fx.dir.join("root"), "/etc/guestfs-appliance-test.conf"), "two\n");
    let run = ga(cwd, ["check", "--json", dir]).success();
    assert!(run.stdout().contains("\"method\": \"stamp\""), "{}", run.shown_all());

    std::fs::write(fx.root.join("etc/guestfs-appliance-test.d/b.conf"), "b\n").unwrap();
    let run = ga(cwd, ["check", dir]).expect_code(1);
    assert_eq!(run.stdout(), "hostfile added: /etc/guestfs-appliance-test.d/b.conf\n", "{}", run.shown_all());
}

/// Issue 7, item 4: an appliance is judged against what it was built from.
/// `build --minimal D` is fresh for `check D`, `build --if-needed D`,
/// `status --dir D` and `cache list` alike; an explicit option that differs
/// is one option change, not a list of packages "removed".
#[test]
fn issue7_minimal_appliance_is_judged_by_its_own_recipe() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let tmp = scratch();
    // D doubles as the appliance of a libguestfs cache, for `cache list`.
    let uid = nix::unistd::geteuid().as_raw();
    let cache = tmp.path().join(format!(".guestfs-{uid}"));
    std::fs::create_dir(&cache).unwrap();
    let d = cache.join("appliance.d");
    let dir = d.to_str().unwrap();
    ga(tmp.path(), ["build", "-q", "--minimal", dir]).success();

    let run = ga(tmp.path(), ["check", dir]).success();
    assert_eq!(run.stdout(), "", "{}", run.shown_all());
    std::fs::remove_file(guestfs_appliance::stamp::stamp_path(&d)).unwrap();
    let run = ga(tmp.path(), ["check", "--json", dir]).success();
    assert!(run.stdout().contains("\"method\": \"computed\""), "{}", run.shown_all());

    let before = sha256(&d.join("manifest.toml"));
    let run = ga(tmp.path(), ["build", "--if-needed", dir]).success();
    assert_eq!(run.stderr(), "", "{}", run.shown_all());
    assert_eq!(sha256(&d.join("manifest.toml")), before, "a fresh appliance was rebuilt");

    let run =
        run_in(tmp.path(), &bin("guestfs-appliance"), ["status", "--format", "json", "--dir", dir], &[]);
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", run.shown_all()));
    assert_eq!(json["appliance"]["freshness"]["state"], "fresh", "{}", run.shown_all());

    let run = ga(tmp.path(), ["cache", "list", "--json", tmp.path().to_str().unwrap()]).success();
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", run.shown_all()));
    let canon = std::fs::canonicalize(&cache).unwrap();
    let listed: Vec<_> = json["caches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| Path::new(c["path"].as_str().unwrap()) == canon)
        .collect();
    assert_eq!(listed.len(), 1, "{}", run.shown_all());
    assert_eq!(listed[0]["state"], "fresh", "{}", run.shown_all());

    let run = ga(tmp.path(), ["check", "--size", "1G", dir]).expect_code(1);
    assert_eq!(run.stdout(), "option changed: size 4294967296 → 1073741824\n", "{}", run.shown_all());
    let libguestfs = guestfs_appliance::input::default_input_dirs(Path::new("/"));
    if let Some(input) = libguestfs.first() {
        let run = ga(tmp.path(), ["check", "--input", input.to_str().unwrap(), dir]).expect_code(1);
        assert_eq!(
            run.stdout(),
            format!("option changed: inputs minimal → {}\n", input.display()),
            "{}",
            run.shown_all()
        );
    }
}

/// Issue 9, item 2: one verdict. `check`, `status --format json` and
/// `cache list --json` render the same [`build::fresh`] verdict on a fresh
/// appliance, a stale one and a `--minimal` one, each judged by its own
/// manifest. The appliances are plans over a fixture root recorded as
/// manifests beside stand-in boot files (freshness reads the manifest, and
/// one without output records cannot be damaged), each in a libguestfs
/// cache so `cache list` sees it.
#[test]
fn issue9_check_status_and_cache_list_agree() {
    let Some(fx) = Fixture::new() else { return };
    let tmp = scratch();
    let uid = nix::unistd::geteuid().as_raw();
    let appliance = |name: &str, minimal: bool| -> (PathBuf, PathBuf) {
        let base = tmp.path().join(name);
        let dir = base.join(format!(".guestfs-{uid}")).join("appliance.d");
        std::fs::create_dir_all(&dir).unwrap();
        let input = tmp.path().join(format!("{name}.supermin.d"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("packages"), "bash\n").unwrap();
        let src = SourceOverrides {
            inputs: if minimal { Vec::new() } else { vec![input] },
            minimal,
            root: Some(fx.root.clone()),
            ..Default::default()
        };
        let spec = ApplianceSpec::from_config(&src, &Config::default()).unwrap();
        let plan = build::plan(&spec, &Printer::quiet()).unwrap();
        std::fs::write(dir.join("manifest.toml"), plan.manifest.to_toml()).unwrap();
        for file in ["kernel", "initrd", "root"] {
            std::fs::write(dir.join(file), b"stand-in").unwrap();
        }
        (base, dir)
    };
    let (fresh_base, fresh) = appliance("fresh", false);
    let (stale_base, stale) = appliance("stale", false);
    let (minimal_base, minimal) = appliance("minimal", true);
    // Only the stale one's recipe reads this input.
    std::fs::write(tmp.path().join("stale.supermin.d/packages"), "bash\ncoreutils\n").unwrap();

    let cwd = tmp.path();
    let bases = [&fresh_base, &stale_base, &minimal_base].map(|b| b.to_str().unwrap().to_string());
    let run = ga(cwd, ["cache", "list", "--json"].into_iter().map(String::from).chain(bases)).success();
    let listed: serde_json::Value =
        serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", run.shown_all()));
    for (dir, expected) in [(&fresh, "fresh"), (&stale, "stale"), (&minimal, "fresh")] {
        let d = dir.to_str().unwrap();
        let cache = std::fs::canonicalize(dir.parent().unwrap()).unwrap();
        let entry = listed["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| Path::new(c["path"].as_str().unwrap()) == cache)
            .unwrap_or_else(|| panic!("{} not listed\n{}", cache.display(), run.shown_all()));
        let cache_details: Vec<String> =
            entry["details"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();

        let status = run_in(cwd, &bin("guestfs-appliance"), ["status", "--format", "json", "--dir", d], &[]);
        let report: serde_json::Value =
            serde_json::from_str(&status.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", status.shown_all()));
        let freshness = &report["appliance"]["freshness"];
        let status_changes: Vec<String> = freshness["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();

        let json = ga(cwd, ["check", "--json", d]);
        let checked: serde_json::Value =
            serde_json::from_str(&json.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", json.shown_all()));
        let text = ga(cwd, ["check", d]);
        let check_changes: Vec<String> = text.stdout().lines().map(String::from).collect();

        let shown = format!("{}\n{}\n{}", run.shown_all(), status.shown_all(), json.shown_all());
        assert_eq!(checked["status"], expected, "{d}: check\n{shown}");
        assert_eq!(json.code(), Some(if expected == "fresh" { 0 } else { 1 }), "{shown}");
        assert_eq!(freshness["state"], expected, "{d}: status\n{shown}");
        assert_eq!(entry["state"], expected, "{d}: cache list\n{shown}");
        assert_eq!(status_changes, check_changes, "{d}\n{shown}");
        assert_eq!(cache_details, check_changes, "{d}\n{shown}");
        assert_eq!(check_changes.is_empty(), expected == "fresh", "{d}\n{shown}");
    }
}

/// Issue 12, item 4: after a touch of the package database, `check`
/// recomputes the fingerprint without reading the kernel, depmod's indexes,
/// the inputs or the hostfiles again: their digests are remembered beside
/// the stamp by `stat` signature. A corrupt file of digests is ignored;
/// reports that only look write none; and a kernel rewritten in place with
/// its mtime put back (`touch -d`) is still found changed, by its ctime.
#[test]
fn issue12_touch_rehashes_nothing_and_restored_mtime_is_still_caught() {
    use guestfs_appliance::hashcache::{HashCache, RACY_WINDOW};
    let Some(fx) = Fixture::new() else { return };
    std::fs::create_dir_all(fx.root.join("etc")).unwrap();
    std::fs::write(fx.root.join("etc/hostname"), "fixture\n").unwrap();
    std::fs::write(fx.input.join("hostfiles"), "/etc/hostname\n").unwrap();
    fx.record_build();
    let cache = HashCache::path(&fx.dir);
    let touch = |path: &Path| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let file = std::fs::File::options().append(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now()).unwrap();
    };
    let hashed = |run: &Run| -> usize {
        let line = run.stderr().lines().find(|l| l.contains("hashes: ")).map(str::to_string);
        let line = line.unwrap_or_else(|| panic!("no hashes line\n{}", run.shown_all()));
        let count = line.split("hashes: ").nth(1).and_then(|r| r.split(' ').next());
        count.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };

    // Reports only look: no digests written.
    let d = fx.dir.to_str().unwrap();
    run_in(fx.dir.parent().unwrap(), &bin("guestfs-appliance"), ["status", "--dir", d], &[]);
    assert!(!cache.exists(), "status wrote {}", cache.display());

    // Digests of files changed within the racy window are not kept: let
    // the fixture's files age past it.
    std::thread::sleep(RACY_WINDOW + std::time::Duration::from_millis(200));
    let run = fx.check(&["-v"]).success();
    assert!(hashed(&run) > 0, "{}", run.shown_all());
    assert!(cache.is_file(), "{}", run.shown_all());

    touch(&fx.status());
    let run = fx.check(&["-v", "--json"]).success();
    assert!(run.stdout().contains("\"method\": \"computed\""), "{}", run.shown_all());
    assert_eq!(hashed(&run), 0, "{}", run.shown_all());

    // A corrupt file: ignored, the answer right, everything hashed again.
    std::fs::write(&cache, b"{\"version\":1,\"entries\":[{\"path\":").unwrap();
    touch(&fx.status());
    let run = fx.check(&["-v"]).success();
    assert!(hashed(&run) > 0, "{}", run.shown_all());

    // The kernel rewritten in place, same size, mtime put back.
    let kernel = fx.root.join("boot").join(format!("vmlinuz-{}", fx.kernel_version));
    let mtime = std::fs::metadata(&kernel).unwrap().modified().unwrap();
    let mut image = std::fs::read(&kernel).unwrap();
    let last = image.len() - 1;
    image[last] ^= 0xff;
    let mut file = std::fs::File::options().write(true).open(&kernel).unwrap();
    std::io::Write::write_all(&mut file, &image).unwrap();
    drop(file);
    std::fs::File::options().append(true).open(&kernel).unwrap().set_modified(mtime).unwrap();
    assert_eq!(std::fs::metadata(&kernel).unwrap().modified().unwrap(), mtime);
    let run = fx.check(&["-v"]).expect_code(1);
    assert!(run.stdout().lines().any(|l| l.starts_with("kernel changed: ")), "{}", run.shown_all());
    assert_eq!(hashed(&run), 1, "only the kernel is read again\n{}", run.shown_all());
}
