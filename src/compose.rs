//! Composing the appliance's file tree from its sources, in supermin's
//! order and with supermin's precedence (docs/supermin-compat.md, "Build
//! order" and "Precedence"):
//!
//! 1. base archives from the inputs (they win for directories);
//! 2. package files, minus those the package handler flags as config files
//!    (their pristine copies come from the base archives) and minus
//!    excludefiles matches;
//! 3. hostfiles (glob-expanded);
//! 4. the kernel's modules directory, as `/lib/modules/<version>`.
//!
//! Host entries become [`Node`]s from `lstat` of the host path, with the
//! times [`crate::hostdata`] allows (package files and modules keep their
//! mtime; directories, symlinks, hostfiles and depmod's indexes get the
//! build's timestamp; atime and ctime never come from the host); regular
//! files keep only their host path (their bytes are copied later by the
//! writer, so each host file is read once). Missing parents are taken from the host as
//! supermin's "munge" does, including directory symlinks such as
//! `/lib -> usr/lib` on merged-/usr hosts, whose targets are created first.
//! This module knows the sources but no on-disk format.

use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::hostdata::{self, HostTimes};
use crate::image::files::{Content, Data, FileTree, Metadata, Node, TreeError};
use crate::input::{BaseMembers, ExcludePattern, Inputs};
use crate::kernel::KernelChoice;
use crate::package::PackageFile;
use crate::paths::under_root;

/// Errors composing the tree.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ComposeError {
    /// The tree refused an entry.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A host path needed for the tree could not be inspected.
    #[error("{path}: {source}")]
    Host {
        /// The host path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Base archives could not be unpacked.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
}

/// Counts of what went into the tree, for the summary and `-v`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ComposeStats {
    /// Paths listed by the packages of the closure.
    pub(crate) package_paths: usize,
    /// Package files dropped as config files (the handler's flag).
    pub(crate) config_files: usize,
    /// Package paths dropped by excludefiles.
    pub(crate) excluded: usize,
    /// Paths added by hostfiles.
    pub(crate) hostfiles: usize,
    /// Listed paths missing on the host (dropped, as supermin does).
    pub(crate) missing_on_host: usize,
    /// Files under the kernel modules directory.
    pub(crate) module_files: usize,
    /// Reachable entries in the final tree.
    pub(crate) entries: usize,
    /// Bytes of regular-file data in the final tree (holes of sparse base
    /// archive members excluded: they take no space in the image).
    pub(crate) data_bytes: u64,
}

/// The host's share of the tree (steps 2 and 3), before it goes in.
pub(crate) struct HostSources<'a> {
    /// Host root that package and host paths are relative to.
    pub(crate) root: &'a Path,
    /// Parsed inputs (excludes).
    pub(crate) inputs: &'a Inputs,
    /// Files of the package closure.
    pub(crate) package_files: &'a [PackageFile],
    /// Expanded hostfiles (appliance paths).
    pub(crate) hostfiles: &'a [PathBuf],
    /// Time for host entries whose own times are volatile.
    pub(crate) timestamp: i64,
}

/// Package files and hostfiles as [`inspect_host`] found them on the host,
/// in the order they go into the tree: each destination with its node, or
/// `None` where the host has no such path (dropped, as supermin does).
pub(crate) struct HostEntries {
    entries: Vec<(PathBuf, Option<Result<Inspected, ComposeError>>)>,
    /// The counts known before the tree: paths listed, config files,
    /// excluded, hostfiles.
    stats: ComposeStats,
}

/// Everything the tree is made of.
pub(crate) struct TreeParts<'a> {
    /// Host root that package and host paths are relative to.
    pub(crate) root: &'a Path,
    /// Base archive members, extracted from the inputs.
    pub(crate) base: &'a BaseMembers,
    /// Package files and hostfiles, inspected ([`inspect_host`]).
    pub(crate) host: HostEntries,
    /// The kernel whose modules go in.
    pub(crate) kernel: &'a KernelChoice,
    /// Its modules directory, listed ([`list_modules`]).
    pub(crate) modules: ModuleList,
    /// Time for entries we invent (missing parents of archive members) and
    /// for host entries whose own times are volatile.
    pub(crate) timestamp: i64,
}

