//! Rendering a [`Plan`] for people: Terraform-like text for a terminal or a CI log, and
//! markdown for a pull-request comment. The JSON plan needs no renderer: it is `Plan`'s serde
//! form. Everything here is pure (plan in, string out); the CLI decides colour and the limit.

mod markdown;
mod text;

use std::borrow::Cow;
use std::ffi::OsStr;

use serde_json::Value;

pub use markdown::markdown;
pub use text::{TextOptions, text};

use crate::plan::{Plan, Summary};

/// Whether terminal output should be coloured: only on a terminal, and never when `NO_COLOR`
/// is set to a non-empty value (<https://no-color.org>).
pub fn color_wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// How long apply should take, in words: seconds under a minute, then minutes, then hours
/// and minutes ("about 6 s", "about 12 min", "about 2 h 5 min").
pub fn eta(seconds: u64) -> String {
    if seconds < 60 {
        return format!("about {seconds} s");
    }
    let minutes = seconds.saturating_add(30) / 60;
    if minutes < 60 {
        return format!("about {minutes} min");
    }
    match (minutes / 60, minutes % 60) {
        (hours, 0) => format!("about {hours} h"),
        (hours, rest) => format!("about {hours} h {rest} min"),
    }
}

/// The requests and their duration: "5 API calls, about 6 s at 50 calls/min", naming the
/// hourly quota when it is what makes apply take that long.
pub fn calls_and_eta(summary: &Summary) -> String {
    let mut out = format!(
        "{}, {} at {} calls/min",
        count(summary.apply_calls, "API call", "API calls"),
        eta(summary.estimated_seconds),
        summary.calls_per_minute
    );
    if summary.apply_calls as u64 > u64::from(summary.calls_per_hour) {
        out.push_str(&format!(
            " (hourly quota of {} calls)",
            summary.calls_per_hour
        ));
    }
    out
}

/// The one-line outcome shared by every human format: "Plan: 3 incidents to change (7 fields,
/// 2 comments), 41 unchanged. 5 API calls, about 6 s at 50 calls/min." or "No changes. 3
/// incidents match the desired state."
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    if !plan.has_changes() && !plan.has_errors() {
        return match s.unchanged {
            0 => "No changes. No incidents are managed here.".to_string(),
            1 => "No changes. 1 incident matches the desired state.".to_string(),
            n => format!("No changes. {n} incidents match the desired state."),
        };
    }
    let mut line = format!(
        "Plan: {} to change",
        count(plan.changes.len(), "incident", "incidents")
    );
    if plan.has_changes() {
        line.push_str(&format!(
            " ({}, {})",
            count(s.fields, "field", "fields"),
            count(s.comments, "comment", "comments")
        ));
    }
    line.push_str(&format!(", {} unchanged", s.unchanged));
    if plan.has_errors() {
        line.push_str(&format!(
            ", {} with errors",
            count(plan.errors.len(), "incident", "incidents")
        ));
    }
    line.push('.');
    if s.requests > 0 {
        line.push_str(&format!(" {}.", calls_and_eta(s)));
    }
    line
}

/// "Read current state with 2 API calls."
pub fn read_line(summary: &Summary) -> String {
    format!(
        "Read current state with {}.",
        count_u64(summary.read_calls, "API call", "API calls")
    )
}

/// The plan cannot be applied while it has errors.
pub(crate) fn cannot_apply_line(errors: usize) -> String {
    format!(
        "The plan cannot be applied: fix the {} above first.",
        if errors == 1 { "error" } else { "errors" }
    )
}

pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    count_u64(n as u64, one, many)
}

pub(crate) fn count_u64(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Tag additions (in the order desired) and removals (in the order they were) of a `tags`
/// change, or `None` when either side is not a list of strings.
pub(crate) fn tag_changes(before: &Value, after: &Value) -> Option<(Vec<String>, Vec<String>)> {
    let before = strings(before)?;
    let after = strings(after)?;
    let added = after
        .iter()
        .filter(|t| !before.contains(t))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|t| !after.contains(t))
        .cloned()
        .collect();
    Some((added, removed))
}

