//! Finding the root disk: scan `/sys/block` until the disk named by
//! `root=` shows up, with a bounded, growing wait.
//!
//! supermin's init waits ~524 s before giving up and then carries on with a
//! stale device number (docs/supermin-compat.md, "The init", step 4); here
//! the wait is bounded by
//! [`retry_delays`] (about a minute) and ends in a clear error instead. The
//! caller owns mounting; this module only returns the device number.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::cmdline::RootSpec;

/// Offset of `s_uuid` in an ext2 file system starting at byte 0 of the disk
/// (superblock at 1024 + field offset 0x68).
const EXT2_UUID_OFFSET: u64 = 0x468;

/// Temporary block node used to read a candidate disk's superblock. Created
/// by mknod rather than taken from devtmpfs, whose nodes appear
/// asynchronously and may be missing if devtmpfs could not be mounted.
const PROBE_NODE: &str = "/dev/.guestfs-probe";

/// How long to wait before printing the "still waiting" hint.
const HINT_AFTER: Duration = Duration::from_secs(5);

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Parses the `MAJOR:MINOR\n` content of a sysfs `dev` file.
pub fn parse_dev_numbers(text: &str) -> Option<DevNum> {
    let (major, minor) = text.trim().split_once(':')?;
    Some(DevNum { major: major.parse().ok()?, minor: minor.parse().ok()? })
}

/// The sleeps between scans: 1 ms doubling up to 1 s, then 1 s steps, about
/// 60 s in all. Short first steps keep a fast boot fast (the disk is usually
/// there at the first or second look); the cap keeps the wait bounded.
pub fn retry_delays() -> Vec<Duration> {
    let mut delays = Vec::new();
    let mut delay = Duration::from_millis(1);
    let mut total = Duration::ZERO;
    while total < Duration::from_secs(60) {
        delays.push(delay);
        total += delay;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    delays
}

/// Why the root disk was not found.
#[derive(Debug)]
pub struct NotFound {
    /// How long we waited.
    pub waited: Duration,
    /// The whole disks that were present at the last scan, as `name (major:minor)`.
    pub disks: Vec<String>,
}

/// Scans until the disk of `spec` appears, calling `hint` once (with the
/// disks seen so far) if that takes longer than a few seconds.
///
/// # Errors
/// [`NotFound`] after [`retry_delays`] is exhausted.
pub fn wait_for_root(
    spec: &RootSpec,
    mut hint: impl FnMut(Duration, &[String]),
) -> Result<(String, DevNum), NotFound> {
    let start = Instant::now();
    let mut hinted = false;
    let mut disks = Vec::new();
    for delay in retry_delays() {
        let (found, seen) = scan(spec);
        if let Some(found) = found {
            return Ok(found);
        }
        disks = seen;
        if !hinted && start.elapsed() >= HINT_AFTER {
            hinted = true;
            hint(start.elapsed(), &disks);
        }
        std::thread::sleep(delay);
    }
    Err(NotFound { waited: start.elapsed(), disks })
}

/// One pass over `/sys/block`: the matching disk, if any, and every disk
/// seen (for messages).
fn scan(spec: &RootSpec) -> (Option<(String, DevNum)>, Vec<String>) {
    let mut seen = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return (None, seen);
    };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names.into_iter().filter(|n| !n.starts_with('.')) {
        let Some(dev) = std::fs::read_to_string(format!("/sys/block/{name}/dev"))
            .ok()
            .as_deref()
            .and_then(parse_dev_numbers)
        else {
            continue;
        };
        seen.push(format!("{name} ({dev})"));
        let matches = match spec {
            RootSpec::Device(want) => *want == name,
            RootSpec::Uuid(uuid) => read_uuid(dev).is_some_and(|got| got == *uuid),
        };
        if matches {
            return (Some((name, dev)), seen);
        }
    }
    (None, seen)
}

/// Reads the 16 bytes at [`EXT2_UUID_OFFSET`] of the disk `dev`. `None` on
/// any error: a disk that cannot be read (empty CD-ROM, …) is not the root.
fn read_uuid(dev: DevNum) -> Option<[u8; 16]> {
    make_block_node(PROBE_NODE, dev).ok()?;
    let uuid = File::open(PROBE_NODE).ok().and_then(|disk| {
        let mut buf = [0u8; 16];
        disk.read_exact_at(&mut buf, EXT2_UUID_OFFSET).ok().map(|()| buf)
    });
    let _ = std::fs::remove_file(PROBE_NODE);
    uuid
}

/// Creates (or replaces) the block special file `path` for `dev`, mode 0600.
///
/// # Errors
/// The errno of `mknod`.
pub fn make_block_node(path: &str, dev: DevNum) -> Result<(), Errno> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)),
    }
    mknod(path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), makedev(dev.major, dev.minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers() {
        assert_eq!(parse_dev_numbers("8:16\n"), Some(DevNum { major: 8, minor: 16 }));
        assert_eq!(parse_dev_numbers("259:0"), Some(DevNum { major: 259, minor: 0 }));
        assert_eq!(parse_dev_numbers("8"), None);
        assert_eq!(parse_dev_numbers("a:b"), None);
        assert_eq!(DevNum { major: 8, minor: 0 }.to_string(), "8:0");
    }

    #[test]
    fn delays_grow_then_cap_and_are_bounded() {
        let delays = retry_delays();
        assert_eq!(delays[0], Duration::from_millis(1));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "delays must not shrink");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        let total: Duration = delays.iter().sum();
        assert!(total >= Duration::from_secs(60) && total < Duration::from_secs(62), "{total:?}");
    }
}
