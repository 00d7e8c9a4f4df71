//! The in-memory description of an appliance file system, shared by every
//! producer (base archives, package files, hostfiles, kernel modules) and
//! every writer (ext2 image, tarball).
//!
//! A [`FileTree`] is an arena of [`Node`]s (one per inode) plus, for each
//! directory node, its sorted entries. Hard links are two directory entries
//! naming the same node. The tree holds no file data for host files: a
//! regular file points at its host path ([`Data::Host`]) so that writers can
//! copy it straight from the host with `copy_file_range`, reading it once.
//!
//! Insertion follows supermin's precedence rules (docs/supermin-compat.md,
//! "Precedence" and "Parents and merged /usr"): an
//! existing directory is never replaced (first creator wins), any other
//! existing entry is replaced by a later one. Parents are resolved inside the
//! tree, following symlinks in intermediate components (as libext2fs's
//! `ext2fs_namei` does), so `/lib/modules/X` lands in `/usr/lib/modules/X` when
//! the tree holds `/lib -> usr/lib`.
//!
//! Every path in the tree resolves, through the tree's symlinks, to at most
//! [`PATH_MAX`] bytes (what Linux can name in one system call); deeper
//! insertions are refused, which also keeps every operation linear in a
//! path's length. Symlinks are followed at most [`MAX_SYMLINK_FOLLOWS`]
//! times per resolution, as the kernel does.
//!
//! This module knows nothing about packages or on-disk formats.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::image::scratch::ScratchData;

/// Longest path Linux resolves, terminating NUL included (`PATH_MAX`).
pub(crate) const PATH_MAX: usize = 4096;

/// Most bytes all the tree's paths may add up to (each node and hard link
/// counted with its full resolved path). Writers hold every path at once
/// ([`FileTree::walk`]); a real appliance needs a few MiB, and without a
/// bound many deep paths would cost memory quadratic in their depth.
pub(crate) const TREE_PATH_BYTES_MAX: u64 = 256 << 20;

/// Index of a node in a [`FileTree`].
pub(crate) type NodeId = usize;

/// Errors from building a tree.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TreeError {
    /// The path is not absolute or contains `..`.
    #[error("{}: appliance paths must be absolute and must not contain '..'", short_path(.path))]
    BadPath {
        /// The offending path.
        path: PathBuf,
    },
    /// A parent component is missing or is not a directory.
    #[error("{}: parent directory {} is missing in the appliance or is not a directory", short_path(.path), short_path(.parent))]
    NoParent {
        /// The path being inserted.
        path: PathBuf,
        /// The parent that could not be resolved.
        parent: PathBuf,
    },
    /// Symlinks in the parent chain loop.
    #[error("{}: too many levels of symbolic links while resolving its parent", short_path(.path))]
    SymlinkLoop {
        /// The path being inserted.
        path: PathBuf,
    },
    /// The path, resolved through the tree's symlinks, would be longer than
    /// Linux can resolve.
    #[error(
        "{}: its full path in the appliance would be {len} bytes long; Linux cannot resolve \
         paths of {PATH_MAX} bytes or more (PATH_MAX): shorten it",
        short_path(.path)
    )]
    PathTooLong {
        /// The path being inserted.
        path: PathBuf,
        /// Length of its resolved path, in bytes.
        len: usize,
    },
    /// The tree's paths add up to more than [`TREE_PATH_BYTES_MAX`].
    #[error(
        "{}: the appliance's paths add up to more than {} MiB (too many files, or too deeply \
         nested); trim the inputs",
        short_path(.path),
        TREE_PATH_BYTES_MAX >> 20
    )]
    TooManyPaths {
        /// The path whose insertion crossed the limit.
        path: PathBuf,
    },
    /// A hard link names a target that does not exist or is a directory.
    #[error("{}: hard link target {} is missing or is a directory", short_path(.path), short_path(.target))]
    BadHardLink {
        /// The link being created.
        path: PathBuf,
        /// The missing target.
        target: PathBuf,
    },
}

