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
//! Insertion follows supermin's precedence rules (reference §10.15): an
//! existing directory is never replaced (first creator wins), any other
//! existing entry is replaced by a later one. Parents are resolved inside the
//! tree, following symlinks in intermediate components (as libext2fs's
//! `ext2fs_namei` does), so `/lib/modules/X` lands in `/usr/lib/modules/X` when
//! the tree holds `/lib -> usr/lib`.
//!
//! This module knows nothing about packages or on-disk formats.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Index of a node in a [`FileTree`].
pub type NodeId = usize;

/// Errors from building a tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The path is not absolute or contains `..`.
    #[error("{path}: appliance paths must be absolute and must not contain '..'")]
    BadPath {
        /// The offending path.
        path: PathBuf,
    },
    /// A parent component is missing or is not a directory.
    #[error("{path}: parent directory {parent} is missing in the appliance or is not a directory")]
    NoParent {
        /// The path being inserted.
        path: PathBuf,
        /// The parent that could not be resolved.
        parent: PathBuf,
    },
    /// Symlinks in the parent chain loop.
    #[error("{path}: too many levels of symbolic links while resolving its parent")]
    SymlinkLoop {
        /// The path being inserted.
        path: PathBuf,
    },
    /// A hard link names a target that does not exist or is a directory.
    #[error("{path}: hard link target {target} is missing or is a directory")]
    BadHardLink {
        /// The link being created.
        path: PathBuf,
        /// The missing target.
        target: PathBuf,
    },
}

/// Ownership, permissions and times of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub perm: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Last access time, seconds since the epoch.
    pub atime: i64,
    /// Last modification time, seconds since the epoch.
    pub mtime: i64,
    /// Last status change time, seconds since the epoch.
    pub ctime: i64,
}

impl Metadata {
    /// Metadata with the same time for atime, mtime and ctime.
    pub fn new(perm: u32, uid: u32, gid: u32, time: i64) -> Self {
        Metadata { perm: perm & 0o7777, uid, gid, atime: time, mtime: time, ctime: time }
    }
}

/// Where the bytes of a regular file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A file on the host, copied at write time. `len` is its size when it was
    /// listed; writers copy at most that many bytes, so the image never holds
    /// a torn size if the host file changes under us.
    Host {
        /// Path on the host to read.
        path: PathBuf,
        /// Size in bytes.
        len: u64,
    },
    /// Bytes held in memory (from archives, generated files).
    Inline(Arc<[u8]>),
}

impl Data {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Data::Host { len, .. } => *len,
            Data::Inline(bytes) => bytes.len() as u64,
        }
    }

    /// True for a zero-length file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The type-specific part of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
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
    pub fn file_type_bits(&self) -> u32 {
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
    pub fn is_dir(&self) -> bool {
        matches!(self, Content::Directory)
    }
}

/// One inode: what it is plus its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Ownership, permissions, times.
    pub meta: Metadata,
    /// Type and type-specific data.
    pub content: Content,
}

impl Node {
    /// Full `st_mode` (type bits | permission bits).
    pub fn mode(&self) -> u32 {
        self.content.file_type_bits() | (self.meta.perm & 0o7777)
    }
}

/// A directory tree of nodes, rooted at node 0 (`/`).
#[derive(Debug, Clone)]
pub struct FileTree {
    nodes: Vec<Node>,
    /// Directory entries, indexed by node id; empty for non-directories.
    entries: Vec<BTreeMap<OsString, NodeId>>,
    /// Number of directory entries pointing at each node (root: 1).
    links: Vec<u32>,
    /// Parent directory of each directory node (root: itself).
    parents: Vec<NodeId>,
}

/// Resolution of a path's parent: the directory node and the final name.
struct Resolved {
    dir: NodeId,
    name: OsString,
}

const MAX_SYMLINK_FOLLOWS: usize = 40;

impl FileTree {
    /// The root directory's node id.
    pub const ROOT: NodeId = 0;

