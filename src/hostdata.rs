//! What the appliance takes from the host besides package files, and which
//! host metadata it keeps: the rules that make `kernel`, `initrd` and `root`
//! a pure function of the manifest's fingerprint (issue 7).
//!
//! Package files are vouched for by their package's name, version and
//! architecture, which the fingerprint covers: the package manager wrote
//! their content, mode, owner and mtime from the package, so the image keeps
//! those. Everything else a host entry carries is either volatile or not
//! vouched for by any package, and is handled here:
//!
//! - times that ordinary host activity moves are replaced by the build's
//!   timestamp ([`image_metadata`]): every atime (each read), every ctime
//!   (each chmod, link count change or reinstall), the times of directories
//!   (an entry created or removed in `/tmp` moves its mtime) and of symlinks
//!   (maintainer scripts make them at install time);
//! - hostfiles are host content: what the patterns matched, each file's
//!   content hash and the mode and owner the image copies are fingerprinted
//!   ([`hostfile_records`]); their times are the timestamp (ldconfig rewrites
//!   `/etc/ld.so.cache` with a new mtime after every library install, mostly
//!   with the same bytes);
//! - the kernel modules tree is copied whole. Its `kernel/` subtree is the
//!   kernel package's, vouched for by the kernel image's sha256; the rest is
//!   listed (path, type, mode, owner; for modules also size and mtime, which
//!   their package sets) and the files at its top (depmod's indexes,
//!   rewritten with new times by every `depmod -a`, which get the timestamp)
//!   are hashed, into one digest ([`modules_tree_digest`]).
//!
//! This module decides metadata and digests; `compose.rs` decides what
//! goes into the tree, the writers how it is stored.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::hashcache::HashCache;
use crate::image::files::Metadata;
use crate::manifest::ManifestHostfile;
use crate::paths::under_root;

/// Errors reading the host data the fingerprint needs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostDataError {
    /// A path of the kernel modules tree could not be read.
    #[error("reading the kernel modules tree at {path}: {source}; check its permissions, or reinstall the kernel package")]
    Modules {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Which of a host entry's own times the image keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostTimes {
    /// Its mtime, set by the package manager from the package (package
    /// files, kernel modules); atime and ctime are made equal to it.
    /// Directories and symlinks get the timestamp even so.
    KeepMtime,
    /// None: atime, mtime and ctime are all the timestamp.
    Timestamp,
}

/// The image metadata of a host entry from its `lstat` result: mode and
/// owner as on the host, times by `times` (see the module docs).
pub(crate) fn image_metadata(md: &std::fs::Metadata, times: HostTimes, timestamp: i64) -> Metadata {
    let ft = md.file_type();
    let keep = times == HostTimes::KeepMtime && !ft.is_dir() && !ft.is_symlink();
    Metadata::new(md.mode(), md.uid(), md.gid(), if keep { md.mtime() } else { timestamp })
}

/// The times rule for the modules tree entry at `rel` (relative to the
/// modules directory; empty for the directory itself): below the top level
/// are modules, whose mtime their package set; at the top are depmod's
/// outputs (`modules.dep`, `modules.alias.bin`, ...), which get new times at
/// every `depmod -a` with the same content.
pub(crate) fn module_times(rel: &Path) -> HostTimes {
    if rel.components().count() > 1 {
        HostTimes::KeepMtime
    } else {
        HostTimes::Timestamp
    }
}

/// The kind names used in manifests.
fn kind_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_char_device() {
        "char-device"
    } else if ft.is_block_device() {
        "block-device"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    }
}

/// What the image holds of a non-regular entry beyond mode and owner: a
/// symlink's target, a device's number; empty otherwise.
fn special_content(host: &Path, md: &std::fs::Metadata) -> std::io::Result<String> {
    let ft = md.file_type();
    Ok(if ft.is_symlink() {
        std::fs::read_link(host)?.display().to_string()
    } else if ft.is_char_device() || ft.is_block_device() {
        md.rdev().to_string()
    } else {
        String::new()
    })
}

