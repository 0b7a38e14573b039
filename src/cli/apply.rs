//! `incidentops apply [PLANFILE]`: apply a fresh plan after confirmation (or
//! `--auto-approve`), or exactly a saved plan after checking nothing changed since.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;

use super::connect::{Connection, SandboxOption};
use super::plan::{make_plan, stdout_color};
use super::signals::Interrupts;
use super::{ApiArgs, CommandError, EditCheckArgs, SourceArgs};
use crate::apply::{self, Outcome};
use crate::plan::{FORMAT_VERSION, Plan};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `incidentops plan --out FILE`: applied exactly, without a prompt.
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,

    /// Apply a fresh plan without asking (needed when stdin is not a terminal, as in CI).
    #[arg(long)]
    pub auto_approve: bool,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub sandbox: SandboxOption,

    #[command(flatten)]
    pub edit_check: EditCheckArgs,
}

pub fn run(args: &ApplyArgs) -> Result<ExitCode, CommandError> {
    let saved = args.plan_file.as_ref().map(read_plan_file).transpose()?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let connection = Connection::open(&args.api, &args.sandbox, &args.source.repo).await?;
        let result = run_with(args, saved, &connection).await;
        let closed = connection.close().await;
        let code = result?;
        closed?;
        Ok(code)
    })
}

async fn run_with(
    args: &ApplyArgs,
    saved: Option<Plan>,
    connection: &Connection,
) -> Result<ExitCode, CommandError> {
    let client = &connection.client;
    let plan = match saved {
        Some(plan) => {
            if plan.has_errors() {
                return Err(CommandError::User(format!(
                    "the saved plan has {} error(s) and cannot be applied; fix them and plan again",
                    plan.errors.len()
                )));
            }
            // The saved plan is the reviewed artefact: apply exactly it, or nothing.
            let ids: Vec<u64> = plan.changes.iter().map(|c| c.id).collect();
            let current = crate::fetch::current_state(client, &ids)
                .await
                .map_err(|e| {
                    CommandError::User(format!("cannot re-read the planned incidents: {e}"))
                })?;
            let stale = apply::stale(&plan, &current.incidents);
            if !stale.is_empty() {
                for (id, reason) in &stale {
                    eprintln!("error: incident {id} changed since the plan was made: {reason}");
                }
                eprintln!(
                    "error: nothing was applied: {} planned incident(s) changed since the plan; plan again and review the new plan",
                    stale.len()
                );
                return Err(CommandError::Reported);
            }
            plan
        }
        None => {
            let plan = make_plan(&args.source, &args.api, &args.edit_check, connection).await?;
            let color = stdout_color();
            super::schema::write_stdout(&crate::render::text(
                &plan,
                &crate::render::TextOptions { color },
            ))?;
            if plan.has_errors() {
                eprintln!("error: the plan has errors; nothing was applied");
                return Err(CommandError::Reported);
            }
            if !plan.has_changes() {
                return Ok(ExitCode::SUCCESS);
            }
            if !args.auto_approve {
                confirm()?;
            }
            plan
        }
    };
    if !plan.has_changes() {
        eprintln!("No changes to apply.");
        return Ok(ExitCode::SUCCESS);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut interrupts = Interrupts::install()
        .map_err(|e| CommandError::User(format!("cannot install the Ctrl-C handler: {e}")))?;
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            interrupts.recv().await;
            stop.store(true, Ordering::SeqCst);
            eprintln!(
                "\nStopping: finishing the requests in flight, starting no new ones (Ctrl-C again to abort)."
            );
            interrupts.recv().await;
            std::process::exit(130);
        });
    }
    let before = client.stats();
    let held_back = client.time_held_back();
    let outcome = apply::apply(
        client,
        &plan,
        apply::Options {
            edit_check: args.edit_check.edit_check,
            ..apply::Options::default()
        },
        stop.clone(),
        progress(&plan),
    )
    .await;
    let after = client.stats();
    let held_back = client.time_held_back().saturating_sub(held_back);
    report(&plan, &outcome, &before, &after, held_back);
    Ok(
        if outcome.failed.is_empty() && outcome.conflicts.is_empty() && !stop.load(Ordering::SeqCst)
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

fn read_plan_file(path: &PathBuf) -> Result<Plan, CommandError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CommandError::User(format!("cannot read the plan {}: {e}", path.display())))?;
    let version: Option<u64> = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("formatVersion").and_then(serde_json::Value::as_u64));
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(CommandError::User(format!(
            "{} is not an incidentops plan of format version {FORMAT_VERSION} (found {}); make it with `incidentops plan --out FILE`",
            path.display(),
            version.map_or("none".to_string(), |v| v.to_string())
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| CommandError::User(format!("{} is not a valid plan: {e}", path.display())))
}

/// Asks on the terminal; without one, refuses: an unattended apply must say so.
fn confirm() -> Result<(), CommandError> {
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::User(
            "refusing to apply without confirmation: stdin is not a terminal. Pass --auto-approve (e.g. in CI), or apply a reviewed plan saved with `plan --out FILE`".into(),
        ));
    }
    eprint!("Apply these changes? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CommandError::User(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CommandError::User(
            "apply cancelled; nothing was changed".into(),
        ))
    }
}