/// Ownership, permissions and times of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Metadata {
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub(crate) perm: u32,
    /// Owner user id.
    pub(crate) uid: u32,
    /// Owner group id.
    pub(crate) gid: u32,
    /// Last access time, seconds since the epoch.
    pub(crate) atime: i64,
    /// Last modification time, seconds since the epoch.
    pub(crate) mtime: i64,
    /// Last status change time, seconds since the epoch.
    pub(crate) ctime: i64,
}

impl Metadata {
    /// Metadata with the same time for atime, mtime and ctime.
    pub(crate) fn new(perm: u32, uid: u32, gid: u32, time: i64) -> Self {
        Metadata { perm: perm & 0o7777, uid, gid, atime: time, mtime: time, ctime: time }
    }
}

/// Where the bytes of a regular file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    /// A file on the host, copied at write time. `len` is its size when it was
    /// listed; writers copy at most that many bytes, so the image never holds
    /// a torn size if the host file changes under us.
    Host {
        /// Path on the host to read.
        path: PathBuf,
        /// Size in bytes.
        len: u64,
    },
    /// Bytes held in memory (small generated files, the embedded tree).
    Inline(Arc<[u8]>),
    /// Bytes in a scratch file (base archive members, streamed there so
    /// memory does not grow with their size); its holes stay holes in the
    /// image.
    Scratch(ScratchData),
}

impl Data {
    /// Size in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Data::Host { len, .. } => *len,
            Data::Inline(bytes) => bytes.len() as u64,
            Data::Scratch(d) => d.len(),
        }
    }

    /// Bytes of data the image must store: [`Data::len`], except that the
    /// holes of a [`Data::Scratch`] file take no space (its stored blocks).
    pub(crate) fn stored_len(&self) -> u64 {
        match self {
            Data::Scratch(d) => d.stored_blocks() * crate::image::scratch::BLOCK,
            other => other.len(),
        }
    }
}

/// The type-specific part of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// A directory; its entries live in the tree.
    Directory,
    /// A regular file.
    Regular(Data),
    /// A symbolic link with its exact target text.
    Symlink(OsString),
    /// A character device with its `dev_t` (as from `st_rdev`).
    CharDevice(u64),
    /// A block device with its `dev_t`.
    BlockDevice(u64),
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl Content {
    /// The `S_IFMT` bits for this type.
    pub(crate) fn file_type_bits(&self) -> u32 {
        match self {
            Content::Directory => libc::S_IFDIR,
            Content::Regular(_) => libc::S_IFREG,
            Content::Symlink(_) => libc::S_IFLNK,
            Content::CharDevice(_) => libc::S_IFCHR,
            Content::BlockDevice(_) => libc::S_IFBLK,
            Content::Fifo => libc::S_IFIFO,
            Content::Socket => libc::S_IFSOCK,
        }
    }

    /// True for [`Content::Directory`].
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self, Content::Directory)
    }
}

/// One inode: what it is plus its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// Ownership, permissions, times.
    pub(crate) meta: Metadata,
    /// Type and type-specific data.
    pub(crate) content: Content,
}

impl Node {
    /// Full `st_mode` (type bits | permission bits).
    pub(crate) fn mode(&self) -> u32 {
        self.content.file_type_bits() | (self.meta.perm & 0o7777)
    }
}

/// A directory tree of nodes, rooted at node 0 (`/`).
#[derive(Debug, Clone)]
pub(crate) struct FileTree {
    nodes: Vec<Node>,
    /// Directory entries, indexed by node id; empty for non-directories.
    entries: Vec<BTreeMap<OsString, NodeId>>,
    /// Number of directory entries pointing at each node (root: 1).
    links: Vec<u32>,
    /// Parent directory of each directory node (root: itself).
    parents: Vec<NodeId>,
    /// Length in bytes of each node's resolved path where it was created
    /// (root: 0, `/etc`: 4); never more than `PATH_MAX - 1`.
    path_lens: Vec<usize>,
    /// Sum of the resolved path lengths of every node and hard link made.
    path_bytes: u64,
}

/// Resolution of a path's parent: the directory node and the final name.
struct Resolved {
    dir: NodeId,
    name: OsString,
}

