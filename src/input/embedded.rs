//! The built-in minimal appliance: a tiny supermin.d whose files ship in
//! `templates/minimal/` and are compiled into the binary, for hosts without
//! libguestfs and for end-to-end tests.
//!
//! It provides a package list (bash, coreutils, util-linux, mount, libc; the
//! dependency closure is resolved later by the package module), a few
//! excludes for documentation, and a base tree holding `/init` plus the
//! directories a root file system needs. The base tree is built in code
//! rather than from a tar so no archive has to be generated or checked in.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::archive::{BaseArchive, BaseEntry, EntryKind};
use super::{BaseSource, Compression, ExcludePattern, InputFile, InputKind, Inputs};
use crate::image::files::Data;

/// The line the minimal appliance's `/init` prints on the console once the
/// root is mounted. The full line continues with ` (kernel RELEASE)`; tests
/// booting the appliance look for this prefix.
pub const MINIMAL_INIT_MARKER: &str = "guestfs-appliance: minimal appliance root mounted";

const PACKAGES: &str = include_str!("../../templates/minimal/packages");
const EXCLUDEFILES: &str = include_str!("../../templates/minimal/excludefiles");
const INIT: &str = include_str!("../../templates/minimal/init");

/// Directories every root needs, with the modes a Debian root has.
const DIRS: &[(&str, u32)] = &[
    ("/dev", 0o755),
    ("/etc", 0o755),
    ("/proc", 0o555),
    ("/root", 0o700),
    ("/run", 0o755),
    ("/sys", 0o555),
    ("/tmp", 0o1777),
    ("/var", 0o755),
];

/// The inputs of the built-in minimal appliance.
///
/// `files` lists pseudo-paths `<embedded>/packages`, `<embedded>/excludefiles`
/// and `<embedded>/init` (kind [`InputKind::BaseArchive`] with
/// [`Compression::None`]: it stands for the base tree), each with the sha256
/// of its embedded text, so the manifest fingerprint changes whenever the
/// templates do. Base entries carry no mtime: [`super::BaseMembers::unpack`]
/// stamps them with its `default_time`. Never fails: the templates are checked by tests.
pub(crate) fn embedded_minimal() -> Inputs {
    let file = |name: &str, kind: InputKind, text: &str| InputFile {
        path: PathBuf::from(format!("<embedded>/{name}")),
        kind,
        sha256: Sha256::digest(text.as_bytes()).into(),
    };
    let mut entries: Vec<BaseEntry> = DIRS
        .iter()
        .map(|&(path, perm)| BaseEntry {
            path: PathBuf::from(path),
            perm,
            uid: 0,
            gid: 0,
            mtime: None,
            kind: EntryKind::Dir,
        })
        .collect();
    entries.push(BaseEntry {
        path: PathBuf::from("/init"),
        perm: 0o755,
        uid: 0,
        gid: 0,
        mtime: None,
        kind: EntryKind::File(Data::Inline(Arc::from(INIT.as_bytes()))),
    });
    Inputs {
        files: vec![
            file("packages", InputKind::Packages, PACKAGES),
            file("excludefiles", InputKind::Excludefiles, EXCLUDEFILES),
            file("init", InputKind::BaseArchive(Compression::None), INIT),
        ],
        packages: super::split_lines(PACKAGES),
        hostfiles: Vec::new(),
        excludes: super::split_lines(EXCLUDEFILES).iter().filter_map(|l| ExcludePattern::parse(l)).collect(),
        base: vec![BaseSource::Embedded(BaseArchive { source: PathBuf::from("<embedded>/init"), entries })],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::files::{Content, FileTree, Metadata};
    use crate::test_support::tool;
    use std::path::Path;

    #[test]
    fn templates_are_well_formed() {
        let inputs = embedded_minimal();
        assert_eq!(inputs.packages, ["bash", "coreutils", "libc-bin", "libc6", "mount", "util-linux"]);
        // Every excludefiles line parsed (none silently dropped).
        assert_eq!(inputs.excludes.len(), EXCLUDEFILES.lines().count());
        assert!(inputs.excludes.iter().any(|p| p.matches(b"/usr/share/doc/bash/copyright")));
        assert!(INIT.starts_with("#!/bin/bash\n"));
        assert!(
            INIT.contains(&format!("echo \"{MINIMAL_INIT_MARKER} (kernel $(uname -r))\"")),
            "the init must print the exported marker"
        );
        assert!(INIT.contains("echo o > /proc/sysrq-trigger"));
        assert_eq!(inputs.files.len(), 3);
        assert_eq!(inputs.files[2].sha256, <[u8; 32]>::from(Sha256::digest(INIT.as_bytes())));
    }

    #[test]
    fn base_tree_has_init_and_root_dirs() {
        let mut tree = FileTree::new(Metadata::new(0o755, 0, 0, 0));
        let dir = tempfile::tempdir().unwrap();
        let mut scratch = crate::image::scratch::Scratch::create_in(dir.path()).unwrap();
        embedded_minimal().extract_base(&mut scratch, 1 << 30).unwrap().unpack(&mut tree, 1234).unwrap();
        let init = tree.node(tree.lookup(Path::new("/init")).unwrap());
        assert_eq!(init.mode(), libc::S_IFREG | 0o755);
        assert_eq!(init.meta.mtime, 1234);
        assert_eq!(init.content, Content::Regular(Data::Inline(Arc::from(INIT.as_bytes()))));
        let tmp = tree.node(tree.lookup(Path::new("/tmp")).unwrap());
        assert_eq!(tmp.mode(), libc::S_IFDIR | 0o1777);
        for d in ["/dev", "/proc", "/sys", "/run", "/root", "/etc", "/var"] {
            let id = tree.lookup(Path::new(d)).unwrap_or_else(|| panic!("{d} missing"));
            assert!(tree.node(id).content.is_dir(), "{d}");
        }
    }

    #[test]
    fn init_script_parses_with_bash() {
        let Some(bash) = tool("bash") else { return };
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("init");
        std::fs::write(&script, INIT).unwrap();
        let out = std::process::Command::new(bash).arg("-n").arg(&script).output().unwrap();
        assert!(out.status.success(), "bash -n: {}", String::from_utf8_lossy(&out.stderr));
    }
}
