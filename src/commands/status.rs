//! `status`: gather the health facts, run the probes, print the report in
//! the chosen format, and turn it into an exit code. Glue only: the facts,
//! probes and formats live in `crate::health`.
//!
//! Exit codes: human and JSON 0 = no findings, 1 = warnings or critical
//! findings, 2 = error (a probe that could not run is reported, not an
//! error); Nagios 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; Prometheus 0
//! (the state is in `guestfs_appliance_status`), so that
//! `status --format prometheus > f.prom.tmp && mv ...` works.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::{StatusArgs, StatusFormat};
use crate::config::Config;
use crate::health::{self, libguestfs, report, GatherOptions, HostRoots, LibguestfsEnv, Report, PROBES};
use crate::printer::Printer;

/// Run `status`; returns the exit code.
pub fn run(args: &StatusArgs, config: &Config, printer: &Printer) -> Result<ExitCode> {
    if args.list_probes {
        let mut text = String::new();
        for p in PROBES {
            let sev = match p.severity {
                health::Severity::Info => "info",
                health::Severity::Warning => "warning",
                health::Severity::Critical => "critical",
            };
            text.push_str(&format!("{:<22} {sev:<8} {}\n", p.name, p.summary));
        }
        crate::stdout::write(text).context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    let format = if args.json { StatusFormat::Json } else { args.format };
    let started = Instant::now();
    let lg = LibguestfsEnv::from_env();
    let (dir, dir_source) = libguestfs::examined_dir(args.dir.as_deref(), &lg, config);
    printer.stage(format!("status: appliance directory {} ({})", dir.display(), dir_source.phrase()));
    if args.probe {
        printer.info(format!(
            "probing: writing up to {} MiB per file system and test-booting the appliance (up to {} s)...",
            config.health.probe_bytes >> 20,
            config.health.probe_kvm_timeout_s + config.health.probe_boot_timeout_s
        ));
    }
    let opts = GatherOptions {
        appliance_dir: dir,
        dir_source,
        libguestfs: lg,
        probe: args.probe,
        freshness: true,
        roots: HostRoots::default(),
    };
    let facts = health::gather(&opts, config);
    for l in &facts.locations {
        let disks: Vec<String> =
            l.disks.iter().map(|d| format!("{} rotational={:?}", d.name, d.rotational)).collect();
        printer.stage(format!(
            "location: {} is {} ({} on {}, disks [{}])",
            l.path.display(),
            l.class.name(),
            l.fs_type,
            l.mount_point.as_deref().unwrap_or(&l.measured_path).display(),
            disks.join(", ")
        ));
    }
    let report = Report::new(facts, &config.health, &args.skip, started);
    printer.stage(format!("status: {:?} in {:.3} s", report.status, report.duration_seconds));
    // Info findings (nothing wrong) do not count.
    let findings = report.summary.warnings + report.summary.critical > 0;
    let (text, code) = match format {
        StatusFormat::Human => {
            let colour = crate::stdout::is_terminal();
            let paint = |code: &str, t: &str| if colour { printer.paint(code, t) } else { t.to_string() };
            (report::human(&report, &paint), u8::from(findings))
        }
        StatusFormat::Json => {
            (report::json(&report).context("rendering the JSON report")?, u8::from(findings))
        }
        StatusFormat::Nagios => (report::nagios(&report), report::nagios_code(report.status)),
        StatusFormat::Prometheus => (report::prometheus(&report), 0),
    };
    crate::stdout::write(text).context("writing to stdout")?;
    Ok(ExitCode::from(code))
}
