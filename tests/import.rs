//! Import against the emulator, through the real client: what is written validates with zero
//! diagnostics and plans to zero changes; existing files and definitions are never clobbered.
//! Also checks that the CI pipeline examples parse and run the documented commands.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use incidentops::api::wire::Incident;
use incidentops::api::{ApiConfig, ApiError, Client, Credentials, Secret, VirtualClock};
use incidentops::engine::diff;
use incidentops::import::{ImportError, Selection, fetch, render_yaml, write_files};
use incidentops::sandbox::{
    Clock, Emulator, EmulatorConfig, FIRST_GENERATED_ID, Limits, generate_incidents,
};
use incidentops::source::{self, SourceOptions};
use serde_json::{Value, json};
use tempfile::TempDir;

const TOKEN: &str = "static-import-token-91c3";

fn config(incidents: Vec<Value>) -> EmulatorConfig {
    let start = DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    EmulatorConfig {
        credentials: incidentops::sandbox::Credentials::default().with_static_token(TOKEN),
        limits: Limits::unlimited(),
        clock: Clock::manual(start),
        ..EmulatorConfig::new(incidents)
    }
}

async fn start(incidents: Vec<Value>) -> Emulator {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Emulator::start(config(incidents), listen)
        .await
        .expect("emulator starts")
}

fn client(emulator: &Emulator) -> Client {
    let clock = Arc::new(VirtualClock::new(std::time::SystemTime::UNIX_EPOCH));
    Client::new(
        ApiConfig::new(&emulator.url()).unwrap().with_clock(clock),
        Credentials::Token(Secret::new(TOKEN)),
    )
    .unwrap()
}

/// Loads `<repo>` as `plan` would, and checks every incident defined there against the
/// emulator's current state: zero diagnostics, zero changes. Returns the ids checked.
async fn assert_plans_to_zero_changes(repo: &Path, client: &Client) -> Vec<u64> {
    let state = source::load(&SourceOptions {
        repo: repo.to_path_buf(),
        ..SourceOptions::default()
    })
    .unwrap();
    assert!(
        state.diagnostics.is_empty(),
        "diagnostics: {:#?}",
        state.diagnostics
    );
    let mut ids = Vec::new();
    for loaded in &state.incidents {
        let desired = &loaded.incident;
        let current = client.get(desired.id).await.unwrap().unwrap();
        assert_eq!(
            diff(desired, &current),
            Ok(None),
            "incident {} from {}",
            desired.id,
            state.file_of(loaded).path
        );
        ids.push(desired.id);
    }
    ids
}

fn file_names(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo.join("incidents"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn import_by_ids_writes_one_file_each_that_plans_to_zero_changes() {
    let emulator = start(generate_incidents(0, 1)).await;
    let client = client(&emulator);
    let incidents = fetch(&client, &Selection::Ids(vec![924565, 924518, 924565]))
        .await
        .unwrap();
    assert_eq!(
        incidents.iter().map(|i| i.incident_id).collect::<Vec<_>>(),
        [924565, 924518],
        "in the order asked, each once"
    );

    let repo = TempDir::new().unwrap();
    let report = write_files(repo.path(), &incidents, false).unwrap();
    assert_eq!(
        report.written,
        [
            repo.path().join("incidents/924565.yaml"),
            repo.path().join("incidents/924518.yaml")
        ]
    );
    assert!(report.skipped.is_empty());
    let text = fs::read_to_string(repo.path().join("incidents/924565.yaml")).unwrap();
    assert!(
        text.starts_with(
            "# Ransomware activity\n# severity: Medium · created: 2020-09-06T14:46:57.0733333Z\n\
             # https://security.microsoft.com/incidents/924565\nid: 924565\n"
        ),
        "{text}"
    );
    assert!(text.contains("comments:\n  - test comment for docs\n"));
    assert!(!text.contains("assignedTo"), "unset owner is not managed");

    let mut checked = assert_plans_to_zero_changes(repo.path(), &client).await;
    checked.sort();
    assert_eq!(checked, [924518, 924565]);
}

#[tokio::test]
async fn import_of_an_unknown_id_names_every_missing_id() {
    let emulator = start(generate_incidents(0, 1)).await;
    let client = client(&emulator);
    let error = fetch(&client, &Selection::Ids(vec![924565, 42, 43]))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404));
    let message = error.to_string();
    assert!(message.contains("42, 43"), "{message}");
    assert!(!message.contains("924565"), "{message}");
}

