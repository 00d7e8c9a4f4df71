//! Scheduling files that keep the appliance fresh: a cron.d entry, a
//! systemd service + timer, and an apt `DPkg::Post-Invoke` hook, all running
//! `build --if-needed`. They are embedded templates (`templates/schedule/`)
//! rendered with the path of our binary; this module renders and installs
//! them and knows nothing about building.

use std::path::{Path, PathBuf};

/// One kind of scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// /etc/cron.d entry (hourly).
    Cron,
    /// systemd service + timer (hourly, persistent).
    Systemd,
    /// apt hook after every dpkg run.
    Apt,
}

/// A rendered file and where it goes (relative to the destination root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Absolute install path, e.g. `/etc/cron.d/guestfs-appliance`.
    pub path: PathBuf,
    /// File content.
    pub content: String,
}

const CRON: &str = include_str!("../templates/schedule/guestfs-appliance.cron");
const SERVICE: &str = include_str!("../templates/schedule/guestfs-appliance.service");
const TIMER: &str = include_str!("../templates/schedule/guestfs-appliance.timer");
const APT: &str = include_str!("../templates/schedule/80guestfs-appliance.apt");

/// Errors installing scheduling files.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Writing a file failed.
    #[error("writing {path}: {source} (run as root, or pass --dest-root)")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn render(template: &str, bin: &Path) -> String {
    template.replace("@BIN@", &bin.display().to_string()).replace("@VERSION@", env!("CARGO_PKG_VERSION"))
}

/// The files for `kind`, rendered for binary `bin`.
pub fn files(kind: Kind, bin: &Path) -> Vec<Rendered> {
    let r = |path: &str, t: &str| Rendered { path: PathBuf::from(path), content: render(t, bin) };
    match kind {
        Kind::Cron => vec![r("/etc/cron.d/guestfs-appliance", CRON)],
        Kind::Systemd => vec![
            r("/etc/systemd/system/guestfs-appliance.service", SERVICE),
            r("/etc/systemd/system/guestfs-appliance.timer", TIMER),
        ],
        Kind::Apt => vec![r("/etc/apt/apt.conf.d/80guestfs-appliance", APT)],
    }
}

/// The kinds to use when none is named: the systemd timer on systemd
/// hosts, else cron; plus the apt hook where apt exists.
pub fn default_kinds(root: &Path) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if root.join("run/systemd/system").is_dir() {
        kinds.push(Kind::Systemd);
    } else {
        kinds.push(Kind::Cron);
    }
    if root.join("etc/apt/apt.conf.d").is_dir() {
        kinds.push(Kind::Apt);
    }
    kinds
}

/// Write `file` under `dest_root` atomically, mode 0644
/// ([`crate::safefs::PinnedDir::write_atomic`]).
pub fn install(file: &Rendered, dest_root: &Path) -> Result<PathBuf, ScheduleError> {
    let rel = file.path.strip_prefix("/").unwrap_or(&file.path);
    let path = dest_root.join(rel);
    let err = |source| ScheduleError::Write { path: path.clone(), source };
    let (parent, name) =
        crate::safefs::split(&path).ok_or_else(|| err(std::io::ErrorKind::InvalidInput.into()))?;
    std::fs::create_dir_all(parent).map_err(err)?;
    crate::safefs::PinnedDir::open(parent)
        .and_then(|dir| {
            dir.refuse_if_shared()?;
            dir.write_atomic(name, file.content.as_bytes(), 0o644, None)
        })
        .map_err(|e| err(std::io::Error::other(e)))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_without_placeholders() {
        for kind in [Kind::Cron, Kind::Systemd, Kind::Apt] {
            for f in files(kind, Path::new("/usr/bin/guestfs-appliance")) {
                assert!(!f.content.contains('@'), "{}: {}", f.path.display(), f.content);
                let runs_it = f.content.contains("/usr/bin/guestfs-appliance build --if-needed");
                // The timer only triggers the service of the same name.
                assert!(runs_it || f.path.ends_with("guestfs-appliance.timer"), "{}", f.path.display());
            }
        }
    }

    #[test]
    fn cron_entry_has_five_time_fields_and_a_user() {
        let f = &files(Kind::Cron, Path::new("/usr/bin/ga"))[0];
        let entries: Vec<_> = f
            .content
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let fields: Vec<_> = entries[0].split_whitespace().collect();
        assert!(fields.len() > 6, "{fields:?}");
        for (i, field) in fields[..5].iter().enumerate() {
            let max = [59, 23, 31, 12, 7][i];
            assert!(*field == "*" || field.parse::<u32>().is_ok_and(|n| n <= max), "field {i}: {field}");
        }
        assert_eq!(fields[5], "root");
    }

    #[test]
    fn install_writes_under_dest_root() {
        let tmp = tempfile::tempdir().unwrap();
        let f = &files(Kind::Apt, Path::new("/usr/bin/ga"))[0];
        let path = install(f, tmp.path()).unwrap();
        assert_eq!(path, tmp.path().join("etc/apt/apt.conf.d/80guestfs-appliance"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), f.content);
    }
}