/// Symlinks followed in one path resolution before giving up (Linux's
/// `MAXSYMLINKS`).
pub(crate) const MAX_SYMLINK_FOLLOWS: usize = 40;

impl FileTree {
    /// The root directory's node id.
    pub(crate) const ROOT: NodeId = 0;

    /// A tree holding only `/` with the given metadata.
    pub(crate) fn new(root: Metadata) -> Self {
        FileTree {
            nodes: vec![Node { meta: root, content: Content::Directory }],
            entries: vec![BTreeMap::new()],
            links: vec![1],
            parents: vec![0],
            path_lens: vec![0],
            path_bytes: 0,
        }
    }

    /// The node with this id.
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Mutable access to a node (e.g. to adjust metadata).
    pub(crate) fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// Number of nodes (inodes), including unreachable ones left behind by
    /// replacement; see [`FileTree::is_reachable`].
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of directory entries naming this node. Zero means the node was
    /// replaced and is no longer part of the tree.
    #[cfg(test)]
    pub(crate) fn link_count(&self, id: NodeId) -> u32 {
        self.links[id]
    }

    /// True when some directory entry (or the root) names this node.
    pub(crate) fn is_reachable(&self, id: NodeId) -> bool {
        self.links[id] > 0
    }

    /// Sorted entries (name, child id) of a directory node; empty otherwise.
    pub(crate) fn children(&self, dir: NodeId) -> impl Iterator<Item = (&OsStr, NodeId)> {
        self.entries[dir].iter().map(|(n, id)| (n.as_os_str(), *id))
    }

    /// Number of entries in a directory node.
    pub(crate) fn child_count(&self, dir: NodeId) -> usize {
        self.entries[dir].len()
    }

    /// Parent of a directory node (the root is its own parent).
    pub(crate) fn parent(&self, dir: NodeId) -> NodeId {
        self.parents[dir]
    }

    /// Look a path up, following symlinks in intermediate components but not
    /// in the last one (like `lstat`).
    pub(crate) fn lookup(&self, path: &Path) -> Option<NodeId> {
        if normal_components(path).ok()?.is_empty() {
            return Some(Self::ROOT);
        }
        let resolved = self.resolve_parent(path).ok()?;
        self.entries[resolved.dir].get(&resolved.name).copied()
    }

    /// Insert `node` at `path`. An existing directory at `path` is kept and
    /// its id returned when `node` is a directory too (first creator wins);
    /// any other existing entry is replaced. Returns the id now at `path`.
    pub(crate) fn insert(&mut self, path: &Path, node: Node) -> Result<NodeId, TreeError> {
        let Resolved { dir, name } = self.resolve_parent(path)?;
        self.insert_in(dir, name, node, path)
    }

    /// [`FileTree::insert`] with the parent already resolved; `path` is for
    /// errors only.
    fn insert_in(
        &mut self,
        dir: NodeId,
        name: OsString,
        node: Node,
        path: &Path,
    ) -> Result<NodeId, TreeError> {
        if let Some(&existing) = self.entries[dir].get(&name) {
            if self.nodes[existing].content.is_dir() {
                if node.content.is_dir() {
                    return Ok(existing);
                }
                // A non-directory replaces a directory only when it is empty
                // (libext2fs cannot unlink a populated directory either).
                if !self.entries[existing].is_empty() {
                    return Ok(existing);
                }
            }
            self.unlink(existing);
        }
        let len = self.child_path_len(dir, &name, path)?;
        let id = self.push(node, dir, len);
        self.entries[dir].insert(name, id);
        Ok(id)
    }

    /// Length of the resolved path of `name` in directory `dir`, refused at
    /// `PATH_MAX` and beyond, and counted against [`TREE_PATH_BYTES_MAX`].
    fn child_path_len(&mut self, dir: NodeId, name: &OsStr, path: &Path) -> Result<usize, TreeError> {
        let len = self.path_lens[dir] + 1 + name.len();
        if len >= PATH_MAX {
            return Err(TreeError::PathTooLong { path: path.to_owned(), len });
        }
        if self.path_bytes + len as u64 > TREE_PATH_BYTES_MAX {
            return Err(TreeError::TooManyPaths { path: path.to_owned() });
        }
        self.path_bytes += len as u64;
        Ok(len)
    }

