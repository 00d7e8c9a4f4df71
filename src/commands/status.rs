//! `status`: gather the health facts, run the probes, print the report in
//! the chosen format, and turn it into an exit code. Glue only: the facts,
//! probes and formats live in `crate::health`.
//!
//! Exit codes: human and JSON 0 = no findings, 1 = warnings or critical
//! findings, 2 = error (a probe that could not run is reported, not an
//! error); Nagios 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; Prometheus 0
//! (the state is in `guestfs_appliance_status`), so that
//! `status --format prometheus > f.prom.tmp && mv ...` works.
//!
//! Nagios plugin rules (nagios-plugins.org/doc/guidelines.html): whatever
//! goes wrong (a usage error, an unreadable config, a bad `--skip`, the
//! `--timeout` watchdog) still prints one `GUESTFS-APPLIANCE UNKNOWN - ...`
//! line on stdout and exits 3; main.rs routes those errors here.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{StatusArgs, StatusFormat};
use crate::config::Config;
use crate::health::virt::{self, BootOptions};
use crate::health::{self, libguestfs, report, GatherOptions, HostRoots, LibguestfsEnv, Report, PROBES};
use crate::printer::Printer;

/// `--timeout` with `--format nagios` when none is given: under Nagios's
/// own 60 s plugin timeout, with room to spare.
pub(crate) const NAGIOS_DEFAULT_TIMEOUT_S: u64 = 50;

/// Time kept back from `--timeout` for stopping qemu and printing the
/// report; the watchdog fires at the full timeout.
const REPORT_RESERVE: Duration = Duration::from_secs(1);

/// Run `status`; returns the exit code.
pub fn run(args: &StatusArgs, config: &Config, printer: &Printer) -> Result<ExitCode> {
    health::validate_skip(&args.skip)?;
    if args.list_probes {
        let mut text = String::new();
        for p in PROBES.iter().map(|p| p.info) {
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
    let timeout = args
        .timeout
        .or((format == StatusFormat::Nagios).then_some(NAGIOS_DEFAULT_TIMEOUT_S))
        .map(Duration::from_secs);
    if let Some(t) = timeout {
        start_watchdog(t, format, printer.is_quiet());
    }
    let deadline = timeout.map(|t| started + t.saturating_sub(REPORT_RESERVE).max(t / 2));
    let lg = LibguestfsEnv::from_env();
    let (dir, dir_source) = libguestfs::examined_dir(args.dir.as_deref(), &lg, config);
    printer.stage(format!("status: appliance directory {} ({})", dir.display(), dir_source.phrase()));
    let boots = (!health::is_skipped(virt::BOOT.name, &args.skip))
        .then_some(BootOptions { init: init_bytes, deadline });
    if args.probe {
        let boot_s = config.health.probe_kvm_timeout_s + config.health.probe_boot_timeout_s;
        let boot_s = timeout.map_or(boot_s, |t| boot_s.min(t.as_secs()));
        printer.info(format!(
            "probing: writing up to {} MiB per file system{} (up to {boot_s} s)...",
            config.health.probe_bytes >> 20,
            if boots.is_some() { " and test-booting under KVM, then TCG" } else { "" },
        ));
    }
    let opts = GatherOptions {
        appliance_dir: dir,
        dir_source,
        libguestfs: lg,
        probe: args.probe,
        boots,
        deadline,
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

/// Our init's bytes, for the host-kernel test boot: the one place that
/// chooses the init ([`crate::init::choose`]).
fn init_bytes() -> Result<Vec<u8>, String> {
    crate::init::choose().map(|init| init.bytes.into_owned()).map_err(|e| e.to_string())
}

/// The backstop behind `--timeout`: if the report is not out when the time
/// is up (a file system or tool that never answers, where the cooperative
/// deadline cannot reach), kill the test-boot guests, say so and exit
/// (Nagios: UNKNOWN, 3; else an error, 2).
fn start_watchdog(timeout: Duration, format: StatusFormat, quiet: bool) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        virt::kill_running_guests();
        let why = format!(
            "status did not finish within --timeout {} s (a file system or tool did not answer)",
            timeout.as_secs()
        );
        let code = if format == StatusFormat::Nagios {
            let _ = crate::stdout::write(report::nagios_unknown(&why));
            3
        } else {
            2
        };
        let printer = Printer::new(if quiet { -1 } else { 0 }, crate::printer::ColorChoice::Never);
        printer.error(&why);
        std::process::exit(code)
    });
}

/// Whether the command line asks for `status --format nagios` (looked up
/// in the raw arguments, for errors clap raises before we know).
pub(crate) fn nagios_requested(args: &[OsString]) -> bool {
    args.iter().any(|a| a == "--format=nagios")
        || args.windows(2).any(|w| w[0] == "--format" && w[1] == "nagios")
}

/// A command-line error of `status --format nagios`: print the UNKNOWN line
/// on stdout and clap's message on stderr, and exit 3. `None` when the
/// error is help or version output, or Nagios was not asked for.
pub fn nagios_usage_error(err: &clap::Error, args: &[OsString]) -> Option<ExitCode> {
    if !err.use_stderr() || !nagios_requested(args) {
        return None;
    }
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let _ = crate::stdout::write(report::nagios_unknown(&format!(
        "usage error: {first} (see guestfs-appliance status --help)"
    )));
    let _ = err.print();
    Some(ExitCode::from(3))
}

/// An error of `status --format nagios` (config, `--skip`, I/O): the
/// UNKNOWN line on stdout, the error on stderr, exit 3.
pub fn nagios_error(err: &anyhow::Error, printer: &Printer) -> ExitCode {
    let line = crate::error_line(err);
    let _ = crate::stdout::write(report::nagios_unknown(&line));
    printer.error(line);
    ExitCode::from(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nagios_is_found_in_either_spelling() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(nagios_requested(&args(&["ga", "status", "--format", "nagios"])));
        assert!(nagios_requested(&args(&["ga", "status", "--bogus", "--format=nagios"])));
        assert!(!nagios_requested(&args(&["ga", "status", "--format", "json"])));
        assert!(!nagios_requested(&args(&["ga", "status", "nagios"])));
    }
}
