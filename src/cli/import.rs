//! `incidentops import`: write desired-state files for incidents that exist in Defender, so
//! that they can be managed from git (what it writes validates and plans to zero changes).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};

use super::connect::{Connection, SandboxOption};
use super::{ApiArgs, CommandError};
use crate::import::{self, Selection};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("selection").required(true).args(["id", "filter", "since"])))]
pub struct ImportArgs {
    /// The folder that holds (or will hold) `incidents/`.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,

    /// Import this incident (repeatable).
    #[arg(long, value_name = "N")]
    pub id: Vec<u64>,

    /// Import the incidents an OData filter selects, on `lastUpdateTime`, `createdTime`,
    /// `status` or `assignedTo`, e.g. "status eq 'Active'".
    #[arg(long, value_name = "ODATA")]
    pub filter: Option<String>,

    /// Import the incidents updated at or after this time (RFC 3339, or a date).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Overwrite `incidents/<id>.yaml` files that already exist.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub sandbox: SandboxOption,
}

pub fn run(args: &ImportArgs) -> Result<ExitCode, CommandError> {
    let selection = if !args.id.is_empty() {
        Selection::Ids(args.id.clone())
    } else if let Some(filter) = &args.filter {
        Selection::Filter(filter.clone())
    } else if let Some(since) = &args.since {
        Selection::Since(since.clone())
    } else {
        return Err(CommandError::User(
            "say what to import: --id, --filter or --since".into(),
        ));
    };
    let runtime = super::runtime()?;
    let incidents = runtime.block_on(async {
        let connection = Connection::open(&args.api, &args.sandbox, &args.repo).await?;
        let fetched = import::fetch(&connection.client, &selection).await;
        connection.close().await?;
        fetched.map_err(|e| CommandError::User(format!("cannot read the incidents: {e}")))
    })?;
    if incidents.is_empty() {
        eprintln!("No incidents matched; nothing was written.");
        return Ok(ExitCode::SUCCESS);
    }
    let report = import::write_files(&args.repo, &incidents, args.force)
        .map_err(|e| CommandError::User(e.to_string()))?;
    for skipped in &report.skipped {
        eprintln!("warning: incident {}: {}", skipped.id, skipped.reason);
    }
    for left in &report.left_out {
        eprintln!(
            "note: incident {}: `{}` not managed: {}",
            left.id, left.field, left.reason
        );
    }
    for path in &report.written {
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "Imported {} incident(s){}; review the files, then `incidentops plan` shows no changes for them.",
        report.written.len(),
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(", skipped {}", report.skipped.len())
        }
    );
    Ok(ExitCode::SUCCESS)
}
