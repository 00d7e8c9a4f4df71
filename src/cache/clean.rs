//! Cleaning caches: which ones a policy removes (`--older-than`,
//! `--stale`, users that are gone) and removing them safely, through
//! pinned directory fds and under the cache's lock.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{cache_uid, mount_at_or_below, tree_size, CacheInfo};
use super::{check_lock_file_in, ensure_lock_file, open_cache, CacheError, APPLIANCE_DIR, LOCK_NAME};
use crate::output::{self, OutputError, OutputLock};
use crate::safefs::{PinnedDir, SafeFsError};

/// Parse a duration: one or more `<number><unit>` with unit `s`, `m`, `h`,
/// `d` or `w`, e.g. `30d`, `12h`, `90m`, `2w`, `45s`, `1w2d`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, CacheError> {
    let bad = || CacheError::BadDuration { text: text.to_string() };
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A duration for people: the largest unit that fits, e.g. `3d`, `5h`.
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 7 * 86_400 * 2 => format!("{}w", s / (7 * 86_400)),
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Which caches `clean` removes.
#[derive(Debug, Clone, Default)]
pub(crate) struct CleanPolicy {
    /// Remove caches whose age exceeds this.
    pub(crate) older_than: Option<Duration>,
    /// Remove stale appliances (the `appliance.d` only).
    pub(crate) stale: bool,
    /// Only caches of these uids (`None`: all).
    pub(crate) uids: Option<Vec<u32>>,
}

/// Why a cache is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CleanReason {
    /// Its user no longer exists (always removed).
    UserGone,
    /// Older than `--older-than`.
    Old(Duration),
    /// The appliance is stale (only `appliance.d` goes).
    Stale,
}

impl std::fmt::Display for CleanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CleanReason::UserGone => f.write_str("user gone"),
            CleanReason::Old(age) => write!(f, "unused for {}", human_duration(*age)),
            CleanReason::Stale => f.write_str("stale appliance"),
        }
    }
}

impl CleanReason {
    /// Whether the whole `.guestfs-UID` goes (else only the appliance).
    pub(crate) fn removes_whole_cache(&self) -> bool {
        !matches!(self, CleanReason::Stale)
    }
}

/// Decide whether `policy` removes `info`, and why. Caches with a
/// [`CacheInfo::problem`] are never chosen.
pub(crate) fn clean_reason(info: &CacheInfo, policy: &CleanPolicy) -> Option<CleanReason> {
    if info.problem.is_some() {
        return None;
    }
    if policy.uids.as_ref().is_some_and(|u| !u.contains(&info.uid)) {
        return None;
    }
    if info.user_gone() {
        return Some(CleanReason::UserGone);
    }
    if let (Some(limit), Some(age)) = (policy.older_than, info.age) {
        if age > limit {
            return Some(CleanReason::Old(age));
        }
    }
    if policy.stale && info.has_appliance && info.state.is_stale() {
        return Some(CleanReason::Stale);
    }
    None
}

/// What happened to one cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CleanOutcome {
    /// Removed; bytes freed (allocated).
    Removed(u64),
    /// `--dry-run`: would have freed this many bytes.
    WouldRemove(u64),
    /// Its lock is held (a supermin or build is running): left alone.
    InUse,
    /// It was already gone (another `cache clean` got there first).
    Gone,
}

/// Remove what `reason` says from the cache at `path`, holding its lock.
///
/// Re-checks the directory first (name, real directory, owner = uid in
/// the name, no mount point at or below it) and works through pinned
/// directory fds from then on: in a sticky world-writable base such as
/// /var/tmp the cache's owner could rename it and put a symlink to /etc in
/// its place between our check and the removals. Nothing is followed;
/// symlinks inside are unlinked. For a stale appliance only `appliance.d`,
/// supermin's transient `appliance.d.XXXXXXXX`, our dead staging
/// directories and the stamp go. The lock file is kept (owned by the user)
/// unless the whole cache goes. Losing a race to another cleaner is
/// [`CleanOutcome::Gone`], not an error.
///
/// Errors: the checks fail, the lock cannot be opened, a removal fails.
pub(crate) fn remove_cache(
    path: &Path,
    reason: &CleanReason,
    dry_run: bool,
) -> Result<CleanOutcome, CacheError> {
    let not_cache = || CacheError::NotACache { path: path.to_owned() };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(not_cache)?;
    let uid = cache_uid(name).ok_or_else(not_cache)?;
    let (parent, _) = crate::paths::split(path).ok_or_else(not_cache)?;
    let base = PinnedDir::open(parent)?;
    let gone = |e: &CacheError| match e {
        CacheError::Fs(SafeFsError::Io { source, .. }) | CacheError::Io { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
        }
        CacheError::Lock(OutputError::Fs(SafeFsError::Io { source, .. })) => {
            source.kind() == io::ErrorKind::NotFound
        }
        _ => false,
    };
    let cache = match open_cache(&base, name, uid) {
        Ok(c) => c,
        Err(e) if gone(&e) => return Ok(CleanOutcome::Gone),
        Err(e) => return Err(e),
    };
    match remove_pinned(&base, name, &cache, reason, dry_run) {
        Err(e) if gone(&e) => Ok(CleanOutcome::Gone),
        other => other,
    }
}