/// One module path: its node and whether it is a directory.
type ModuleEntry = Result<(Node, bool), ComposeError>;

/// What [`list_modules`] returns.
pub(crate) type ModuleList = Result<Vec<(PathBuf, ModuleEntry)>, ComposeError>;

/// Steps 2 and 3 of the build order, up to the tree: the package files that
/// are neither config files nor excluded, and the hostfiles, in destination
/// order, each inspected on the host (`lstat`, `readlink`, and `stat` of a
/// symlink's target) on all cores. Needs neither the base nor the tree, so
/// it runs while the base archives are unpacked.
pub(crate) fn inspect_host(src: &HostSources<'_>) -> HostEntries {
    let mut stats = ComposeStats::default();
    // Package files: (destination, source, times) triples.
    let mut entries: Vec<(PathBuf, PathBuf, HostTimes)> = Vec::with_capacity(src.package_files.len());
    stats.package_paths = src.package_files.len();
    for f in src.package_files {
        if f.config {
            stats.config_files += 1;
            continue;
        }
        if is_excluded(&src.inputs.excludes, &f.path) {
            stats.excluded += 1;
            continue;
        }
        entries.push((f.path.clone(), f.source.clone(), HostTimes::KeepMtime));
    }
    stats.hostfiles = src.hostfiles.len();
    entries.extend(src.hostfiles.iter().map(|p| (p.clone(), p.clone(), HostTimes::Timestamp)));
    // Stable sort by destination: parents come before children, and for a
    // duplicated path the later (hostfiles) entry is inserted last and wins.
    entries.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));

    let inspect = |(dest, source, times): &(PathBuf, PathBuf, HostTimes)| {
        let source_host = under_root(src.root, source);
        let chosen = match std::fs::symlink_metadata(&source_host) {
            Ok(md) if md.is_file() => Some((source_host, md)),
            _ => {
                let dest_host = under_root(src.root, dest);
                std::fs::symlink_metadata(&dest_host).ok().map(|md| (dest_host, md))
            }
        };
        chosen.map(|(host, md)| inspect_host_path(host, &md, *times, src.timestamp))
    };
    let inspected = crate::cores::map_each(&entries, inspect);
    let entries = entries.into_iter().zip(inspected).map(|((dest, _, _), found)| (dest, found)).collect();
    HostEntries { entries, stats }
}

