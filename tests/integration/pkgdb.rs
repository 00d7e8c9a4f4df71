//! Issue 10: rpm and pacman hosts. Tiny packages are built here from a spec
//! and a PKGBUILD by the real tools (rpmbuild; makepkg as an unprivileged
//! user) and installed into fixture roots by rpm and pacman themselves (an
//! rpm sqlite database under /usr/lib/sysimage/rpm with the /var/lib/rpm
//! symlink, as on Fedora; pacman's local database). `build`, `check`,
//! `build --if-needed` and `cache list` then run against those roots with
//! the host's kernel, before and after upgrades made by the real tools.
//!
//! The fixture: fx-app requires the virtual `fx-virtual` (provided by
//! fx-lib, which requires `fx-base >= 0.5`: versioned) and, for rpm, the
//! path `/usr/share/fx-data/marker` (owned by fx-data) and a rich
//! `(fx-base or fx-nothere)`; fx-lib has a config file, a setuid file, a
//! symlink and, for rpm, a ghost log file. fx-other is unrelated.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::util::*;

/// Runs a fixture-making command; panics with its output on failure.
fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What both handlers' tests share: the root, the input, the appliance
/// directory (inside a fake libguestfs cache, for `cache list`) and the
/// kernel environment.
struct Fixture {
    tmp: tempfile::TempDir,
    root: PathBuf,
    input: PathBuf,
    base: PathBuf,
    dir: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Fixture {
    /// None (after printing why) without a host kernel.
    fn new() -> Option<Fixture> {
        let (kernel, version) = crate::bad_input::host_kernel()?;
        // World-traversable: makepkg runs as nobody.
        let tmp = tempfile::Builder::new().prefix("ga-pkgdb-").tempdir_in("/var/tmp").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        // The host's kernel with an empty modules index (the image is not
        // booted here, and 400 MB of modules would only make it slow).
        let modules = tmp.path().join("modules").join(&version);
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::write(modules.join("modules.dep"), "").unwrap();
        let input = tmp.path().join("supermin.d");
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("packages"), "fx-app\nfx-nothere\n").unwrap();
        let base = tmp.path().join("cachebase");
        let dir = base.join(format!(".guestfs-{}", nix::unistd::geteuid())).join("appliance.d");
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        let env = vec![
            ("SUPERMIN_KERNEL", kernel.into_os_string()),
            ("SUPERMIN_MODULES", modules.into_os_string()),
        ];
        Some(Fixture { tmp, root, input, base, dir, env })
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        all.extend(["--root".into(), self.root.clone().into_os_string()]);
        all.extend(["--input".into(), self.input.clone().into_os_string()]);
        all.push(self.dir.clone().into_os_string());
        let env: Vec<(&str, &std::ffi::OsStr)> = self.env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        run_in(self.tmp.path(), &bin("guestfs-appliance"), all, &env)
    }

