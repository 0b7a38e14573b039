//! Reaching the incidents API: the remote service (`--api-url`, credentials from the
//! environment), or with `--sandbox` an in-process emulator whose state persists in
//! `<repo>/.incidentops/sandbox.json`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{ApiArgs, CommandError};
use crate::api::{Client, Credentials, Secret};
use crate::sandbox::{Credentials as SandboxCredentials, Emulator, EmulatorConfig};

/// How many generated incidents the sandbox adds to Microsoft's three documented ones.
pub const SANDBOX_GENERATED: usize = 20;
/// Seed of the sandbox's generated incidents: every new sandbox starts the same.
pub const SANDBOX_SEED: u64 = 1;

#[derive(Debug, Clone, Args)]
pub struct SandboxOption {
    /// Use a local emulator of the Defender API instead of a tenant; its state lives in
    /// `<repo>/.incidentops/sandbox.json` (created from sample data on first use).
    #[arg(long)]
    pub sandbox: bool,

    /// Start the sandbox over from the sample data.
    #[arg(long, requires = "sandbox")]
    pub sandbox_reset: bool,
}

/// An open connection; `close` it to save the sandbox's state.
pub struct Connection {
    pub client: Client,
    emulator: Option<Emulator>,
}

impl Connection {
    pub async fn open(
        api: &ApiArgs,
        sandbox: &SandboxOption,
        repo: &Path,
    ) -> Result<Connection, CommandError> {
        if !sandbox.sandbox {
            return Ok(Connection {
                client: api.client()?,
                emulator: None,
            });
        }
        let state = sandbox_state_path(repo)?;
        if sandbox.sandbox_reset && state.exists() {
            std::fs::remove_file(&state).map_err(|e| {
                CommandError::User(format!("cannot reset {}: {e}", state.display()))
            })?;
        }
        let mut config = EmulatorConfig::load_or_seed(&state, SANDBOX_GENERATED, SANDBOX_SEED)
            .map_err(|e| CommandError::User(format!("sandbox: {e}")))?;
        // A token that lives as long as this process: nothing to configure, nothing to leak.
        let token = format!(
            "sandbox-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        config.credentials = SandboxCredentials::default().with_static_token(token.clone());
        let emulator = Emulator::start(config, ([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| CommandError::User(format!("sandbox: {e}")))?;
        tracing::info!(url = %emulator.url(), state = %state.display(), "sandbox started");
        let mut args = api.clone();
        args.api_url = emulator.url();
        let client = Client::new(args.config()?, Credentials::Token(Secret::new(token)))
            .map_err(|e| CommandError::User(e.to_string()))?;
        Ok(Connection {
            client,
            emulator: Some(emulator),
        })
    }

    /// Stops the sandbox, if any, saving its state.
    pub async fn close(self) -> Result<(), CommandError> {
        if let Some(emulator) = self.emulator {
            emulator
                .shutdown()
                .await
                .map_err(|e| CommandError::User(format!("sandbox: cannot save its state: {e}")))?;
        }
        Ok(())
    }
}

/// `<repo>/.incidentops/sandbox.json`, with a `.gitignore` so the state never gets committed.
fn sandbox_state_path(repo: &Path) -> Result<PathBuf, CommandError> {
    let dir = repo.join(".incidentops");
    std::fs::create_dir_all(&dir)
        .map_err(|e| CommandError::User(format!("cannot create {}: {e}", dir.display())))?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# local sandbox state of incidentops\n*\n")
            .map_err(|e| CommandError::User(format!("cannot write {}: {e}", ignore.display())))?;
    }
    Ok(dir.join("sandbox.json"))
}