/// A progress bar with ETA on a terminal; plain lines now and then otherwise (CI logs).
fn progress(plan: &Plan) -> apply::Progress {
    let total: usize = plan.changes.iter().map(|c| c.requests.len()).sum();
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} requests, {elapsed} elapsed, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        Arc::new(move |done, _| {
            bar.set_position(done as u64);
            if done == total {
                bar.finish_and_clear();
            }
        })
    } else {
        let step = (total / 10).max(1);
        Arc::new(move |done, total| {
            if done % step == 0 || done == total {
                eprintln!(
                    "applied {done}/{total} requests ({}%)",
                    done * 100 / total.max(1)
                );
            }
        })
    }
}

fn report(
    plan: &Plan,
    outcome: &Outcome,
    before: &crate::api::CallStats,
    after: &crate::api::CallStats,
    held_back: Duration,
) {
    let applied: std::collections::BTreeSet<u64> = outcome.applied.iter().copied().collect();
    let (fields, comments) = plan
        .changes
        .iter()
        .filter(|c| applied.contains(&c.id))
        .fold((0, 0), |(f, c), change| {
            (f + change.changed_fields(), c + change.new_comments())
        });
    for (id, error) in &outcome.failed {
        eprintln!("error: incident {id}: {error}");
    }
    for (id, reason) in &outcome.conflicts {
        eprintln!(
            "conflict: incident {id} changed since the plan read it: {reason}; left as it is"
        );
    }
    let stopped = !outcome.partial.is_empty() || !outcome.not_started.is_empty();
    if stopped && !outcome.applied.is_empty() {
        eprintln!("stopped: applied: incidents {}", join(&outcome.applied));
    }
    if !outcome.partial.is_empty() {
        eprintln!(
            "stopped: incidents {} were partly applied; rerun apply to finish them",
            join(&outcome.partial)
        );
    }
    if !outcome.not_started.is_empty() {
        eprintln!(
            "stopped: not applied: incidents {}",
            join(&outcome.not_started)
        );
    }
    let calls = after.calls() - before.calls();
    let throttled = after.throttled - before.throttled;
    eprintln!(
        "Apply {}: {} incident(s) changed ({fields} fields, {comments} comments) with {} requests; {calls} API calls, {throttled} throttled (waited {} s), in {:.1} s.",
        if outcome.failed.is_empty()
            && outcome.conflicts.is_empty()
            && outcome.partial.is_empty()
            && outcome.not_started.is_empty()
        {
            "complete"
        } else {
            "incomplete"
        },
        outcome.applied.len(),
        outcome.requests_sent,
        held_back.as_secs(),
        outcome.elapsed.as_secs_f64()
    );
    if !outcome.failed.is_empty() {
        eprintln!(
            "Incidents already applied stay applied; fix the errors and rerun: apply only sends what still differs."
        );
    }
    if !outcome.conflicts.is_empty() {
        eprintln!(
            "{} incident(s) changed since the plan read them and were not overwritten: plan again and review their new state.",
            outcome.conflicts.len()
        );
    }
}

fn join(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
