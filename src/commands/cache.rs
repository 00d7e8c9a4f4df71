//! `cache list|prime|clean`: glue between the command line, the cache rules
//! in [`crate::cache`], the freshness check in [`crate::build::fresh`] and the build
//! pipeline. The rules for trusting and deleting a cache live in
//! `crate::cache`; this file decides what to print and where.
//!
//! `list` writes its table (or `--json`) to stdout: that is the data.
//! `prime` and `clean` report to people on stderr.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::build::fresh::{self, Freshness};
use crate::build::{self, ApplianceSpec, IfNeeded, PublishOptions, SourceOverrides};
use crate::cache::{self, ApplianceState, CacheInfo, CleanOutcome, CleanPolicy, InspectContext, UserStatus};
use crate::cli::{CacheArgs, CacheCleanArgs, CacheCommand, CacheListArgs, CachePrimeArgs};
use crate::config::Config;
use crate::output::OutputLock;
use crate::printer::{human_bytes, Printer};
use crate::users::{SystemUsers, UserDb};

/// Version of the `cache list --json` document.
pub const LIST_JSON_VERSION: u32 = 1;

/// Run `cache SUBCOMMAND`.
pub fn run(args: &CacheArgs, config: &Config, printer: &Printer) -> Result<()> {
    match &args.command {
        CacheCommand::List(a) => list(a, config),
        CacheCommand::Prime(a) => prime(a, config, printer),
        CacheCommand::Clean(a) => clean(a, config, printer),
    }
}

/// Every cache in the default places, the config's extra dirs and `paths`
/// (which must exist: the user named them).
fn find(paths: &[PathBuf], config: &Config) -> Result<Vec<PathBuf>> {
    for p in paths {
        std::fs::symlink_metadata(p).with_context(|| format!("cache path {}", p.display()))?;
    }
    let mut dirs = cache::default_search_dirs(&config.cache.extra_dirs);
    dirs.extend(paths.iter().cloned());
    Ok(cache::find_caches(&dirs)?)
}

/// Render [`crate::build::fresh`]'s verdict on an `appliance.d` holding our
/// manifest (judged as its manifest says it was built) as a cache state.
fn manifest_state(dir: &Path, config: &Config) -> ApplianceState {
    match fresh::report(dir, config).freshness {
        Freshness::Fresh => ApplianceState::Fresh,
        Freshness::Stale(changes) => ApplianceState::Stale(changes.iter().map(|c| c.to_string()).collect()),
        Freshness::Unknown(why) => ApplianceState::Unknown(why),
    }
}

/// Inspect every cache found.
fn inspect_all(paths: &[PathBuf], config: &Config) -> Result<Vec<CacheInfo>> {
    let check = |dir: &Path| manifest_state(dir, config);
    let ctx = InspectContext {
        users: &SystemUsers,
        date_inputs: cache::host_date_inputs(Path::new("/")),
        manifest_check: &check,
        now: SystemTime::now(),
    };
    Ok(find(paths, config)?.iter().map(|p| cache::inspect(p, &ctx)).collect())
}

/// One cache in `cache list --json`.
#[derive(Debug, Serialize)]
struct CacheJson<'a> {
    path: &'a Path,
    uid: u32,
    user: Option<&'a str>,
    /// `null` when the user database could not answer.
    user_exists: Option<bool>,
    owner_uid: u32,
    problem: Option<&'a str>,
    appliance: bool,
    apparent_bytes: u64,
    allocated_bytes: u64,
    age_seconds: Option<u64>,
    state: &'static str,
    details: Vec<String>,
    locked: bool,
}

/// The `cache list --json` document.
#[derive(Debug, Serialize)]
struct ListJson<'a> {
    version: u32,
    caches: Vec<CacheJson<'a>>,
}