fn remove_pinned(
    base: &PinnedDir,
    name: &str,
    cache: &PinnedDir,
    reason: &CleanReason,
    dry_run: bool,
) -> Result<CleanOutcome, CacheError> {
    let st = cache.stat_self()?;
    if let Some(mount) = mount_at_or_below(cache.path()) {
        return Err(CacheError::MountPoint { path: cache.path().to_owned(), mount });
    }
    let targets = removal_targets(cache, reason)?;
    let freed: u64 = targets.iter().map(|t| tree_size(&cache.child(t)).1).sum::<u64>()
        + if reason.removes_whole_cache() { st.st_blocks as u64 * 512 } else { 0 };
    let lock_exists = check_lock_file_in(cache)?;
    let lock_name = std::ffi::OsStr::new(LOCK_NAME);
    if dry_run {
        let held = lock_exists && output::is_locked_in(cache, lock_name)?;
        return Ok(if held { CleanOutcome::InUse } else { CleanOutcome::WouldRemove(freed) });
    }
    ensure_lock_file(cache, st.st_uid, st.st_gid)?;
    let Some(lock) = OutputLock::try_acquire_in(cache, lock_name)? else {
        return Ok(CleanOutcome::InUse);
    };
    // Under the lock no supermin can be writing here; re-list in case one
    // finished just before we took it.
    for t in removal_targets(cache, reason)? {
        cache.remove_tree(&t)?;
    }
    if reason.removes_whole_cache() {
        // Unlink the lock file while still holding it, then the directory
        // (rmdir never follows a symlink): a supermin that starts now finds
        // no cache and makes a new one. Another cleaner that opened the
        // cache before we unlinked the lock may have made a new one: it
        // finishes the job, so a non-empty or vanished directory is fine.
        cache.remove_file(LOCK_NAME)?;
        match nix::unistd::unlinkat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(base))),
            name,
            nix::unistd::UnlinkatFlags::RemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTEMPTY) => {}
            Err(e) => {
                return Err(CacheError::Io { action: "removing", path: base.child(name), source: e.into() })
            }
        }
    } else {
        output::clean_leftovers_in(cache, std::ffi::OsStr::new(APPLIANCE_DIR))?;
    }
    drop(lock);
    Ok(CleanOutcome::Removed(freed))
}

