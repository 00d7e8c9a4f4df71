//! `make-fixed-appliance`: drop-in replacement for
//! libguestfs-make-fixed-appliance (see `commands::make_fixed`).

use std::process::ExitCode;

use clap::Parser;
use guestfs_appliance::cli::MakeFixedCli;
use guestfs_appliance::commands;
use guestfs_appliance::printer::Printer;

fn main() -> ExitCode {
    guestfs_appliance::limit_malloc_arenas();
    let cli = MakeFixedCli::parse();
    let printer = Printer::new(cli.global.verbosity(), cli.global.color_choice());
    let result = commands::make_fixed::run(&cli, &printer);
    guestfs_appliance::exit_code(result, &printer)
}
