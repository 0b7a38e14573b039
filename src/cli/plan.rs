//! `incidentops plan`: desired state + current state → the plan, printed or saved. Never
//! writes to the API.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::connect::{Connection, SandboxOption};
use super::{ApiArgs, CommandError, EditCheckArgs, SourceArgs};
use crate::plan::{self, Plan, PlanSource};
use crate::source;

/// A pull-request comment must stay under GitHub's 65,536-character limit.
pub const MARKDOWN_LIMIT: usize = 65_000;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub sandbox: SandboxOption,

    #[command(flatten)]
    pub edit_check: EditCheckArgs,

    /// How to print the plan: text (like Terraform), json (the versioned plan format) or
    /// markdown (a pull-request comment).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Also save the plan (JSON) for a later `incidentops apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there is nothing to change, 2 when there are changes, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

pub fn run(args: &PlanArgs) -> Result<ExitCode, CommandError> {
    let runtime = super::runtime()?;
    let plan = runtime.block_on(async {
        let connection = Connection::open(&args.api, &args.sandbox, &args.source.repo).await?;
        let plan = make_plan(&args.source, &args.api, &args.edit_check, &connection).await;
        connection.close().await?;
        plan
    })?;

    let rendered = match args.format {
        Format::Text => crate::render::text(
            &plan,
            &crate::render::TextOptions {
                color: stdout_color(),
            },
        ),
        Format::Json => plan_json(&plan),
        Format::Markdown => crate::render::markdown(&plan, MARKDOWN_LIMIT),
    };
    super::schema::write_stdout(&rendered)?;
    if let Some(out) = &args.out {
        save(&plan, out)?;
        eprintln!(
            "Saved the plan to {}; apply exactly it with `incidentops apply {}`.",
            out.display(),
            out.display()
        );
    }
    Ok(if plan.has_errors() {
        ExitCode::from(1)
    } else if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads and validates desired state, reads the current state, and builds the plan. Invalid
/// desired state is reported (like `validate`) and ends the command.
pub async fn make_plan(
    source_args: &SourceArgs,
    api: &ApiArgs,
    edit_check: &EditCheckArgs,
    connection: &Connection,
) -> Result<Plan, CommandError> {
    let desired = source::load(&source_args.options())?;
    if !desired.is_valid() {
        let snippets = std::io::stderr().is_terminal();
        for diagnostic in &desired.diagnostics {
            eprint!("{}", super::validate::format_text(diagnostic, snippets));
        }
        eprintln!(
            "error: the desired state has {} problem(s); nothing was planned (see `incidentops validate`)",
            desired.diagnostics.len()
        );
        return Err(CommandError::Reported);
    }
    for deleted in &desired.deleted {
        eprintln!(
            "note: {deleted} was deleted; its incidents are no longer managed and are left as they are"
        );
    }
    let ids: Vec<u64> = desired.incidents.iter().map(|i| i.incident.id).collect();
    let current = crate::fetch::current_state(&connection.client, &ids)
        .await
        .map_err(|e| CommandError::User(format!("cannot read the current state: {e}")))?;
    tracing::info!(strategy = ?current.strategy, calls = current.calls, "read current state");
    Ok(plan::build(plan::Inputs {
        desired: &desired,
        current: &current.incidents,
        source: PlanSource {
            repo: source_args.repo.display().to_string(),
            commit: desired.commit.clone(),
            rev: source_args.rev.clone(),
            changed_since: source_args.changed_since.clone(),
        },
        read_calls: current.calls,
        calls_per_minute: api.max_calls_per_minute,
        calls_per_hour: api.max_calls_per_hour,
        edit_check: edit_check.edit_check,
    }))
}

pub fn plan_json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the plan file atomically: a reader never sees half a plan.
fn save(plan: &Plan, path: &Path) -> Result<(), CommandError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| {
        CommandError::User(format!("cannot save the plan to {}: {e}", path.display()))
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut file, plan_json(plan).as_bytes()).map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub fn stdout_color() -> bool {
    crate::render::color_wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}
