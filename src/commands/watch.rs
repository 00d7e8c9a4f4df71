//! `watch`: for hosts whose packages or kernels change by other means than
//! a package manager with our hooks (image builders, containers,
//! hand-installed kernels). It watches, with inotify (the `notify` crate),
//! exactly the paths the last exact freshness computation read — the
//! package database, the kernel and its modules directory, the appliance's
//! inputs and hostfiles — as recorded in the appliance's stamp
//! (`stamp::watched_paths`), so it watches what `check` compares and
//! nothing else. After a burst of changes has been quiet for `--debounce`
//! seconds it runs `build --if-needed` (a child process: the same command
//! the timer and the hooks run) and logs one line per decision; then it
//! re-reads the stamp, since a rebuild may read other paths (a new kernel).
//!
//! Idle, it sleeps in one blocking channel receive: notify's inotify thread
//! and the signal thread wake only for events. SIGTERM, SIGINT and SIGHUP
//! end it with exit 0 (a running build gets SIGTERM and is waited for; a
//! killed build leaves the previous appliance as it was). Running out of
//! inotify watches or instances is an error naming the sysctl to raise.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::cli::{Cli, WatchArgs};
use crate::config::Config;
use crate::printer::Printer;
use crate::process::{Spawned, SpawnedOutput};

/// How long a rebuild stopped by a signal gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What wakes the watcher.
enum Msg {
    /// An inotify event (or a watch error) from notify's thread.
    Fs(notify::Result<notify::Event>),
    /// A termination signal.
    Stop(i32),
}

/// The paths of interest and the directories watched to see them.
#[derive(Debug, Default)]
struct WatchSet {
    /// Paths the freshness computation read.
    paths: BTreeSet<PathBuf>,
    /// Those of them that are directories (their entries matter too).
    dirs: BTreeSet<PathBuf>,
    /// Directories given to inotify: parents (or nearest existing
    /// ancestors) of the paths, and the directories themselves.
    watched: BTreeSet<PathBuf>,
}

impl WatchSet {
    fn new(paths: Vec<PathBuf>) -> WatchSet {
        let mut set = WatchSet::default();
        for path in paths {
            if path.is_dir() {
                set.dirs.insert(path.clone());
                set.watched.insert(path.clone());
            }
            let mut parent = path.parent();
            while let Some(p) = parent {
                if p.is_dir() {
                    set.watched.insert(p.to_path_buf());
                    break;
                }
                parent = p.parent();
            }
            set.paths.insert(path);
        }
        set
    }

    /// Whether an event on `path` may change what the computation reads:
    /// the path itself, an entry of a directory it read, or an ancestor of
    /// one (a missing directory created, a directory renamed away).
    fn is_relevant(&self, path: &Path) -> bool {
        self.paths.contains(path)
            || path.parent().is_some_and(|p| self.dirs.contains(p))
            || self.paths.iter().any(|p| p.starts_with(path) && p != path)
    }

    /// Whether this event counts: changes only (our own build opens and
    /// reads these files), on a relevant path; a queue overflow always.
    fn counts(&self, event: &notify::Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        if matches!(event.kind, EventKind::Access(_)) {
            return false;
        }
        event.paths.iter().any(|p| self.is_relevant(p))
    }
}

