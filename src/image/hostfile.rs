//! Opening a host file whose bytes go into an image, and deciding how to
//! copy them.
//!
//! Most files are copied later, by size, from their data regions. Files on
//! pseudo file systems cannot be: sysfs reports 4096 bytes for a 2-byte
//! attribute and procfs reports 0 for everything, while `read` returns the
//! real content (supermin streams until end of file and sets the size to
//! what it read: docs/supermin-compat.md, "Writing one file"). Those are
//! read here, once, at most [`PSEUDO_MAX`] bytes. Where the bytes go is left
//! to the writers.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::statfs::{self, FsType};

/// Most bytes read from one pseudo-file; a larger one (`/proc/kcore`,
/// `/sys/kernel/btf/vmlinux`) is refused rather than read without bound.
pub(crate) const PSEUDO_MAX: u64 = 16 << 20;

/// How a host file's content is to be taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HostData {
    /// A regular file whose `stat` size is its content: copy it later.
    Regular,
    /// A pseudo-file's content, as `read` returned it.
    Read(Vec<u8>),
}

/// File systems whose files' sizes say nothing about their content.
const PSEUDO_FS: &[FsType] = &[
    statfs::PROC_SUPER_MAGIC,
    statfs::SYSFS_MAGIC,
    statfs::DEBUGFS_MAGIC,
    statfs::TRACEFS_MAGIC,
    statfs::SECURITYFS_MAGIC,
    statfs::CGROUP_SUPER_MAGIC,
    statfs::CGROUP2_SUPER_MAGIC,
    statfs::BPF_FS_MAGIC,
    statfs::SELINUX_MAGIC,
    statfs::SMACK_MAGIC,
];

/// Whether each file system met so far, by device number, is a pseudo
/// file system: one `fstatfs` per file system instead of one per file (a
/// build probes some ten thousand files on two or three).
#[derive(Default)]
pub(crate) struct PseudoByDevice(HashMap<u64, bool>);

/// Open `path` (without blocking: a FIFO swapped in is refused, not waited
/// on), check it is a regular file, and read it now if it lives on a pseudo
/// file system.
///
/// # Errors
/// The OS error; `InvalidInput` when it is not a regular file, or is a
/// pseudo-file longer than [`PSEUDO_MAX`].
pub(crate) fn probe(path: &Path, known: &mut PseudoByDevice) -> io::Result<HostData> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let pseudo = match known.0.get(&md.dev()) {
        Some(&pseudo) => pseudo,
        None => {
            let pseudo = PSEUDO_FS.contains(&statfs::fstatfs(&file)?.filesystem_type());
            known.0.insert(md.dev(), pseudo);
            pseudo
        }
    };
    if pseudo {
        return read_pseudo(file).map(HostData::Read);
    }
    Ok(HostData::Regular)
}

/// [`probe`]'s answers made ahead of the image writer, by host path: a
/// build probes its host files while the tree is composed (a serial
/// stretch, with a core to spare), and the writer probes only the files
/// it finds no answer for here.
#[derive(Default)]
pub(crate) struct Probed(HashMap<PathBuf, io::Result<HostData>>);

impl Probed {
    /// [`probe`] every one of `paths`, on all cores: four system calls per
    /// file for some ten thousand files, each independent of the others.
    /// A share whose thread panicked is left out (its files are probed
    /// again by whoever asks).
    pub(crate) fn probe_all(paths: &[PathBuf]) -> Probed {
        let shares = crate::cores::map_shares(paths, |part| {
            let mut known = PseudoByDevice::default();
            part.iter().map(|path| probe(path, &mut known)).collect::<Vec<_>>()
        });
        let mut answers = HashMap::with_capacity(paths.len());
        for (part, probes) in shares {
            answers.extend(part.iter().cloned().zip(probes.into_iter().flatten()));
        }
        Probed(answers)
    }

    /// The answer for `path`, if it was probed (given out once).
    pub(crate) fn take(&mut self, path: &Path) -> Option<io::Result<HostData>> {
        self.0.remove(path)
    }
}

fn read_pseudo(file: File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(PSEUDO_MAX + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > PSEUDO_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pseudo-file of more than {} MiB", PSEUDO_MAX >> 20),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_and_sysfs_are_read_regular_files_are_not() {
        // One answer per device, remembered across files and reused.
        let mut known = PseudoByDevice::default();
        // procfs: stat size 0, content "Linux\n".
        assert_eq!(
            probe(Path::new("/proc/sys/kernel/ostype"), &mut known).unwrap(),
            HostData::Read(b"Linux\n".to_vec())
        );
        // sysfs: stat size 4096, content much shorter.
        let online = Path::new("/sys/devices/system/cpu/online");
        if online.exists() {
            let HostData::Read(bytes) = probe(online, &mut known).unwrap() else { panic!("not read") };
            assert!(bytes.len() < 4096 && bytes.ends_with(b"\n"), "{bytes:?}");
            assert_eq!(bytes, std::fs::read(online).unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(probe(&f, &mut known).unwrap(), HostData::Regular);
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            probe(&fifo, &mut PseudoByDevice::default()).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn probed_ahead_answers_each_path_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let gone = dir.path().join("gone");
        let mut probed = Probed::probe_all(&[file.clone(), gone.clone(), PathBuf::from("/proc/self/stat")]);
        assert_eq!(probed.take(&file).unwrap().unwrap(), HostData::Regular);
        assert!(probed.take(&file).is_none(), "an answer is given out once");
        assert_eq!(probed.take(&gone).unwrap().unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(
            matches!(probed.take(Path::new("/proc/self/stat")), Some(Ok(HostData::Read(b))) if !b.is_empty())
        );
        assert!(probed.take(dir.path()).is_none(), "never asked for");
    }
}
