//! `build`: the command-line arguments turned into an
//! [`ApplianceSpec`](crate::build::ApplianceSpec) and
//! [`PublishOptions`](crate::build::PublishOptions), handed to
//! [`crate::build`], and the result printed. The pipeline itself lives
//! there.

use std::time::Duration;

use anyhow::Result;

use crate::build::{self, ApplianceSpec, IfNeeded, KernelFormat, PublishOptions, SourceOverrides};
use crate::cli::{BuildArgs, KernelFormatArg, SourceArgs};
use crate::config::Config;
use crate::printer::Printer;

/// The source options given on the command line, as the library's
/// overrides (shared by `build`, `check` and `make-fixed-appliance`).
pub(crate) fn overrides(src: &SourceArgs) -> SourceOverrides {
    SourceOverrides {
        inputs: src.inputs.clone(),
        minimal: src.minimal,
        size: src.size.clone(),
        strict: src.strict,
        root: src.root.clone(),
        host_cpu: src.host_cpu.clone(),
        kernel_format: src.kernel_format.map(|k| match k {
            KernelFormatArg::Auto => KernelFormat::Auto,
            KernelFormatArg::Uncompressed => KernelFormat::Uncompressed,
            KernelFormatArg::Copy => KernelFormat::Copy,
        }),
    }
}

/// Run `build` and print its summary. With `--if-needed`, a fresh
/// appliance is left alone silently (one line with `-v`).
pub fn run(args: &BuildArgs, config: &Config, printer: &Printer) -> Result<()> {
    let src = overrides(&args.source);
    let lock_timeout = Duration::from_secs(args.lock_timeout);
    if !args.if_needed {
        let spec = ApplianceSpec::from_config(&src, config)?;
        let publish = PublishOptions {
            lock_timeout,
            ..PublishOptions::new(args.dir.clone(), args.tar.clone(), config)
        };
        let summary = build::build(&spec, &publish, printer)?;
        printer.info(summary.line());
        return Ok(());
    }
    // Refresh DIR as it was built: options not given come from its manifest.
    let dir = args.dir.clone().unwrap_or_else(|| config.appliance.dir.clone());
    match build::refresh_as_built(&dir, &src, config, lock_timeout, printer)? {
        IfNeeded::Fresh(dir) => printer.stage(format!("{} is fresh: nothing to do", dir.display())),
        IfNeeded::Built { why, summary } => {
            printer.info(format!("{} ({why})", summary.line()));
        }
    }
    Ok(())
}