/// Run `watch`. Exit 0 after a termination signal; errors (no appliance
/// stamp after a check, inotify limits) are returned.
pub fn run(args: &WatchArgs, cli: &Cli, config: &Config, printer: &Printer) -> Result<ExitCode> {
    if !(args.debounce.is_finite() && args.debounce >= 0.0) {
        bail!("--debounce {}: give a number of seconds, 0 or more", args.debounce);
    }
    let debounce = Duration::from_secs_f64(args.debounce);
    let dir = args.dir.clone().unwrap_or_else(|| config.appliance.dir.clone());
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir().context("finding the current directory")?.join(dir)
    };
    let exe = std::env::current_exe().context("finding our own executable")?;
    let mut build_argv: Vec<OsString> = Vec::new();
    if let Some(config) = &cli.config {
        build_argv.extend(["--config".into(), config.clone().into_os_string()]);
    }
    build_argv.extend(["build".into(), "--if-needed".into(), dir.clone().into_os_string()]);

    let (tx, rx) = mpsc::channel::<Msg>();
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .context("installing signal handlers")?;
    let signal_tx = tx.clone();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let _ = signal_tx.send(Msg::Stop(signal));
        }
    });

    let mut reason = "start".to_string();
    loop {
        // Check (and rebuild if needed); a signal meanwhile stops the build.
        let (line, stopped) = check(&exe, &build_argv, &rx)?;
        match stopped {
            Some(signal) => return Ok(stop(signal, printer)),
            None => printer.info(format!("watch: {reason}; {}: {line}", dir.display())),
        }
        // Events queued meanwhile came from the previous watcher: whatever
        // they were, the check has just read the current state, except for
        // changes made while it ran, which the new watcher cannot see.
        let mut changed_during_check = 0;
        let set = match stamp_paths(&dir) {
            Some(paths) => WatchSet::new(paths),
            None => bail!(
                "watching {}: no stamp beside it after `build --if-needed` ({}); build it once with \
                 `guestfs-appliance build {}` and start watch again",
                dir.display(),
                crate::stamp::stamp_path(&dir).display(),
                dir.display()
            ),
        };
        let (mut watcher, set) = start_watcher(set, tx.clone())?;
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Stop(signal) => return Ok(stop(signal, printer)),
                Msg::Fs(Ok(event)) if set.counts(&event) => changed_during_check += 1,
                Msg::Fs(_) => {}
            }
        }
        printer.stage(format!(
            "watch: watching {} paths through {} directories",
            set.paths.len(),
            set.watched.len()
        ));
        // Wait for the first change, then for quiet.
        let mut count = changed_during_check;
        let mut first: Option<PathBuf> = None;
        if count == 0 {
            loop {
                match rx.recv().context("the watch channel closed")? {
                    Msg::Stop(signal) => return Ok(stop(signal, printer)),
                    Msg::Fs(Ok(event)) if set.counts(&event) => {
                        count += 1;
                        first = event.paths.first().cloned();
                        break;
                    }
                    Msg::Fs(Ok(_)) => {}
                    Msg::Fs(Err(e)) => return Err(watch_error(e, &dir)),
                }
            }
        }
        loop {
            match rx.recv_timeout(debounce) {
                Ok(Msg::Stop(signal)) => return Ok(stop(signal, printer)),
                Ok(Msg::Fs(Ok(event))) => count += usize::from(set.counts(&event)),
                Ok(Msg::Fs(Err(e))) => return Err(watch_error(e, &dir)),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => bail!("the watch channel closed"),
            }
        }
        // Stop watching while we check: the build reads these paths.
        let _ = set.watched.iter().try_for_each(|d| watcher.unwatch(d));
        drop(watcher);
        reason = match (first, changed_during_check) {
            (_, n) if n > 0 => format!("{count} changes, some during the last check"),
            (Some(path), _) => {
                format!("{count} change{} (first: {})", if count == 1 { "" } else { "s" }, path.display())
            }
            (None, _) => format!("{count} changes"),
        };
    }
}

fn stop(signal: i32, printer: &Printer) -> ExitCode {
    let name = nix::sys::signal::Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("signal");
    printer.info(format!("watch: stopping ({name})"));
    ExitCode::SUCCESS
}

fn stamp_paths(dir: &Path) -> Option<Vec<PathBuf>> {
    crate::stamp::watched_paths(dir)
}

/// Create an inotify watcher sending to `tx` and watch every directory of
/// `set` (those that vanished since are dropped).
fn start_watcher(mut set: WatchSet, tx: mpsc::Sender<Msg>) -> Result<(notify::RecommendedWatcher, WatchSet)> {
    let mut watcher = notify::recommended_watcher(move |res| {
        let _ = tx.send(Msg::Fs(res));
    })
    .map_err(|e| watch_error(e, Path::new("/")))?;
    let mut gone = Vec::new();
    for dir in &set.watched {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {}
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => gone.push(dir.clone()),
            Err(e) => return Err(watch_error(e, dir)),
        }
    }
    for dir in gone {
        set.watched.remove(&dir);
    }
    Ok((watcher, set))
}

