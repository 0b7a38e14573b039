//! The command line: clap definitions, one file per command, and the error type that decides
//! the exit code.

mod sandbox;
mod schema;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Manage Microsoft Defender XDR incidents as code.
#[derive(Debug, Parser)]
#[command(name = "incidentops", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log what happens (to stderr). `RUST_LOG` gives finer control.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and schema-validate every desired-state file (no network).
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of a desired-state document.
    Schema(schema::SchemaArgs),
    /// Serve a local emulator of the Defender incidents API (for trying the tool and for tests).
    Sandbox(sandbox::SandboxArgs),
}

/// Where desired state is read from: shared by every command that reads it.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// The folder that holds `incidents/` (anywhere inside a git work tree, or a plain folder).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,

    /// Read the files from this git revision (commit, branch, tag) instead of the working tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,

    /// Only the incidents defined in files that differ between REV and the state being read.
    #[arg(long, value_name = "REV")]
    pub changed_since: Option<String>,
}

impl SourceArgs {
    pub fn options(&self) -> crate::source::SourceOptions {
        crate::source::SourceOptions {
            repo: self.repo.clone(),
            rev: self.rev.clone(),
            changed_since: self.changed_since.clone(),
        }
    }
}

/// Why a command failed. Every kind exits 1; the wording tells the user what to do.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The desired state, the request or the environment is wrong: the user can fix it.
    #[error("{0}")]
    User(String),
    /// Already reported in detail (e.g. validation errors); only the exit code is left.
    #[error("")]
    Reported,
}

impl From<crate::source::SourceError> for CommandError {
    fn from(error: crate::source::SourceError) -> Self {
        CommandError::User(error.to_string())
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Sandbox(args) => sandbox::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(CommandError::Reported) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose {
        "incidentops=debug,info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
