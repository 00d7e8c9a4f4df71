//! Reading one input file as a stream: opened without blocking (a FIFO put
//! in place of a file is refused, never waited on), checked to be a regular
//! file, and hashed as its bytes go by, so that hashing and decompressing
//! share one read and memory does not grow with the file.
//!
//! What the bytes mean is left to `classify` and `archive`.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::InputError;

/// An open input file whose bytes are hashed as they are read.
pub(super) struct HashedFile {
    file: File,
    /// A second handle on the same open file (same offset), to hash the
    /// bytes the consumer did not read.
    tail: File,
    hasher: Rc<RefCell<Sha256>>,
}

/// The reading end of a [`HashedFile`]: hand it to a decompressor.
pub(super) struct HashingReader {
    file: File,
    hasher: Rc<RefCell<Sha256>>,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

impl HashedFile {
    /// Open `path`, which must be a regular file.
    ///
    /// Errors: [`InputError::Io`] or [`InputError::NotAFile`], naming `path`.
    pub(super) fn open(path: &Path) -> Result<HashedFile, InputError> {
        let io = |source| InputError::Io { path: path.to_owned(), source };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        if !file.metadata().map_err(io)?.is_file() {
            return Err(InputError::NotAFile { path: path.to_owned() });
        }
        let tail = file.try_clone().map_err(io)?;
        Ok(HashedFile { file, tail, hasher: Rc::new(RefCell::new(Sha256::new())) })
    }

    /// The open file (for its `fstat`).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// A reader over the file's bytes that hashes them.
    pub(super) fn reader(&self) -> io::Result<HashingReader> {
        Ok(HashingReader { file: self.file.try_clone()?, hasher: self.hasher.clone() })
    }

    /// Hash the rest of the file (whatever no reader consumed) and return
    /// the sha256 of all of it. Call once readers are dropped.
    pub(super) fn finish(&mut self) -> io::Result<[u8; 32]> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match self.tail.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            self.hasher.borrow_mut().update(&buf[..n]);
        }
        let digest = self.hasher.borrow().clone().finalize();
        Ok(digest.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_read_and_unread_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &content).unwrap();
        let mut f = HashedFile::open(&p).unwrap();
        let mut head = [0u8; 1000];
        f.reader().unwrap().read_exact(&mut head).unwrap();
        assert_eq!(f.finish().unwrap(), <[u8; 32]>::from(Sha256::digest(&content)));
    }

    #[test]
    fn fifos_and_directories_are_not_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = HashedFile::open(&fifo).err().unwrap().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(HashedFile::open(dir.path()).is_err());
    }
}
