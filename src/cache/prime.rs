//! `cache prime`: build the appliance a user's libguestfs needs into their
//! cache (`.guestfs-UID/appliance.d`) and date its outputs so supermin's
//! `--if-newer` reuses it at their next launch.
//!
//! The cache and its lock file are made as libguestfs would accept them, and
//! everything in the cache is done through pinned directory fds, created
//! exclusively, owners set on fds: the user owns the directory, so every
//! name in it is theirs to change, and they cannot steer us through a link
//! (issue 8; tests/integration/hardening.rs).
//!
//! One lock, the cache's `lock` (the file supermin's `--lock` takes), is
//! held from before the freshness check to after the outputs are dated: a
//! supermin run or libguestfs launch in between would see undated outputs
//! and rebuild (issue 9).
//!
//! It leaves the build itself to the pipeline (`crate::build`) and
//! printing to `commands::cache`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use super::{date_rule, host_date_inputs, libguestfs_base, ApplianceState, APPLIANCE_DIR, LOCK_NAME};
use super::{ensure_lock_file, open_cache, CacheError, CACHE_PREFIX, DATED_OUTPUTS};
use crate::build::{self, ApplianceSpec, IfNeeded, PublishOptions, SourceOverrides};
use crate::config::Config;
use crate::host::users::{SystemUsers, UserDb};
use crate::output::{self, OutputLock};
use crate::printer::Printer;
use crate::safefs::{Access, PinnedDir, SafeFsError};

/// What `cache prime` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PrimeRequest {
    /// Whose cache: a user name or uid. `None`: the caller's (effective uid).
    pub user: Option<String>,
    /// The cache base. `None`: libguestfs's (`$LIBGUESTFS_CACHEDIR`, else
    /// `$TMPDIR`, else `/var/tmp`).
    pub cachedir: Option<PathBuf>,
    /// Rebuild even when the appliance is fresh.
    pub force: bool,
}

/// What [`prime`] did.
#[derive(Debug, Clone)]
pub struct Primed {
    /// The primed `appliance.d`.
    pub(crate) appliance: PathBuf,
    /// The cache's user: their name, or the uid as text if they have none.
    pub(crate) user: String,
    /// Their uid.
    pub(crate) uid: u32,
    /// The build's summary line (with why it was needed), or
    /// `already fresh`.
    pub outcome: String,
    /// Why libguestfs may still not reuse the appliance, if it may not.
    pub(crate) warning: Option<String>,
}

/// Prime the cache `req` names: prepare it, build its appliance if it is
/// missing or stale (always with `force`), and date the outputs, all under
/// the cache's lock.
///
/// Errors: the user is unknown; priming another user's cache without root;
/// the cache or its `appliance.d` cannot be trusted (see
/// [`prepare_cache_dir`]); the lock times out; the build fails.
pub(crate) fn prime(req: &PrimeRequest, config: &Config, printer: &Printer) -> Result<Primed> {
    prime_observed(req, config, printer, &mut |_| {})
}

/// [`prime`], calling `after_build(lock file)` once the appliance is built
/// (or found fresh) and before its outputs are dated, while the lock is
/// held. A seam for tests: they check from another process that the lock
/// is still taken at that point (tests/integration/cache.rs,
/// `issue9_prime_holds_the_lock_from_build_to_date`). Production code
/// calls [`prime`].
pub fn prime_observed(
    req: &PrimeRequest,
    config: &Config,
    printer: &Printer,
    after_build: &mut dyn FnMut(&Path),
) -> Result<Primed> {
    let users = SystemUsers;
    let euid = nix::unistd::geteuid();
    let (uid, gid, name) = match &req.user {
        Some(spec) => {
            let uid = users.resolve_uid(spec)?;
            let e = users.require_uid(uid)?;
            (uid, e.gid, e.name)
        }
        None => {
            let uid = euid.as_raw();
            match users.by_uid(uid)? {
                Some(e) => (uid, e.gid, e.name),
                None => (uid, nix::unistd::getegid().as_raw(), uid.to_string()),
            }
        }
    };
    if !euid.is_root() && uid != euid.as_raw() {
        bail!("priming the cache of {name} (uid {uid}) needs root, to give the files to that user; run it as root");
    }
    let base = match &req.cachedir {
        Some(d) => d.clone(),
        None => libguestfs_base(
            std::env::var_os("LIBGUESTFS_CACHEDIR").map(PathBuf::from),
            std::env::var_os("TMPDIR").map(PathBuf::from),
        ),
    };
    let cache_dir = prepare_cache_dir(&base, uid, gid)
        .with_context(|| format!("preparing the libguestfs cache of {name} in {}", base.display()))?;
    // Everything below opens the cache through guestfs_appliance::safefs:
    // the user owns this directory, so every name in it is theirs to
    // change; we only ever follow our own or root's links, create
    // exclusively, set owners and modes on fds, and build in a 0700
    // staging directory swapped in by rename.
    let appliance = cache_dir.join(APPLIANCE_DIR);
    if std::fs::symlink_metadata(&appliance).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(CacheError::Unexpected { path: appliance, what: "a symlink" });
    }
    let lock_path = cache_dir.join(LOCK_NAME);
    let spec = ApplianceSpec::from_config(&SourceOverrides::default(), config)?;
    let publish = PublishOptions {
        lock_path: Some(lock_path.clone()),
        owner: Some((uid, gid)),
        ..PublishOptions::dir(&appliance)
    };
    // supermin --if-newer reuses the appliance only if appliance.d, kernel,
    // initrd and root are all strictly newer than its inputs (libguestfs's
    // supermin.d and the package database's date file:
    // docs/supermin-compat.md, "The if-newer rule"). Our files carry the
    // inputs' dates, so we stamp them "now". One lock from the check to the
    // stamp: were it released in between, a supermin (or a libguestfs
    // launch) could take it, see undated outputs and rebuild over ours.
    let lock = OutputLock::acquire(&lock_path, publish.lock_timeout, || {
        printer.info(format!("waiting for another build holding {}", lock_path.display()))
    })?;
    let outcome = if req.force {
        build::build_holding(&spec, &publish, &lock, printer)?.line()
    } else {
        match build::build_if_needed(&spec, &publish, &lock, printer)? {
            IfNeeded::Fresh(_) => "already fresh".into(),
            IfNeeded::Built { why, summary } => format!("{} ({why})", summary.line()),
        }
    };
    after_build(&lock_path);
    touch_outputs(&appliance, SystemTime::now())?;
    drop(lock);
    // check's stamp beside appliance.d is written to belong to the cache's
    // owner (crate::stamp::record), so their own `check` can refresh it.
    let inputs = host_date_inputs(Path::new("/"));
    let warning = if inputs.is_empty() {
        Some(
            "libguestfs's supermin.d is not installed: nothing will use this cache until libguestfs is"
                .into(),
        )
    } else if let ApplianceState::StaleByDate(reasons) = date_rule(&appliance, &inputs) {
        Some(format!(
            "supermin would still rebuild {}: {} (is an input dated in the future?)",
            appliance.display(),
            reasons.join("; ")
        ))
    } else {
        None
    };
    Ok(Primed { appliance, user: name, uid, outcome, warning })
}

