//! `schedule`: show or install the cron / systemd / apt files that run
//! `build --if-needed`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::ScheduleArgs;
use crate::printer::Printer;
use crate::schedule::{self, Kind};

/// Run `schedule`.
pub fn run(args: &ScheduleArgs, printer: &Printer) -> Result<()> {
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("finding our own executable (pass --bin)")?,
    };
    let mut kinds: Vec<Kind> = if args.kinds.is_empty() {
        schedule::default_kinds(&PathBuf::from("/"))
    } else {
        args.kinds.iter().map(|&k| k.into()).collect()
    };
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        for file in schedule::files(kind, &bin) {
            if args.install {
                let path = schedule::install(&file, &args.dest_root)?;
                printer.info(format!("installed {}", path.display()));
            } else {
                crate::stdout::write(format!("# {}\n{}\n", file.path.display(), file.content))
                    .context("writing to stdout")?;
            }
        }
        if args.install && kind == Kind::Systemd {
            printer.info(
                "enable it with: systemctl daemon-reload && systemctl enable --now guestfs-appliance.timer",
            );
        }
    }
    Ok(())
}
