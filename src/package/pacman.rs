//! The pacman handler: Arch Linux and its derivatives. It owns reading
//! pacman's local database, `<root>/var/lib/pacman/local/NAME-VERSION/{desc,files}`
//! (plain text, alpm's "local" format: `%SECTION%` headers, one value per
//! line, a blank line after each section), the closure and the file lists;
//! the contract and shared types are `mod.rs`'s. It runs no program: the
//! files are small, and reading them directly takes milliseconds.
//!
//! # How this differs from supermin (`src/ph_pacman.ml`)
//!
//! supermin asks `pacman -Qq`/`-Qi` per package, runs `pactree -u` per
//! package for the closure and `pacman -Ql` for the files. Here:
//!
//! - **Requested names** are exact package names, as `pacman -Qq NAME`
//!   accepts; anything else is reported missing.
//! - **Dependencies** (`%DEPENDS%`) are resolved by name, version
//!   constraints (`fx-lib>=1.0`) dropped, as `pactree -u` does: a package of
//!   that name, else a provider (`%PROVIDES%`, versioned or not, sonames such
//!   as `libfoo.so=1-64` included), preferring one already in the closure,
//!   then alphabetical order. Optional dependencies are not followed.
//! - **Config files** follow supermin's rule, which libguestfs's `supermin
//!   --prepare` used to fill `base.tar.gz`: every regular file under `/etc/`
//!   on the host. pacman's `%BACKUP%` list is not used: a backup file under
//!   `/etc` is a regular file there anyway, and one elsewhere is a packaged
//!   file the appliance needs (supermin keeps it too).
//! - pacman has no diversions, alternatives or ghost files: a path is in
//!   `files` exactly when the package's archive had it.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{path_order, Handler, Package, PackageDb, PackageError, PackageFile, Resolution, Unsatisfied};

/// The local database, relative to the root.
const LOCAL_DIR: &str = "var/lib/pacman/local";

/// supermin's database date (docs/supermin-compat.md, "pacman closure"): the sync directory.
const SUPERMIN_DATE_FILE: &str = "var/lib/pacman/sync";

/// The advice of a [`PackageError::Corrupt`] from this handler.
const CORRUPT_HINT: &str = "the package database looks damaged; check it with `pacman -Dk`";

/// What the rest of the tool knows about pacman hosts.
pub(crate) const HANDLER: Handler = Handler {
    name: "pacman",
    marker: LOCAL_DIR,
    is_present: |root| root.join(LOCAL_DIR).is_dir(),
    open: |root| Ok(Box::new(open_pacman(root)?)),
    date_file: |root| root.join(SUPERMIN_DATE_FILE),
    distro: "Arch",
    libguestfs_package: "libguestfs",
    install_libguestfs: "pacman -S libguestfs",
    install_qemu: "pacman -S qemu-base",
    kernel_package: "linux",
    spelling: super::Spelling::NameDotArchWhenAmbiguous,
    keep_kernel_readable: None,
};

/// One installed package.
#[derive(Debug)]
struct Installed {
    pkg: Package,
    /// The entry directory, `local/NAME-VERSION`.
    dir: PathBuf,
    /// Dependency names, version constraints dropped, with the raw text.
    depends: Vec<(String, String)>,
    provides: Vec<String>,
}

/// Opens pacman's local database under `root`: reads every `desc`.
///
/// # Errors
/// [`PackageError::Io`] when the directory or a `desc` cannot be read,
/// [`PackageError::Corrupt`] when a `desc` lacks `%NAME%`/`%VERSION%`.
pub(crate) fn open_pacman(root: &Path) -> Result<PacmanDb, PackageError> {
    let local = root.join(LOCAL_DIR);
    let io = |path: &Path, source| PackageError::Io { path: path.to_path_buf(), source };
    let mut installed = Vec::new();
    for entry in std::fs::read_dir(&local).map_err(|e| io(&local, e))? {
        let entry = entry.map_err(|e| io(&local, e))?;
        // ALPM_DB_VERSION and anything else that is not an entry directory.
        if !entry.file_type().map_err(|e| io(&entry.path(), e))?.is_dir() {
            continue;
        }
        let desc = entry.path().join("desc");
        let text = crate::bounded::read(&desc, crate::bounded::DATABASE_MAX).map_err(|e| io(&desc, e))?;
        installed.push(parse_desc(&String::from_utf8_lossy(&text), &desc, entry.path())?);
    }
    installed.sort_by(|a, b| a.pkg.cmp(&b.pkg));
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in installed.iter().enumerate() {
        by_name.entry(p.pkg.name.clone()).or_insert(i);
        for name in &p.provides {
            let list = providers.entry(name.clone()).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    Ok(PacmanDb { root: root.to_path_buf(), local, installed, by_name, providers })
}

/// A read pacman database. Build it with [`open_pacman`].
#[derive(Debug)]
pub(crate) struct PacmanDb {
    root: PathBuf,
    local: PathBuf,
    /// Sorted by name.
    installed: Vec<Installed>,
    by_name: HashMap<String, usize>,
    providers: HashMap<String, Vec<usize>>,
}

impl PacmanDb {
    /// The package satisfying dependency `name`, if any.
    fn satisfy(&self, name: &str, in_closure: &[bool]) -> Option<usize> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(i);
        }
        self.providers.get(name)?.iter().copied().min_by_key(|&i| (!in_closure[i], i))
    }
}

