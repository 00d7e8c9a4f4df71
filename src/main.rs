//! The `guestfs-appliance` command: parse arguments, set up the printer,
//! dispatch to a command, and map the outcome to an exit code (0 ok,
//! 1 checked and found a problem, 2 error; `status --format nagios` keeps
//! the Nagios codes, 3 for anything that kept it from reporting).

use std::process::ExitCode;

use clap::Parser;
use guestfs_appliance::cli::{BuildArgs, Cli, Command, StatusFormat};
use guestfs_appliance::commands;
use guestfs_appliance::config::Config;
use guestfs_appliance::printer::Printer;

fn main() -> ExitCode {
    guestfs_appliance::limit_malloc_arenas();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return commands::status::nagios_usage_error(&e, &args).unwrap_or_else(|| e.exit()),
    };
    let printer = Printer::new(cli.global.verbosity(), cli.global.color_choice());
    // A hook never fails its package transaction, not even on a broken
    // config file: the build it runs reports that.
    if let Command::Build(args @ BuildArgs { hook: true, .. }) = &cli.command {
        return commands::hook::run(args, &cli, &printer);
    }
    let result =
        Config::load(cli.config.as_deref()).map_err(anyhow::Error::from).and_then(|config| {
            match &cli.command {
                Command::Build(args) => {
                    commands::build::run(args, &config, &printer).map(|()| ExitCode::SUCCESS)
                }
                Command::Check(args) => commands::check::run(args, &config, &printer),
                Command::Cache(args) => {
                    commands::cache::run(args, &config, &printer).map(|()| ExitCode::SUCCESS)
                }
                Command::Status(args) => commands::status::run(args, &config, &printer),
                Command::Env(args) => commands::env::run(args, &config, &printer).map(|()| ExitCode::SUCCESS),
                Command::Schedule(args) => {
                    commands::schedule::run(args, &printer).map(|()| ExitCode::SUCCESS)
                }
                Command::Watch(args) => commands::watch::run(args, &cli, &config, &printer),
                Command::Generate(args) => {
                    commands::generate::run(args, &config, &printer).map(|()| ExitCode::SUCCESS)
                }
                Command::Bench(args) => {
                    commands::bench::run(args, &config, &printer).map(|()| ExitCode::SUCCESS)
                }
            }
        });
    match (result, &cli.command) {
        (Ok(code), _) => code,
        (Err(e), Command::Status(a)) if a.format == StatusFormat::Nagios && !a.json => {
            commands::status::nagios_error(&e, &printer)
        }
        (Err(e), _) => guestfs_appliance::exit_code(Err(e), &printer),
    }
}