/// The host files the tree will read (regular files among the host's
/// entries and the modules), for probing them before the layout
/// (`crate::image::hostfile::Probed`). Entries that failed are left out.
pub(crate) fn host_files(host: &HostEntries, modules: &ModuleList) -> Vec<PathBuf> {
    let from_host = host.entries.iter().filter_map(|(_, found)| match found {
        Some(Ok(Inspected { node, .. })) => Some(node),
        _ => None,
    });
    let from_modules =
        modules.iter().flatten().filter_map(|(_, found)| found.as_ref().ok().map(|(node, _)| node));
    from_host
        .chain(from_modules)
        .filter_map(|node| match &node.content {
            Content::Regular(Data::Host { path, .. }) => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Build the appliance tree from its parts, in supermin's order: the base,
/// the host's entries, the modules. Errors name the path involved.
pub(crate) fn compose(parts: TreeParts<'_>) -> Result<(FileTree, ComposeStats), ComposeError> {
    let TreeParts { root, base, host, kernel, modules, timestamp } = parts;
    let HostEntries { entries, mut stats } = host;
    let root_meta = Metadata::new(0o755, 0, 0, timestamp);
    let mut tree = FileTree::new(root_meta);
    base.unpack(&mut tree, timestamp)?;
    let mut composer = HostComposer { tree, root, timestamp };
    for (dest, found) in entries {
        let Some(found) = found else {
            stats.missing_on_host += 1;
            continue;
        };
        let Inspected { node, dir_link } = found?;
        composer.add(&dest, node, dir_link, 0)?;
    }

    // Kernel modules: /lib/modules from the host (a symlinked /lib resolves
    // through the tree), then the whole modules directory under the version.
    let lib_modules = Path::new("/lib/modules");
    if std::fs::symlink_metadata(under_root(root, lib_modules)).is_ok() {
        composer.ensure_host_path(lib_modules, 0)?;
    } else {
        // SUPERMIN_MODULES elsewhere on a host without /lib/modules.
        composer.tree.create_dir_all(lib_modules, root_meta)?;
    }
    let modules_dest = PathBuf::from("/lib/modules").join(&kernel.version);
    for (path, found) in modules? {
        let (node, is_dir) = found?;
        let rel = path.strip_prefix(&kernel.modules_dir).unwrap_or(&path);
        let dest = if rel.as_os_str().is_empty() { modules_dest.clone() } else { modules_dest.join(rel) };
        composer.tree.insert(&dest, node)?;
        if !is_dir {
            stats.module_files += 1;
        }
    }

    let tree = composer.tree;
    for id in tree.walk_ids() {
        stats.entries += 1;
        if let Content::Regular(data) = &tree.node(id).content {
            stats.data_bytes += data.stored_len();
        }
    }
    Ok((tree, stats))
}

/// Every path under `kernel`'s modules directory (the directory first,
/// then in name order), each with its tree node (times by
/// [`hostdata::module_times`], else `timestamp`): the walk's first error,
/// or per path the error of making its node. A serial walk: it runs beside
/// the other sources' preparation.
pub(crate) fn list_modules(kernel: &KernelChoice, timestamp: i64) -> ModuleList {
    let modules_dir = &kernel.modules_dir;
    let walk = walkdir::WalkDir::new(modules_dir).follow_links(false).sort_by_file_name();
    let mut out = Vec::new();
    for item in walk {
        let item = item.map_err(|e| ComposeError::Host {
            path: e.path().map(Path::to_path_buf).unwrap_or_else(|| modules_dir.clone()),
            source: e.into(),
        })?;
        let path = item.into_path();
        let rel = path.strip_prefix(modules_dir).unwrap_or(&path);
        let node = std::fs::symlink_metadata(&path)
            .map_err(|source| ComposeError::Host { path: path.clone(), source })
            .and_then(|md| {
                Ok((node_from_host(&path, &md, hostdata::module_times(rel), timestamp)?, md.is_dir()))
            });
        out.push((path, node));
    }
    Ok(out)
}

fn is_excluded(excludes: &[ExcludePattern], path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    excludes.iter().any(|p| p.matches(bytes))
}

/// Turn a host `lstat` result into a tree node, with times by `times` (see
/// [`hostdata::image_metadata`]). Directories lose setuid (as supermin);
/// symlinks keep their exact target text.
pub(crate) fn node_from_host(
    host: &Path,
    md: &std::fs::Metadata,
    times: HostTimes,
    timestamp: i64,
) -> Result<Node, ComposeError> {
    let ft = md.file_type();
    let mut meta = hostdata::image_metadata(md, times, timestamp);
    let content = if ft.is_dir() {
        meta.perm &= 0o3777;
        Content::Directory
    } else if ft.is_file() {
        Content::Regular(Data::Host { path: host.to_path_buf(), len: md.len() })
    } else if ft.is_symlink() {
        let target = std::fs::read_link(host)
            .map_err(|source| ComposeError::Host { path: host.to_path_buf(), source })?;
        Content::Symlink(OsString::from(target))
    } else if ft.is_char_device() {
        Content::CharDevice(md.rdev())
    } else if ft.is_block_device() {
        Content::BlockDevice(md.rdev())
    } else if ft.is_fifo() {
        Content::Fifo
    } else {
        Content::Socket
    };
    Ok(Node { meta, content })
}

/// A host entry inspected for the tree: its node, and whether it is a
/// symlink to a directory (whose target goes in too).
struct Inspected {
    node: Node,
    dir_link: bool,
}

/// [`node_from_host`], and for a symlink whether it leads to a directory.
fn inspect_host_path(
    host: PathBuf,
    md: &std::fs::Metadata,
    times: HostTimes,
    timestamp: i64,
) -> Result<Inspected, ComposeError> {
    let node = node_from_host(&host, md, times, timestamp)?;
    let dir_link = matches!(node.content, Content::Symlink(_))
        && std::fs::metadata(&host).map(|m| m.is_dir()).unwrap_or(false);
    Ok(Inspected { node, dir_link })
}

/// Adds host paths to the tree, creating missing parents from the host.
struct HostComposer<'a> {
    tree: FileTree,
    root: &'a Path,
    /// Times of the parents and link targets taken from the host.
    timestamp: i64,
}

/// Guard against symlink cycles on a broken host.
const MAX_DEPTH: usize = 40;

impl HostComposer<'_> {
    /// Make sure every ancestor of `path` exists in the tree as a directory.
    fn ensure_parents(&mut self, path: &Path, depth: usize) -> Result<(), ComposeError> {
        match path.parent() {
            Some(parent) if parent != Path::new("/") => self.ensure_host_path(parent, depth),
            _ => Ok(()),
        }
    }

    /// Insert a host entry at `dest`, creating its parents first and, for a
    /// symlink to a directory (`dir_link`), the link's target (supermin's
    /// munge).
    fn add(&mut self, dest: &Path, node: Node, dir_link: bool, depth: usize) -> Result<(), ComposeError> {
        self.ensure_parents(dest, depth + 1)?;
        if let (Content::Symlink(target), true) = (&node.content, dir_link) {
            let target = link_target(dest, target);
            self.ensure_host_path(&target, depth + 1)?;
        }
        self.tree.insert(dest, node)?;
        Ok(())
    }

    /// Make sure `path` exists in the tree and, if it is a symlink, that its
    /// target does too, copying missing pieces from the host.
    fn ensure_host_path(&mut self, path: &Path, depth: usize) -> Result<(), ComposeError> {
        if depth > MAX_DEPTH {
            return Err(TreeError::SymlinkLoop { path: path.to_path_buf() }.into());
        }
        // Look the path up first: for the common case (parent already in the
        // tree) this is one lookup, not one per ancestor.
        if let Some(id) = self.tree.lookup(path) {
            if let Content::Symlink(target) = &self.tree.node(id).content {
                let target = link_target(path, target);
                self.ensure_host_path(&target, depth + 1)?;
            }
            return Ok(());
        }
        let host = under_root(self.root, path);
        let md = std::fs::symlink_metadata(&host)
            .map_err(|source| ComposeError::Host { path: host.clone(), source })?;
        let Inspected { node, dir_link } =
            inspect_host_path(host, &md, HostTimes::Timestamp, self.timestamp)?;
        self.add(path, node, dir_link, depth + 1)
    }
}

/// Where a symlink at `link` with text `target` points, inside the image.
fn link_target(link: &Path, target: &std::ffi::OsStr) -> PathBuf {
    crate::image::files::lexical_normalize(&link.parent().unwrap_or(Path::new("/")).join(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parents_come_from_the_host_through_symlinks() {
        let host = tempfile::tempdir().unwrap();
        let r = host.path();
        std::fs::create_dir_all(r.join("usr/lib/x")).unwrap();
        std::fs::write(r.join("usr/lib/x/libfoo.so"), b"elf").unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        let mut c =
            HostComposer { tree: FileTree::new(Metadata::new(0o755, 0, 0, 0)), root: r, timestamp: 7 };
        c.ensure_host_path(Path::new("/lib/x/libfoo.so"), 0).unwrap();
        let id = c.tree.lookup(Path::new("/usr/lib/x/libfoo.so")).expect("file under usr");
        assert!(matches!(c.tree.node(id).content, Content::Regular(Data::Host { len: 3, .. })));
        let lib = c.tree.lookup(Path::new("/lib")).unwrap();
        assert_eq!(c.tree.node(lib).content, Content::Symlink("usr/lib".into()));
        // Parents taken from the host carry the timestamp, not host times.
        let usr = c.tree.lookup(Path::new("/usr")).unwrap();
        let m = c.tree.node(usr).meta;
        assert_eq!((m.atime, m.mtime, m.ctime), (7, 7, 7));
        assert_eq!(c.tree.node(lib).meta.mtime, 7);
    }
}
