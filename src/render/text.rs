//! The plan as text, like Terraform's: one block per incident with its `field: before → after`
//! lines, then errors, then the summary. Colour is plain ANSI and only on request.

use serde_json::Value;
use similar::{Algorithm, ChangeTag};

use super::{cannot_apply_line, count, printable, read_line, summary_line, tag_changes};
use crate::engine::FieldChange;
use crate::plan::{Plan, PlanError, PlannedChange};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// ANSI colour; the CLI sets it on a terminal without `NO_COLOR` (see `color_wanted`).
    pub color: bool,
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const RED_STRUCK: &str = "\x1b[31;9m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";

/// Renders the plan for a terminal or a CI log.
pub fn text(plan: &Plan, options: &TextOptions) -> String {
    let paint = Paint { on: options.color };
    let mut out = String::new();
    if plan.has_changes() {
        out.push_str(&format!(
            "incidentops will change {}:\n\n",
            count(plan.changes.len(), "incident", "incidents")
        ));
        for change in &plan.changes {
            incident(&mut out, change, paint);
            out.push('\n');
        }
    }
    if plan.has_errors() {
        out.push_str(&format!(
            "{}:\n\n",
            paint.wrap(
                RED,
                &format!(
                    "incidentops found {}",
                    count(plan.errors.len(), "error", "errors")
                )
            )
        ));
        for error in &plan.errors {
            out.push_str(&format!("  {}\n", error_line(error, paint)));
        }
        out.push('\n');
        out.push_str(&paint.wrap(RED, &cannot_apply_line(plan.errors.len())));
        out.push('\n');
    }
    out.push_str(&read_line(&plan.summary));
    out.push('\n');
    out.push_str(&paint.wrap(BOLD, &summary_line(plan)));
    out.push('\n');
    out
}

fn incident(out: &mut String, change: &PlannedChange, paint: Paint) {
    let name = change
        .name
        .as_deref()
        .map(|name| format!(" {}", quoted(name)))
        .unwrap_or_default();
    out.push_str(&format!(
        "  {} incident {}{}  ({}:{})\n",
        paint.wrap(YELLOW, "~"),
        change.id,
        paint.wrap(BOLD, &name),
        printable(&change.file),
        change.line
    ));
    let width = change
        .fields
        .iter()
        .map(|f| printable(&f.field).chars().count() + 1)
        .max()
        .unwrap_or(0);
    for field in &change.fields {
        let label = format!("{}:", printable(&field.field));
        out.push_str(&format!(
            "      {label:<width$} {}\n",
            field_value(field, paint)
        ));
    }
    out.push_str(&format!(
        "      {}\n",
        count(change.requests.len(), "request", "requests")
    ));
}

fn field_value(field: &FieldChange, paint: Paint) -> String {
    if field.field == "comment"
        && field.before.is_null()
        && let Value::String(comment) = &field.after
    {
        return paint.wrap(GREEN, &format!("+ {}", quoted(comment)));
    }
    if field.field == "tags"
        && let Some((added, removed)) = tag_changes(&field.before, &field.after)
    {
        let marks: Vec<String> = added
            .iter()
            .map(|t| paint.wrap(GREEN, &format!("+ {}", tag(t))))
            .chain(
                removed
                    .iter()
                    .map(|t| paint.wrap(RED, &format!("- {}", tag(t)))),
            )
            .collect();
        if !marks.is_empty() {
            return marks.join("  ");
        }
        // Same set, different order or duplicates: show the lists.
    }
    match (&field.before, &field.after) {
        (Value::String(before), Value::String(after)) if paint.on => word_diff(before, after),
        (before, after) => format!(
            "{} → {}",
            paint.wrap(if before.is_null() { DIM } else { RED }, &value(before)),
            paint.wrap(GREEN, &value(after))
        ),
    }
}

/// `before → after` with the removed words red and struck, the added ones green.
fn word_diff(before: &str, after: &str) -> String {
    let mut old = String::new();
    let mut new = String::new();
    for (tag, part) in similar::utils::diff_words(Algorithm::Myers, before, after) {
        let part = printable(part);
        match tag {
            ChangeTag::Equal => {
                old.push_str(&part);
                new.push_str(&part);
            }
            ChangeTag::Delete => old.push_str(&format!("{RED_STRUCK}{part}{RESET}")),
            ChangeTag::Insert => new.push_str(&format!("{GREEN}{part}{RESET}")),
        }
    }
    if before.is_empty() {
        old = format!("{DIM}\"\"{RESET}");
    }
    if after.is_empty() {
        new = format!("{DIM}\"\"{RESET}");
    }
    format!("{old} → {new}")
}

fn value(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_string(),
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => printable(s).into_owned(),
        Value::Array(items) if items.is_empty() => "(none)".to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(tag)
            .collect::<Vec<_>>()
            .join(", "),
        other => printable(&other.to_string()).into_owned(),
    }
}

/// A tag as itself when that is unambiguous, quoted when it holds spaces, quotes or nothing.
fn tag(tag: &str) -> String {
    if tag.is_empty()
        || tag
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == ',')
    {
        quoted(tag)
    } else {
        printable(tag).into_owned()
    }
}

fn quoted(text: &str) -> String {
    format!(
        "\"{}\"",
        printable(&text.replace('\\', "\\\\").replace('"', "\\\""))
    )
}

fn error_line(error: &PlanError, paint: Paint) -> String {
    format!(
        "{}: {}",
        paint.wrap(
            BOLD,
            &format!("{}:{}:{}", printable(&error.file), error.line, error.column)
        ),
        printable(&error.message)
    )
}

#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(self, style: &str, text: &str) -> String {
        if self.on && !text.is_empty() {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }
}
