//! `cache list|prime|clean`: glue between the command line, the cache rules
//! in [`crate::cache`] and the freshness check in [`crate::build::fresh`].
//! The rules for trusting, priming and deleting a cache live in
//! `crate::cache`; this file decides what to print and where.
//!
//! `list` writes its table (or `--json`) to stdout: that is the data.
//! `prime` and `clean` report to people on stderr.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::build::fresh::{self, Freshness};
use crate::cache::{
    self, ApplianceState, CacheInfo, CleanOutcome, CleanPolicy, InspectContext, PrimeRequest, UserStatus,
};
use crate::cli::{CacheArgs, CacheCleanArgs, CacheCommand, CacheListArgs, CachePrimeArgs};
use crate::config::Config;
use crate::host::users::{SystemUsers, UserDb};
use crate::printer::{human_bytes, Printer};

/// Version of the `cache list --json` document.
pub(crate) const LIST_JSON_VERSION: u32 = 1;

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
pub(crate) fn render_table(infos: &[CacheInfo]) -> String {
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
    let req = PrimeRequest { user: args.user.clone(), cachedir: args.cachedir.clone(), force: args.force };
    let primed = cache::prime(&req, config, printer)?;
    if let Some(warning) = &primed.warning {
        printer.warn(warning);
    }
    printer.info(format!(
        "primed {} for {} (uid {}): {}",
        primed.appliance.display(),
        primed.user,
        primed.uid,
        primed.outcome
    ));
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
