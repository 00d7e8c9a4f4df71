//! Inspecting one cache: owner, user, size, age, lock and the appliance's
//! freshness (by our manifest, through the caller's check, or else by
//! supermin's `--if-newer` date rule). Never fails: what cannot be read
//! becomes a [`CacheInfo::problem`] or an unknown state.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{cache_uid, mount_at_or_below};
use super::{check_lock_file, io_err, CacheError, APPLIANCE_DIR, DATED_OUTPUTS, LOCK_NAME};
use crate::host::users::UserDb;
use crate::output;

/// Whether a cache's appliance matches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplianceState {
    /// No `appliance.d` with kernel, initrd and root.
    Missing,
    /// Our manifest matches the host.
    Fresh,
    /// Our manifest differs from the host; one line per change.
    Stale(Vec<String>),
    /// No manifest (built by supermin); supermin's `--if-newer` date rule
    /// says the next launch reuses it.
    FreshByDate,
    /// No manifest; by the date rule the next launch rebuilds it. One line
    /// per reason.
    StaleByDate(Vec<String>),
    /// Could not decide (e.g. libguestfs's supermin.d is not installed).
    Unknown(String),
}

impl ApplianceState {
    /// Short label for tables and JSON: `missing`, `fresh`, `stale`,
    /// `fresh-by-date`, `stale-by-date`, `unknown`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            ApplianceState::Missing => "missing",
            ApplianceState::Fresh => "fresh",
            ApplianceState::Stale(_) => "stale",
            ApplianceState::FreshByDate => "fresh-by-date",
            ApplianceState::StaleByDate(_) => "stale-by-date",
            ApplianceState::Unknown(_) => "unknown",
        }
    }

    /// The reasons behind the label (changes, date comparisons, why unknown).
    pub(crate) fn details(&self) -> Vec<String> {
        match self {
            ApplianceState::Stale(v) | ApplianceState::StaleByDate(v) => v.clone(),
            ApplianceState::Unknown(why) => vec![why.clone()],
            _ => Vec::new(),
        }
    }

    /// True for both kinds of stale.
    pub fn is_stale(&self) -> bool {
        matches!(self, ApplianceState::Stale(_) | ApplianceState::StaleByDate(_))
    }
}

/// What [`inspect`] needs besides the cache path.
pub(crate) struct InspectContext<'a> {
    /// The host's users.
    pub(crate) users: &'a dyn UserDb,
    /// Inputs of supermin's date rule: libguestfs's supermin.d directory and
    /// the package database's date file (the handler's). Empty: the rule
    /// cannot be applied (no libguestfs supermin.d on the host).
    pub(crate) date_inputs: Vec<PathBuf>,
    /// Checks an `appliance.d` that holds our `manifest.toml` against the
    /// host (the caller wires `check`; kept out of here so this module does
    /// not depend on the build pipeline).
    pub(crate) manifest_check: &'a dyn Fn(&Path) -> ApplianceState,
    /// "Now", for ages.
    pub(crate) now: SystemTime,
}

/// Everything `list` shows about one cache.
#[derive(Debug, Clone)]
pub(crate) struct CacheInfo {
    /// The cache directory (base canonicalised, the entry itself not).
    pub(crate) path: PathBuf,
    /// The uid its name stands for.
    pub(crate) uid: u32,
    /// Its owner by `lstat`.
    pub(crate) owner: u32,
    /// Whether the user of `uid` exists.
    pub(crate) user: UserStatus,
    /// Why we would not trust or delete it (symlink, owner mismatch, ...).
    pub(crate) problem: Option<String>,
    /// `appliance.d` holds kernel, initrd and root.
    pub(crate) has_appliance: bool,
    /// Sum of file sizes (st_size), symlinks not followed.
    pub(crate) apparent_bytes: u64,
    /// Sum of allocated blocks (st_blocks × 512).
    pub(crate) allocated_bytes: u64,
    /// Time since the newest of: the cache dir, appliance.d and its files.
    pub(crate) age: Option<Duration>,
    /// Freshness of the appliance.
    pub(crate) state: ApplianceState,
    /// Some process holds the lock file's record lock.
    pub(crate) locked: bool,
}

/// Whether a cache's user exists, by the system's user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserStatus {
    /// The user exists; its name.
    Exists(String),
    /// The database answered "no such user".
    Gone,
    /// The lookup failed (the reason is the cache's
    /// [`CacheInfo::problem`]): the cache is never removed for that.
    Unknown,
}

impl UserStatus {
    /// The user's name, if it exists.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            UserStatus::Exists(name) => Some(name),
            _ => None,
        }
    }
}