/// One record per hostfiles match (appliance paths, as
/// [`crate::input::expand_hostfiles`] returns them), read under `root`:
/// kind, mode, owner and content (sha256 of a regular file, a symlink's
/// target). Never fails: a file that cannot be read is recorded as
/// `unreadable` (the image then holds it empty, as supermin does), one that
/// vanished as `missing`. Digests come from `hashes` when it knows the
/// file's signature.
pub(crate) fn hostfile_records(
    root: &Path,
    paths: &[PathBuf],
    hashes: &mut HashCache,
) -> Vec<ManifestHostfile> {
    paths
        .iter()
        .map(|p| {
            let host = under_root(root, p);
            let path = p.display().to_string();
            let Ok(md) = std::fs::symlink_metadata(&host) else {
                return ManifestHostfile {
                    path,
                    kind: "missing".into(),
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    content: String::new(),
                };
            };
            let content = if md.is_file() {
                hashes.sha256_hex(&host).unwrap_or_else(|_| "unreadable".into())
            } else {
                special_content(&host, &md).unwrap_or_else(|_| "unreadable".into())
            };
            ManifestHostfile {
                path,
                kind: kind_name(md.file_type()).into(),
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                content,
            }
        })
        .collect()
}

/// Host paths whose content is a secret by name: password hashes, root's
/// home, private keys (fnmatch patterns, `*` crossing `/`); a name ending
/// in `.pub` is a public key, never a secret.
const SECRET_PATTERNS: [&str; 9] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/root/*",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private/*",
    "*.key",
    "*/.ssh/id_*",
];

/// The hostfiles whose content is not for everyone: files named like
/// secrets ([`SECRET_PATTERNS`]) and regular files that other users cannot
/// read on the host (no `o+r` on the file, or no `o+x` on a directory on its
/// way). Appliance paths, in copy order.
///
/// Package files are not looked at: their content is public in their
/// package, whatever mode protects it on the host (a set-uid helper with
/// mode 4754, say). Hostfiles are this host's own content; copied into an
/// image everyone can read, an `/etc/shadow` would be readable by all.
pub(crate) fn private_hostfiles(root: &Path, records: &[ManifestHostfile]) -> Vec<String> {
    let others_can_read = |path: &Path| -> bool {
        let host = under_root(root, path);
        let Ok(md) = std::fs::metadata(&host) else { return true };
        if md.mode() & 0o004 == 0 {
            return false;
        }
        // Directories on the way, below the root: each must let others in.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| d.as_os_str().len() > 1) {
            match std::fs::metadata(under_root(root, d)) {
                Ok(m) if m.mode() & 0o001 == 0 => return false,
                _ => {}
            }
            dir = d.parent();
        }
        true
    };
    records
        .iter()
        .filter(|h| h.kind == "file")
        .filter(|h| {
            let named = !h.path.ends_with(".pub")
                && SECRET_PATTERNS.iter().any(|p| crate::fnmatch::fnmatch(p.as_bytes(), h.path.as_bytes()));
            named || !others_can_read(Path::new(&h.path))
        })
        .map(|h| h.path.clone())
        .collect()
}

/// The subdirectory of a modules directory that holds the kernel package's
/// own modules (Debian, Fedora, Arch, SUSE alike). Like any package file,
/// they are vouched for by their package, here through the kernel image's
/// sha256 (same package, same build); walking its ~5,000 entries would cost
/// more than the rest of `check` together. A module set change there runs
/// depmod, whose indexes the digest hashes.
const KERNEL_PACKAGE_SUBTREE: &str = "kernel";

/// The modules tree digest and the paths whose `stat` tells it may have
/// changed.
#[derive(Debug, Clone)]
pub(crate) struct ModulesTree {
    /// Hex sha256 over one line per entry, in the order the image copies
    /// them.
    pub(crate) sha256: String,
    /// The modules directory and the entries at its top. Anything that
    /// changes the module set runs depmod, which replaces the indexes there
    /// (a module changed without depmod is found by the exact computation,
    /// not by the stamp).
    pub(crate) watched: Vec<PathBuf>,
}

/// Digest of the modules directory as the image copies it: for every entry
/// (sorted walk, links not followed) its relative path, kind, mode and
/// owner; for modules their size and mtime (kept in the image); for files at
/// the top (depmod's indexes, whose times the image does not keep) the
/// sha256 of their content; for symlinks the target. `kernel/` is not
/// walked (see [`KERNEL_PACKAGE_SUBTREE`]); what else is there (`updates/`,
/// `extra/`: DKMS and other packages' modules) is. About 5 MB of hashing on
/// a Debian kernel, unless `hashes` knows the indexes' signatures.
pub(crate) fn modules_tree_digest(dir: &Path, hashes: &mut HashCache) -> Result<ModulesTree, HostDataError> {
    let md = std::fs::symlink_metadata(dir)
        .map_err(|source| HostDataError::Modules { path: dir.to_path_buf(), source })?;
    let mut walk = ModulesWalk { hasher: Sha256::new(), watched: vec![dir.to_path_buf()], hashes };
    walk.entry(dir, Path::new(""), &md)?;
    Ok(ModulesTree { sha256: crate::digest::hex(&walk.hasher.finalize()), watched: walk.watched })
}

