//! `check`: is the appliance fresh? Exit 0 fresh, 1 stale or damaged (with
//! one line per change on stdout), 2 cannot tell. DIR is judged against what it was
//! built from (its manifest), with any source option given replacing the
//! recorded one. The verdict is [`crate::build::fresh`]'s; this file only
//! renders it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::build::{self, EvalOptions, Freshness, OutputsChecked, Verdict};
use crate::cli::CheckArgs;
use crate::config::Config;
use crate::printer::Printer;

/// `check --json` output (schema version 1): the verdict's fields after
/// `version` and `dir`.
#[derive(Debug, Serialize)]
struct CheckJson<'a> {
    version: u32,
    dir: String,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

/// Run `check`; returns the exit code.
pub fn run(args: &CheckArgs, config: &Config, printer: &Printer) -> Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| config.appliance.dir.clone());
    let opts = EvalOptions { record: true, verify: args.verify };
    let src = super::build::overrides(&args.source);
    let (eval, _) = build::fresh(&dir, &src, config, printer, opts)?;
    let verdict = &eval.verdict;
    if verdict.outputs == OutputsChecked::NotRecorded {
        printer.warn(format!(
            "{}'s manifest records no output sizes or digests (written before format 3): damage to kernel, initrd or root cannot be detected; rebuild it to record them",
            dir.display()
        ));
    }
    let code: u8 = match &verdict.freshness {
        Freshness::Fresh => 0,
        Freshness::Stale(_) => 1,
        Freshness::Unknown(_) => 2,
    };
    if args.json {
        let out = CheckJson { version: 1, dir: dir.display().to_string(), verdict };
        let text = serde_json::to_string_pretty(&out)? + "\n";
        crate::stdout::write(text).context("writing to stdout")?;
    } else {
        match &verdict.freshness {
            Freshness::Fresh => printer.info(format!("{} is fresh", dir.display())),
            Freshness::Stale(changes) => {
                printer.info(format!("{} is stale ({} changes):", dir.display(), changes.len()));
                let text: String = changes.iter().map(|c| format!("{c}\n")).collect();
                crate::stdout::write(text).context("writing to stdout")?;
            }
            Freshness::Unknown(why) => {
                printer.error(format!("cannot tell whether {} is fresh: {why}", dir.display()));
            }
        }
    }
    Ok(ExitCode::from(code))
}