impl CacheInfo {
    /// The user database answered that uid has no user.
    pub(crate) fn user_gone(&self) -> bool {
        self.user == UserStatus::Gone
    }
}

/// Check that `path` is a cache we may use or delete: named `.guestfs-UID`,
/// a real directory (lstat), owned by that uid. Returns the uid and the
/// directory's metadata.
pub(crate) fn check_cache_dir(path: &Path) -> Result<(u32, std::fs::Metadata), CacheError> {
    let uid = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(cache_uid)
        .ok_or_else(|| CacheError::NotACache { path: path.to_owned() })?;
    let md = std::fs::symlink_metadata(path).map_err(io_err("inspecting", path))?;
    if md.file_type().is_symlink() {
        return Err(CacheError::Unexpected { path: path.to_owned(), what: "a symlink" });
    }
    if !md.is_dir() {
        return Err(CacheError::Unexpected { path: path.to_owned(), what: "not a directory" });
    }
    if md.uid() != uid {
        return Err(CacheError::OwnerMismatch { path: path.to_owned(), uid, owner: md.uid() });
    }
    Ok((uid, md))
}

/// Inspect one cache. Never fails: what cannot be read shows up as
/// [`CacheInfo::problem`] or an unknown state.
pub(crate) fn inspect(path: &Path, ctx: &InspectContext) -> CacheInfo {
    let uid = path.file_name().and_then(|n| n.to_str()).and_then(cache_uid).unwrap_or(u32::MAX);
    let lmd = std::fs::symlink_metadata(path).ok();
    let mut info = CacheInfo {
        path: path.to_owned(),
        uid,
        owner: lmd.as_ref().map(|m| m.uid()).unwrap_or(u32::MAX),
        user: UserStatus::Unknown,
        problem: None,
        has_appliance: false,
        apparent_bytes: 0,
        allocated_bytes: 0,
        age: None,
        state: ApplianceState::Missing,
        locked: false,
    };
    match ctx.users.by_uid(uid) {
        Ok(Some(user)) => info.user = UserStatus::Exists(user.name),
        Ok(None) => info.user = UserStatus::Gone,
        Err(e) => info.problem = Some(format!("cannot tell whether its user exists: {e}")),
    }
    match check_cache_dir(path) {
        Ok((_, md)) if md.mode() & 0o022 != 0 => {
            info.problem = Some(format!(
                "mode {:04o} is group/other writable (libguestfs refuses it)",
                md.mode() & 0o7777
            ));
        }
        Ok(_) => {}
        Err(e) => {
            info.problem = Some(e.to_string());
            // Not ours to look into (a symlink could point anywhere).
            return info;
        }
    }
    if let Some(mount) = mount_at_or_below(path) {
        info.problem = Some(CacheError::MountPoint { path: path.to_owned(), mount }.to_string());
    }
    let (apparent, allocated) = tree_size(path);
    info.apparent_bytes = apparent;
    info.allocated_bytes = allocated;
    let appliance = path.join(APPLIANCE_DIR);
    let appliance_is_dir = std::fs::symlink_metadata(&appliance).is_ok_and(|m| m.is_dir());
    info.has_appliance = appliance_is_dir
        && DATED_OUTPUTS
            .iter()
            .all(|f| std::fs::symlink_metadata(appliance.join(f)).is_ok_and(|m| m.is_file()));
    info.age = newest_mtime(path).and_then(|t| ctx.now.duration_since(t).ok().or(Some(Duration::ZERO)));
    info.locked = match check_lock_file(path) {
        Ok(true) => output::is_locked(&path.join(LOCK_NAME)).unwrap_or(false),
        _ => false,
    };
    info.state = if !info.has_appliance {
        ApplianceState::Missing
    } else if appliance.join(crate::manifest::MANIFEST_NAME).is_file() {
        (ctx.manifest_check)(&appliance)
    } else if ctx.date_inputs.is_empty() {
        ApplianceState::Unknown(
            "libguestfs's supermin.d is not installed, so supermin's date rule has no inputs".into(),
        )
    } else {
        date_rule(&appliance, &ctx.date_inputs)
    };
    info
}

/// Apparent and allocated bytes of everything under `path`, not following
/// symlinks. Unreadable entries count as zero.
pub(crate) fn tree_size(path: &Path) -> (u64, u64) {
    let mut apparent = 0;
    let mut allocated = 0;
    for entry in walkdir::WalkDir::new(path).follow_links(false).same_file_system(true).into_iter().flatten()
    {
        if let Ok(md) = entry.metadata() {
            if !md.is_dir() {
                apparent += md.len();
            }
            allocated += md.blocks() * 512;
        }
    }
    (apparent, allocated)
}

