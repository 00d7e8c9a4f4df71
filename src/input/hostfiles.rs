//! Expanding hostfiles globs against the host (docs/supermin-compat.md,
//! "hostfiles").
//!
//! supermin passes each line to `glob(3)` with only `GLOB_NOESCAPE`: `*` and
//! `?` do not cross `/` and do not match a leading `.`, matches come back
//! sorted, and a pattern that matches nothing contributes nothing. This
//! module only lists paths; copying them (directories as the directory only)
//! is left to the appliance builder.
//!
//! The matcher is ours (per component, on bytes, with [`fnmatch`]) rather
//! than the `glob` crate's: that crate hides every dot-entry once leading
//! dots must be literal, so `/d/.*` would miss `/d/.h`, and it panics on
//! file names that are not UTF-8.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::fnmatch::fnmatch;

/// Expand hostfiles patterns against the host tree at `root` (`/` in real
/// builds, a fixture directory in tests).
///
/// Returns absolute appliance paths (with `root` stripped), sorted within
/// each pattern, patterns in the given order, no de-duplication across
/// patterns (as supermin). A pattern without `/` at the start is taken
/// relative to `root` (supermin would resolve it against its working
/// directory, which is never what the author meant). Unreadable
/// directories and unmatched patterns contribute nothing; this never fails.
#[cfg(test)]
pub(crate) fn expand_hostfiles(patterns: &[String], root: &Path) -> Vec<PathBuf> {
    expand_hostfiles_probed(patterns, root).0
}

/// [`expand_hostfiles`], also returning every host path it looked at:
/// directories it listed and paths it tested for existence. The listing
/// can only change if the `lstat` signature of one of them does (a new
/// match changes its directory's mtime), so the stamp watches them.
pub(crate) fn expand_hostfiles_probed(patterns: &[String], root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut out = Vec::new();
    let mut probed = Vec::new();
    for pattern in patterns {
        let mut matches = expand_one(pattern, root, &mut probed);
        matches.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        out.extend(matches);
    }
    probed.sort();
    probed.dedup();
    (out, probed)
}

fn expand_one(pattern: &str, root: &Path, probed: &mut Vec<PathBuf>) -> Vec<PathBuf> {
    let comps: Vec<&[u8]> = pattern.as_bytes().split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    // (host path, appliance path) pairs matched so far.
    let mut current = vec![(root.to_path_buf(), PathBuf::from("/"))];
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for (host, appl) in &current {
            if !comp.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
                let name = OsStr::from_bytes(comp);
                let h = host.join(name);
                // glob(3) returns a final non-magic component when lstat
                // succeeds (a dangling symlink counts); inner ones must be
                // directories (following symlinks). An inner directory that
                // is there needs no watching: whatever replaces it changes
                // the paths probed below it.
                let ok = if last { h.symlink_metadata().is_ok() } else { h.is_dir() };
                if last || !ok {
                    probed.push(h.clone());
                }
                if ok {
                    next.push((h, appl.join(name)));
                }
                continue;
            }
            probed.push(host.clone());
            let Ok(entries) = std::fs::read_dir(host) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let bytes = name.as_bytes();
                // glob(3) never lets a wildcard match a leading dot. `.` and
                // `..` are left out on purpose (glibc returns `DIR/.` and
                // `DIR/..` for `DIR/.*`; copying those makes no sense).
                if bytes.first() == Some(&b'.') && comp.first() != Some(&b'.') {
                    continue;
                }
                if !fnmatch(comp, bytes) {
                    continue;
                }
                let h = entry.path();
                if last || h.is_dir() {
                    next.push((h, appl.join(&name)));
                }
            }
        }
        current = next;
    }
    if comps.is_empty() {
        return Vec::new();
    }
    current.into_iter().map(|(_, appl)| appl).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("lib/lsb/init.d")).unwrap();
        fs::write(r.join("lib/lsb/init-functions"), "").unwrap();
        fs::write(r.join("lib/lsb/.hidden"), "").unwrap();
        fs::create_dir_all(r.join("usr/share/augeas/lenses/dist")).unwrap();
        for f in ["b.aug", "a.aug", "c.txt", "dist/d.aug"] {
            fs::write(r.join("usr/share/augeas/lenses").join(f), "").unwrap();
        }
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/ld.so.cache"), "x").unwrap();
        std::os::unix::fs::symlink("nowhere", r.join("etc/dangling")).unwrap();
        dir
    }

    fn strs(v: Vec<PathBuf>) -> Vec<String> {
        v.into_iter().map(|p| p.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn libguestfs_hostfiles_expand_sorted_without_dotfiles() {
        let dir = fixture();
        let pats: Vec<String> = ["/etc/ld.so.cache", "/lib/lsb/*", "/usr/share/augeas/lenses/*.aug"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            strs(expand_hostfiles(&pats, dir.path())),
            [
                "/etc/ld.so.cache",
                "/lib/lsb/init-functions",
                "/lib/lsb/init.d",
                "/usr/share/augeas/lenses/a.aug",
                "/usr/share/augeas/lenses/b.aug",
            ]
        );
    }

    #[test]
    fn unmatched_contributes_nothing_and_duplicates_stay() {
        let dir = fixture();
        let pats: Vec<String> =
            ["/nope/*", "/etc/missing", "/etc/ld.so.cache", "/etc/ld.so.cach?", "/etc/dangling"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(
            strs(expand_hostfiles(&pats, dir.path())),
            ["/etc/ld.so.cache", "/etc/ld.so.cache", "/etc/dangling"]
        );
    }

    #[test]
    fn probed_paths_cover_listed_dirs_and_tested_names() {
        let dir = fixture();
        let pats: Vec<String> = ["/etc/ld.so.cache", "/usr/share/augeas/lenses/*.aug", "/nope/x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (_, probed) = expand_hostfiles_probed(&pats, dir.path());
        let r = dir.path();
        for want in [r.join("etc/ld.so.cache"), r.join("usr/share/augeas/lenses"), r.join("nope")] {
            assert!(probed.contains(&want), "{} not in {probed:?}", want.display());
        }
        // Files created next to a literal match do not matter.
        assert!(!probed.contains(&r.join("etc")), "{probed:?}");
    }

    #[test]
    fn explicit_dot_matches_hidden_and_root_metachars_are_literal() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("ro[o]t*");
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(root.join("d/.h"), "").unwrap();
        fs::write(root.join("d/v"), "").unwrap();
        let pats = vec!["/d/.*".to_string(), "/d/*".to_string()];
        assert_eq!(strs(expand_hostfiles(&pats, &root)), ["/d/.h", "/d/v"]);
    }
}
