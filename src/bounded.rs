//! Reading a file we parse, at a bounded cost: the one place that opens
//! configuration, manifests, stamps, package databases, kernel indexes and
//! the `/proc` and `/sys` files the health report reads.
//!
//! Anything else may sit at those paths: `--config /dev/zero`, a stamp
//! replaced by a FIFO or a symlink to a device, a multi-gigabyte file in a
//! directory others can write. So a file is opened with `O_NONBLOCK` (a
//! FIFO is refused, never waited on; the flag means nothing for regular
//! files), checked with `fstat` to be a regular file (`/proc` and `/sys`
//! files are), and read up to a limit its caller chooses for what it
//! expects; one byte more is an error naming the limit, never an
//! allocation that grows with the input.
//!
//! Errors are `std::io::Error`s (kinds `InvalidInput` and `FileTooLarge`)
//! so that each caller's own error type adds the path and what it was
//! reading, as for any other read failure.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Configuration files, manifests: hand-sized text.
pub(crate) const TEXT_MAX: u64 = 16 << 20;

/// Package databases (the dpkg status file of a large host is tens of MB)
/// and their per-package file lists.
pub(crate) const DATABASE_MAX: u64 = 256 << 20;

/// Small kernel interface files (`/proc`, `/sys`) and indexes.
pub(crate) const PROC_MAX: u64 = 16 << 20;

/// Open `path` for reading without blocking on it, and check that it is a
/// regular file.
///
/// # Errors
/// The OS error of `open`/`fstat`; `InvalidInput` ("not a regular file (a
/// FIFO)") for anything but a regular file.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a regular file ({what})")))
}

/// The bytes of the regular file `path`, at most `limit` of them.
///
/// # Errors
/// As [`open_regular`]; `FileTooLarge` when the file holds more than
/// `limit` bytes; read errors.
pub(crate) fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "larger than {}, more than such a file can sensibly hold",
                crate::printer::human_bytes(limit)
            ),
        ));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
///
/// # Errors
/// As [`read`]; `InvalidData` when the bytes are not UTF-8.
pub(crate) fn read_to_string(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_up_to_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read(&p, 5).unwrap(), b"12345");
        let err = read(&p, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "{err}");
        assert!(
            err.to_string().contains("larger than 4 B") || err.to_string().contains("larger than"),
            "{err}"
        );
    }

    /// Issue 8, item 14: devices, FIFOs and directories are refused at
    /// once (a FIFO without a writer would block a plain open forever).
    #[test]
    fn issue8_devices_fifos_and_directories_are_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for (path, what) in [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/zero"), "character device"),
            (tmp.path(), "directory"),
        ] {
            let err = read(path, 1 << 20).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{}: {err}", path.display());
            assert!(err.to_string().contains(what), "{}: {err}", path.display());
        }
    }

    #[test]
    fn proc_files_are_regular() {
        let text = read_to_string(Path::new("/proc/self/mountinfo"), PROC_MAX).unwrap();
        assert!(text.contains(" / "), "{text}");
    }
}
