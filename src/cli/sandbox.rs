//! `incidentops sandbox`: serve the local emulator of the Defender incidents API until
//! interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CommandError;
use super::signals::Interrupts;
use crate::sandbox::{Credentials, Emulator, EmulatorConfig, Faults, Latency, Limits};

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on. Loopback by default; anything else is reachable by other machines.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Start from these incidents (`{"value":[...]}` as the list API returns them). Default:
    /// Microsoft's three documented incidents plus `--generate` generated ones.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,

    /// How many generated incidents to add to the documented ones when no `--data` is given.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub generate: usize,

    /// Seed for generated data and injected faults (same seed, same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Save the state back to `--data` when stopped.
    #[arg(long, requires = "data")]
    pub persist: bool,

    /// Write one JSON line per request to this file.
    #[arg(long, value_name = "FILE")]
    pub request_log: Option<PathBuf>,

    /// Per-minute quota of list and PATCH calls (GET by id gets twice as many).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub max_calls_per_minute: u32,

    /// Hourly quota shared by all calls.
    #[arg(long, default_value_t = 1500, value_name = "N")]
    pub max_calls_per_hour: u32,

    /// Divide the throttling windows by this (60: a minute lasts one second), for benchmarks.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub window_scale: u32,

    /// Added latency per call: `50ms`, `2s`, or a range `0..200ms`.
    #[arg(long, value_name = "DURATION")]
    pub latency: Option<Latency>,

    /// Fraction of calls answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub fail_429: f64,

    /// Fraction of calls answered 500.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub fail_500: f64,

    /// Fraction of calls whose connection is dropped without an answer.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub drop: f64,

    /// For PATCH: fraction of injected 500s and drops that happen after the change was applied.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub after_apply: f64,

    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 3599, value_name = "SECONDS")]
    pub token_lifetime: u64,
}

pub fn run(args: &SandboxArgs) -> Result<ExitCode, CommandError> {
    let mut config = match &args.data {
        Some(path) => EmulatorConfig::from_file(path).map_err(user)?,
        None => EmulatorConfig::seeded(args.generate, args.seed),
    };
    config.seed = args.seed;
    config.limits = Limits {
        window_scale: args.window_scale.max(1),
        ..Limits::per_minute(args.max_calls_per_minute, args.max_calls_per_hour)
    };
    config.faults = Faults {
        latency: args.latency.unwrap_or_default(),
        fail_429: args.fail_429,
        fail_500: args.fail_500,
        drop: args.drop,
        after_apply: args.after_apply,
        ..Faults::default()
    };
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    config.request_log = args.request_log.clone();
    config.persist_to = if args.persist {
        args.data.clone()
    } else {
        None
    };
    config.credentials = credentials_from_env();

    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::User(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let emulator = Emulator::start(config, args.listen).await.map_err(user)?;
        // Installed before the address is announced, so that a stop request sent as soon as the
        // address is read is a clean stop (state saved), never the default kill.
        let mut interrupts = Interrupts::install()
            .map_err(|e| CommandError::User(format!("cannot install the stop handler: {e}")))?;
        if !emulator.addr().ip().is_loopback() {
            eprintln!(
                "warning: listening on {}, which other machines can reach; the sandbox is a test double, not a service",
                emulator.addr()
            );
        }
        // The address goes to stdout, alone, so scripts can read it.
        println!("{}", emulator.url());
        eprintln!(
            "sandbox: serving the Defender incidents API at {} (token endpoint {}); Ctrl-C stops",
            emulator.url(),
            emulator.token_url("<tenant>")
        );
        interrupts.recv().await;
        eprintln!("sandbox: stopping");
        emulator.shutdown().await.map_err(user)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The sandbox accepts the credentials the client would send: `INCIDENTOPS_TOKEN` as a ready
/// token, and `AZURE_CLIENT_ID` with `AZURE_CLIENT_SECRET` or a federated assertion.
fn credentials_from_env() -> Credentials {
    let mut credentials = Credentials::default();
    if let Ok(token) = std::env::var("INCIDENTOPS_TOKEN")
        && !token.is_empty()
    {
        credentials = credentials.with_static_token(token);
    }
    if let Ok(client) = std::env::var("AZURE_CLIENT_ID") {
        credentials = match std::env::var("AZURE_CLIENT_SECRET") {
            Ok(secret) => credentials.with_client_secret(client, secret),
            Err(_) => credentials.with_federated_client(client),
        };
    }
    credentials
}

fn user(error: crate::sandbox::SandboxError) -> CommandError {
    CommandError::User(error.to_string())
}