/// The newest mtime among the cache dir, `appliance.d` and the files
/// directly in it (libguestfs touches the cache dir at every launch and the
/// appliance files after every supermin run).
fn newest_mtime(cache: &Path) -> Option<SystemTime> {
    let appliance = cache.join(APPLIANCE_DIR);
    let mut paths = vec![cache.to_path_buf(), appliance.clone()];
    if let Ok(rd) = std::fs::read_dir(&appliance) {
        paths.extend(rd.flatten().map(|e| e.path()));
    }
    paths.iter().filter_map(|p| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok()).max()
}

/// An `lstat` mtime as floating seconds, as supermin (OCaml `Unix.lstat`)
/// compares them.
fn mtime_f64(md: &std::fs::Metadata) -> f64 {
    md.mtime() as f64 + md.mtime_nsec() as f64 / 1e9
}

/// supermin's `--if-newer` rule (docs/supermin-compat.md, "The if-newer
/// rule"): the appliance is reused
/// iff every input date is strictly less than every output date (outputs:
/// `appliance.d` itself, kernel, root, initrd; `lstat` mtimes). A missing
/// file means a rebuild.
pub fn date_rule(appliance: &Path, inputs: &[PathBuf]) -> ApplianceState {
    let mut outputs = vec![appliance.to_path_buf()];
    outputs.extend(DATED_OUTPUTS.iter().map(|f| appliance.join(f)));
    let dated = |paths: &[PathBuf]| -> Result<Vec<(PathBuf, f64)>, String> {
        paths
            .iter()
            .map(|p| match std::fs::symlink_metadata(p) {
                Ok(md) => Ok((p.clone(), mtime_f64(&md))),
                Err(e) => Err(format!("{}: {e} (supermin rebuilds)", p.display())),
            })
            .collect()
    };
    let outs = match dated(&outputs) {
        Ok(v) => v,
        Err(why) => return ApplianceState::StaleByDate(vec![why]),
    };
    let ins = match dated(inputs) {
        Ok(v) => v,
        Err(why) => return ApplianceState::StaleByDate(vec![why]),
    };
    let Some((oldest_out, odate)) = outs.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
        return ApplianceState::Missing;
    };
    let reasons: Vec<String> = ins
        .iter()
        .filter(|(_, idate)| *idate >= *odate)
        .map(|(p, _)| {
            format!(
                "{} is not older than {} (supermin --if-newer rebuilds)",
                p.display(),
                oldest_out.display()
            )
        })
        .collect();
    if reasons.is_empty() {
        ApplianceState::FreshByDate
    } else {
        ApplianceState::StaleByDate(reasons)
    }
}

