//! Scheduling files that keep the appliance fresh: a cron.d entry, a
//! systemd service + timer (and the disabled `watch` service), an apt
//! `DPkg::Post-Invoke` hook, kernel hooks (`/etc/kernel/post{inst,rm}.d`, a
//! kernel-install plugin) and an ALPM hook, all running `build --if-needed`
//! (the hooks with `--hook`, see `commands::hook`). They are embedded
//! templates (`templates/schedule/`) rendered with the path of our binary;
//! this module renders and installs them for source installs, and
//! packaging/build installs the same files into the packages (moving them
//! to the distributions' package locations). It knows nothing about
//! building.

use std::path::{Path, PathBuf};

/// One kind of scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// /etc/cron.d entry (hourly).
    Cron,
    /// systemd service + timer (hourly, persistent).
    Systemd,
    /// apt hook after every dpkg run.
    Apt,
    /// Kernel hooks: /etc/kernel/postinst.d, postrm.d and install.d.
    Kernel,
    /// pacman (ALPM) hook after every transaction.
    Pacman,
}

/// A rendered file and where it goes (relative to the destination root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// Absolute install path, e.g. `/etc/cron.d/guestfs-appliance`.
    pub(crate) path: PathBuf,
    /// File content.
    pub(crate) content: String,
    /// Permission bits (0644, or 0755 for the kernel hooks' scripts).
    pub(crate) mode: u32,
}

const CRON: &str = include_str!("../templates/schedule/guestfs-appliance.cron");
const SERVICE: &str = include_str!("../templates/schedule/guestfs-appliance.service");
const TIMER: &str = include_str!("../templates/schedule/guestfs-appliance.timer");
const APT: &str = include_str!("../templates/schedule/80guestfs-appliance.apt");
const WATCH_SERVICE: &str = include_str!("../templates/schedule/guestfs-appliance-watch.service");
const KERNEL_POSTINST: &str = include_str!("../templates/schedule/kernel-postinst.sh");
const KERNEL_INSTALL: &str = include_str!("../templates/schedule/kernel-install.install");
const ALPM_HOOK: &str = include_str!("../templates/schedule/guestfs-appliance.hook");

/// Errors installing scheduling files.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleError {
    /// Writing a file failed.
    #[error("writing {path}: {source} (run as root, or pass --dest-root)")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn render(template: &str, bin: &Path, path: &str) -> String {
    template
        .replace("@BIN@", &bin.display().to_string())
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@PATH@", path)
}

/// The files for `kind`, rendered for binary `bin`, at their paths for a
/// source install (packages move them: see packaging/build).
pub(crate) fn files(kind: Kind, bin: &Path) -> Vec<Rendered> {
    let with_mode = |path: &str, t: &str, mode: u32| Rendered {
        path: PathBuf::from(path),
        content: render(t, bin, path),
        mode,
    };
    let r = |path: &str, t: &str| with_mode(path, t, 0o644);
    match kind {
        Kind::Cron => vec![r("/etc/cron.d/guestfs-appliance", CRON)],
        Kind::Systemd => vec![
            r("/etc/systemd/system/guestfs-appliance.service", SERVICE),
            r("/etc/systemd/system/guestfs-appliance.timer", TIMER),
            r("/etc/systemd/system/guestfs-appliance-watch.service", WATCH_SERVICE),
        ],
        Kind::Apt => vec![r("/etc/apt/apt.conf.d/80guestfs-appliance", APT)],
        // zz-: after the hooks that make the initramfs and boot entries.
        Kind::Kernel => vec![
            with_mode("/etc/kernel/postinst.d/zz-guestfs-appliance", KERNEL_POSTINST, 0o755),
            with_mode("/etc/kernel/postrm.d/zz-guestfs-appliance", KERNEL_POSTINST, 0o755),
            with_mode("/etc/kernel/install.d/95-guestfs-appliance.install", KERNEL_INSTALL, 0o755),
        ],
        Kind::Pacman => vec![r("/etc/pacman.d/hooks/guestfs-appliance.hook", ALPM_HOOK)],
    }
}

/// The kinds to use when none is named: the systemd timer on systemd
/// hosts, else cron; plus the apt hook where apt exists, the kernel hooks
/// where /etc/kernel exists and the pacman hook where pacman's hook
/// directory exists.
pub(crate) fn default_kinds(root: &Path) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if root.join("run/systemd/system").is_dir() {
        kinds.push(Kind::Systemd);
    } else {
        kinds.push(Kind::Cron);
    }
    if root.join("etc/apt/apt.conf.d").is_dir() {
        kinds.push(Kind::Apt);
    }
    if root.join("etc/kernel").is_dir() {
        kinds.push(Kind::Kernel);
    }
    if root.join("etc/pacman.d").is_dir() {
        kinds.push(Kind::Pacman);
    }
    kinds
}

/// Write `file` under `dest_root` atomically, with its mode
/// ([`crate::safefs::write_path_atomic`]).
pub(crate) fn install(file: &Rendered, dest_root: &Path) -> Result<PathBuf, ScheduleError> {
    let path = crate::paths::under_root(dest_root, &file.path);
    let err = |source| ScheduleError::Write { path: path.clone(), source };
    let (parent, _) =
        crate::paths::split(&path).ok_or_else(|| err(std::io::ErrorKind::InvalidInput.into()))?;
    std::fs::create_dir_all(parent).map_err(err)?;
    crate::safefs::write_path_atomic(&path, file.content.as_bytes(), file.mode)
        .map_err(|e| err(std::io::Error::other(e)))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_without_placeholders() {
        for kind in [Kind::Cron, Kind::Systemd, Kind::Apt, Kind::Kernel, Kind::Pacman] {
            for f in files(kind, Path::new("/usr/bin/guestfs-appliance")) {
                assert!(!f.content.contains('@'), "{}: {}", f.path.display(), f.content);
                let runs_it = f.content.contains("/usr/bin/guestfs-appliance build --if-needed")
                    || f.content.contains("/usr/bin/guestfs-appliance watch");
                // Hooks run inside package transactions: --hook, never a bare build.
                let is_hook = matches!(kind, Kind::Apt | Kind::Kernel | Kind::Pacman);
                assert!(!is_hook || f.content.contains("build --if-needed --hook"), "{}", f.path.display());
                assert_eq!(f.mode == 0o755, f.content.starts_with("#!/bin/sh\n"), "{}", f.path.display());
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
