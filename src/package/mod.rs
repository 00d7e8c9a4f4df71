//! The package-database contract: how the appliance builder turns a list of
//! package names into a dependency closure and then into a list of files.
//!
//! This module owns the [`PackageDb`] trait (the one interface every distro
//! handler implements, in the spirit of supermin's `src/package_handler.mli`),
//! the types it exchanges ([`Package`], [`Resolution`], [`PackageFile`]), the
//! module's error type, the [`Handler`] descriptor (all four in
//! `contract.rs`, which the handlers import; what the rest of the tool
//! may know about a package manager without reading its database: how to
//! recognise it, how supermin dates it, the names and commands its users
//! know) and [`detect`], which picks a handler for a host root. Each handler
//! lives in its own file (`dpkg/`, `rpm.rs`, `pacman.rs`): a new one is one
//! file plus one line in [`HANDLERS`]. No other module names a package
//! manager, its files or its commands: they ask the handler.
//!
//! It leaves to others: reading the supermin.d `packages` lists (`input/`),
//! excludefiles, dropping the files the handler flags as config files and
//! copying anything (`compose.rs`), and warning about
//! [`Resolution::missing`] (the caller warns once, or fails under `--strict`).

use std::path::{Path, PathBuf};

mod contract;
pub(crate) mod dpkg;
pub(crate) mod pacman;
pub(crate) mod rpm;

pub(crate) use contract::path_order;
pub use contract::{Handler, Package, PackageDb, PackageError, PackageFile, Resolution};
pub(crate) use contract::{Spelling, Unsatisfied};
#[doc(hidden)]
pub use rpm::{open_rpm_with, RpmReader};

/// The label of each `(name, arch)` in `packages` as `handler` spells it
/// (`name:arch` for a handler this build does not know). A name counts as
/// ambiguous when it appears with two arches in `packages` or in `context`
/// (the other side of a comparison), so both sides spell it alike.
pub(crate) fn package_labels<'a>(
    handler: &str,
    packages: &[(&'a str, &'a str)],
    context: &[(&'a str, &'a str)],
) -> Vec<String> {
    let spelling = handler_named(handler).map_or(Spelling::NameColonArch, |h| h.spelling);
    let mut arches: std::collections::HashMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::HashMap::new();
    for (name, arch) in packages.iter().chain(context) {
        arches.entry(name).or_default().insert(arch);
    }
    packages
        .iter()
        .map(|(name, arch)| match spelling {
            Spelling::NameColonArch => format!("{name}:{arch}"),
            Spelling::NameDotArchWhenAmbiguous if arches[name].len() > 1 => format!("{name}.{arch}"),
            Spelling::NameDotArchWhenAmbiguous => name.to_string(),
        })
        .collect()
}

/// Every handler, in detection order: the first whose database is present
/// under the root wins.
const HANDLERS: &[&Handler] = &[&dpkg::HANDLER, &rpm::HANDLER, &pacman::HANDLER];

/// The handler whose database is present under `root`, without reading it.
pub(crate) fn handler_for(root: &Path) -> Option<&'static Handler> {
    HANDLERS.iter().copied().find(|h| (h.is_present)(root))
}

/// The handler called `name` (as recorded in a manifest).
pub(crate) fn handler_named(name: &str) -> Option<&'static Handler> {
    HANDLERS.iter().copied().find(|h| h.name == name)
}

/// supermin's package-database date file for the tree at `root`, if a
/// supported database is present there.
pub(crate) fn date_file(root: &Path) -> Option<PathBuf> {
    handler_for(root).map(|h| (h.date_file)(root))
}

/// Picks the package handler for the host tree at `root` and opens its
/// database.
///
/// The first handler of [`HANDLERS`] whose database is present wins (dpkg:
/// `<root>/var/lib/dpkg/status` is a regular file; rpm: a database under
/// `usr/lib/sysimage/rpm` or `var/lib/rpm`; pacman: `var/lib/pacman/local`). Unlike supermin, no
/// `/etc/os-release` is consulted: the database itself is what the handler
/// reads, so its presence is the test.
///
/// # Errors
/// [`PackageError::NoDatabase`] when no supported database is found, or the
/// handler's own error when its database cannot be read.
pub fn detect(root: &Path) -> Result<Box<dyn PackageDb>, PackageError> {
    if let Some(handler) = handler_for(root) {
        return (handler.open)(root);
    }
    let names: Vec<&str> = HANDLERS.iter().map(|h| h.name).collect();
    let supported = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    };
    Err(PackageError::NoDatabase {
        root: root.to_path_buf(),
        looked_for: HANDLERS.iter().map(|h| h.marker).collect::<Vec<_>>().join(", "),
        supported,
    })
}

