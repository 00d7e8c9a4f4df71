//! `check`: is the appliance fresh? Exit 0 fresh, 1 stale or damaged (with
//! one line per change on stdout), 2 cannot tell. DIR is judged against what it was
//! built from (its manifest), with any source option given replacing the
//! recorded one.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::build::fresh::{self, Change, Freshness, Method, OutputsChecked};
use crate::cli::CheckArgs;
use crate::config::Config;
use crate::printer::Printer;

/// `check --json` output (schema version 1).
#[derive(Debug, Serialize)]
struct CheckJson<'a> {
    version: u32,
    dir: String,
    status: &'static str,
    reason: Option<&'a str>,
    method: Method,
    outputs: OutputsChecked,
    appliance_fingerprint: Option<&'a str>,
    host_fingerprint: Option<&'a str>,
    changes: &'a [Change],
}

/// Run `check`; returns the exit code.
pub fn run(args: &CheckArgs, config: &Config, printer: &Printer) -> Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| config.appliance.dir.clone());
    let opts = fresh::EvalOptions { record: true, verify: args.verify };
    let (eval, _) =
        fresh::evaluate_as_built(&dir, &super::build::overrides(&args.source), config, printer, opts)?;
    if eval.outputs == OutputsChecked::NotRecorded {
        printer.warn(format!(
            "{}'s manifest records no output sizes or digests (written before format 3): damage to kernel, initrd or root cannot be detected; rebuild it to record them",
            dir.display()
        ));
    }
    let (status, code, reason, changes): (_, u8, Option<&str>, &[Change]) = match &eval.freshness {
        Freshness::Fresh => ("fresh", 0, None, &[]),
        Freshness::Stale(c) => ("stale", 1, None, c),
        Freshness::Unknown(why) => ("unknown", 2, Some(why.as_str()), &[]),
    };
    if args.json {
        let out = CheckJson {
            version: 1,
            dir: dir.display().to_string(),
            status,
            reason,
            method: eval.method,
            outputs: eval.outputs,
            appliance_fingerprint: eval.appliance_fingerprint.as_deref(),
            host_fingerprint: eval.host_fingerprint.as_deref(),
            changes,
        };
        let text = serde_json::to_string_pretty(&out)? + "\n";
        crate::stdout::write(text).context("writing to stdout")?;
    } else {
        match &eval.freshness {
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