/// Create `base/.guestfs-UID` as libguestfs would accept it (a real
/// directory owned by uid:gid, mode 0755), or check an existing one, and
/// make sure its lock file exists and belongs to the user. Returns the
/// cache path. Everything is done through pinned directory fds: the cache's
/// owner cannot swap a link in under us.
///
/// Errors: `base` missing; an existing cache that is a symlink, not a
/// directory, owned by someone else or group/other writable; a lock file
/// that is not a regular file.
pub(crate) fn prepare_cache_dir(base: &Path, uid: u32, gid: u32) -> Result<PathBuf, CacheError> {
    let base = PinnedDir::open(base)?;
    let name = format!("{CACHE_PREFIX}{uid}");
    if base.stat(&name)?.is_none() {
        match base.create_dir(&name, 0o755) {
            Ok(dir) => {
                dir.chown(uid, gid)?;
                dir.chmod(0o755)?;
            }
            // libguestfs made it meanwhile: check it below.
            Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    let cache = open_cache(&base, &name, uid)?;
    let st = cache.stat_self()?;
    if st.st_mode & 0o022 != 0 {
        return Err(CacheError::UnsafeMode { path: cache.path().to_owned(), mode: st.st_mode & 0o7777 });
    }
    ensure_lock_file(&cache, uid, gid)?;
    Ok(cache.path().to_owned())
}

/// Set the mtime (and atime) of `appliance` and its kernel, initrd and root
/// to `when`, so supermin's `--if-newer` sees outputs newer than its inputs,
/// as libguestfs does after each supermin run (docs/supermin-compat.md, "The
/// if-newer rule"; docs/libguestfs-side.md, "How libguestfs runs supermin").
/// Done on open fds: each file must be a regular file with one link owned by
/// us, root or the directory's owner, so a link planted in a user's cache
/// cannot make us touch anything else.
pub fn touch_outputs(appliance: &Path, when: SystemTime) -> Result<(), CacheError> {
    let since = when.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let ts =
        nix::sys::time::TimeSpec::new(since.as_secs() as libc::time_t, since.subsec_nanos() as libc::c_long);
    let dir = PinnedDir::open(appliance)?;
    // Files first, the directory last: nothing below touches the dir again.
    for f in DATED_OUTPUTS {
        let name = std::ffi::OsStr::new(f);
        let file = dir.open_regular(name, Access::Read)?.ok_or_else(|| CacheError::Io {
            action: "setting the date of",
            path: dir.child(name),
            source: io::ErrorKind::NotFound.into(),
        })?;
        output::check_trusted(&dir, name, &file)?;
        nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&file), &ts, &ts).map_err(|e| {
            CacheError::Io { action: "setting the date of", path: dir.child(name), source: e.into() }
        })?;
    }
    nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&dir)), &ts, &ts)
        .map_err(|e| CacheError::Io {
            action: "setting the date of",
            path: appliance.to_owned(),
            source: e.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::*;
    use crate::cache::LOCK_NAME;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn prepare_creates_and_checks_the_cache_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let (uid, gid) = me();
        let c = prepare_cache_dir(tmp.path(), uid, gid).unwrap();
        let md = std::fs::symlink_metadata(&c).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.mode() & 0o7777, 0o755);
        assert_eq!(md.uid(), uid);
        let lock = std::fs::symlink_metadata(c.join(LOCK_NAME)).unwrap();
        assert!(lock.is_file());
        assert_eq!(lock.uid(), uid);
        // Idempotent.
        assert_eq!(prepare_cache_dir(tmp.path(), uid, gid).unwrap(), c);
        // Group-writable: refused, as libguestfs would.
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(prepare_cache_dir(tmp.path(), uid, gid), Err(CacheError::UnsafeMode { .. })));
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A symlinked lock file: refused, never followed.
        std::fs::remove_file(c.join(LOCK_NAME)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", c.join(LOCK_NAME)).unwrap();
        let err = prepare_cache_dir(tmp.path(), uid, gid).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        // A symlinked cache dir: refused.
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            other.path(),
            tmp.path().join(format!(".guestfs-{}", uid.wrapping_add(1))),
        )
        .unwrap();
        assert!(prepare_cache_dir(tmp.path(), uid.wrapping_add(1), gid).is_err());
    }
}