/// A notify error as one line that names the limit to raise.
fn watch_error(e: notify::Error, path: &Path) -> anyhow::Error {
    let limit = |name: &str| {
        let value = std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        format!(
            "the inotify {} limit is reached (fs.inotify.{name} = {value}); raise it with `sysctl -w \
             fs.inotify.{name}=N` (and a file in /etc/sysctl.d to keep it), or stop other watchers",
            if name == "max_user_watches" { "watch" } else { "instance" }
        )
    };
    let text = match &e.kind {
        notify::ErrorKind::MaxFilesWatch => limit("max_user_watches"),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => limit("max_user_instances"),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => limit("max_user_watches"),
        _ => e.to_string(),
    };
    anyhow::anyhow!("watching {}: {text}", path.display())
}

/// Run `build --if-needed` as a child and return the line describing what
/// it did; a signal meanwhile ends the child and is returned instead.
fn check(exe: &Path, argv: &[OsString], rx: &Receiver<Msg>) -> Result<(String, Option<i32>)> {
    let mut child = Spawned::spawn(exe, argv, SpawnedOutput::KeepStderr)
        .with_context(|| format!("running {} build --if-needed", exe.display()))?;
    let mut pending = Vec::new();
    let stopped = loop {
        if child.try_wait()?.is_some() {
            break None;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Stop(signal)) => {
                child.stop(STOP_GRACE);
                break Some(signal);
            }
            Ok(other) => pending.push(other),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break None,
        }
    };
    let (status, text) = child.wait()?;
    // Filesystem events seen meanwhile belong to the old watcher (dropped).
    drop(pending);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let line = match (status.success(), last) {
        (true, "") => "fresh, nothing to do".to_string(),
        (true, l) => format!("rebuilt: {}", l.trim_start_matches("guestfs-appliance: ")),
        (false, l) => format!("check or build failed ({status}): {l}"),
    };
    Ok((line, stopped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, path: &Path) -> notify::Event {
        notify::Event::new(kind).add_path(path.to_path_buf())
    }

    #[test]
    fn only_changes_to_what_was_read_count() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("var/lib/dpkg");
        std::fs::create_dir_all(&db).unwrap();
        let status = db.join("status");
        std::fs::write(&status, "").unwrap();
        let modules = tmp.path().join("lib/modules");
        std::fs::create_dir_all(&modules).unwrap();
        let missing = tmp.path().join("etc/absent/file");
        let set = WatchSet::new(vec![status.clone(), modules.clone(), missing.clone()]);
        assert!(set.watched.contains(&db) && set.watched.contains(&modules));
        assert!(set.watched.contains(tmp.path()), "nearest existing ancestor of {missing:?}");

        let modify = EventKind::Modify(notify::event::ModifyKind::Any);
        assert!(set.counts(&event(modify, &status)));
        assert!(!set.counts(&event(modify, &db.join("status-old"))), "a neighbour is not watched");
        assert!(set.counts(&event(EventKind::Create(notify::event::CreateKind::Any), &modules.join("6.1.0"))));
        assert!(
            set.counts(&event(EventKind::Create(notify::event::CreateKind::Any), &tmp.path().join("etc")))
        );
        let open = EventKind::Access(notify::event::AccessKind::Open(notify::event::AccessMode::Any));
        assert!(!set.counts(&event(open, &status)), "our own build reads it");
    }

    #[test]
    fn running_out_of_watches_names_the_sysctl() {
        let e = watch_error(notify::Error::new(notify::ErrorKind::MaxFilesWatch), Path::new("/var/lib/dpkg"));
        let text = e.to_string();
        assert!(text.contains("/var/lib/dpkg") && text.contains("fs.inotify.max_user_watches"), "{text}");
        let e =
            watch_error(notify::Error::io(std::io::Error::from_raw_os_error(libc::EMFILE)), Path::new("/"));
        assert!(e.to_string().contains("fs.inotify.max_user_instances"), "{e}");
    }
}
