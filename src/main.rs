//! The `incidentops` binary: parse the command line, run it, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    incidentops::cli::run(incidentops::cli::Cli::parse())
}