    /// Make `path` a hard link to the existing non-directory at `target`.
    pub(crate) fn hard_link(&mut self, path: &Path, target: &Path) -> Result<NodeId, TreeError> {
        let bad = || TreeError::BadHardLink { path: path.to_owned(), target: target.to_owned() };
        let target_id = self.lookup(target).ok_or_else(bad)?;
        if self.nodes[target_id].content.is_dir() {
            return Err(bad());
        }
        let Resolved { dir, name } = self.resolve_parent(path)?;
        if let Some(&existing) = self.entries[dir].get(&name) {
            if existing == target_id {
                return Ok(target_id);
            }
            if self.nodes[existing].content.is_dir() {
                return Err(bad());
            }
        }
        self.child_path_len(dir, &name, path)?;
        if let Some(existing) = self.entries[dir].get(&name).copied() {
            self.unlink(existing);
        }
        self.links[target_id] += 1;
        self.entries[dir].insert(name, target_id);
        Ok(target_id)
    }

    /// Create every missing directory along `path` (like `mkdir -p`) with the
    /// given metadata; existing components are kept (followed when they are
    /// symlinks to directories, replaced when they are anything else).
    /// Returns the final id. One pass down the path: linear in its length.
    pub(crate) fn create_dir_all(&mut self, path: &Path, meta: Metadata) -> Result<NodeId, TreeError> {
        let comps = normal_components(path)?;
        let mut built = PathBuf::from("/");
        let mut dir = Self::ROOT;
        let mut budget = MAX_SYMLINK_FOLLOWS;
        for comp in comps {
            built.push(comp);
            let existing = self.entries[dir].get(comp).copied();
            let followed = match existing {
                Some(id) => match self.follow(id, &built, &mut budget) {
                    Ok(target) if self.nodes[target].content.is_dir() => Some(target),
                    Ok(_) => None,
                    Err(TreeError::SymlinkLoop { .. }) if budget == 0 => {
                        return Err(TreeError::SymlinkLoop { path: built })
                    }
                    Err(_) => None,
                },
                None => None,
            };
            dir = match followed {
                Some(target) => target,
                None => self.insert_in(
                    dir,
                    comp.to_os_string(),
                    Node { meta, content: Content::Directory },
                    &built,
                )?,
            };
        }
        Ok(dir)
    }