/// The upstream part of a Debian-style version: no epoch, no revision
/// (`1:1.48.6-2` → `1.48.6`).
pub(crate) fn upstream_version(version: &str) -> &str {
    let v = version.split_once(':').map_or(version, |(_, rest)| rest);
    v.rsplit_once('-').map_or(v, |(upstream, _)| upstream)
}

/// The upstream version of the installed libguestfs package (the
/// handler's [`Handler::libguestfs_package`]) under `root`, if the database
/// can be read and the package is installed. Used for make-fixed-appliance's
/// tarball name and `status`.
pub(crate) fn libguestfs_version(root: &Path) -> Option<String> {
    let db = detect(root).ok()?;
    let name = db.info().libguestfs_package;
    let resolution = db.resolve(&[name.to_string()]).ok()?;
    resolution.packages.iter().find(|p| p.name == name).map(|p| upstream_version(&p.version).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_version_strips_epoch_and_revision() {
        assert_eq!(upstream_version("1:1.48.6-2"), "1.48.6");
        assert_eq!(upstream_version("1.48.6-2+deb12u1"), "1.48.6");
        assert_eq!(upstream_version("1.48.6"), "1.48.6");
        assert_eq!(upstream_version("1.32.0"), "1.32.0");
    }

    fn pkg(name: &str, version: &str, arch: &str) -> Package {
        Package { name: name.into(), version: version.into(), arch: arch.into() }
    }

    #[test]
    fn packages_sort_by_name_then_arch() {
        let mut v =
            [pkg("libc6", "2.36-9", "i386"), pkg("bash", "5.2", "amd64"), pkg("libc6", "2.37-1", "amd64")];
        v.sort();
        let got: Vec<String> = v.iter().map(Package::qualified_name).collect();
        assert_eq!(got, ["bash:amd64", "libc6:amd64", "libc6:i386"]);
    }

    #[test]
    fn detect_refuses_a_root_without_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect(dir.path()).err().expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains("no supported package database"), "{msg}");
        assert!(msg.contains("var/lib/dpkg/status"), "{msg}");
    }

    /// Issue 9 item 3: dpkg's names, paths and commands live only in its
    /// handler; everything else asks [`Handler`] or [`PackageDb`]. Scans the
    /// code (not comments, not tests) of every other source file.
    #[test]
    fn dpkg_names_live_only_in_the_dpkg_handler() {
        const DPKG_ONLY: [&str; 8] = [
            "var/lib/dpkg",
            "libguestfs0",
            "dpkg --audit",
            "dpkg --verify",
            "--reinstall",
            "dpkg-statoverride",
            "supports dpkg",
            "linux-image-",
        ];
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let handler = src.join("package/dpkg");
        let mut stack = vec![src.clone()];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.starts_with(&handler) {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate().take_while(|(_, l)| l.trim() != "#[cfg(test)]") {
                    let code = line.trim_start();
                    if code.starts_with("//") {
                        continue;
                    }
                    for word in DPKG_ONLY.iter().filter(|w| code.contains(*w)) {
                        found.push(format!(
                            "{}:{}: {word}",
                            path.strip_prefix(&src).unwrap().display(),
                            n + 1
                        ));
                    }
                }
            }
        }
        assert!(found.is_empty(), "dpkg names outside src/package/dpkg/: {found:#?}");
    }

    #[test]
    fn handlers_are_found_by_name_and_by_root() {
        assert_eq!(handler_named("dpkg").map(|h| h.name), Some("dpkg"));
        assert!(handler_named("nosuch").is_none());
        let dir = tempfile::tempdir().unwrap();
        assert!(handler_for(dir.path()).is_none());
        assert_eq!(date_file(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(dir.path().join("var/lib/dpkg/status"), "").unwrap();
        assert_eq!(handler_for(dir.path()).map(|h| h.name), Some("dpkg"));
        assert_eq!(date_file(dir.path()), Some(dir.path().join("var/lib/dpkg/status")));
    }
}