impl PackageDb for PacmanDb {
    fn info(&self) -> &'static Handler {
        &HANDLER
    }

    fn root(&self) -> &Path {
        &self.root
    }

    /// Breadth-first from the requested packages in name order, dependencies
    /// in `%DEPENDS%` order.
    fn resolve(&self, names: &[String]) -> Result<Resolution, PackageError> {
        let mut in_closure = vec![false; self.installed.len()];
        let mut missing: Vec<String> = Vec::new();
        let mut roots = Vec::new();
        for name in names {
            match self.by_name.get(name) {
                Some(&i) => roots.push(i),
                None if !missing.contains(name) => missing.push(name.clone()),
                None => {}
            }
        }
        roots.sort_unstable();
        roots.dedup();
        for &i in &roots {
            in_closure[i] = true;
        }
        let mut queue: VecDeque<usize> = roots.into_iter().collect();
        let mut unsatisfied = Vec::new();
        while let Some(i) = queue.pop_front() {
            for (name, raw) in &self.installed[i].depends {
                match self.satisfy(name, &in_closure) {
                    Some(j) if !in_closure[j] => {
                        in_closure[j] = true;
                        queue.push_back(j);
                    }
                    Some(_) => {}
                    None => unsatisfied.push(Unsatisfied {
                        package: self.installed[i].pkg.name.clone(),
                        dependency: raw.clone(),
                    }),
                }
            }
        }
        let packages = self
            .installed
            .iter()
            .zip(&in_closure)
            .filter(|(_, &inside)| inside)
            .map(|(p, _)| p.pkg.clone())
            .collect();
        Ok(Resolution { packages, missing, unsatisfied })
    }

    /// Reads each package's `files` (`%FILES%`: relative paths, directories
    /// with a trailing `/`), makes the paths absolute, flags config files,
    /// sorts by path and deduplicates.
    ///
    /// # Errors
    /// [`PackageError::MissingFileList`] for a package without `files`,
    /// [`PackageError::Io`] when one cannot be read.
    fn files(&self, packages: &[Package]) -> Result<Vec<PackageFile>, PackageError> {
        let mut files = Vec::new();
        for package in packages {
            let Some(&i) = self.by_name.get(&package.name) else { continue };
            let list = self.installed[i].dir.join("files");
            let bytes = match crate::bounded::read(&list, crate::bounded::DATABASE_MAX) {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(PackageError::MissingFileList {
                        package: package.name.clone(),
                        path: list,
                        hint: format!(
                            "check it with `pacman -Qk {0}`, or reinstall it with `pacman -S {0}`",
                            package.name
                        ),
                    })
                }
                Err(source) => return Err(PackageError::Io { path: list, source }),
            };
            let mut in_files = false;
            for line in bytes.split(|&b| b == b'\n') {
                if line.first() == Some(&b'%') {
                    in_files = line == b"%FILES%";
                    continue;
                }
                if !in_files || line.is_empty() {
                    continue;
                }
                let rel = line.strip_suffix(b"/").unwrap_or(line);
                let path = Path::new("/").join(OsStr::from_bytes(rel));
                let config = is_config(&self.root, &path);
                files.push(PackageFile { source: path.clone(), path, config });
            }
        }
        files.sort_by(|a, b| path_order(&a.path, &b.path));
        files.dedup_by(|b, a| a.path == b.path);
        Ok(files)
    }

    /// The local database directory: pacman adds and removes one entry
    /// directory per package installed, upgraded, reinstalled or removed,
    /// which changes the directory's mtime.
    fn database_files(&self) -> Vec<PathBuf> {
        vec![self.local.clone()]
    }
}

/// supermin's rule for config files: regular files under `/etc/` on the host.
fn is_config(root: &Path, path: &Path) -> bool {
    path.starts_with("/etc")
        && path != Path::new("/etc")
        && std::fs::symlink_metadata(crate::paths::under_root(root, path)).is_ok_and(|m| m.is_file())
}