/// Text from a file or the API made safe to print: control characters (a terminal escape, a
/// newline that would fake another plan line) and bidirectional overrides are shown escaped.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_in_seconds_under_a_minute() {
        assert_eq!(eta(0), "about 0 s");
        assert_eq!(eta(6), "about 6 s");
        assert_eq!(eta(59), "about 59 s");
    }

    #[test]
    fn eta_is_in_minutes_under_an_hour() {
        assert_eq!(eta(60), "about 1 min");
        assert_eq!(eta(89), "about 1 min");
        assert_eq!(eta(90), "about 2 min");
        assert_eq!(eta(720), "about 12 min");
        assert_eq!(eta(3569), "about 59 min");
    }

    #[test]
    fn eta_is_in_hours_and_minutes_from_an_hour() {
        // 59 min 50 s rounds to a whole hour, not "60 min".
        assert_eq!(eta(3590), "about 1 h");
        assert_eq!(eta(3600), "about 1 h");
        assert_eq!(eta(7500), "about 2 h 5 min");
        assert_eq!(eta(7260), "about 2 h 1 min");
        assert!(eta(u64::MAX).starts_with("about "));
    }

    fn summary(requests: usize, estimated_seconds: u64) -> Summary {
        Summary {
            requests,
            apply_calls: requests,
            calls_per_minute: 50,
            calls_per_hour: 1500,
            estimated_seconds,
            ..Summary::default()
        }
    }

    #[test]
    fn calls_and_eta_names_the_minute_rate() {
        assert_eq!(
            calls_and_eta(&summary(5, 6)),
            "5 API calls, about 6 s at 50 calls/min"
        );
        assert_eq!(
            calls_and_eta(&summary(1, 2)),
            "1 API call, about 2 s at 50 calls/min"
        );
        assert_eq!(
            calls_and_eta(&summary(1500, 1800)),
            "1500 API calls, about 30 min at 50 calls/min"
        );
    }

    #[test]
    fn calls_and_eta_says_when_the_hourly_quota_binds() {
        let requests = 3001;
        let seconds = crate::plan::estimate_seconds(requests, 0, 50, 1500);
        assert_eq!(
            calls_and_eta(&summary(requests as usize, seconds)),
            "3001 API calls, about 2 h at 50 calls/min (hourly quota of 1500 calls)"
        );
        assert_eq!(
            calls_and_eta(&summary(3100, 7260)),
            "3100 API calls, about 2 h 1 min at 50 calls/min (hourly quota of 1500 calls)"
        );
    }

    #[test]
    fn color_only_on_a_terminal_without_no_color() {
        assert!(color_wanted(true, None));
        assert!(color_wanted(true, Some(OsStr::new(""))));
        assert!(!color_wanted(true, Some(OsStr::new("1"))));
        assert!(!color_wanted(false, None));
    }

    #[test]
    fn printable_escapes_terminal_controls_and_bidi_overrides() {
        assert_eq!(printable("plain text"), "plain text");
        assert_eq!(printable("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(printable("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(printable("é ✓"), "é ✓");
    }

    #[test]
    fn tag_changes_are_additions_and_removals_as_sets() {
        let before = serde_json::json!(["old-tag", "keep"]);
        let after = serde_json::json!(["keep", "ransomware", "pen-test"]);
        assert_eq!(
            tag_changes(&before, &after),
            Some((
                vec!["ransomware".to_string(), "pen-test".to_string()],
                vec!["old-tag".to_string()]
            ))
        );
        assert_eq!(
            tag_changes(&Value::Null, &serde_json::json!(["a"])),
            Some((vec!["a".to_string()], vec![]))
        );
        assert_eq!(tag_changes(&serde_json::json!("a"), &after), None);
    }
}
