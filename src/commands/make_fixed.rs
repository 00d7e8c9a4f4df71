//! `make-fixed-appliance`: the drop-in for libguestfs-make-fixed-appliance.
//!
//! Same usage as libguestfs's script (`OUTPUTDIR`, or `--xz` writing
//! `appliance-VERSION.tar.xz` in the current directory, VERSION being the
//! installed libguestfs version), plus `--tar FILE`. Unlike the script it
//! does not boot the appliance to fill a cache and copy from it: it builds
//! the libguestfs appliance directly from libguestfs's supermin.d.
//!
//! It reads no configuration file (no `--config`, and
//! `$GUESTFS_APPLIANCE_CONFIG` is ignored): a drop-in must build what
//! libguestfs's script builds, the same on every host. Configured builds
//! (size, extra packages, excludes) are `guestfs-appliance build`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::build::{self, ApplianceSpec, PublishOptions, SourceOverrides};
use crate::cli::MakeFixedCli;
use crate::config::Config;
use crate::input;
use crate::package;
use crate::printer::Printer;

/// Run make-fixed-appliance.
pub fn run(cli: &MakeFixedCli, printer: &Printer) -> Result<()> {
    let root = PathBuf::from("/");
    let inputs = input::default_input_dirs(&root);
    if inputs.is_empty() {
        let package = package::handler_for(&root)
            .map(|h| format!(" (e.g. {})", h.libguestfs_package))
            .unwrap_or_default();
        bail!(
            "libguestfs's supermin.d was not found (looked under /usr/lib*/guestfs); install libguestfs{package}, or use `guestfs-appliance build --minimal DIR`"
        );
    }
    let tar = if cli.xz {
        Some(PathBuf::from(format!("appliance-{}.tar.xz", libguestfs_version(&root))))
    } else {
        cli.tar.clone()
    };
    // libguestfs's defaults, not the config file: this is the drop-in.
    let config = Config::default();
    let source = SourceOverrides { inputs, root: Some(root), ..Default::default() };
    let spec = ApplianceSpec::from_config(&source, &config)?;
    let publish = PublishOptions::new(cli.outputdir.clone(), tar, &config);
    let summary = build::build(&spec, &publish, printer)?;
    printer.info(summary.line());
    Ok(())
}

/// The installed libguestfs's upstream version (`1:1.48.6-2` → `1.48.6`),
/// as libguestfs's script names its tarball; our own version if libguestfs
/// is not in the package database.
pub fn libguestfs_version(root: &Path) -> String {
    package::libguestfs_version(root).unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}