/// Parses one `desc` file.
fn parse_desc(text: &str, path: &Path, dir: PathBuf) -> Result<Installed, PackageError> {
    let mut sections: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        if line.len() > 2 && line.starts_with('%') && line.ends_with('%') {
            current = Some(line);
            sections.entry(line).or_default();
        } else if line.is_empty() {
            current = None;
        } else if let Some(section) = current {
            sections.entry(section).or_default().push(line);
        }
    }
    let one = |key: &str| -> Result<String, PackageError> {
        match sections.get(key).map(Vec::as_slice) {
            Some([value]) => Ok(value.to_string()),
            _ => Err(PackageError::Corrupt {
                path: path.to_path_buf(),
                line: 0,
                message: format!("{key} must hold exactly one value"),
                hint: CORRUPT_HINT,
            }),
        }
    };
    let name = one("%NAME%")?;
    let version = one("%VERSION%")?;
    let arch = sections.get("%ARCH%").and_then(|v| v.first()).map_or("any", |a| a).to_string();
    let list = |key: &str| sections.get(key).cloned().unwrap_or_default();
    let depends =
        list("%DEPENDS%").into_iter().map(|raw| (dep_name(raw).to_string(), raw.to_string())).collect();
    let provides = list("%PROVIDES%").into_iter().map(|p| dep_name(p).to_string()).collect();
    Ok(Installed { pkg: Package { name, version, arch }, dir, depends, provides })
}

/// The name of a dependency or provide: `fx-lib>=1.0` → `fx-lib`.
fn dep_name(text: &str) -> &str {
    text.find(['<', '>', '=']).map_or(text, |end| &text[..end]).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_entry(root: &Path, name: &str, version: &str, desc_extra: &str, files: &str) {
        let dir = root.join(LOCAL_DIR).join(format!("{name}-{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        let desc = format!("%NAME%\n{name}\n\n%VERSION%\n{version}\n\n%ARCH%\nx86_64\n\n{desc_extra}");
        std::fs::write(dir.join("desc"), desc).unwrap();
        std::fs::write(dir.join("files"), files).unwrap();
    }

    fn names(r: &Resolution) -> Vec<&str> {
        r.packages.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn closure_follows_names_provides_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_entry(root, "app", "1:2.0-1", "%DEPENDS%\nlib>=1.0\nvirt\nlibz.so=1-64\nnothere<3\n\n", "");
        write_entry(root, "lib", "1.0-1", "", "");
        write_entry(root, "zprov", "1-1", "%PROVIDES%\nvirt=2\n\n", "");
        write_entry(root, "aprov", "1-1", "%PROVIDES%\nvirt\n\n", "");
        write_entry(root, "zlib", "1-1", "%PROVIDES%\nlibz.so=1-64\n\n", "");
        write_entry(root, "other", "1-1", "", "");
        std::fs::write(root.join(LOCAL_DIR).join("ALPM_DB_VERSION"), "9\n").unwrap();
        let db = open_pacman(root).unwrap();
        let r = db.resolve(&["app".into(), "zprov".into(), "ghost".into()]).unwrap();
        // zprov is requested, so it provides `virt` (not aprov, which sorts first).
        assert_eq!(names(&r), ["app", "lib", "zlib", "zprov"]);
        assert_eq!(r.missing, ["ghost"]);
        assert_eq!(r.unsatisfied, [Unsatisfied { package: "app".into(), dependency: "nothere<3".into() }]);
        assert_eq!(r.packages[0].version, "1:2.0-1");
        let r = db.resolve(&["app".into()]).unwrap();
        assert_eq!(names(&r), ["app", "aprov", "lib", "zlib"]);
    }

    #[test]
    fn files_are_absolute_sorted_and_etc_regular_files_are_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let list = "%FILES%\netc/\netc/a.conf\netc/link\nusr/\nusr/share/x y\n\n%BACKUP%\netc/a.conf\tabc\n";
        write_entry(root, "a", "1-1", "", list);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/a.conf"), "x").unwrap();
        std::os::unix::fs::symlink("a.conf", root.join("etc/link")).unwrap();
        let db = open_pacman(root).unwrap();
        let pkgs = db.resolve(&["a".into()]).unwrap().packages;
        let got: Vec<(String, bool)> =
            db.files(&pkgs).unwrap().into_iter().map(|f| (f.path.display().to_string(), f.config)).collect();
        let want = [
            ("/etc", false),
            ("/etc/a.conf", true),
            ("/etc/link", false),
            ("/usr", false),
            ("/usr/share/x y", false),
        ];
        assert_eq!(got, want.map(|(p, c)| (p.to_string(), c)));
    }

    #[test]
    fn damaged_entries_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_entry(root, "a", "1-1", "", "");
        std::fs::remove_file(root.join(LOCAL_DIR).join("a-1-1/files")).unwrap();
        let db = open_pacman(root).unwrap();
        let pkgs = db.resolve(&["a".into()]).unwrap().packages;
        let msg = db.files(&pkgs).unwrap_err().to_string();
        assert!(msg.contains("a-1-1/files is missing") && msg.contains("pacman -S a"), "{msg}");
        std::fs::write(root.join(LOCAL_DIR).join("a-1-1/desc"), "%NAME%\na\n").unwrap();
        let msg = open_pacman(root).unwrap_err().to_string();
        assert!(
            msg.contains("a-1-1/desc") && msg.contains("%VERSION%") && msg.contains("pacman -Dk"),
            "{msg}"
        );
    }
}
