//! `build --if-needed --hook`: the one command every package-manager and
//! kernel hook runs (apt's `DPkg::Post-Invoke`, the .deb's dpkg triggers and
//! `/etc/kernel/post{inst,rm}.d`, the RPM's file triggers and kernel-install
//! plugin, the ALPM hook). It must never hold a package transaction up for
//! minutes and never fail it:
//!
//! - where systemd runs (`/run/systemd/system` exists, sd_booted(3)) and the
//!   build is the configured default one, it starts
//!   `guestfs-appliance.service` with `systemctl start --no-block` and
//!   returns at once (the service runs `build --if-needed`);
//! - otherwise (no systemd, the service is missing, or a directory or
//!   source option was given that the service would not use) it runs the
//!   same command line without `--hook` as a child, ending it after
//!   `--hook-timeout` seconds (SIGTERM, then SIGKILL after 10 s). A killed
//!   build leaves the previous appliance as it was; the next hook or timer
//!   run finishes the job.
//!
//! Every outcome exits 0; a failure is one line on stderr saying what to run.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{BuildArgs, Cli, SourceArgs};
use crate::config::CONFIG_ENV;
use crate::printer::Printer;
use crate::process::{DeadlineOutcome, Spawned, SpawnedOutput};

/// The unit that runs `build --if-needed` (templates/schedule/).
pub(crate) const SERVICE: &str = "guestfs-appliance.service";

/// sd_booted(3): systemd is PID 1 when this directory exists.
const SYSTEMD_RUN_DIR: &str = "/run/systemd/system";

/// How long a build gets after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Run the hook; always [`ExitCode::SUCCESS`].
pub fn run(args: &BuildArgs, cli: &Cli, printer: &Printer) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            printer.error(format!(
                "hook: finding our own executable: {e}; run: guestfs-appliance build --if-needed"
            ));
            return ExitCode::SUCCESS;
        }
    };
    if is_default_build(args, cli) && Path::new(SYSTEMD_RUN_DIR).is_dir() {
        match crate::process::output(&["systemctl", "start", "--no-block", SERVICE]) {
            Ok(_) => {
                printer.stage(format!("hook: started {SERVICE} (not waiting for it)"));
                return ExitCode::SUCCESS;
            }
            Err(e) => printer.stage(format!("hook: building here: {e}")),
        }
    }
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let child_args = without_hook_options(&argv);
    let retry = format!("{} build --if-needed -v", exe.display());
    let limit = Duration::from_secs(args.hook_timeout);
    let outcome = Spawned::spawn(&exe, &child_args, SpawnedOutput::Inherit)
        .and_then(|child| child.wait_with_deadline(limit, KILL_GRACE));
    match outcome {
        Ok(DeadlineOutcome::Done) => {}
        Ok(DeadlineOutcome::Failed(status)) => {
            printer.warn(format!("appliance rebuild failed ({status}); run: {retry}"));
        }
        Ok(DeadlineOutcome::TimedOut) => printer.warn(format!(
            "appliance rebuild timed out after {} s and was stopped (the previous appliance is kept); run: {retry}",
            args.hook_timeout
        )),
        Err(e) => printer.warn(format!("appliance rebuild could not start: {e}; run: {retry}")),
    }
    ExitCode::SUCCESS
}

/// Whether this is the build `guestfs-appliance.service` runs: no
/// directory, config file or source option of its own.
fn is_default_build(args: &BuildArgs, cli: &Cli) -> bool {
    let SourceArgs { inputs, minimal, size, strict, root, host_cpu, kernel_format } = &args.source;
    args.dir.is_none()
        && cli.config.is_none()
        && std::env::var_os(CONFIG_ENV).is_none()
        && inputs.is_empty()
        && !minimal
        && size.is_none()
        && !strict
        && root.is_none()
        && host_cpu.is_none()
        && kernel_format.is_none()
}

/// The argv without `--hook` and `--hook-timeout [=]N` (clap accepted it,
/// so these tokens are those options, not values).
fn without_hook_options(argv: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    let mut skip_value = false;
    for arg in argv {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match arg.to_str() {
            Some("--hook") => {}
            Some("--hook-timeout") => skip_value = true,
            Some(a) if a.starts_with("--hook-timeout=") => {}
            _ => out.push(arg.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn hook_options_are_dropped_and_nothing_else() {
        let argv =
            os(&["-v", "build", "--if-needed", "--hook", "--hook-timeout", "5", "/srv/a", "--size", "2G"]);
        assert_eq!(
            without_hook_options(&argv),
            os(&["-v", "build", "--if-needed", "/srv/a", "--size", "2G"])
        );
        let argv = os(&["build", "--hook-timeout=7", "--if-needed", "--hook"]);
        assert_eq!(without_hook_options(&argv), os(&["build", "--if-needed"]));
    }

    #[test]
    fn only_the_services_build_is_handed_to_the_service() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap();
        let build = |cli: &Cli| match &cli.command {
            crate::cli::Command::Build(b) => b.clone(),
            _ => unreachable!(),
        };
        let cli = parse(&["ga", "build", "--if-needed", "--hook"]);
        assert!(std::env::var_os(CONFIG_ENV).is_some() || is_default_build(&build(&cli), &cli));
        for other in [
            &["ga", "build", "--if-needed", "--hook", "/srv/a"][..],
            &["ga", "--config", "/x.toml", "build", "--if-needed", "--hook"],
            &["ga", "build", "--if-needed", "--hook", "--minimal"],
        ] {
            let cli = parse(other);
            assert!(!is_default_build(&build(&cli), &cli), "{other:?}");
        }
        assert!(Cli::try_parse_from(["ga", "build", "--hook"]).is_err(), "--hook needs --if-needed");
    }
}
