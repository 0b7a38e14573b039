//! The plan as a pull-request comment: the summary, errors first, then a table per incident,
//! folded in `<details>` when there are many, and cut (whole incidents only, with a note) to
//! stay under the comment size limit.

use serde_json::Value;

use super::{cannot_apply_line, count, printable, read_line, summary_line, tag_changes};
use crate::engine::FieldChange;
use crate::plan::{Plan, PlanError, PlannedChange};

/// More changed incidents than this and each table is folded in a `<details>` block.
const FOLD_ABOVE: usize = 10;
/// Longest text shown in a cell, in characters; the rest is counted, not shown.
const CELL_CHARS: usize = 300;
/// Most tags listed in one cell.
const CELL_TAGS: usize = 20;

/// Renders the plan as markdown of at most `limit` bytes (so at most `limit` characters).
/// When the whole plan does not fit, whole incidents (and errors) are left out from the end
/// and a note says how many and why. A table or an HTML tag is never cut.
pub fn markdown(plan: &Plan, limit: usize) -> String {
    let head = head(plan);
    let errors: Vec<String> = plan.errors.iter().map(error_item).collect();
    let fold = plan.changes.len() > FOLD_ABOVE;
    let blocks: Vec<String> = plan.changes.iter().map(|c| incident(c, fold)).collect();
    let errors_head = errors_head(plan.errors.len());
    let changes_head = match (plan.has_changes(), plan.has_errors()) {
        (false, _) => "",
        // A blank line ends the errors list.
        (true, true) => "\n### Changes\n\n",
        (true, false) => "### Changes\n\n",
    };

    let full = head.len()
        + errors_head.len()
        + errors.iter().map(String::len).sum::<usize>()
        + changes_head.len()
        + blocks.iter().map(String::len).sum::<usize>();
    if full <= limit {
        let mut out = head;
        out.push_str(&errors_head);
        errors.iter().for_each(|e| out.push_str(e));
        out.push_str(changes_head);
        blocks.iter().for_each(|b| out.push_str(b));
        return out;
    }

    // Does not fit: keep room for the notes at their longest (the real ones, counting fewer
    // left-out items, are never longer) and add whole items while they fit.
    let total_requests = plan.changes.iter().map(|c| c.requests.len()).sum();
    let reserve = errors_note(errors.len(), limit).len()
        + incidents_note(blocks.len(), total_requests, limit).len()
        + changes_head.len();
    if head.len() + errors_head.len() + reserve > limit {
        return too_small(limit);
    }
    let mut out = head;
    out.push_str(&errors_head);
    let budget = limit - reserve;
    let shown_errors = take_while_fits(&mut out, &errors, budget);
    if shown_errors < errors.len() {
        out.push_str(&errors_note(errors.len() - shown_errors, limit));
    }
    out.push_str(changes_head);
    // The changes heading was reserved; give it back to the incidents.
    let budget = budget + changes_head.len();
    let shown = if shown_errors < errors.len() {
        0
    } else {
        take_while_fits(&mut out, &blocks, budget)
    };
    if shown < blocks.len() {
        let requests = plan.changes[shown..].iter().map(|c| c.requests.len()).sum();
        out.push_str(&incidents_note(blocks.len() - shown, requests, limit));
    }
    out
}

fn take_while_fits(out: &mut String, items: &[String], budget: usize) -> usize {
    let mut shown = 0;
    for item in items {
        if out.len() + item.len() > budget {
            break;
        }
        out.push_str(item);
        shown += 1;
    }
    shown
}

fn head(plan: &Plan) -> String {
    let mut out = String::from("## incidentops plan\n\n");
    out.push_str(&format!("**{}**\n\n", html_escape(&summary_line(plan))));
    out.push_str(&read_line(&plan.summary));
    if let Some(commit) = &plan.source.commit {
        out.push_str(&format!(
            " Desired state at commit {}.",
            code(commit, false)
        ));
    }
    out.push_str("\n\n");
    out
}

fn errors_head(errors: usize) -> String {
    match errors {
        0 => String::new(),
        n => format!(
            "### {}\n\n{}\n\n",
            count(n, "error", "errors"),
            cannot_apply_line(n).replace(" above", " below")
        ),
    }
}

fn error_item(error: &PlanError) -> String {
    format!(
        "- {} {}\n",
        code(
            &format!("{}:{}:{}", error.file, error.line, error.column),
            false
        ),
        html_escape(&printable(&error.message))
    )
}

fn errors_note(left_out: usize, limit: usize) -> String {
    format!(
        "- … {} not shown: the comment is limited to {} characters; see the job log.\n",
        count(left_out, "more error", "more errors"),
        thousands(limit)
    )
}

fn incidents_note(left_out: usize, requests: usize, limit: usize) -> String {
    format!(
        "**… {} ({}) not shown: the comment is limited to {} characters; see the full plan in the job log or the saved plan.**\n",
        count(left_out, "more incident", "more incidents"),
        count(requests, "request", "requests"),
        thousands(limit)
    )
}

/// What is left when not even the summary fits.
fn too_small(limit: usize) -> String {
    let note = "The plan does not fit in this comment; see the job log.\n";
    if note.len() <= limit {
        note.to_string()
    } else {
        String::new()
    }
}