    /// `cache list --json` state of our appliance.
    fn cache_state(&self) -> String {
        let env: Vec<(&str, &std::ffi::OsStr)> = self.env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let run = run_in(
            self.tmp.path(),
            &bin("guestfs-appliance"),
            [OsString::from("cache"), "list".into(), "--json".into(), self.base.clone().into_os_string()],
            &env,
        )
        .success();
        let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let canon = std::fs::canonicalize(&self.base).unwrap();
        let ours: Vec<&serde_json::Value> = doc["caches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| Path::new(c["path"].as_str().unwrap()).starts_with(&canon))
            .collect();
        assert_eq!(ours.len(), 1, "{}", run.shown_all());
        ours[0]["state"].as_str().unwrap().to_string()
    }

    /// `debugfs -R 'stat PATH'` on the root image.
    fn stat(&self, path: &str) -> String {
        let out = Command::new("debugfs")
            .args(["-R", &format!("stat \"{path}\"")])
            .arg(self.dir.join("root"))
            .output();
        let out = out.unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// The whole issue-10 scenario, once the fixture root holds v1 of every
    /// package; `upgrade(names)` installs v2 of the named packages.
    fn scenario(&self, handler: &str, upgrade: &dyn Fn(&str)) {
        // build: one warning for the name the handler does not know.
        let run = self.run(&["build", "--size", "64M"]).success();
        let err = run.stderr();
        assert!(err.contains("not installed and were left out: fx-nothere"), "{}", run.shown_all());
        let manifest = std::fs::read_to_string(self.dir.join("manifest.toml")).unwrap();
        assert!(manifest.contains(&format!("package_handler = \"{handler}\"")), "{manifest}");
        let parsed: toml::Table = manifest.parse().unwrap();
        let mut names: Vec<&str> =
            parsed["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["fx-app", "fx-base", "fx-data", "fx-lib"], "{manifest}");
        assert!(manifest.contains("version = \"1.0-1\""), "{manifest}");

        // The image: setuid kept, symlink kept, config file and ghost log
        // left out, the unrelated package absent.
        let suid = self.stat("/usr/bin/fx-suid");
        assert!(suid.contains("Mode:  04755"), "{suid}");
        let link = self.stat("/usr/lib/fx/link");
        assert!(link.contains("Type: symlink") && link.contains("lib.txt"), "{link}");
        assert!(self.stat("/usr/lib/fx/lib.txt").contains("Type: regular"));
        assert!(self.stat("/usr/share/fx-data/marker").contains("Type: regular"));
        for absent in ["/etc/fx/fx.conf", "/var/log/fx.log", "/usr/share/fx-other"] {
            assert!(self.stat(absent).contains("File not found"), "{absent} is in the image");
        }

        // --strict makes the unknown name an error.
        let run = self.run(&["build", "--strict", "--size", "64M"]).expect_code(2);
        assert!(run.stderr().contains("fx-nothere"), "{}", run.shown_all());

        self.run(&["check"]).success();
        assert_eq!(self.cache_state(), "fresh");

        // An upgrade outside the closure keeps it fresh.
        upgrade("fx-other");
        let run = self.run(&["check"]);
        assert_eq!(run.code(), Some(0), "{}", run.shown_all());

        // An upgrade inside is named.
        upgrade("fx-lib");
        let run = self.run(&["check"]).expect_code(1);
        let all = run.stdout() + &run.stderr();
        assert!(all.contains("package upgraded: fx-lib 1.0-1 → 2.0-1"), "{}", run.shown_all());
        assert_eq!(self.cache_state(), "stale");

        // --if-needed rebuilds, and then it is fresh again.
        self.run(&["build", "--if-needed", "--size", "64M"]).success();
        assert!(std::fs::read_to_string(self.dir.join("manifest.toml"))
            .unwrap()
            .contains("version = \"2.0-1\""));
        self.run(&["check"]).success();
        let run = self.run(&["build", "--if-needed", "--size", "64M"]).success();
        assert!(run.stderr().contains("fresh") || run.stderr().is_empty(), "{}", run.shown_all());
    }

    /// Open + resolve + files through the library, against `tool`'s own
    /// listing of the same database: printed for the issue's note.
    fn measure(&self, tool: &[&str]) {
        let request = vec!["fx-app".to_string()];
        let start = Instant::now();
        let db = guestfs_appliance::package::detect(&self.root).unwrap();
        let r = db.resolve(&request).unwrap();
        let files = db.files(&r.packages).unwrap();
        let ours = start.elapsed();
        let start = Instant::now();
        let out = Command::new(tool[0]).args(&tool[1..]).output().unwrap();
        let theirs = start.elapsed();
        assert!(out.status.success());
        eprintln!(
            "{}: closure of {} packages + {} files in {ours:?}; `{}` in {theirs:?}",
            db.handler(),
            r.packages.len(),
            files.len(),
            tool.join(" ")
        );
    }
}

const SPEC: &str = r#"Name: fx
Version: @VERSION@
Release: 1
Summary: guestfs-appliance test fixture
License: MIT
BuildArch: noarch
%description
fixture
%package -n fx-base
Summary: base
%description -n fx-base
base
%package -n fx-data
Summary: data
%description -n fx-data
data
%package -n fx-lib
Summary: lib
Requires: fx-base >= 0.5
Provides: fx-virtual = %{version}
%description -n fx-lib
lib
%package -n fx-app
Summary: app
Requires: fx-virtual
Requires: /usr/share/fx-data/marker
Requires: (fx-base or fx-nothere)
%description -n fx-app
app
%package -n fx-other
Summary: other
%description -n fx-other
other
%install
mkdir -p %{buildroot}/usr/share/fx-base %{buildroot}/usr/share/fx-data %{buildroot}/usr/lib/fx \
  %{buildroot}/etc/fx %{buildroot}/usr/bin %{buildroot}/usr/share/fx-other %{buildroot}/var/log
echo base > %{buildroot}/usr/share/fx-base/marker
echo data > %{buildroot}/usr/share/fx-data/marker
echo lib @VERSION@ > %{buildroot}/usr/lib/fx/lib.txt
ln -s lib.txt %{buildroot}/usr/lib/fx/link
echo conf > %{buildroot}/etc/fx/fx.conf
echo suid > %{buildroot}/usr/bin/fx-suid
echo app > %{buildroot}/usr/bin/fx-app
echo other @VERSION@ > %{buildroot}/usr/share/fx-other/file
%files -n fx-base
/usr/share/fx-base
%files -n fx-data
/usr/share/fx-data
%files -n fx-lib
/usr/lib/fx
%config(noreplace) /etc/fx/fx.conf
%attr(4755,root,root) /usr/bin/fx-suid
%ghost /var/log/fx.log
%files -n fx-app
/usr/bin/fx-app
%files -n fx-other
/usr/share/fx-other
"#;

/// Builds `spec` (its `@VERSION@` set to `version`) with rpmbuild into
/// `top`; returns the rpm files it made, sorted.
fn rpmbuild_spec(top: &Path, spec: &str, version: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(top).unwrap();
    let file = top.join("fixture.spec");
    std::fs::write(&file, spec.replace("@VERSION@", version)).unwrap();
    sh(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(&file));
    let mut rpms: Vec<PathBuf> =
        std::fs::read_dir(top.join("RPMS/noarch")).unwrap().map(|e| e.unwrap().path()).collect();
    rpms.sort();
    rpms
}

/// Builds the fx spec at `version` into `top`; returns the rpm files by name.
fn rpmbuild(top: &Path, version: &str) -> Vec<(String, PathBuf)> {
    rpmbuild_spec(top, SPEC, version)
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().split("-1.0-").next().unwrap().to_string(), p))
        .collect()
}

/// Makes `root` an empty rpm root in Fedora's layout: the sqlite database
/// under /usr/lib/sysimage/rpm, /var/lib/rpm a link to it.
fn fedora_rpm_root(root: &Path) {
    std::fs::create_dir_all(root.join("usr/lib/sysimage/rpm")).unwrap();
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("../../usr/lib/sysimage/rpm", root.join("var/lib/rpm")).unwrap();
    rpm_in(root, &["--initdb".as_ref()]);
}

/// Runs rpm on the fixture root `root`, with the database path given
/// explicitly (Debian's rpm defaults to a per-user one); returns stdout.
fn rpm_in(root: &Path, args: &[&std::ffi::OsStr]) -> String {
    sh(Command::new("rpm").arg("--root").arg(root).args(["--dbpath", "/usr/lib/sysimage/rpm"]).args(args))
}

#[test]
fn issue10_rpm_root_builds_checks_and_rebuilds() {
    if !have_tool("rpm") || !have_tool("rpmbuild") || !have_tool("debugfs") {
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    let v1 = rpmbuild(&fx.tmp.path().join("rpm1"), "1.0");
    let v2 = rpmbuild(&fx.tmp.path().join("rpm2"), "2.0");
    let root = &fx.root;
    fedora_rpm_root(root);
    let rpm = |args: &[&std::ffi::OsStr]| rpm_in(root, args);
    let mut install: Vec<&std::ffi::OsStr> = vec!["-i".as_ref()];
    install.extend(v1.iter().map(|(_, p)| p.as_os_str()));
    rpm(&install);
    assert!(root.join("usr/lib/sysimage/rpm/rpmdb.sqlite").is_file());
    // The ghost log as the program would create it at run time.
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::write(root.join("var/log/fx.log"), "runtime state\n").unwrap();
    fx.measure(&["rpm", "--root", root.to_str().unwrap(), "--dbpath", "/usr/lib/sysimage/rpm", "-qa"]);
    let upgrade = |name: &str| {
        let file = v2.iter().find(|(n, _)| n.starts_with(name)).map(|(_, p)| p.clone()).unwrap();
        rpm(&["-U".as_ref(), file.as_os_str()]);
    };
    fx.scenario("rpm", &upgrade);
}

/// Packages for the query's raw base names (`src/package/rpm/query.rs`):
/// file names with a space, a quote, a backslash and a directory with a space;
/// `hx-user` requires two of them by path; `dc` is a decoy with a shorter
/// name that has a file in the same directory and a file of the same base
/// name elsewhere, so only a directory-and-base-name match keeps it out.
const HX_SPEC: &str = r#"Name: hx
Version: @VERSION@
Release: 1
Summary: guestfs-appliance test fixture
License: MIT
BuildArch: noarch
%description
fixture
%package -n hx-files
Summary: files
%description -n hx-files
files
%package -n hx-user
Summary: user
Requires: /usr/share/hx/new
Requires: /usr/share/hx/it's
%description -n hx-user
user
%package -n dc
Summary: decoy
%description -n dc
decoy
%install
mkdir -p %{buildroot}/usr/share/hx/'sp dir'/x %{buildroot}/usr/share/elsewhere %{buildroot}/usr/bin
cd %{buildroot}/usr/share/hx
echo 1 > 'a b'; echo 2 > "it's"; echo @VERSION@ > new; echo 4 > 'back\slash'; echo 5 > 'sp dir/x/f'
echo 6 > dc-file; echo 7 > ../elsewhere/new; echo 8 > %{buildroot}/usr/bin/hx-user
%files -n hx-files
"/usr/share/hx/a b"
/usr/share/hx/it's
/usr/share/hx/new
/usr/share/hx/back\slash
"/usr/share/hx/sp dir"
%files -n hx-user
/usr/bin/hx-user
%files -n dc
/usr/share/hx/dc-file
/usr/share/elsewhere
"#;

#[test]
fn issue10_rpm_query_keeps_file_names_and_file_requirements_exact() {
    if !have_tool("rpm") || !have_tool("rpmbuild") {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("ga-rpmq-").tempdir_in("/var/tmp").unwrap();
    let build = |version: &str| rpmbuild_spec(&tmp.path().join(format!("build-{version}")), HX_SPEC, version);
    let (v1, v2) = (build("1.0"), build("2.0"));
    let root = tmp.path().join("root");
    fedora_rpm_root(&root);
    let rpm = |args: &[&std::ffi::OsStr]| rpm_in(&root, args);
    let mut args: Vec<&std::ffi::OsStr> = vec!["-i".as_ref()];
    args.extend(v1.iter().map(|p| p.as_os_str()));
    rpm(&args);

    let db = guestfs_appliance::package::detect(&root).unwrap();
    let r = db.resolve(&["hx-user".to_string()]).unwrap();
    let names: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
    // hx-files only through the path requirements; not the decoy.
    assert_eq!(names, ["hx-files", "hx-user"], "{r:?}");
    assert!(r.unsatisfied.is_empty(), "{r:?}");
    let files: Vec<String> =
        db.files(&r.packages).unwrap().iter().map(|f| f.path.to_string_lossy().into_owned()).collect();
    assert_eq!(
        files,
        [
            "/usr/bin/hx-user",
            "/usr/share/hx/a b",
            "/usr/share/hx/back\\slash",
            "/usr/share/hx/it's",
            "/usr/share/hx/new",
            "/usr/share/hx/sp dir",
            "/usr/share/hx/sp dir/x",
            "/usr/share/hx/sp dir/x/f",
        ]
    );

    // One query reads everything: an upgrade after it changes nothing in
    // what this reading lists (a consistent snapshot); the next one sees it.
    let upgrade = v2.iter().find(|p| p.ends_with("hx-files-2.0-1.noarch.rpm")).unwrap();
    rpm(&["-U".as_ref(), upgrade.as_os_str()]);
    assert_eq!(db.files(&r.packages).unwrap().len(), files.len());
    let fresh = guestfs_appliance::package::detect(&root).unwrap();
    let r = fresh.resolve(&["hx-user".to_string()]).unwrap();
    assert!(r.packages.iter().any(|p| p.name == "hx-files" && p.version == "2.0-1"), "{r:?}");
    assert_eq!(fresh.files(&r.packages).unwrap().len(), files.len());
}

/// A relocatable package with an epoch, installed with `--prefix`: rpm
/// rewrites its directory names outside the header's immutable region (the
/// direct reader must take those), with a config file, a ghost, a
/// directory, a symlink and a versioned provide.
const EP_SPEC: &str = r#"Name: ep
Version: 3.1
Release: 2
Epoch: 4
Summary: guestfs-appliance test fixture
License: MIT
BuildArch: noarch
Prefix: /opt/ep
Provides: ep-virtual = 1.0
Requires: fx-base
%description
fixture
%install
mkdir -p %{buildroot}/opt/ep/sub %{buildroot}/opt/ep/etc
echo 1 > %{buildroot}/opt/ep/sub/file
ln -s file %{buildroot}/opt/ep/sub/link
echo conf > %{buildroot}/opt/ep/etc/ep.conf
touch %{buildroot}/opt/ep/ghost.log
%files
/opt/ep/sub
%config(noreplace) /opt/ep/etc/ep.conf
%ghost /opt/ep/ghost.log
"#;

/// The direct sqlite reader and the `rpm -qa` query read the same: every
/// package's fields, requirements, provides, directories and file records
/// (flags, modes), and so every closure, unsatisfied list, file list and
/// database file list, before and after an upgrade and a removal.
#[test]
fn issue10_rpm_direct_sqlite_reader_equals_the_rpm_query() {
    use guestfs_appliance::package::{open_rpm_with, RpmReader};
    if !have_tool("rpm") || !have_tool("rpmbuild") {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("ga-rpmdirect-").tempdir_in("/var/tmp").unwrap();
    let build = |name: &str, spec: &str, version: &str| {
        rpmbuild_spec(&tmp.path().join(format!("{name}-{version}")), spec, version)
    };
    let (fx, hx, hx2, ep) = (
        build("fx", SPEC, "1.0"),
        build("hx", HX_SPEC, "1.0"),
        build("hx", HX_SPEC, "2.0"),
        build("ep", EP_SPEC, "1"),
    );
    let root = tmp.path().join("root");
    fedora_rpm_root(&root);
    let rpm = |args: &[&std::ffi::OsStr]| rpm_in(&root, args);
    let mut install: Vec<&std::ffi::OsStr> = vec!["-i".as_ref()];
    install.extend(fx.iter().chain(&hx).map(|p| p.as_os_str()));
    rpm(&install);
    rpm(&["-i".as_ref(), "--prefix".as_ref(), "/opt/moved".as_ref(), ep[0].as_os_str()]);

    let compare = |stage: &str| {
        let (direct, direct_dump) = open_rpm_with(&root, RpmReader::Direct).unwrap();
        let (query, query_dump) = open_rpm_with(&root, RpmReader::Query).unwrap();
        assert_eq!(direct_dump, query_dump, "{stage}: what the readers read");
        assert!(direct_dump.contains("4:3.1-2") && direct_dump.contains("/opt/moved/sub/"), "{direct_dump}");
        assert_eq!(direct.database_files(), query.database_files(), "{stage}");
        let names: Vec<String> = rpm(&["-qa".as_ref(), "--qf".as_ref(), "%{NAME}\\n".as_ref()])
            .lines()
            .map(String::from)
            .chain(["fx-virtual".to_string(), "/usr/share/hx/new".to_string(), "nothere".to_string()])
            .collect();
        let mut requests: Vec<Vec<String>> = names.iter().map(|n| vec![n.clone()]).collect();
        requests.push(names.clone());
        for request in requests {
            let (a, b) = (direct.resolve(&request).unwrap(), query.resolve(&request).unwrap());
            assert_eq!(a, b, "{stage}: closure of {request:?}");
            assert_eq!(
                direct.files(&a.packages).unwrap(),
                query.files(&b.packages).unwrap(),
                "{stage}: {request:?}"
            );
        }
        // The handler itself reads directly (it would say so otherwise).
        let db = guestfs_appliance::package::detect(&root).unwrap();
        assert!(db.notes().is_empty(), "{:?}", db.notes());
        direct_dump
    };
    let first = compare("installed");
    rpm(&["-U".as_ref(), hx2.iter().find(|p| p.to_string_lossy().contains("hx-files")).unwrap().as_os_str()]);
    rpm(&["-e".as_ref(), "--nodeps".as_ref(), "fx-other".as_ref()]);
    let second = compare("after an upgrade and a removal");
    assert_ne!(first, second);
}

const PKGBUILD: &str = r#"pkgbase=fx
pkgname=(@NAMES@)
pkgver=@VERSION@
pkgrel=1
arch=(any)
package_fx-base() {
  mkdir -p "$pkgdir/usr/share/fx-base"; echo base > "$pkgdir/usr/share/fx-base/marker"
}
package_fx-data() {
  mkdir -p "$pkgdir/usr/share/fx-data"; echo data > "$pkgdir/usr/share/fx-data/marker"
}
package_fx-lib() {
  depends=('fx-base>=0.5')
  provides=("fx-virtual=$pkgver")
  backup=('etc/fx/fx.conf')
  mkdir -p "$pkgdir/usr/lib/fx" "$pkgdir/etc/fx" "$pkgdir/usr/bin"
  echo "lib $pkgver" > "$pkgdir/usr/lib/fx/lib.txt"
  ln -s lib.txt "$pkgdir/usr/lib/fx/link"
  echo conf > "$pkgdir/etc/fx/fx.conf"
  echo suid > "$pkgdir/usr/bin/fx-suid"; chmod 4755 "$pkgdir/usr/bin/fx-suid"
}
package_fx-app() {
  depends=('fx-virtual' 'fx-data')
  mkdir -p "$pkgdir/usr/bin"; echo app > "$pkgdir/usr/bin/fx-app"
}
package_fx-other() {
  mkdir -p "$pkgdir/usr/share/fx-other"; echo "other $pkgver" > "$pkgdir/usr/share/fx-other/file"
}
"#;

/// Spawns makepkg as nobody (it refuses root) for `names` at `version`.
fn makepkg(dir: &Path, names: &str, version: &str) -> std::process::Child {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(dir.join("PKGBUILD"), PKGBUILD.replace("@NAMES@", names).replace("@VERSION@", version))
        .unwrap();
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
        .arg(format!("HOME={}", dir.display()))
        .arg(format!("PKGDEST={}", dir.display()))
        .arg(format!("SRCDEST={}", dir.display()))
        .arg(format!("BUILDDIR={}", dir.join("build").display()))
        .args(["PKGEXT=.pkg.tar.gz", "makepkg", "--nodeps", "--skipinteg", "--noconfirm"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for makepkg; returns the built packages.
fn made(child: std::process::Child, dir: &Path) -> Vec<PathBuf> {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "makepkg failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pkgs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pkg.tar.gz"))
        .collect();
    pkgs.sort();
    pkgs
}

#[test]
fn issue10_pacman_root_builds_checks_and_rebuilds() {
    if !have_tool("pacman")
        || !have_tool("makepkg")
        || !have_tool("bsdtar")
        || !have_tool("fakeroot")
        || !have_tool("debugfs")
    {
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    let (d1, d2) = (fx.tmp.path().join("pkg1"), fx.tmp.path().join("pkg2"));
    let c1 = makepkg(&d1, "fx-base fx-data fx-lib fx-app fx-other", "1.0");
    let c2 = makepkg(&d2, "fx-lib fx-other", "2.0");
    let (v1, v2) = (made(c1, &d1), made(c2, &d2));
    let root = &fx.root;
    let db = root.join("var/lib/pacman");
    std::fs::create_dir_all(&db).unwrap();
    let conf = fx.tmp.path().join("pacman.conf");
    std::fs::write(&conf, "[options]\nSigLevel = Never\nLocalFileSigLevel = Never\n").unwrap();
    let pacman = |files: &[PathBuf]| {
        sh(Command::new("pacman")
            .arg("--root")
            .arg(root)
            .arg("--dbpath")
            .arg(&db)
            .arg("--config")
            .arg(&conf)
            .args(["--noconfirm", "--noscriptlet", "-U"])
            .args(files));
    };
    pacman(&v1);
    fx.measure(&["pacman", "--root", root.to_str().unwrap(), "--dbpath", db.to_str().unwrap(), "-Qlq"]);
    let upgrade = |name: &str| {
        let file = v2
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{name}-2")))
            .unwrap();
        pacman(std::slice::from_ref(file));
    };
    fx.scenario("pacman", &upgrade);
}