/// The recursive walk behind [`modules_tree_digest`]: directories before
/// their entries, entries sorted by name (the order `compose.rs` copies
/// them in). Entries are `stat`ed through their directory (`fstatat`), which
/// costs about half of a full path lookup each.
struct ModulesWalk<'a> {
    hasher: Sha256,
    watched: Vec<PathBuf>,
    hashes: &'a mut HashCache,
}

impl ModulesWalk<'_> {
    fn entry(&mut self, path: &Path, rel: &Path, md: &std::fs::Metadata) -> Result<(), HostDataError> {
        let err = |source: std::io::Error| HostDataError::Modules { path: path.to_path_buf(), source };
        if rel.components().count() == 1 {
            self.watched.push(path.to_path_buf());
        }
        let content = if md.is_file() {
            match module_times(rel) {
                HostTimes::KeepMtime => format!("{} {}", md.len(), md.mtime()),
                HostTimes::Timestamp => self.hashes.sha256_hex(path).map_err(err)?,
            }
        } else {
            special_content(path, md).map_err(err)?
        };
        self.hasher.update(rel.as_os_str().as_bytes());
        self.hasher.update(
            format!(
                "\t{}\t{:o}\t{}\t{}\t{content}\n",
                kind_name(md.file_type()),
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            )
            .as_bytes(),
        );
        if !md.is_dir() || rel == Path::new(KERNEL_PACKAGE_SUBTREE) {
            return Ok(());
        }
        let mut children = Vec::new();
        for entry in std::fs::read_dir(path).map_err(err)? {
            let entry = entry.map_err(err)?;
            let md =
                entry.metadata().map_err(|source| HostDataError::Modules { path: entry.path(), source })?;
            children.push((entry.file_name(), md));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, md) in children {
            self.entry(&path.join(&name), &rel.join(&name), &md)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 8, item 15: secrets by name (whatever their mode), files
    /// others cannot read, and files in a directory others cannot enter
    /// are private; public keys and ordinary files are not.
    #[test]
    fn issue8_private_hostfiles_by_name_mode_and_directory() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let file = |p: &str, mode: u32| {
            let host = root.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(&host, "x").unwrap();
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode)).unwrap();
            PathBuf::from(p)
        };
        let paths = vec![
            file("/etc/shadow", 0o644),
            file("/etc/motd", 0o644),
            file("/etc/ssh/ssh_host_ed25519_key", 0o644),
            file("/etc/ssh/ssh_host_ed25519_key.pub", 0o644),
            file("/root/.profile", 0o644),
            file("/etc/app.conf", 0o640),
            file("/srv/closed/data", 0o644),
            file("/srv/open/data", 0o644),
        ];
        for d in ["etc", "etc/ssh", "root", "srv", "srv/open"] {
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(root.join("srv/closed"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let records = hostfile_records(root, &paths, &mut HashCache::new());
        assert_eq!(
            private_hostfiles(root, &records),
            [
                "/etc/shadow",
                "/etc/ssh/ssh_host_ed25519_key",
                "/root/.profile",
                "/etc/app.conf",
                "/srv/closed/data"
            ]
        );
    }

    fn set_times(path: &Path, atime: i64, mtime: i64) {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        utimensat(
            None,
            path,
            &TimeSpec::new(atime, 0),
            &TimeSpec::new(mtime, 0),
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    #[test]
    fn only_package_file_mtimes_survive() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, "x").unwrap();
        set_times(&f, 5_000, 1_000);
        std::os::unix::fs::symlink("f", tmp.path().join("l")).unwrap();
        let md = |p: &Path| std::fs::symlink_metadata(p).unwrap();

        let kept = image_metadata(&md(&f), HostTimes::KeepMtime, 42);
        assert_eq!((kept.atime, kept.mtime, kept.ctime), (1_000, 1_000, 1_000));
        let invented = image_metadata(&md(&f), HostTimes::Timestamp, 42);
        assert_eq!((invented.atime, invented.mtime, invented.ctime), (42, 42, 42));
        for p in [tmp.path().to_path_buf(), tmp.path().join("l")] {
            let m = image_metadata(&md(&p), HostTimes::KeepMtime, 42);
            assert_eq!((m.atime, m.mtime, m.ctime), (42, 42, 42), "{}", p.display());
        }
        assert_eq!(kept.perm, md(&f).mode() & 0o7777);
    }

    #[test]
    fn modules_at_depth_keep_times_indexes_do_not() {
        assert_eq!(module_times(Path::new("")), HostTimes::Timestamp);
        assert_eq!(module_times(Path::new("modules.dep")), HostTimes::Timestamp);
        assert_eq!(module_times(Path::new("kernel")), HostTimes::Timestamp);
        assert_eq!(module_times(Path::new("kernel/fs/ext4/ext4.ko")), HostTimes::KeepMtime);
    }

    /// depmod rewriting its indexes with the same bytes, reads and new
    /// directory times leave the digest alone; a DKMS module's new mtime or
    /// an index's new content change it.
    #[test]
    fn modules_digest_follows_what_the_image_copies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("6.1.0-test");
        std::fs::create_dir_all(dir.join("kernel/fs")).unwrap();
        std::fs::write(dir.join("kernel/fs/ext4.ko"), "elf").unwrap();
        set_times(&dir.join("kernel/fs/ext4.ko"), 1_000, 1_000);
        std::fs::write(dir.join("modules.dep"), "kernel/fs/ext4.ko:\n").unwrap();
        let first = modules_tree_digest(&dir, &mut HashCache::new()).unwrap();
        assert!(first.watched.contains(&dir.join("modules.dep")));
        assert!(first.watched.contains(&dir.join("kernel")));

        // depmod again: same bytes, new inode and times; a read; a new
        // directory time.
        std::fs::write(dir.join("modules.dep.tmp"), "kernel/fs/ext4.ko:\n").unwrap();
        std::fs::rename(dir.join("modules.dep.tmp"), dir.join("modules.dep")).unwrap();
        set_times(&dir.join("modules.dep"), 9_000, 9_000);
        set_times(&dir.join("kernel/fs/ext4.ko"), 7_000, 1_000);
        std::fs::create_dir(dir.join("kernel/x")).unwrap();
        std::fs::remove_dir(dir.join("kernel/x")).unwrap();
        assert_eq!(modules_tree_digest(&dir, &mut HashCache::new()).unwrap().sha256, first.sha256);

        // A DKMS module rebuilt in place (same index content): new mtime.
        std::fs::create_dir_all(dir.join("updates/dkms")).unwrap();
        std::fs::write(dir.join("updates/dkms/vbox.ko"), "elf").unwrap();
        set_times(&dir.join("updates/dkms/vbox.ko"), 1_000, 1_000);
        let with_dkms = modules_tree_digest(&dir, &mut HashCache::new()).unwrap().sha256;
        assert_ne!(with_dkms, first.sha256);
        set_times(&dir.join("updates/dkms/vbox.ko"), 1_000, 2_000);
        let rebuilt = modules_tree_digest(&dir, &mut HashCache::new()).unwrap().sha256;
        assert_ne!(rebuilt, with_dkms);
        std::fs::write(dir.join("modules.dep"), "kernel/fs/ext4.ko: kernel/fs/jbd2.ko\n").unwrap();
        assert_ne!(modules_tree_digest(&dir, &mut HashCache::new()).unwrap().sha256, rebuilt);
        // The kernel package's own modules are its word (the kernel image's
        // hash), not walked.
        set_times(&dir.join("kernel/fs/ext4.ko"), 1_000, 3_000);
        std::fs::write(dir.join("kernel/fs/jbd2.ko"), "elf").unwrap();
        let walked = modules_tree_digest(&dir, &mut HashCache::new()).unwrap().sha256;
        std::fs::remove_file(dir.join("kernel/fs/jbd2.ko")).unwrap();
        assert_eq!(modules_tree_digest(&dir, &mut HashCache::new()).unwrap().sha256, walked);
    }

    #[test]
    fn hostfile_records_hash_content_and_say_what_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/ld.so.cache"), "cache").unwrap();
        std::os::unix::fs::symlink("ld.so.cache", tmp.path().join("etc/link")).unwrap();
        let paths: Vec<PathBuf> =
            ["/etc/ld.so.cache", "/etc/link", "/etc/gone"].iter().map(PathBuf::from).collect();
        let r = hostfile_records(tmp.path(), &paths, &mut HashCache::new());
        assert_eq!(r[0].kind, "file");
        assert_eq!(r[0].content, crate::digest::sha256_hex(b"cache"));
        assert_eq!((r[1].kind.as_str(), r[1].content.as_str()), ("symlink", "ld.so.cache"));
        assert_eq!(r[2].kind, "missing");
    }
}