#[tokio::test]
async fn import_with_no_ids_or_an_empty_filter_is_a_usage_error() {
    let emulator = start(generate_incidents(0, 1)).await;
    let client = client(&emulator);
    for selection in [Selection::Ids(Vec::new()), Selection::Filter("  ".into())] {
        let error = fetch(&client, &selection).await.unwrap_err();
        assert!(matches!(error, ApiError::Config(_)), "{error}");
    }
    assert!(emulator.requests().is_empty(), "no call was made");
}

#[tokio::test]
async fn import_by_filter_takes_only_matching_incidents() {
    let emulator = start(generate_incidents(120, 3)).await;
    let client = client(&emulator);
    let incidents = fetch(&client, &Selection::Filter("status eq 'Resolved'".into()))
        .await
        .unwrap();
    let expected = emulator
        .incidents()
        .iter()
        .filter(|i| i["status"] == "Resolved")
        .count();
    assert!(expected > 10, "the seed has resolved incidents");
    assert_eq!(incidents.len(), expected);
    assert!(
        incidents
            .iter()
            .all(|i| i.status.as_deref() == Some("Resolved"))
    );

    let repo = TempDir::new().unwrap();
    let report = write_files(repo.path(), &incidents, false).unwrap();
    assert_eq!(report.written.len(), expected);
    let checked = assert_plans_to_zero_changes(repo.path(), &client).await;
    assert_eq!(checked.len(), expected);
}

