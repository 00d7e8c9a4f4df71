//! Facts about this machine, one file per source: the user database
//! through NSS (`users.rs`), mounts (`mountinfo.rs`), block devices in
//! sysfs (`sysfs.rs`) and file systems through statfs (`statfs.rs`).
//!
//! Readers and parsers only: no judgement (that is `health/`'s and
//! `cache`'s) and no imports from the modules that use them. Sources
//! under /proc and /sys are read below a [`HostRoots`] so tests can pass
//! fixture trees; the user database is behind the `users::UserDb` trait
//! for the same reason.

pub(crate) mod mountinfo;
pub(crate) mod statfs;
pub(crate) mod sysfs;
pub mod users;

use std::path::PathBuf;

/// Where /proc and /sys are mounted (`/proc`, `/sys` on a real host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostRoots {
    /// The proc file system.
    pub(crate) proc: PathBuf,
    /// The sysfs file system.
    pub(crate) sys: PathBuf,
}

impl Default for HostRoots {
    fn default() -> Self {
        HostRoots { proc: PathBuf::from("/proc"), sys: PathBuf::from("/sys") }
    }
}