fn list(args: &CacheListArgs, config: &Config) -> Result<()> {
    let infos = inspect_all(&args.paths, config)?;
    if args.json {
        let doc = ListJson {
            version: LIST_JSON_VERSION,
            caches: infos
                .iter()
                .map(|i| CacheJson {
                    path: &i.path,
                    uid: i.uid,
                    user: i.user.name(),
                    user_exists: match i.user {
                        UserStatus::Exists(_) => Some(true),
                        UserStatus::Gone => Some(false),
                        UserStatus::Unknown => None,
                    },
                    owner_uid: i.owner,
                    problem: i.problem.as_deref(),
                    appliance: i.has_appliance,
                    apparent_bytes: i.apparent_bytes,
                    allocated_bytes: i.allocated_bytes,
                    age_seconds: i.age.map(|a| a.as_secs()),
                    state: i.state.label(),
                    details: i.state.details(),
                    locked: i.locked,
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&doc).context("rendering JSON")? + "\n";
        return crate::stdout::write(text).context("writing to stdout");
    }
    crate::stdout::write(render_table(&infos)).context("writing to stdout")
}

/// The human table: one row per cache, then the reasons behind stale and
/// refused rows, indented.
pub fn render_table(infos: &[CacheInfo]) -> String {
    if infos.is_empty() {
        return "no libguestfs caches found\n".into();
    }
    let header = ["CACHE", "USER", "APPLIANCE", "SIZE", "ALLOCATED", "AGE", "STATE", "LOCK"];
    let rows: Vec<[String; 8]> = infos
        .iter()
        .map(|i| {
            [
                i.path.display().to_string(),
                match &i.user {
                    UserStatus::Exists(name) => name.clone(),
                    UserStatus::Gone => format!("{} (gone)", i.uid),
                    UserStatus::Unknown => format!("{} (?)", i.uid),
                },
                if i.has_appliance { "yes" } else { "no" }.into(),
                human_bytes(i.apparent_bytes),
                human_bytes(i.allocated_bytes),
                i.age.map(cache::human_duration).unwrap_or_else(|| "-".into()),
                if i.problem.is_some() { "refused".into() } else { i.state.label().into() },
                if i.locked { "locked" } else { "-" }.into(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.push('\n');
        l
    };
    let mut text = line(&header.map(String::from));
    for (r, i) in rows.iter().zip(infos) {
        text.push_str(&line(r));
        let reasons = match &i.problem {
            Some(p) => vec![p.clone()],
            None if i.state.is_stale() || matches!(i.state, ApplianceState::Unknown(_)) => i.state.details(),
            None => Vec::new(),
        };
        for reason in reasons {
            text.push_str(&format!("    {reason}\n"));
        }
    }
    text
}

fn prime(args: &CachePrimeArgs, config: &Config, printer: &Printer) -> Result<()> {
    let users = SystemUsers;
    let euid = nix::unistd::geteuid();
    let (uid, gid, name) = match &args.user {
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
    let base = match &args.cachedir {
        Some(d) => d.clone(),
        None => cache::libguestfs_base(
            std::env::var_os("LIBGUESTFS_CACHEDIR").map(PathBuf::from),
            std::env::var_os("TMPDIR").map(PathBuf::from),
        ),
    };
    let cache_dir = cache::prepare_cache_dir(&base, uid, gid)
        .with_context(|| format!("preparing the libguestfs cache of {name} in {}", base.display()))?;
    // Everything below opens the cache through guestfs_appliance::safefs:
    // the user owns this directory, so every name in it is theirs to
    // change; we only ever follow our own or root's links, create
    // exclusively, set owners and modes on fds, and build in a 0700
    // staging directory swapped in by rename.
    let appliance = cache_dir.join(cache::APPLIANCE_DIR);
    if std::fs::symlink_metadata(&appliance).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(cache::CacheError::Unexpected { path: appliance, what: "a symlink" });
    }
    let lock_path = cache_dir.join(cache::LOCK_NAME);
    let spec = ApplianceSpec::from_config(&SourceOverrides::default(), config)?;
    let publish = PublishOptions {
        lock_path: Some(lock_path.clone()),
        owner: Some((uid, gid)),
        ..PublishOptions::dir(&appliance)
    };
    let what = if args.force {
        let s = build::build(&spec, &publish, printer)?;
        s.line()
    } else {
        match build::build_if_needed(&spec, &publish, printer)? {
            IfNeeded::Fresh(_) => "already fresh".into(),
            IfNeeded::Built { why, summary } => format!("{} ({why})", summary.line()),
        }
    };
    // supermin --if-newer reuses the appliance only if appliance.d, kernel,
    // initrd and root are all strictly newer than its inputs (libguestfs's
    // supermin.d and the package database's date file:
    // docs/supermin-compat.md, "The if-newer rule"). Our files carry the
    // inputs' dates, so stamp them "now", under the lock so no supermin
    // sees them half-touched.
    {
        let _lock = OutputLock::acquire(&lock_path, publish.lock_timeout, || {
            printer.info(format!(
                "waiting for the lock {} (a libguestfs launch is building)",
                lock_path.display()
            ))
        })?;
        cache::touch_outputs(&appliance, SystemTime::now())?;
    }
    // check's stamp beside appliance.d is written to belong to the cache's
    // owner (crate::stamp::record), so their own `check` can refresh it.
    let inputs = cache::host_date_inputs(Path::new("/"));
    if inputs.is_empty() {
        printer.warn(
            "libguestfs's supermin.d is not installed: nothing will use this cache until libguestfs is",
        );
    } else if let ApplianceState::StaleByDate(reasons) = cache::date_rule(&appliance, &inputs) {
        printer.warn(format!(
            "supermin would still rebuild {}: {} (is an input dated in the future?)",
            appliance.display(),
            reasons.join("; ")
        ));
    }
    printer.info(format!("primed {} for {name} (uid {uid}): {what}", appliance.display()));
    Ok(())
}

fn clean(args: &CacheCleanArgs, config: &Config, printer: &Printer) -> Result<()> {
    let policy = CleanPolicy {
        older_than: args.older_than.as_deref().map(cache::parse_duration).transpose()?,
        stale: args.stale,
        uids: if args.user.is_empty() {
            None
        } else {
            Some(args.user.iter().map(|u| SystemUsers.resolve_uid(u)).collect::<Result<_, _>>()?)
        },
    };
    let infos = inspect_all(&args.paths, config)?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    let (mut count, mut freed, mut failed) = (0usize, 0u64, 0usize);
    for info in &infos {
        if let Some(problem) = &info.problem {
            if policy.uids.as_ref().is_none_or(|u| u.contains(&info.uid)) {
                printer.warn(format!("left {} alone: {problem}", info.path.display()));
            }
            continue;
        }
        let Some(reason) = cache::clean_reason(info, &policy) else { continue };
        let target = if reason.removes_whole_cache() {
            info.path.clone()
        } else {
            info.path.join(cache::APPLIANCE_DIR)
        };
        match cache::remove_cache(&info.path, &reason, args.dry_run) {
            Ok(CleanOutcome::Removed(n)) | Ok(CleanOutcome::WouldRemove(n)) => {
                printer.info(format!("{verb} {} ({reason}, {} freed)", target.display(), human_bytes(n)));
                count += 1;
                freed += n;
            }
            Ok(CleanOutcome::Gone) => {
                printer.info(format!("skipped {} (already removed by another cleaner)", info.path.display()));
            }
            Ok(CleanOutcome::InUse) => {
                printer.info(format!(
                    "skipped {} ({reason}, but in use: its lock is held)",
                    info.path.display()
                ));
            }
            Err(e) => {
                printer.warn(format!("could not clean {}: {e}", info.path.display()));
                failed += 1;
            }
        }
    }
    let total = if args.dry_run { "would free" } else { "freed" };
    printer.info(format!(
        "{verb} {count} cache{}: {total} {}",
        if count == 1 { "" } else { "s" },
        human_bytes(freed)
    ));
    if failed > 0 {
        bail!(
            "{failed} cache{} could not be cleaned (see the warnings above)",
            if failed == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(path: &str, user: Option<&str>, state: ApplianceState) -> CacheInfo {
        CacheInfo {
            path: path.into(),
            uid: 1001,
            owner: 1001,
            group: 1001,
            user: user.map_or(UserStatus::Gone, |u| UserStatus::Exists(u.into())),
            problem: None,
            has_appliance: true,
            apparent_bytes: 4 << 30,
            allocated_bytes: 700 << 20,
            age: Some(Duration::from_secs(3 * 86_400)),
            state,
            locked: false,
        }
    }

    #[test]
    fn table_is_aligned_and_explains_stale_rows() {
        let rows = vec![
            info("/var/tmp/.guestfs-1001", Some("svc"), ApplianceState::FreshByDate),
            info(
                "/tmp/.guestfs-1001",
                None,
                ApplianceState::StaleByDate(vec!["/var/lib/dpkg/status is not older than kernel".into()]),
            ),
        ];
        let text = render_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("CACHE"), "{text}");
        let col = lines[0].find("STATE").unwrap();
        assert_eq!(&lines[1][col..col + 13], "fresh-by-date", "{text}");
        assert_eq!(&lines[2][col..col + 13], "stale-by-date", "{text}");
        assert!(lines[2].contains("1001 (gone)"), "{text}");
        assert!(
            lines[1].contains("4.0 GiB") && lines[1].contains("700.0 MiB") && lines[1].contains("3d"),
            "{text}"
        );
        assert_eq!(lines[3], "    /var/lib/dpkg/status is not older than kernel");
        assert_eq!(lines.len(), 4);
        assert_eq!(render_table(&[]), "no libguestfs caches found\n");
    }
}