    /// Remove a path from the tree (no-op when absent). Directories are
    /// removed with everything below them.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, path: &Path) -> Result<(), TreeError> {
        let Resolved { dir, name } = self.resolve_parent(path)?;
        if let Some(id) = self.entries[dir].remove(&name) {
            self.unlink(id);
        }
        Ok(())
    }

    /// Every reachable path with its node id, parents before children, in
    /// sorted order within each directory. Hard-linked nodes appear once per
    /// name.
    pub(crate) fn walk(&self) -> Vec<(PathBuf, NodeId)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![(PathBuf::from("/"), Self::ROOT)];
        while let Some((path, id)) = stack.pop() {
            let children: Vec<_> = self.entries[id].iter().collect();
            for (name, child) in children.into_iter().rev() {
                stack.push((path.join(name), *child));
            }
            out.push((path, id));
        }
        out
    }

    /// The node of every path [`FileTree::walk`] yields, in the same order,
    /// without building the paths (for counting).
    pub(crate) fn walk_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        let mut stack = vec![Self::ROOT];
        std::iter::from_fn(move || {
            let id = stack.pop()?;
            stack.extend(self.entries[id].values().rev().copied());
            Some(id)
        })
    }

    fn push(&mut self, node: Node, parent: NodeId, path_len: usize) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(node);
        self.entries.push(BTreeMap::new());
        self.links.push(1);
        self.parents.push(parent);
        self.path_lens.push(path_len);
        id
    }

    /// Drop one link to `id`; at zero, drop its children's links too.
    fn unlink(&mut self, id: NodeId) {
        self.links[id] -= 1;
        if self.links[id] == 0 {
            let children = std::mem::take(&mut self.entries[id]);
            for child in children.into_values() {
                self.unlink(child);
            }
        }
    }

    /// Follow `id` (found at path `at`) through symlinks to a final node,
    /// spending one unit of `budget` per symlink.
    fn follow(&self, mut id: NodeId, at: &Path, budget: &mut usize) -> Result<NodeId, TreeError> {
        // Most nodes are not symlinks: no allocation for them.
        if !matches!(self.nodes[id].content, Content::Symlink(_)) {
            return Ok(id);
        }
        let mut at = at.to_path_buf();
        while let Content::Symlink(target) = &self.nodes[id].content {
            if *budget == 0 {
                return Err(TreeError::SymlinkLoop { path: at });
            }
            *budget -= 1;
            let next = lexical_normalize(&at.parent().unwrap_or(Path::new("/")).join(target));
            let missing = || TreeError::NoParent { path: at.clone(), parent: next.clone() };
            id = if next == Path::new("/") {
                Self::ROOT
            } else {
                let r = self.resolve_parent_with(&next, budget).map_err(|e| match e {
                    TreeError::SymlinkLoop { .. } => e,
                    _ => missing(),
                })?;
                *self.entries[r.dir].get(&r.name).ok_or_else(missing)?
            };
            at = next;
        }
        Ok(id)
    }

    fn resolve_parent(&self, path: &Path) -> Result<Resolved, TreeError> {
        let mut budget = MAX_SYMLINK_FOLLOWS;
        self.resolve_parent_with(path, &mut budget)
    }

    /// Resolve the directory holding `path`'s last component, following
    /// symlinks in the components before it (at most `budget` in all).
    fn resolve_parent_with(&self, path: &Path, budget: &mut usize) -> Result<Resolved, TreeError> {
        let comps = normal_components(path)?;
        let Some((last, dirs)) = comps.split_last() else {
            return Err(TreeError::BadPath { path: path.to_owned() });
        };
        let mut dir = Self::ROOT;
        let mut walked = PathBuf::from("/");
        for comp in dirs {
            walked.push(comp);
            let no_parent = || TreeError::NoParent { path: path.to_owned(), parent: walked.clone() };
            let child = *self.entries[dir].get(*comp).ok_or_else(no_parent)?;
            let target = self.follow(child, &walked, budget)?;
            if !self.nodes[target].content.is_dir() {
                return Err(no_parent());
            }
            dir = target;
        }
        Ok(Resolved { dir, name: last.to_os_string() })
    }
}

/// A name or path for an error message: lossy UTF-8, and shortened (with
/// its length in bytes) when too long to read, so that a hostile 4 KiB path
/// still gives a one-line error.
pub(crate) fn shorten(name: &[u8]) -> String {
    const KEEP: usize = 120;
    let text = String::from_utf8_lossy(name);
    if text.chars().count() <= KEEP {
        return text.into_owned();
    }
    let head: String = text.chars().take(KEEP).collect();
    format!("{head}... ({} bytes)", name.len())
}

/// [`shorten`] for a path.
pub(crate) fn short_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    shorten(path.as_os_str().as_bytes())
}

/// Split an absolute path into its normal components; refuse `..`.
fn normal_components(path: &Path) -> Result<Vec<&OsStr>, TreeError> {
    let mut out = Vec::new();
    let mut absolute = false;
    for comp in path.components() {
        match comp {
            Component::RootDir => absolute = true,
            Component::CurDir => {}
            Component::Normal(c) => out.push(c),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(TreeError::BadPath { path: path.to_owned() })
            }
        }
    }
    if !absolute {
        return Err(TreeError::BadPath { path: path.to_owned() });
    }
    Ok(out)
}

