//! Path helpers shared by every module: a path's parent and name, and an
//! absolute path under another root (a host tree, an install root).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Split a path into its parent directory and final name (`.` for a bare
/// name). `None`: the path has no final name (`/`, `..`).
pub(crate) fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return None,
    };
    Some((parent, name))
}

/// The absolute `path` (as a package lists it, or a file we install) under
/// the tree `root`: `/r` + `/etc/x` = `/r/etc/x`. A relative `path` is
/// joined as it is.
pub(crate) fn under_root(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_root_joins_under_root() {
        assert_eq!(under_root(Path::new("/r"), Path::new("/etc/x")), PathBuf::from("/r/etc/x"));
        assert_eq!(under_root(Path::new("/"), Path::new("/etc/x")), PathBuf::from("/etc/x"));
    }

    #[test]
    fn split_gives_dot_for_a_bare_name() {
        assert_eq!(split(Path::new("x")), Some((Path::new("."), OsStr::new("x"))));
        assert_eq!(split(Path::new("/a/b")), Some((Path::new("/a"), OsStr::new("b"))));
        assert_eq!(split(Path::new("/")), None);
    }
}