fn incident(change: &PlannedChange, fold: bool) -> String {
    let requests = count(change.requests.len(), "request", "requests");
    let place = code(&format!("{}:{}", change.file, change.line), false);
    let mut out = String::new();
    if fold {
        let name = change
            .name
            .as_deref()
            .map(|n| format!(" <code>{}</code>", html_escape(&shorten(n).0)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<details><summary>~ incident {}{name}: {}, {}, {requests}</summary>\n\n{place}\n\n",
            change.id,
            count(change.changed_fields(), "field", "fields"),
            count(change.new_comments(), "comment", "comments"),
        ));
    } else {
        let name = change
            .name
            .as_deref()
            .map(|n| format!(" {}", code(n, false)))
            .unwrap_or_default();
        out.push_str(&format!(
            "#### ~ incident {}{name}\n\n{place} · {requests}\n\n",
            change.id
        ));
    }
    out.push_str("| field | before | after |\n|---|---|---|\n");
    for field in &change.fields {
        out.push_str(&row(field));
    }
    out.push('\n');
    if fold {
        out.push_str("</details>\n\n");
    }
    out
}

fn row(field: &FieldChange) -> String {
    if field.field == "comment"
        && field.before.is_null()
        && let Value::String(comment) = &field.after
    {
        return format!("| new comment | | {} |\n", cell(comment));
    }
    if field.field == "tags"
        && let Some((added, removed)) = tag_changes(&field.before, &field.after)
        && !(added.is_empty() && removed.is_empty())
    {
        let mut after = Vec::new();
        if !added.is_empty() {
            after.push(format!("add {}", tags(&added)));
        }
        if !removed.is_empty() {
            after.push(format!("remove {}", tags(&removed)));
        }
        return format!(
            "| `tags` | {} | {} |\n",
            value(&field.before),
            after.join("; ")
        );
    }
    format!(
        "| {} | {} | {} |\n",
        code(&field.field, true),
        value(&field.before),
        value(&field.after)
    )
}

fn value(value: &Value) -> String {
    match value {
        Value::Null => "*(none)*".to_string(),
        Value::String(s) => cell(s),
        Value::Array(items) if items.is_empty() => "*(none)*".to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let items: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            tags(&items)
        }
        other => cell(&other.to_string()),
    }
}

fn tags(tags: &[String]) -> String {
    let mut shown: Vec<String> = tags.iter().take(CELL_TAGS).map(|t| cell(t)).collect();
    if tags.len() > CELL_TAGS {
        shown.push(format!("and {} more", tags.len() - CELL_TAGS));
    }
    shown.join(", ")
}

/// A value in a table cell: a code span (no markdown, mention or HTML inside), shortened.
fn cell(text: &str) -> String {
    if text.is_empty() {
        return "*(empty)*".to_string();
    }
    let (shown, left_out) = shorten(text);
    let mut out = code(&shown, true);
    if left_out > 0 {
        out.push_str(&format!(" … ({left_out} more characters)"));
    }
    out
}

/// The first `CELL_CHARS` characters of `text`, and how many were left out.
fn shorten(text: &str) -> (String, usize) {
    let total = text.chars().count();
    if total <= CELL_CHARS {
        return (text.to_string(), 0);
    }
    (text.chars().take(CELL_CHARS).collect(), total - CELL_CHARS)
}

/// `text` as a code span that its own backticks cannot close; in a table, `|` is escaped
/// (GitHub unescapes it inside code spans too) and newlines, which would end the row, shown
/// as `\n`.
fn code(text: &str, in_table: bool) -> String {
    let mut text = printable(text).into_owned();
    if in_table {
        text = text.replace('|', "\\|");
    }
    let longest_run = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run + 1);
    let pad = text.starts_with('`')
        || text.ends_with('`')
        || (text.starts_with(' ') && text.ends_with(' '));
    if pad {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_span_is_not_closed_by_backticks_inside() {
        assert_eq!(code("plain", false), "`plain`");
        assert_eq!(code("a `b` c", false), "``a `b` c``");
        assert_eq!(code("`edge", false), "`` `edge ``");
        assert_eq!(code("a``b", false), "```a``b```");
    }

    #[test]
    fn code_span_in_a_table_escapes_pipes_and_newlines() {
        assert_eq!(code("a|b\nc", true), "`a\\|b\\nc`");
        assert_eq!(code("a|b", false), "`a|b`");
    }

    #[test]
    fn long_cells_are_shortened_with_a_count() {
        let long = "x".repeat(CELL_CHARS + 500);
        let cell = cell(&long);
        assert!(cell.ends_with(" … (500 more characters)"));
        assert!(cell.len() < long.len());
        assert_eq!(super::cell(""), "*(empty)*");
    }

    #[test]
    fn thousands_are_separated_with_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(65_000), "65,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn a_limit_too_small_for_the_summary_gives_a_short_note_within_it() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "formatVersion": 1,
            "source": {"repo": ".", "commit": null},
            "changes": [],
            "summary": {"incidents": 0, "changed": 0, "unchanged": 0, "fields": 0,
                "comments": 0, "requests": 0, "errors": 0, "readCalls": 0,
                "callsPerMinute": 50, "callsPerHour": 1500, "estimatedSeconds": 0}
        }))
        .unwrap();
        for limit in [0, 10, 40, 80, 200] {
            assert!(markdown(&plan, limit).len() <= limit, "limit {limit}");
        }
    }
}