/// Resolve `.` and `..` textually (symlink targets inside the image are
/// interpreted relative to the image root, never the host).
pub(crate) fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out: Vec<&OsStr> = Vec::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    let mut p = PathBuf::from("/");
    for c in out {
        p.push(c);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata::new(0o755, 0, 0, 0)
    }
    fn dir() -> Node {
        Node { meta: meta(), content: Content::Directory }
    }
    fn file(bytes: &[u8]) -> Node {
        Node { meta: meta(), content: Content::Regular(Data::Inline(bytes.into())) }
    }
    fn link(t: &str) -> Node {
        Node { meta: meta(), content: Content::Symlink(t.into()) }
    }

    #[test]
    fn parents_resolve_through_symlinks() {
        let mut t = FileTree::new(meta());
        t.insert(Path::new("/usr"), dir()).unwrap();
        t.insert(Path::new("/usr/lib"), dir()).unwrap();
        t.insert(Path::new("/lib"), link("usr/lib")).unwrap();
        t.insert(Path::new("/lib/modules"), dir()).unwrap();
        assert!(t.lookup(Path::new("/usr/lib/modules")).is_some());
        assert!(matches!(t.node(t.lookup(Path::new("/lib")).unwrap()).content, Content::Symlink(_)));
    }

    #[test]
    fn directories_first_creator_wins_files_last() {
        let mut t = FileTree::new(meta());
        let a = t.insert(Path::new("/etc"), dir()).unwrap();
        let mut other = dir();
        other.meta.uid = 7;
        let b = t.insert(Path::new("/etc"), other).unwrap();
        assert_eq!(a, b);
        assert_eq!(t.node(a).meta.uid, 0);
        t.insert(Path::new("/etc/x"), file(b"1")).unwrap();
        let id = t.insert(Path::new("/etc/x"), file(b"22")).unwrap();
        assert_eq!(t.lookup(Path::new("/etc/x")), Some(id));
        assert_eq!(t.walk().len(), 3);
    }

    #[test]
    fn hard_links_share_a_node() {
        let mut t = FileTree::new(meta());
        let a = t.insert(Path::new("/a"), file(b"x")).unwrap();
        let b = t.hard_link(Path::new("/b"), Path::new("/a")).unwrap();
        assert_eq!(a, b);
        assert_eq!(t.link_count(a), 2);
        t.insert(Path::new("/a"), file(b"y")).unwrap();
        assert_eq!(t.link_count(b), 1);
    }

    /// `walk_ids` is `walk` without the paths: every name once (a hard
    /// link twice, a replaced file not at all), in the same order.
    #[test]
    fn walk_ids_follows_walk() {
        let mut t = FileTree::new(meta());
        t.insert(Path::new("/etc"), dir()).unwrap();
        t.insert(Path::new("/etc/b"), file(b"1")).unwrap();
        t.insert(Path::new("/etc/a"), file(b"2")).unwrap();
        t.insert(Path::new("/bin"), dir()).unwrap();
        t.hard_link(Path::new("/bin/x"), Path::new("/etc/a")).unwrap();
        t.insert(Path::new("/etc/b"), file(b"3")).unwrap();
        let walked: Vec<NodeId> = t.walk().into_iter().map(|(_, id)| id).collect();
        assert_eq!(walked.len(), 6);
        assert_eq!(t.walk_ids().collect::<Vec<_>>(), walked);
    }

    #[test]
    fn missing_parent_is_an_error() {
        let mut t = FileTree::new(meta());
        let err = t.insert(Path::new("/no/such"), file(b"")).unwrap_err();
        assert!(err.to_string().contains("/no"), "{err}");
        assert!(t.insert(Path::new("relative"), file(b"")).is_err());
    }

    #[test]
    fn create_dir_all_follows_symlinked_dirs() {
        let mut t = FileTree::new(meta());
        t.create_dir_all(Path::new("/usr/lib"), meta()).unwrap();
        t.insert(Path::new("/lib"), link("/usr/lib")).unwrap();
        t.create_dir_all(Path::new("/lib/modules/6.1"), meta()).unwrap();
        assert!(t.lookup(Path::new("/usr/lib/modules/6.1")).is_some());
    }

    #[test]
    fn replaced_directory_subtree_becomes_unreachable() {
        let mut t = FileTree::new(meta());
        let d = t.insert(Path::new("/d"), dir()).unwrap();
        let f = t.insert(Path::new("/d/f"), file(b"")).unwrap();
        t.remove(Path::new("/d")).unwrap();
        assert!(!t.is_reachable(d));
        assert!(!t.is_reachable(f));
    }

    /// Issue 8, item 6: deep paths cost linear work (this 2,000-deep path
    /// took seconds when every prefix was looked up from the root) and
    /// resolved paths stop at PATH_MAX, symlinks included.
    #[test]
    fn deep_paths_are_linear_and_bounded_by_path_max() {
        let mut t = FileTree::new(meta());
        let deep = PathBuf::from(format!("/{}", "d/".repeat(2000)));
        let id = t.create_dir_all(&deep, meta()).unwrap();
        assert_eq!(t.path_lens[id], 4000);
        t.insert(&deep.join("f"), file(b"x")).unwrap();
        // 4095 bytes is the longest path Linux resolves.
        let last = deep.join("a".repeat(4095 - 4001));
        t.insert(&last, file(b"")).unwrap();
        let e = t.insert(&deep.join("a".repeat(4096 - 4001)), file(b"")).unwrap_err();
        assert!(e.to_string().contains("4096 bytes long") && e.to_string().contains("PATH_MAX"), "{e}");
        assert!(e.to_string().len() < 400, "shortened: {e}");
        // Through a symlink, the resolved length counts.
        t.insert(Path::new("/l"), link(&format!("/{}", "d/".repeat(2000)))).unwrap();
        let e = t.create_dir_all(&Path::new("/l").join("e/".repeat(100)), meta()).unwrap_err();
        assert!(matches!(e, TreeError::PathTooLong { len: 4096 | 4097, .. }), "{e}");
        let e = t.hard_link(&deep.join("b".repeat(200)), &deep.join("f")).unwrap_err();
        assert!(matches!(e, TreeError::PathTooLong { .. }), "{e}");
    }

    #[test]
    fn symlink_loops_and_long_chains_stop_at_forty() {
        let mut t = FileTree::new(meta());
        t.insert(Path::new("/a"), link("b")).unwrap();
        t.insert(Path::new("/b"), link("a")).unwrap();
        assert!(matches!(t.insert(Path::new("/a/x"), file(b"")).unwrap_err(), TreeError::SymlinkLoop { .. }));
        assert!(matches!(
            t.create_dir_all(Path::new("/a/x"), meta()).unwrap_err(),
            TreeError::SymlinkLoop { .. }
        ));
        // A chain of 40 links resolves, 41 do not (Linux's MAXSYMLINKS).
        t.insert(Path::new("/target"), dir()).unwrap();
        t.insert(Path::new("/s0"), link("target")).unwrap();
        for i in 1..=40 {
            t.insert(&PathBuf::from(format!("/s{i}")), link(&format!("s{}", i - 1))).unwrap();
        }
        assert!(t.insert(Path::new("/s39/ok"), file(b"")).is_ok());
        assert!(matches!(
            t.insert(Path::new("/s40/no"), file(b"")).unwrap_err(),
            TreeError::SymlinkLoop { .. }
        ));
    }

    /// Many files deep down add up; the tree refuses past
    /// TREE_PATH_BYTES_MAX instead of letting writers hold them all.
    #[test]
    fn total_path_bytes_are_bounded() {
        let mut t = FileTree::new(meta());
        // 15 components of 255 bytes: long, but cheap to resolve.
        let deep = PathBuf::from(format!("/{}", format!("{}/", "d".repeat(255)).repeat(15)));
        t.create_dir_all(&deep, meta()).unwrap();
        let per_file = 15 * 256 + 1 + 8;
        let fits = (TREE_PATH_BYTES_MAX - t.path_bytes) / per_file;
        for i in 0..fits {
            t.insert(&deep.join(format!("{i:08}")), file(b"")).unwrap();
        }
        let e = t.insert(&deep.join("zzzzzzzz"), file(b"")).unwrap_err();
        assert!(matches!(e, TreeError::TooManyPaths { .. }), "{e}");
        assert!(e.to_string().contains("256 MiB"), "{e}");
    }
}
