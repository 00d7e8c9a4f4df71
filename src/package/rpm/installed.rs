//! What the rpm handler knows of one installed package: its header
//! fields, requirements and file records. Both readers of the database
//! (`query.rs`) and the resolver (`rpm.rs`) use these, so they live in a
//! file of their own that imports neither.

use std::path::PathBuf;

use crate::package::Package;

/// One requirement of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Requirement {
    pub(super) name: String,
    pub(super) flags: u32,
    pub(super) version: String,
}

impl Requirement {
    /// As rpm prints it: `name >= 1.0`.
    pub(super) fn display(&self) -> String {
        let op = match self.flags & 0xe {
            2 => "<",
            4 => ">",
            8 => "=",
            10 => "<=",
            12 => ">=",
            _ => "",
        };
        if op.is_empty() || self.version.is_empty() {
            self.name.clone()
        } else {
            format!("{} {op} {}", self.name, self.version)
        }
    }
}

/// One file record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RpmFile {
    pub(super) path: PathBuf,
    pub(super) flags: u32,
    pub(super) mode: u32,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Installed {
    pub(super) pkg: Package,
    pub(super) requires: Vec<Requirement>,
    pub(super) provides: Vec<String>,
    /// Its paths that some package requires (at least those: the owners
    /// index keeps only required paths).
    pub(super) owned: Vec<PathBuf>,
    /// Its directory names, `/`-terminated, as rpm stores them.
    pub(super) dirs: Vec<Vec<u8>>,
    /// Its files: a range of the `query::FileTable`'s records.
    pub(super) files: std::ops::Range<usize>,
}

impl Installed {
    /// `name.arch`, rpm's spelling.
    pub(super) fn label(&self) -> String {
        format!("{}.{}", self.pkg.name, self.pkg.arch)
    }
}

/// Calls `f` with every path (a name starting with `/`) in a requirement,
/// rich or not.
pub(super) fn collect_paths(name: &str, f: &mut dyn FnMut(&str)) {
    if name.starts_with('/') {
        f(name);
    } else if name.starts_with('(') {
        for word in name.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
            if word.starts_with('/') {
                f(word);
            }
        }
    }
}