#[tokio::test]
async fn import_since_takes_incidents_updated_at_or_after_the_time() {
    let emulator = start(generate_incidents(120, 3)).await;
    let client = client(&emulator);
    let since = "2024-01-02T00:00:00Z";
    let cut: DateTime<Utc> = since.parse().unwrap();
    let expected: Vec<u64> = emulator
        .incidents()
        .iter()
        .filter(|i| {
            i["lastUpdateTime"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .is_some_and(|t| t >= cut)
        })
        .filter_map(|i| i["incidentId"].as_u64())
        .collect();
    assert!(
        !expected.is_empty() && expected.len() < 123,
        "the cut splits the data ({})",
        expected.len()
    );

    let incidents = fetch(&client, &Selection::Since(since.into()))
        .await
        .unwrap();
    let mut got: Vec<u64> = incidents.iter().map(|i| i.incident_id).collect();
    got.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(got, expected);
    let query = emulator
        .requests()
        .iter()
        .find(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .unwrap_or_default();
    assert!(query.contains("lastUpdateTime"), "{query}");

    let bad = fetch(&client, &Selection::Since("last tuesday".into()))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("not a time"), "{bad}");
}

#[tokio::test]
async fn generated_incidents_import_to_zero_changes_including_unknown_values() {
    let emulator = start(generate_incidents(200, 11)).await;
    // Values newer than the documentation, on incidents the seed leaves plain, so every kind
    // of unknown value is present whatever the generator does.
    let plain: Vec<u64> = emulator
        .incidents()
        .iter()
        .filter(|i| i["status"] == "Active" && i["classification"] == "Unknown")
        .filter_map(|i| i["incidentId"].as_u64())
        .skip(1)
        .take(3)
        .collect();
    assert_eq!(plain.len(), 3);
    assert!(emulator.set_incident_field(plain[0], "status", json!("InProgress")));
    assert!(emulator.set_incident_field(plain[1], "classification", json!("TruePositive")));
    assert!(emulator.set_incident_field(plain[1], "determination", json!("MultiStagedAttack")));
    assert!(emulator.set_incident_field(plain[2], "classification", json!("FalsePositive")));
    assert!(emulator.set_incident_field(plain[2], "determination", json!("Malware")));
    let client = client(&emulator);
    let incidents = fetch(&client, &Selection::Since("2000-01-01".into()))
        .await
        .unwrap();
    assert_eq!(incidents.len(), 203);

    let repo = TempDir::new().unwrap();
    let report = write_files(repo.path(), &incidents, false).unwrap();
    assert_eq!(report.written.len() + report.skipped.len(), 203);

    // The data exercises what matters: merged incidents, owners, tags, comments, and values
    // this version does not know.
    let redirected: Vec<u64> = incidents
        .iter()
        .filter(|i| i.status.as_deref() == Some("Redirected"))
        .map(|i| i.incident_id)
        .collect();
    assert!(!redirected.is_empty());
    let mut skipped: Vec<u64> = report.skipped.iter().map(|s| s.id).collect();
    skipped.sort();
    let mut redirected_sorted = redirected.clone();
    redirected_sorted.sort();
    assert_eq!(skipped, redirected_sorted, "exactly the merged incidents");
    assert!(
        report
            .skipped
            .iter()
            .all(|s| s.reason.contains("merged into incident"))
    );
    for id in &redirected {
        assert!(!repo.path().join(format!("incidents/{id}.yaml")).exists());
    }
    let unknown = |field: &str, value: &str| {
        report
            .left_out
            .iter()
            .any(|l| l.field == field && l.reason.contains(value))
    };
    assert!(unknown("status", "InProgress"), "{:#?}", report.left_out);
    assert!(unknown("classification", "InformationalExpectedActivity"));
    assert!(unknown("determination", "MultiStagedAttack"));
    assert!(unknown("determination", "breaks the API's rule"));
    let has = |f: fn(&Incident) -> bool| incidents.iter().any(f);
    assert!(has(|i| i.assigned_to.is_some()));
    assert!(has(|i| !i.tags.is_empty()));
    assert!(has(|i| !i.comments.is_empty()));
    assert!(has(|i| i.determination.as_deref() == Some("Malware")
        || i.determination.as_deref() == Some("Apt")));

    let checked = assert_plans_to_zero_changes(repo.path(), &client).await;
    assert_eq!(checked.len(), report.written.len());

    // Written fields are really managed: an owner and tags appear in the files.
    let sample = incidents
        .iter()
        .find(|i| {
            i.assigned_to.is_some() && !i.tags.is_empty() && i.status.as_deref() == Some("Active")
        })
        .expect("an owned, tagged, active incident");
    let text = fs::read_to_string(
        repo.path()
            .join(format!("incidents/{}.yaml", sample.incident_id)),
    )
    .unwrap();
    assert!(text.contains("\nassignedTo: "), "{text}");
    assert!(text.contains("\ntags:\n"), "{text}");
}

#[tokio::test]
async fn yaml_special_strings_round_trip_exactly() {
    let comment = "Owner said: \"not me\" # really\nsecond line: ünïcödé ✓ 🚨 \\ 'q' \t tab";
    let tricky = json!({
        "incidentId": 77,
        "incidentName": "Name with a\nnewline: status: Resolved",
        "createdTime": "2024-05-01T00:00:00Z",
        "lastUpdateTime": "2024-05-01T00:00:00Z",
        "assignedTo": "&anchor: owner",
        "classification": "TruePositive",
        "determination": "MultiStagedAttack",
        "status": "Active",
        "severity": "High",
        "tags": ["*star", "!bang", "# hash", "yes", "123", "a: b", "- dash", "plain-tag"],
        "comments": [
            {"comment": comment, "createdBy": "a@b.c", "createdTime": "2024-05-01T00:00:00Z"},
            {"comment": "null", "createdBy": "a@b.c", "createdTime": "2024-05-01T00:00:00Z"},
            {"comment": "  leading and trailing  ", "createdBy": "a@b.c", "createdTime": "2024-05-01T00:00:00Z"}
        ]
    });
    let emulator = start(vec![tricky]).await;
    let client = client(&emulator);
    let incidents = fetch(&client, &Selection::Ids(vec![77])).await.unwrap();
    let repo = TempDir::new().unwrap();
    write_files(repo.path(), &incidents, false).unwrap();

    let state = source::load(&SourceOptions {
        repo: repo.path().to_path_buf(),
        ..SourceOptions::default()
    })
    .unwrap();
    assert!(state.diagnostics.is_empty(), "{:#?}", state.diagnostics);
    let desired = &state.incidents[0].incident;
    assert_eq!(desired.assigned_to.as_deref(), Some("&anchor: owner"));
    assert_eq!(
        desired.tags.as_deref(),
        Some(
            &[
                "*star",
                "!bang",
                "# hash",
                "yes",
                "123",
                "a: b",
                "- dash",
                "plain-tag"
            ]
            .map(String::from)[..]
        )
    );
    assert_eq!(
        desired.comments.as_deref(),
        Some(&[comment, "null", "  leading and trailing  "].map(String::from)[..])
    );
    assert_eq!(
        desired.determination, None,
        "MultiStagedAttack is not managed"
    );
    let text = fs::read_to_string(repo.path().join("incidents/77.yaml")).unwrap();
    assert!(
        text.contains("# determination: MultiStagedAttack — "),
        "{text}"
    );
    assert!(
        text.starts_with("# Name with a newline: status: Resolved\n"),
        "{text}"
    );
    assert_plans_to_zero_changes(repo.path(), &client).await;
}

fn documented() -> Vec<Incident> {
    generate_incidents(0, 1)
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
}

#[test]
fn an_existing_file_is_refused_without_force_and_nothing_is_written() {
    let repo = TempDir::new().unwrap();
    fs::create_dir_all(repo.path().join("incidents")).unwrap();
    let mine = "id: 924521\nstatus: Resolved\n";
    fs::write(repo.path().join("incidents/924521.yaml"), mine).unwrap();

    let error = write_files(repo.path(), &documented(), false).unwrap_err();
    let ImportError::Conflicts { conflicts } = &error else {
        panic!("expected conflicts, got {error}");
    };
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(conflicts[0].contains("924521.yaml already exists"));
    assert!(error.to_string().contains("--force"));
    assert_eq!(
        file_names(repo.path()),
        ["924521.yaml"],
        "no partial import"
    );
    assert_eq!(
        fs::read_to_string(repo.path().join("incidents/924521.yaml")).unwrap(),
        mine
    );
}

#[test]
fn force_overwrites_the_incident_s_own_file() {
    let repo = TempDir::new().unwrap();
    fs::create_dir_all(repo.path().join("incidents")).unwrap();
    fs::write(
        repo.path().join("incidents/924521.yaml"),
        "id: 924521\nstatus: Resolved\n",
    )
    .unwrap();

    let incidents = documented();
    let report = write_files(repo.path(), &incidents, true).unwrap();
    assert_eq!(report.written.len(), 3);
    let expected = render_yaml(&incidents[1]).unwrap();
    assert_eq!(
        fs::read_to_string(repo.path().join("incidents/924521.yaml")).unwrap(),
        expected
    );
    assert_eq!(
        file_names(repo.path()),
        ["924518.yaml", "924521.yaml", "924565.yaml"],
        "no temporary file is left behind"
    );
}

#[test]
fn an_id_defined_in_another_file_is_refused_even_with_force() {
    let repo = TempDir::new().unwrap();
    fs::create_dir_all(repo.path().join("incidents/team")).unwrap();
    fs::write(
        repo.path().join("incidents/team/triage.yaml"),
        "id: 924565\nstatus: Resolved\n---\nid: 924518\n",
    )
    .unwrap();
    fs::write(
        repo.path().join("incidents/924521.yaml"),
        "id: 924521\n---\nid: 5\n",
    )
    .unwrap();

    for force in [false, true] {
        let error = write_files(repo.path(), &documented(), force).unwrap_err();
        let ImportError::Conflicts { conflicts } = &error else {
            panic!("expected conflicts, got {error}");
        };
        let all = conflicts.join("\n");
        assert!(
            all.contains("incident 924565 is already defined in") && all.contains("triage.yaml"),
            "{all}"
        );
        assert!(
            all.contains("incident 924518 is already defined in"),
            "{all}"
        );
        assert!(
            all.contains("924521.yaml also defines incident 5"),
            "force must not drop another definition: {all}"
        );
        assert_eq!(
            file_names(repo.path()),
            ["924521.yaml", "team"],
            "nothing written (force {force})"
        );
    }
}

#[test]
fn import_creates_the_incidents_folder_and_adds_the_schema_line_when_the_repo_has_one() {
    let repo = TempDir::new().unwrap();
    fs::create_dir_all(repo.path().join("schema")).unwrap();
    fs::write(repo.path().join("schema/incident.schema.json"), "{}").unwrap();
    let report = write_files(repo.path(), &documented()[..1], false).unwrap();
    assert_eq!(report.written.len(), 1);
    let text = fs::read_to_string(&report.written[0]).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema=../schema/incident.schema.json\n"),
        "{text}"
    );
}

