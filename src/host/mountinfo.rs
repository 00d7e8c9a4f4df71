//! /proc/self/mountinfo (proc(5)): which mount holds a path, with its
//! device, file system type and source.
//!
//! Parsing and lookup only; callers read the file (through
//! [`crate::bounded`] where its size matters) and decide what a mount
//! means: `health/location.rs` classifies storage, `cache` refuses to
//! delete across a mount point.

use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// Device major.
    pub(crate) major: u32,
    /// Device minor.
    pub(crate) minor: u32,
    /// Mount point (octal escapes decoded).
    pub(crate) mount_point: PathBuf,
    /// File system type as the kernel names it (`ext4`, `fuse.sshfs`).
    pub(crate) fs_type: String,
    /// Mount source.
    pub(crate) source: String,
}

/// Parse mountinfo text (proc(5)); malformed lines are skipped.
pub(crate) fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let (major, minor) = f.get(2)?.split_once(':')?;
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                fs_type: (*r.first()?).to_string(),
                source: unescape(r.get(1).unwrap_or(&"")),
            })
        })
        .collect()
}

/// Decode mountinfo's `\040`-style octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path`: the longest mount point that is a prefix of
/// it, preferring entries whose device is `dev`; among equals the last
/// (a later mount hides an earlier one on the same point).
pub(crate) fn mount_for<'a>(
    mounts: &'a [MountInfo],
    path: &Path,
    dev: Option<(u32, u32)>,
) -> Option<&'a MountInfo> {
    let matching = |m: &&MountInfo| path.starts_with(&m.mount_point);
    let best = |it: &mut dyn Iterator<Item = &'a MountInfo>| {
        let mut best: Option<&'a MountInfo> = None;
        for m in it {
            if best.is_none_or(|b| m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len()) {
                best = Some(m);
            }
        }
        best
    };
    if let Some(dev) = dev {
        let by_dev = best(&mut mounts.iter().filter(matching).filter(|m| (m.major, m.minor) == dev));
        if by_dev.is_some() {
            return by_dev;
        }
    }
    best(&mut mounts.iter().filter(matching))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/health")
    }

    #[test]
    fn mountinfo_parses_escapes_and_picks_longest_then_last() {
        let text = std::fs::read_to_string(fixtures().join("proc/self/mountinfo")).unwrap();
        let mounts = parse(&text);
        assert!(mounts.len() >= 6, "{mounts:?}");
        let m = mount_for(&mounts, Path::new("/var/tmp/x"), None).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/var/tmp"));
        assert_eq!(m.fs_type, "xfs");
        // /dev/shm is mounted twice; the later mount is the visible one.
        let m = mount_for(&mounts, Path::new("/dev/shm/appliance"), None).unwrap();
        assert_eq!((m.major, m.minor), (0, 27));
        let m = mount_for(&mounts, Path::new("/mnt/my disk/cache"), None).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/mnt/my disk"));
        assert_eq!(m.fs_type, "fuse.sshfs");
        let m = mount_for(&mounts, Path::new("/opt/u"), None).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/"));
        // A device match wins over a longer path match (bind mounts).
        let m = mount_for(&mounts, Path::new("/var/tmp/x"), Some((254, 0))).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/"));
    }
}
