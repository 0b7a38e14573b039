//! Rendering plans: text (with and without colour), markdown (small, and long enough to be
//! folded and cut), and the stable JSON plan. Plans are built by hand.

use incidentops::plan::{
    FORMAT_VERSION, Plan, PlanError, PlanSource, PlannedChange, Summary, estimate_seconds,
};
use incidentops::render::{self, TextOptions};
use serde_json::json;

const LIMIT: usize = 65_000;

fn change(value: serde_json::Value) -> PlannedChange {
    serde_json::from_value(value).expect("a valid planned change")
}

fn plan(changes: Vec<PlannedChange>, errors: Vec<PlanError>, unchanged: usize) -> Plan {
    let requests: usize = changes.iter().map(|c| c.requests.len()).sum();
    let checks = incidentops::apply::EditCheck::Auto.calls(requests, changes.len(), 2, 50, 1500);
    let summary = Summary {
        incidents: changes.len() + unchanged + errors.len(),
        changed: changes.len(),
        unchanged,
        fields: changes.iter().map(PlannedChange::changed_fields).sum(),
        comments: changes.iter().map(PlannedChange::new_comments).sum(),
        requests,
        apply_calls: requests + checks,
        errors: errors.len(),
        read_calls: 2,
        calls_per_minute: 50,
        calls_per_hour: 1500,
        estimated_seconds: estimate_seconds(requests as u64, checks as u64, 50, 1500),
    };
    Plan {
        format_version: FORMAT_VERSION,
        source: PlanSource {
            repo: "/work/incidents-repo".into(),
            commit: Some("3f2a9c1d5e7b8a0c4d6e8f0a1b2c3d4e5f6a7b8c".into()),
            rev: None,
            changed_since: None,
        },
        changes,
        errors,
        summary,
    }
}

fn ransomware() -> PlannedChange {
    change(json!({
        "id": 924565,
        "name": "Ransomware activity",
        "file": "incidents/924565.yaml",
        "line": 3,
        "lastUpdateTime": "2024-05-06T10:00:00Z",
        "fields": [
            {"field": "status", "before": "Active", "after": "Resolved"},
            {"field": "assignedTo", "before": null, "after": "secop2@contoso.com"},
            {"field": "classification", "before": "Unknown", "after": "TruePositive"},
            {"field": "determination", "before": "NotAvailable", "after": "Malware"},
            {"field": "tags", "before": ["old-tag", "keep"], "after": ["keep", "ransomware", "pen-test"]},
            {"field": "comment", "before": null, "after": "pen testing"},
            {"field": "comment", "before": null, "after": "valid incident"}
        ],
        "requests": [
            {"method": "PATCH", "path": "/api/incidents/924565", "body": {
                "status": "Resolved", "assignedTo": "secop2@contoso.com",
                "classification": "TruePositive", "determination": "Malware",
                "tags": ["keep", "ransomware", "pen-test"], "comment": "pen testing"}},
            {"method": "PATCH", "path": "/api/incidents/924565", "body": {"comment": "valid incident"}}
        ]
    }))
}

fn powershell() -> PlannedChange {
    change(json!({
        "id": 924521,
        "name": "Suspicious PowerShell command line",
        "file": "incidents/powershell.yaml",
        "line": 1,
        "lastUpdateTime": null,
        "fields": [
            {"field": "status", "before": "InProgress", "after": "Active"},
            {"field": "assignedTo", "before": "SOC tier one", "after": "SOC tier two"}
        ],
        "requests": [
            {"method": "PATCH", "path": "/api/incidents/924521", "body": {
                "status": "Active", "assignedTo": "SOC tier two"}}
        ]
    }))
}

fn two_changes() -> Plan {
    plan(vec![ransomware(), powershell()], vec![], 1)
}

fn errors() -> Vec<PlanError> {
    vec![
        PlanError {
            id: 77,
            file: "incidents/77.yaml".into(),
            line: 2,
            column: 5,
            message: "incident 77 does not exist in Defender (the API answered 404); check the id, or remove the file".into(),
        },
        PlanError {
            id: 924570,
            file: "incidents/924570.yaml".into(),
            line: 6,
            column: 16,
            message: "incident 924570: this would leave determination Malware on an incident classified FalsePositive, and the API allows a determination only on TruePositive; set `determination: NotAvailable`, or `classification: TruePositive`".into(),
        },
    ]
}

/// `n` incidents, each resolved with a comment: one request each.
fn many(n: u64) -> Plan {
    let changes = (1..=n)
        .map(|i| {
            change(json!({
                "id": 100_000 + i,
                "name": format!("Multi-stage incident number {i} on one endpoint"),
                "file": format!("incidents/{}.yaml", 100_000 + i),
                "line": 1,
                "fields": [
                    {"field": "status", "before": "Active", "after": "Resolved"},
                    {"field": "classification", "before": "Unknown", "after": "FalsePositive"},
                    {"field": "comment", "before": null, "after": "closed in bulk after review"}
                ],
                "requests": [{"method": "PATCH", "path": format!("/api/incidents/{}", 100_000 + i),
                    "body": {"status": "Resolved", "classification": "FalsePositive",
                             "comment": "closed in bulk after review"}}]
            }))
        })
        .collect();
    plan(changes, vec![], 41)
}

