//! `batpak`: the command-line tool for batpak event stores.
//!
//! One module per subcommand under `commands/`; argument definitions in
//! `cli`, filters in `filter`, output helpers in `output`, exit codes in
//! `error`.

mod cli;
mod commands;
mod error;
mod filter;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::commands::Context;
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(store) = cli.store.clone() else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "no store directory given: pass --store DIR (or set BATPAK_STORE)",
            )
            .exit();
    };
    let context = Context {
        store,
        json: cli.json,
        progress: !cli.no_progress,
    };
    match run(&context, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("batpak: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(context: &Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Info => commands::info::run(context),
        Command::Entities(args) => commands::entities::run(context, &args),
        Command::Events(args) => commands::events::run(context, &args),
        Command::Show(args) => commands::show::run(context, &args),
        Command::Tail(args) => commands::tail::run(context, &args),
        Command::Verify(args) => commands::verify::run(context, &args),
        Command::Export(args) => commands::export::run(context, &args),
        Command::Import(args) => commands::import::run(context, &args),
        Command::Snapshot(args) => commands::snapshot::run(context, &args),
        Command::Compact(args) => commands::compact::run(context, &args),
        Command::Repair(args) => commands::repair::run(context, &args),
    }
}
