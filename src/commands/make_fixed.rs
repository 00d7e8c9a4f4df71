//! `make-fixed-appliance`: the drop-in for libguestfs-make-fixed-appliance.
//!
//! Same usage as libguestfs's script (`OUTPUTDIR`, or `--xz` writing
//! `appliance-VERSION.tar.xz` in the current directory, VERSION being the
//! installed libguestfs version), plus `--tar FILE`. Unlike the script it
//! does not boot the appliance to fill a cache and copy from it: it builds
//! the libguestfs appliance directly from libguestfs's supermin.d.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cli::MakeFixedCli;
use crate::commands::build::{self, BuildRequest};
use crate::input;
use crate::package;
use crate::printer::Printer;

/// Run make-fixed-appliance.
pub fn run(cli: &MakeFixedCli, printer: &Printer) -> Result<()> {
    let root = PathBuf::from("/");
    let inputs = input::default_input_dirs(&root);
    if inputs.is_empty() {
        bail!(
            "libguestfs's supermin.d was not found (looked under /usr/lib*/guestfs); install libguestfs (e.g. libguestfs0), or use `guestfs-appliance build --minimal DIR`"
        );
    }
    let tar = if cli.xz {
        Some(PathBuf::from(format!("appliance-{}.tar.xz", libguestfs_version(&root))))
    } else {
        cli.tar.clone()
    };
    let req = BuildRequest {
        dir: cli.outputdir.clone(),
        tar,
        inputs,
        minimal: false,
        size: 4 << 30,
        strict: false,
        root,
        host_cpu: std::env::consts::ARCH.to_string(),
        lock_timeout: std::time::Duration::from_secs(3600),
        extra_packages: Vec::new(),
        extra_excludes: Vec::new(),
        lock_path: None,
        owner: None,
    };
    let summary = build::build(&req, printer)?;
    printer.info(summary.line());
    Ok(())
}

/// The installed libguestfs's upstream version (`1:1.48.6-2` → `1.48.6`),
/// as libguestfs's script names its tarball; our own version if libguestfs
/// is not in the package database.
pub fn libguestfs_version(root: &Path) -> String {
    let names = ["libguestfs0".to_string()];
    package::detect(root)
        .ok()
        .and_then(|db| db.resolve(&names).ok())
        .and_then(|r| r.packages.into_iter().find(|p| p.name == "libguestfs0"))
        .map(|p| upstream_version(&p.version))
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

/// Strip a Debian epoch and revision from a version string.
pub fn upstream_version(v: &str) -> String {
    let no_epoch = v.split_once(':').map_or(v, |(_, rest)| rest);
    let upstream = no_epoch.rsplit_once('-').map_or(no_epoch, |(up, _)| up);
    upstream.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_version_strips_epoch_and_revision() {
        assert_eq!(upstream_version("1:1.48.6-2"), "1.48.6");
        assert_eq!(upstream_version("1.48.6-2+deb12u1"), "1.48.6");
        assert_eq!(upstream_version("1.48.6"), "1.48.6");
    }
}