#[test]
fn text_plan_groups_changes_per_incident_with_a_summary() {
    let out = render::text(&two_changes(), &TextOptions { color: false });
    insta::assert_snapshot!(out);
}

#[test]
fn text_plan_is_coloured_only_when_asked() {
    let plan = two_changes();
    let plain = render::text(&plan, &TextOptions { color: false });
    let coloured = render::text(&plan, &TextOptions { color: true });
    assert!(!plain.contains('\x1b'), "{plain}");
    assert!(coloured.contains('\x1b'));
    // Word diff: only the changed word is struck red, the new one green.
    assert!(
        coloured.contains("SOC tier \x1b[31;9mone\x1b[0m → SOC tier \x1b[32mtwo\x1b[0m"),
        "{coloured:?}"
    );
    assert!(coloured.contains("\x1b[32m+ ransomware\x1b[0m"));
    assert!(coloured.contains("\x1b[31m- old-tag\x1b[0m"));
    // Without the escapes, the coloured plan says exactly what the plain one says.
    assert_eq!(strip_ansi(&coloured), plain);
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn text_plan_with_errors_lists_them_and_refuses_to_apply() {
    let out = render::text(
        &plan(vec![powershell()], errors(), 3),
        &TextOptions { color: false },
    );
    assert!(out.find("incidents/77.yaml:2:5: incident 77") < out.find("Plan: "));
    insta::assert_snapshot!(out);
}

#[test]
fn text_plan_without_changes_says_so_and_counts_reads() {
    let out = render::text(&plan(vec![], vec![], 3), &TextOptions { color: false });
    insta::assert_snapshot!(out, @r"
    Read current state with 2 API calls.
    No changes. 3 incidents match the desired state.
    ");
}

#[test]
fn text_plan_states_the_hourly_quota_when_it_binds() {
    let out = render::text(&many(3001), &TextOptions { color: false });
    let summary = out.lines().last().unwrap_or_default();
    assert_eq!(
        summary,
        "Plan: 3001 incidents to change (6002 fields, 3001 comments), 41 unchanged. \
         3362 API calls, about 2 h 7 min at 50 calls/min (hourly quota of 1500 calls)."
    );
}

#[test]
fn text_plan_escapes_control_characters_from_names_and_values() {
    let hostile = change(json!({
        "id": 1,
        "name": "evil\u{1b}[2J\nPlan: 0 incidents to change",
        "file": "incidents/1.yaml",
        "line": 1,
        "fields": [
            {"field": "assignedTo", "before": "a\u{1b}]0;title\u{7}", "after": "b\u{202e}c"},
            {"field": "comment", "before": null, "after": "two\nlines \"quoted\""}
        ],
        "requests": [{"method": "PATCH", "path": "/api/incidents/1",
            "body": {"assignedTo": "b\u{202e}c", "comment": "two\nlines \"quoted\""}}]
    }));
    let plan = plan(vec![hostile], vec![], 0);
    let plain = render::text(&plan, &TextOptions { color: false });
    assert!(!plain.contains('\x1b') && !plain.contains('\u{202e}') && !plain.contains('\u{7}'));
    assert!(
        plain.contains(r#"comment:    + "two\nlines \"quoted\"""#),
        "{plain}"
    );
    assert_eq!(plain.lines().filter(|l| l.starts_with("Plan: ")).count(), 1);
    // With colour, the only escapes are ours: every ESC starts one of our SGR sequences.
    let coloured = render::text(&plan, &TextOptions { color: true });
    for (i, _) in coloured.match_indices('\x1b') {
        let rest = &coloured[i + 1..];
        let sgr = rest.starts_with('[')
            && rest[1..]
                .split_once('m')
                .is_some_and(|(codes, _)| codes.chars().all(|c| c.is_ascii_digit() || c == ';'));
        assert!(sgr, "stray escape in {coloured:?}");
    }
    assert!(!coloured.contains("\x1b[2J") && !coloured.contains("\x1b]0"));
}

#[test]
fn markdown_plan_has_a_table_per_incident() {
    let out = render::markdown(&two_changes(), LIMIT);
    assert!(!out.contains("<details>"));
    insta::assert_snapshot!(out);
}

#[test]
fn markdown_plan_lists_errors_first() {
    let out = render::markdown(&plan(vec![powershell()], errors(), 3), LIMIT);
    let errors_at = out.find("### 2 errors").expect("an errors heading");
    let changes_at = out.find("### Changes").expect("a changes heading");
    assert!(errors_at < changes_at);
    insta::assert_snapshot!(out);
}

#[test]
fn markdown_plan_without_changes_says_so() {
    let out = render::markdown(&plan(vec![], vec![], 3), LIMIT);
    insta::assert_snapshot!(out, @r"
    ## incidentops plan

    **No changes. 3 incidents match the desired state.**

    Read current state with 2 API calls. Desired state at commit `3f2a9c1d5e7b8a0c4d6e8f0a1b2c3d4e5f6a7b8c`.
    ");
}

#[test]
fn markdown_cells_cannot_break_the_table_or_the_code_span() {
    let tricky = change(json!({
        "id": 5,
        "name": "a | b `c` <script>",
        "file": "incidents/5.yaml",
        "line": 1,
        "fields": [
            {"field": "assignedTo", "before": "x|y", "after": "``z``"},
            {"field": "tags", "before": [], "after": ["a|b", "@team"]},
            {"field": "comment", "before": null, "after": "line one\nline | two <b>bold</b> @someone"}
        ],
        "requests": [{"method": "PATCH", "path": "/api/incidents/5",
            "body": {"assignedTo": "``z``", "tags": ["a|b", "@team"],
                     "comment": "line one\nline | two <b>bold</b> @someone"}}]
    }));
    let out = render::markdown(&plan(vec![tricky], vec![], 0), LIMIT);
    for row in out.lines().filter(|l| l.starts_with('|')) {
        let unescaped = row
            .char_indices()
            .filter(|&(i, c)| c == '|' && (i == 0 || row.as_bytes()[i - 1] != b'\\'))
            .count();
        assert_eq!(
            unescaped, 4,
            "row {row:?} does not have exactly three cells"
        );
    }
    insta::assert_snapshot!(out);
}

#[test]
fn long_markdown_plan_is_folded_and_cut_under_the_limit() {
    let plan = many(2000);
    let out = render::markdown(&plan, LIMIT);
    assert!(out.len() < LIMIT, "{} characters", out.len());
    let shown = out.matches("<details>").count();
    assert!(shown > 10, "only {shown} incidents shown");
    assert_eq!(out.matches("</details>").count(), shown, "a block was cut");
    let note = format!(
        "**… {} more incidents ({} requests) not shown: the comment is limited to 65,000 characters; see the full plan in the job log or the saved plan.**\n",
        2000 - shown,
        2000 - shown
    );
    assert!(out.ends_with(&note), "{}", &out[out.len() - 400..]);
    assert!(out.ends_with(&format!("</details>\n\n{note}")));

    let start: String = out.lines().take(24).collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!("long_markdown_start", start);
    let lines: Vec<&str> = out.lines().collect();
    let end = lines[lines.len() - 12..].join("\n");
    insta::assert_snapshot!("long_markdown_end", end);
}

#[test]
fn markdown_plan_that_fits_is_not_cut() {
    let plan = many(20);
    let out = render::markdown(&plan, LIMIT);
    assert_eq!(out.matches("<details>").count(), 20);
    assert!(!out.contains("not shown"));
}

#[test]
fn markdown_plan_never_exceeds_the_limit() {
    let plan = plan(many(300).changes, errors(), 0);
    let full = render::markdown(&plan, usize::MAX);
    for limit in (0..full.len() + 10).step_by(997) {
        let out = render::markdown(&plan, limit);
        assert!(out.len() <= limit, "{} > {limit}", out.len());
        assert_eq!(
            out.matches("<details>").count(),
            out.matches("</details>").count()
        );
    }
    // Errors are listed before any incident, even when few fit.
    let out = render::markdown(&plan, 2000);
    assert!(out.contains("incidents/77.yaml:2:5"), "{out}");
}

#[test]
fn json_plan_is_the_stable_format() {
    let plan = plan(vec![ransomware()], errors()[..1].to_vec(), 1);
    let json = serde_json::to_string_pretty(&plan).expect("a plan serialises");
    insta::assert_snapshot!(json);
    let back: Plan = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back, plan);
}

#[test]
fn markdown_cuts_a_long_error_list_with_a_note_and_shows_no_incident_after_it() {
    let many_errors: Vec<PlanError> = (0..500)
        .map(|i| PlanError {
            id: i,
            file: format!("incidents/{i}.yaml"),
            line: 1,
            column: 5,
            message: format!("incident {i} does not exist in Defender (the API answered 404)"),
        })
        .collect();
    let plan = plan(vec![powershell()], many_errors, 0);
    let out = render::markdown(&plan, 5_000);
    assert!(out.len() <= 5_000);
    let shown = out
        .lines()
        .filter(|l| l.starts_with("- `incidents/"))
        .count();
    assert!(shown > 0);
    assert!(
        out.contains(&format!(
            "- … {} more errors not shown: the comment is limited to 5,000 characters; see the job log.\n",
            500 - shown
        )),
        "{out}"
    );
    assert!(
        out.contains("**… 1 more incident (1 request) not shown"),
        "{out}"
    );
    assert!(!out.contains("| `status` |"));
}
