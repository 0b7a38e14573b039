//! The command line: clap definitions, one file per command, and the error type that decides
//! the exit code.

mod apply;
mod connect;
mod import;
mod plan;
mod sandbox;
mod schema;
mod signals;
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
    /// Show what would change in Defender to match the desired state (never writes).
    Plan(plan::PlanArgs),
    /// Apply a fresh plan (after confirmation) or exactly a saved one.
    Apply(apply::ApplyArgs),
    /// Write desired-state files for incidents that exist in Defender.
    Import(import::ImportArgs),
    /// Print the JSON Schema of a desired-state document.
    Schema(schema::SchemaArgs),
    /// Serve a local emulator of the Defender incidents API (for trying the tool and for tests).
    Sandbox(sandbox::SandboxArgs),
}

/// How apply checks for edits made since the plan read an incident (plan states the cost).
#[derive(Debug, Clone, Args)]
pub struct EditCheckArgs {
    /// How apply makes sure nobody changed an incident since the plan read it: `get` (one GET
    /// per incident right before its first write), `list` (one listing of recently changed
    /// incidents per 10 s of apply), `auto` (`get` while that fits in the hourly quota).
    #[arg(long, value_enum, env = "INCIDENTOPS_EDIT_CHECK", default_value_t = crate::apply::EditCheck::Auto, value_name = "HOW")]
    pub edit_check: crate::apply::EditCheck,
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

/// How to reach the Defender API: shared by every command that talks to it. Credentials come
/// only from the environment (see [`crate::api::Credentials::from_env`]), never from flags.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the Defender incidents API (plain http only for loopback addresses).
    #[arg(long, env = "INCIDENTOPS_API_URL", default_value = crate::api::DEFAULT_API_URL, value_name = "URL")]
    pub api_url: String,

    /// Quota of list and PATCH calls per minute; GET by id gets twice as many.
    #[arg(long, env = "INCIDENTOPS_MAX_CALLS_PER_MINUTE", default_value_t = 50, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_calls_per_minute: u32,

    /// Quota of calls per hour, shared by every method (at least 2: apply reads an incident
    /// before it writes it).
    #[arg(long, env = "INCIDENTOPS_MAX_CALLS_PER_HOUR", default_value_t = 1500, value_name = "N",
          value_parser = clap::value_parser!(u32).range(2..))]
    pub max_calls_per_hour: u32,
}

impl ApiArgs {
    /// The validated client configuration (URL checked, quotas applied).
    pub fn config(&self) -> Result<crate::api::ApiConfig, CommandError> {
        let config = crate::api::ApiConfig::new(&self.api_url)
            .map_err(|e| CommandError::User(e.to_string()))?;
        Ok(config.with_limits(crate::api::Limits::from_quota(
            self.max_calls_per_minute,
            self.max_calls_per_hour,
        )))
    }

    /// A client with the credentials found in the environment.
    pub fn client(&self) -> Result<crate::api::Client, CommandError> {
        let credentials =
            crate::api::Credentials::from_env().map_err(|e| CommandError::User(e.to_string()))?;
        crate::api::Client::new(self.config()?, credentials)
            .map_err(|e| CommandError::User(e.to_string()))
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
        Command::Plan(args) => plan::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::Import(args) => import::run(&args),
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

/// The async runtime of the commands that talk to the API.
fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::User(format!("cannot start the async runtime: {e}")))
}

fn init_logging(verbose: bool) {
    let default = if verbose {
        "incidentops=debug,info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: CI logs and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        api: ApiArgs,
    }

    fn parse(args: &[&str]) -> Result<ApiArgs, clap::Error> {
        Harness::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|h| h.api)
    }

    #[test]
    fn api_flags_set_the_quotas_with_get_at_twice_the_minute_quota() {
        let args = parse(&[
            "--api-url",
            "http://127.0.0.1:8080",
            "--max-calls-per-minute",
            "10",
            "--max-calls-per-hour",
            "100",
        ])
        .unwrap();
        let limits = args.config().unwrap().limits();
        assert_eq!(limits, crate::api::Limits::from_quota(10, 100));
        assert_eq!(limits.get_per_minute, 20);
    }

    #[test]
    fn api_flags_refuse_plain_http_to_a_remote_host_and_zero_quotas() {
        let args = parse(&["--api-url", "http://api.security.microsoft.com"]).unwrap();
        let error = args.config().unwrap_err().to_string();
        assert!(error.contains("http"), "{error}");
        assert!(parse(&["--max-calls-per-minute", "0"]).is_err());
        // Apply reads an incident before it writes it: one call an hour cannot do both.
        assert!(parse(&["--max-calls-per-hour", "1"]).is_err());
        assert!(parse(&["--max-calls-per-hour", "2"]).is_ok());
    }
}