/// The entries `reason` removes, excluding the lock file.
fn removal_targets(cache: &PinnedDir, reason: &CleanReason) -> Result<Vec<std::ffi::OsString>, CacheError> {
    // `check`'s stat-level stamp and remembered digests describe the
    // appliance (and the host it was checked on), so they go with it.
    let beside = |path: PathBuf| path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    let stamp_name = beside(crate::stamp::stamp_path(&cache.child(APPLIANCE_DIR)));
    let hashes_name = beside(crate::hashcache::HashCache::path(&cache.child(APPLIANCE_DIR)));
    let mut targets: Vec<_> = cache
        .list()?
        .into_iter()
        .filter(|entry| {
            let name = entry.to_string_lossy();
            if reason.removes_whole_cache() {
                name != LOCK_NAME
            } else {
                name == APPLIANCE_DIR
                    || *entry == stamp_name
                    || *entry == hashes_name
                    || is_supermin_transient(&name)
            }
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// supermin's transient `appliance.d.XXXXXXXX` (eight of `[a-z0-9]`,
/// docs/supermin-compat.md, "Output swap").
fn is_supermin_transient(name: &str) -> bool {
    name.strip_prefix("appliance.d.")
        .is_some_and(|r| r.len() == 8 && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::*;
    use crate::cache::{ApplianceState, UserStatus};

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(90 * 60));
        assert_eq!(parse_duration("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("1w2d").unwrap(), Duration::from_secs(9 * 86_400));
        for bad in ["", "30", "d", "3x", "-1d", "1.5d", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400 + 5)), "3d");
        assert_eq!(human_duration(Duration::from_secs(40)), "40s");
        assert_eq!(human_duration(Duration::from_secs(30 * 86_400)), "4w");
    }

    #[test]
    fn clean_policy_picks_reasons() {
        let base = CacheInfo {
            path: "/var/tmp/.guestfs-1001".into(),
            uid: 1001,
            owner: 1001,
            user: UserStatus::Exists("svc".into()),
            problem: None,
            has_appliance: true,
            apparent_bytes: 0,
            allocated_bytes: 0,
            age: Some(Duration::from_secs(10 * 86_400)),
            state: ApplianceState::StaleByDate(vec!["x".into()]),
            locked: false,
        };
        let none = CleanPolicy::default();
        assert_eq!(clean_reason(&base, &none), None);
        let gone = CacheInfo { user: UserStatus::Gone, ..base.clone() };
        assert_eq!(clean_reason(&gone, &none), Some(CleanReason::UserGone));
        let old = CleanPolicy { older_than: Some(Duration::from_secs(86_400)), ..Default::default() };
        assert!(matches!(clean_reason(&base, &old), Some(CleanReason::Old(_))));
        let young = CleanPolicy { older_than: Some(Duration::from_secs(30 * 86_400)), ..Default::default() };
        assert_eq!(clean_reason(&base, &young), None);
        let stale = CleanPolicy { stale: true, ..Default::default() };
        assert_eq!(clean_reason(&base, &stale), Some(CleanReason::Stale));
        let fresh = CacheInfo { state: ApplianceState::Fresh, ..base.clone() };
        assert_eq!(clean_reason(&fresh, &stale), None);
        let other_user = CleanPolicy { uids: Some(vec![7]), ..stale };
        assert_eq!(clean_reason(&base, &other_user), None);
    }

    #[test]
    fn remove_whole_cache_respects_lock_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        // A symlink inside pointing outside must be unlinked, not followed.
        let outside = tmp.path().join("precious");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        std::os::unix::fs::symlink(&outside, c.join("evil")).unwrap();

        let held = OutputLock::try_acquire(&c.join(LOCK_NAME)).unwrap().unwrap();
        assert_eq!(remove_cache(&c, &CleanReason::UserGone, false).unwrap(), CleanOutcome::InUse);
        assert_eq!(remove_cache(&c, &CleanReason::UserGone, true).unwrap(), CleanOutcome::InUse);
        assert!(c.join(APPLIANCE_DIR).join("root").exists());
        drop(held);

        match remove_cache(&c, &CleanReason::UserGone, true).unwrap() {
            CleanOutcome::WouldRemove(n) => assert!(n >= 3 * 4096, "{n}"),
            other => panic!("{other:?}"),
        }
        assert!(c.exists());
        assert!(matches!(remove_cache(&c, &CleanReason::UserGone, false).unwrap(), CleanOutcome::Removed(_)));
        assert!(!c.exists());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn removal_works_on_the_checked_directory_not_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        let base = PinnedDir::open(tmp.path()).unwrap();
        let name = c.file_name().unwrap().to_str().unwrap().to_owned();
        let pinned = open_cache(&base, &name, uid).unwrap();
        // The owner swaps the name for a symlink to a victim directory.
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("passwd"), b"keep").unwrap();
        let moved = tmp.path().join("moved");
        std::fs::rename(&c, &moved).unwrap();
        std::os::unix::fs::symlink(&victim, &c).unwrap();
        let targets = removal_targets(&pinned, &CleanReason::UserGone).unwrap();
        assert!(targets.iter().any(|t| t == APPLIANCE_DIR), "{targets:?}");
        for t in &targets {
            pinned.remove_tree(t).unwrap();
        }
        assert!(victim.join("passwd").is_file(), "followed the swapped-in symlink");
        assert!(!moved.join(APPLIANCE_DIR).exists());
        assert!(open_cache(&base, &name, uid).is_err());
    }

    #[test]
    fn a_cache_that_vanished_is_gone_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        std::fs::remove_dir_all(&c).unwrap();
        assert_eq!(remove_cache(&c, &CleanReason::UserGone, false).unwrap(), CleanOutcome::Gone);
    }

    #[test]
    fn remove_stale_keeps_cache_and_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        std::fs::create_dir(c.join("appliance.d.ab12cd34")).unwrap();
        std::fs::create_dir(c.join("appliance.d.keepme-not-transient")).unwrap();
        std::fs::write(c.join(LOCK_NAME), b"").unwrap();
        std::fs::write(c.join(".appliance.d.stamp"), b"{}").unwrap();
        std::fs::write(c.join(".appliance.d.hashes"), b"{}").unwrap();
        assert!(
            matches!(remove_cache(&c, &CleanReason::Stale, false).unwrap(), CleanOutcome::Removed(n) if n > 0)
        );
        assert!(!c.join(".appliance.d.hashes").exists());
        assert!(!c.join(APPLIANCE_DIR).exists());
        assert!(!c.join("appliance.d.ab12cd34").exists());
        assert!(!c.join(".appliance.d.stamp").exists());
        assert!(c.join("appliance.d.keepme-not-transient").exists());
        assert!(c.join(LOCK_NAME).is_file());
        assert!(c.join("qemu-1-2.stat").is_file());
    }
}