/// The host's inputs for [`date_rule`]: libguestfs's supermin.d under
/// `root` and the package database date file. Empty when libguestfs's
/// supermin.d is not installed.
pub fn host_date_inputs(root: &Path) -> Vec<PathBuf> {
    let mut inputs = crate::input::default_input_dirs(root);
    if !inputs.is_empty() {
        // supermin dates the database by one file, the handler's.
        inputs.extend(crate::package::date_file(root));
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::clean::CleanReason;
    use crate::cache::test_support::*;
    use crate::cache::{clean_reason, remove_cache, touch_outputs, CleanPolicy};
    use crate::host::users::UserTable;
    use crate::output::OutputLock;

    fn users() -> UserTable {
        UserTable::new(&[("root", 0, 0), ("svc", 1001, 1002)])
    }

    fn ctx<'a>(
        users: &'a UserTable,
        check: &'a dyn Fn(&Path) -> ApplianceState,
        inputs: Vec<PathBuf>,
    ) -> InspectContext<'a> {
        InspectContext { users, date_inputs: inputs, manifest_check: check, now: SystemTime::now() }
    }

    #[test]
    fn inspect_reports_sizes_lock_and_date_rule() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        let input = tmp.path().join("supermin.d");
        std::fs::create_dir(&input).unwrap();
        let p = UserTable::new(&[("me", uid, 0)]);
        let never = |_: &Path| ApplianceState::Unknown("not called".into());

        // Input newer than the outputs: supermin would rebuild.
        let past = SystemTime::now() - Duration::from_secs(3600);
        touch_outputs(&c.join(APPLIANCE_DIR), past).unwrap();
        let info = inspect(&c, &ctx(&p, &never, vec![input.clone()]));
        assert!(info.problem.is_none(), "{:?}", info.problem);
        assert!(info.has_appliance);
        assert_eq!(info.user, UserStatus::Exists("me".into()));
        assert!(
            matches!(&info.state, ApplianceState::StaleByDate(r) if r[0].contains("supermin.d")),
            "{:?}",
            info.state
        );
        assert_eq!(info.apparent_bytes, 3 * 5000 + 19);
        assert!(info.allocated_bytes >= 3 * 8192, "{}", info.allocated_bytes);
        assert!(!info.locked);

        // Outputs touched after the input: reused.
        touch_outputs(&c.join(APPLIANCE_DIR), SystemTime::now() + Duration::from_secs(5)).unwrap();
        let lock = OutputLock::try_acquire(&c.join(LOCK_NAME)).unwrap().unwrap();
        let info = inspect(&c, &ctx(&p, &never, vec![input.clone()]));
        assert_eq!(info.state, ApplianceState::FreshByDate);
        assert!(info.locked);
        drop(lock);

        // A manifest hands over to the caller's check.
        std::fs::write(c.join(APPLIANCE_DIR).join("manifest.toml"), b"x").unwrap();
        let fresh = |d: &Path| {
            assert!(d.ends_with(APPLIANCE_DIR));
            ApplianceState::Fresh
        };
        assert_eq!(inspect(&c, &ctx(&p, &fresh, vec![input])).state, ApplianceState::Fresh);
    }

    #[test]
    fn inspect_flags_symlinks_and_owner_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let real = fake_cache(tmp.path(), uid);
        let link = tmp.path().join(format!(".guestfs-{}", uid.wrapping_add(1)));
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let p = users();
        let never = |_: &Path| ApplianceState::Fresh;
        let info = inspect(&link, &ctx(&p, &never, vec![]));
        assert!(info.problem.as_deref().is_some_and(|m| m.contains("symlink")), "{:?}", info.problem);
        assert_eq!(info.apparent_bytes, 0, "followed the symlink");
        // A directory whose name says another uid than its owner.
        let other = tmp.path().join(format!(".guestfs-{}", uid.wrapping_add(2)));
        std::fs::create_dir(&other).unwrap();
        let info = inspect(&other, &ctx(&p, &never, vec![]));
        assert!(info.problem.as_deref().is_some_and(|m| m.contains("belongs to uid")), "{:?}", info.problem);
        assert_eq!(clean_reason(&info, &CleanPolicy::default()), None);
        assert!(remove_cache(&other, &CleanReason::UserGone, false).is_err());
        assert!(remove_cache(&link, &CleanReason::UserGone, false).is_err());
        assert!(real.join(APPLIANCE_DIR).join("root").exists());
    }

    #[test]
    fn failed_user_lookup_is_never_taken_as_user_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, _) = me();
        let c = fake_cache(tmp.path(), uid);
        let never = |_: &Path| ApplianceState::Fresh;
        let gone = inspect(&c, &ctx(&UserTable::new(&[]), &never, vec![]));
        assert_eq!(gone.user, UserStatus::Gone);
        assert_eq!(clean_reason(&gone, &CleanPolicy::default()), Some(CleanReason::UserGone));
        // The directory service is down: same cache, but it must stay.
        let down = UserTable { failing: vec![uid], ..UserTable::new(&[]) };
        let info = inspect(&c, &ctx(&down, &never, vec![]));
        assert_eq!(info.user, UserStatus::Unknown);
        assert!(
            info.problem.as_deref().is_some_and(|p| p.contains("cannot tell whether its user exists")),
            "{:?}",
            info.problem
        );
        assert_eq!(clean_reason(&info, &CleanPolicy::default()), None);
    }

    #[test]
    fn date_rule_is_strict() {
        let tmp = tempfile::tempdir().unwrap();
        let c = fake_cache(tmp.path(), 1);
        let app = c.join(APPLIANCE_DIR);
        let input = tmp.path().join("in");
        std::fs::write(&input, b"").unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        touch_outputs(&app, t).unwrap();
        nix::sys::stat::utimensat(
            None,
            input.as_path(),
            &nix::sys::time::TimeSpec::new(1_700_000_000, 0),
            &nix::sys::time::TimeSpec::new(1_700_000_000, 0),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        // Equal dates: not strictly older, so supermin rebuilds.
        assert!(date_rule(&app, std::slice::from_ref(&input)).is_stale());
        touch_outputs(&app, t + Duration::from_millis(1)).unwrap();
        assert_eq!(date_rule(&app, std::slice::from_ref(&input)), ApplianceState::FreshByDate);
        std::fs::remove_file(app.join("initrd")).unwrap();
        assert!(date_rule(&app, &[input]).is_stale());
    }
}