#[test]
fn merged_incidents_are_skipped_with_a_reason() {
    let mut incidents = documented();
    incidents[0].status = Some("Redirected".into());
    incidents[0].redirect_incident_id = Some(FIRST_GENERATED_ID);
    let repo = TempDir::new().unwrap();
    let report = write_files(repo.path(), &incidents, false).unwrap();
    assert_eq!(report.written.len(), 2);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].id, 924565);
    assert!(
        report.skipped[0]
            .reason
            .contains(&format!("merged into incident {FIRST_GENERATED_ID}"))
    );
}

fn ci_example(name: &str) -> (String, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(name);
    let text = fs::read_to_string(&path).unwrap();
    let value: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    (text, value)
}

/// Every `run:`/`script:` string in the pipeline, wherever it is nested.
fn scripts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if let ("run" | "script" | "inlineScript", Value::String(s)) = (key.as_str(), value)
                {
                    out.push(s.clone());
                }
                scripts(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| scripts(v, out)),
        _ => {}
    }
}

fn assert_runs(scripts: &[String], needles: &[&str]) {
    for needle in needles {
        assert!(
            scripts.iter().any(|s| s.contains(needle)),
            "no step runs `{needle}`"
        );
    }
}

#[test]
fn github_actions_example_validates_plans_on_pull_requests_and_applies_on_main() {
    let (text, workflow) = ci_example("github-actions.yml");
    let on = &workflow["on"];
    assert!(on.get("pull_request").is_some(), "{on}");
    assert!(on["push"]["branches"].to_string().contains("main"), "{on}");
    assert_eq!(workflow["permissions"]["id-token"], "write");
    let mut runs = Vec::new();
    scripts(&workflow, &mut runs);
    assert_runs(
        &runs,
        &[
            "incidentops validate --format github --changed-since",
            "incidentops plan --changed-since",
            "--format markdown --out plan.json",
            "incidentops apply --auto-approve",
            "AZURE_FEDERATED_TOKEN_FILE",
        ],
    );
    for needle in [
        "fetch-depth: 0",
        "marocchino/sticky-pull-request-comment@v2",
        "path: plan.md",
        "actions/upload-artifact",
        "api://AzureADTokenExchange",
        "Incident.Read.All",
        "Incident.ReadWrite.All",
        "AZURE_CLIENT_SECRET",
    ] {
        assert!(text.contains(needle), "github-actions.yml lacks {needle}");
    }
}

#[test]
fn azure_pipelines_example_validates_plans_on_pull_requests_and_applies_on_main() {
    let (text, pipeline) = ci_example("azure-pipelines.yml");
    let mut runs = Vec::new();
    scripts(&pipeline, &mut runs);
    assert_runs(
        &runs,
        &[
            "incidentops validate",
            "incidentops plan --changed-since",
            "--out",
            "incidentops apply --auto-approve",
        ],
    );
    for needle in [
        "AZURE_CLIENT_SECRET: $(AZURE_CLIENT_SECRET)",
        "Incident.Read.All",
        "Incident.ReadWrite.All",
        "PublishPipelineArtifact",
    ] {
        assert!(text.contains(needle), "azure-pipelines.yml lacks {needle}");
    }
    for script in &runs {
        assert!(
            !script.contains("echo $AZURE_CLIENT_SECRET")
                && !script.contains("echo $(AZURE_CLIENT_SECRET)"),
            "a secret is echoed: {script}"
        );
    }
}