    /// A tree holding only `/` with the given metadata.
    pub fn new(root: Metadata) -> Self {
        FileTree {
            nodes: vec![Node { meta: root, content: Content::Directory }],
            entries: vec![BTreeMap::new()],
            links: vec![1],
            parents: vec![0],
        }
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Mutable access to a node (e.g. to adjust metadata).
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// Number of nodes (inodes), including unreachable ones left behind by
    /// replacement; see [`FileTree::is_reachable`].
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of directory entries naming this node. Zero means the node was
    /// replaced and is no longer part of the tree.
    pub fn link_count(&self, id: NodeId) -> u32 {
        self.links[id]
    }

    /// True when some directory entry (or the root) names this node.
    pub fn is_reachable(&self, id: NodeId) -> bool {
        self.links[id] > 0
    }

    /// Sorted entries (name, child id) of a directory node; empty otherwise.
    pub fn children(&self, dir: NodeId) -> impl Iterator<Item = (&OsStr, NodeId)> {
        self.entries[dir].iter().map(|(n, id)| (n.as_os_str(), *id))
    }

    /// Number of entries in a directory node.
    pub fn child_count(&self, dir: NodeId) -> usize {
        self.entries[dir].len()
    }

    /// Parent of a directory node (the root is its own parent).
    pub fn parent(&self, dir: NodeId) -> NodeId {
        self.parents[dir]
    }

    /// Look a path up, following symlinks in intermediate components but not
    /// in the last one (like `lstat`).
    pub fn lookup(&self, path: &Path) -> Option<NodeId> {
        if normal_components(path).ok()?.is_empty() {
            return Some(Self::ROOT);
        }
        let resolved = self.resolve_parent(path).ok()?;
        self.entries[resolved.dir].get(&resolved.name).copied()
    }

    /// Insert `node` at `path`. An existing directory at `path` is kept and
    /// its id returned when `node` is a directory too (first creator wins);
    /// any other existing entry is replaced. Returns the id now at `path`.
    pub fn insert(&mut self, path: &Path, node: Node) -> Result<NodeId, TreeError> {
        let Resolved { dir, name } = self.resolve_parent(path)?;
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
        let id = self.push(node, dir);
        self.entries[dir].insert(name, id);
        Ok(id)
    }

    /// Make `path` a hard link to the existing non-directory at `target`.
    pub fn hard_link(&mut self, path: &Path, target: &Path) -> Result<NodeId, TreeError> {
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
            self.unlink(existing);
        }
        self.links[target_id] += 1;
        self.entries[dir].insert(name, target_id);
        Ok(target_id)
    }

    /// Create every missing directory along `path` (like `mkdir -p`) with the
    /// given metadata; existing components are kept. Returns the final id.
    pub fn create_dir_all(&mut self, path: &Path, meta: Metadata) -> Result<NodeId, TreeError> {
        let comps = normal_components(path)?;
        let mut built = PathBuf::from("/");
        let mut id = Self::ROOT;
        for comp in comps {
            built.push(comp);
            id = match self.lookup(&built) {
                Some(existing) if self.is_dir_following(existing, &built) => {
                    self.follow(existing, &built)?
                }
                _ => self.insert(&built, Node { meta, content: Content::Directory })?,
            };
        }
        Ok(id)
    }

    /// Remove a path from the tree (no-op when absent). Directories are
    /// removed with everything below them.
    pub fn remove(&mut self, path: &Path) -> Result<(), TreeError> {
        let Resolved { dir, name } = self.resolve_parent(path)?;
        if let Some(id) = self.entries[dir].remove(&name) {
            self.unlink(id);
        }
        Ok(())
    }

    /// Every reachable path with its node id, parents before children, in
    /// sorted order within each directory. Hard-linked nodes appear once per
    /// name.
    pub fn walk(&self) -> Vec<(PathBuf, NodeId)> {
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

    fn push(&mut self, node: Node, parent: NodeId) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(node);
        self.entries.push(BTreeMap::new());
        self.links.push(1);
        self.parents.push(parent);
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

    fn is_dir_following(&self, id: NodeId, at: &Path) -> bool {
        self.follow(id, at).map(|d| self.nodes[d].content.is_dir()).unwrap_or(false)
    }

    /// Follow `id` (found at path `at`) through symlinks to a final node.
    fn follow(&self, mut id: NodeId, at: &Path) -> Result<NodeId, TreeError> {
        let mut at = at.to_path_buf();
        for _ in 0..MAX_SYMLINK_FOLLOWS {
            let Content::Symlink(target) = &self.nodes[id].content else {
                return Ok(id);
            };
            let next = at.parent().unwrap_or(Path::new("/")).join(target);
            let next = lexical_normalize(&next);
            id = self.lookup(&next).ok_or_else(|| TreeError::NoParent {
                path: at.clone(),
                parent: next.clone(),
            })?;
            at = next;
        }
        Err(TreeError::SymlinkLoop { path: at })
    }

    fn resolve_parent(&self, path: &Path) -> Result<Resolved, TreeError> {
        let comps = normal_components(path)?;
        let Some((last, dirs)) = comps.split_last() else {
            return Err(TreeError::BadPath { path: path.to_owned() });
        };
        let mut dir = Self::ROOT;
        let mut walked = PathBuf::from("/");
        for comp in dirs {
            walked.push(comp);
            let no_parent =
                || TreeError::NoParent { path: path.to_owned(), parent: walked.clone() };
            let child = *self.entries[dir].get(*comp).ok_or_else(no_parent)?;
            let target = self.follow(child, &walked)?;
            if !self.nodes[target].content.is_dir() {
                return Err(no_parent());
            }
            dir = target;
        }
        Ok(Resolved { dir, name: last.to_os_string() })
    }
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
pub fn lexical_normalize(path: &Path) -> PathBuf {
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
        assert!(matches!(
            t.node(t.lookup(Path::new("/lib")).unwrap()).content,
            Content::Symlink(_)
        ));
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
}
