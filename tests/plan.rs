//! End-to-end tests of `plan` and `apply` through the real binary against the in-process
//! sandbox (`--sandbox`: state in `<repo>/.incidentops/sandbox.json`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn incidentops(repo: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_incidentops"))
        .current_dir(repo)
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of `examples/quickstart` (without any sandbox state).
fn quickstart() -> TempDir {
    let dir = TempDir::new().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/incidents"),
        &dir.path().join("incidents"),
    );
    dir
}

fn state_path(repo: &Path) -> PathBuf {
    repo.join(".incidentops/sandbox.json")
}

fn state(repo: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(state_path(repo)).unwrap()).unwrap()
}

fn incident(repo: &Path, id: u64) -> Value {
    state(repo)["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["incidentId"] == id)
        .cloned()
        .unwrap()
}

/// Changes the sandbox state as another client (or the portal) would.
fn edit_incident(repo: &Path, id: u64, edit: impl FnOnce(&mut Value)) {
    let mut state = state(repo);
    let incident = state["value"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|i| i["incidentId"] == id)
        .unwrap();
    edit(incident);
    fs::write(
        state_path(repo),
        serde_json::to_string_pretty(&state).unwrap(),
    )
    .unwrap();
}

fn plan_json(repo: &Path, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["plan", "--sandbox", "--format", "json"];
    args.extend_from_slice(extra);
    let run = incidentops(repo, &args);
    let plan = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, plan)
}

fn planned_ids(plan: &Value) -> Vec<u64> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn plan_apply_plan_converges_with_detailed_exit_codes() {
    let repo = quickstart();
    let first = incidentops(repo.path(), &["plan", "--sandbox", "--detailed-exitcode"]);
    assert_eq!(first.code, 2, "{}{}", first.stdout, first.stderr);
    assert!(
        fs::read_to_string(repo.path().join(".incidentops/.gitignore"))
            .unwrap()
            .contains('*')
    );

    let apply = incidentops(repo.path(), &["apply", "--sandbox", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply
            .stderr
            .contains("Apply complete: 3 incident(s) changed"),
        "{}",
        apply.stderr
    );

    let second = incidentops(repo.path(), &["plan", "--sandbox", "--detailed-exitcode"]);
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    let (_, plan) = plan_json(repo.path(), &[]);
    assert_eq!(plan["changes"], Value::Array(vec![]));
    assert_eq!(plan["summary"]["unchanged"], 5);

    let after = incident(repo.path(), 924565);
    assert_eq!(after["status"], "Resolved");
    assert_eq!(after["determination"], "Malware");
    let comments: Vec<&str> = after["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["comment"].as_str().unwrap())
        .collect();
    assert_eq!(
        comments,
        ["test comment for docs", "pen testing", "valid incident"]
    );
    let tags = incident(repo.path(), 1000008)["tags"].clone();
    assert_eq!(tags, serde_json::json!(["ransomware", "mimikatz"]));
}

#[test]
fn json_plan_lists_fields_and_exact_requests() {
    let repo = quickstart();
    let (run, plan) = plan_json(repo.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(plan["formatVersion"], 1);
    assert_eq!(planned_ids(&plan), vec![1000008, 924565, 924518]);
    let change = &plan["changes"][1];
    assert_eq!(change["file"], "incidents/924565.yaml");
    assert_eq!(change["requests"].as_array().unwrap().len(), 2);
    assert_eq!(change["requests"][0]["method"], "PATCH");
    assert_eq!(change["requests"][0]["path"], "/api/incidents/924565");
    assert_eq!(change["requests"][0]["body"]["comment"], "pen testing");
    assert_eq!(
        change["requests"][1]["body"],
        serde_json::json!({"comment": "valid incident"})
    );
    assert_eq!(
        plan["changes"][0]["requests"][0]["body"],
        serde_json::json!({"tags": ["ransomware", "mimikatz"]})
    );
    assert_eq!(plan["summary"]["requests"], 4);
    assert_eq!(plan["summary"]["unchanged"], 2);
    assert!(plan["summary"]["readCalls"].as_u64().unwrap() >= 1);
}

#[test]
fn unknown_id_is_a_plan_error_and_nothing_is_applied() {
    let repo = quickstart();
    fs::write(
        repo.path().join("incidents/missing.yaml"),
        "# gone\nid: 999\nstatus: Resolved\n",
    )
    .unwrap();
    let (run, plan) = plan_json(repo.path(), &[]);
    assert_eq!(run.code, 1);
    assert_eq!(plan["errors"][0]["file"], "incidents/missing.yaml");
    assert_eq!(plan["errors"][0]["line"], 2);
    assert!(
        plan["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("incident 999 does not exist")
    );

    let apply = incidentops(repo.path(), &["apply", "--sandbox", "--auto-approve"]);
    assert_eq!(apply.code, 1);
    assert!(
        apply.stderr.contains("nothing was applied"),
        "{}",
        apply.stderr
    );
    assert_eq!(incident(repo.path(), 924565)["status"], "Active");
}

#[test]
fn redirected_incident_is_a_plan_error_naming_where_it_went() {
    let repo = quickstart();
    assert_eq!(plan_json(repo.path(), &[]).0.code, 0); // creates the sandbox state
    edit_incident(repo.path(), 924521, |i| {
        i["status"] = "Redirected".into();
        i["redirectIncidentId"] = 924600.into();
    });
    let (run, plan) = plan_json(repo.path(), &[]);
    assert_eq!(run.code, 1);
    let message = plan["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("merged into incident 924600"), "{message}");
    assert_eq!(plan["errors"][0]["file"], "incidents/triage.yaml");
}

#[test]
fn determination_rule_on_the_effective_state_is_a_plan_error_with_the_fix() {
    let repo = quickstart();
    // 1000003 is TruePositive/Apt in the sandbox: reclassifying alone would leave Apt on a
    // false positive.
    fs::write(
        repo.path().join("incidents/1000003.yaml"),
        "id: 1000003\nclassification: FalsePositive\n",
    )
    .unwrap();
    let run = incidentops(repo.path(), &["plan", "--sandbox"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("incidents/1000003.yaml:2:17"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("set `determination: NotAvailable`"),
        "{}",
        run.stdout
    );
}

#[test]
fn saved_plan_is_applied_exactly_and_refused_when_the_incident_changed_since() {
    let repo = quickstart();
    let saved = incidentops(
        repo.path(),
        &["plan", "--sandbox", "--out", "reviewed.json"],
    );
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    let apply = incidentops(repo.path(), &["apply", "--sandbox", "reviewed.json"]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    assert_eq!(incident(repo.path(), 924565)["status"], "Resolved");

    // A new plan, then someone edits a planned incident in the portal.
    fs::write(
        repo.path().join("incidents/924521.yaml"),
        "id: 924521\nstatus: Resolved\n",
    )
    .unwrap();
    fs::remove_file(repo.path().join("incidents/triage.yaml")).unwrap();
    fs::write(
        repo.path().join("incidents/924518.yaml"),
        "id: 924518\ntags: [a]\n",
    )
    .unwrap();
    assert_eq!(
        incidentops(repo.path(), &["plan", "--sandbox", "--out", "second.json"]).code,
        0
    );
    edit_incident(repo.path(), 924521, |i| {
        i["assignedTo"] = "someone@contoso.com".into();
        i["lastUpdateTime"] = "2030-01-01T00:00:00.0000000Z".into();
    });
    let before = state(repo.path());
    let refused = incidentops(repo.path(), &["apply", "--sandbox", "second.json"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("incident 924521 changed since the plan"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("incident 924518 changed"),
        "{}",
        refused.stderr
    );
    assert_eq!(state(repo.path()), before, "nothing was written");
}

#[test]
fn invalid_desired_state_is_reported_and_nothing_is_planned() {
    let repo = quickstart();
    fs::write(
        repo.path().join("incidents/bad.yaml"),
        "id: 5\nstatus: Closed\n",
    )
    .unwrap();
    let run = incidentops(repo.path(), &["plan", "--sandbox"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("incidents/bad.yaml:2:9: status \"Closed\" is not one of"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

/// `apply` on a terminal, through util-linux `script` (a pseudo-terminal): the answer typed at
/// `Apply these changes? [y/N]` decides, the plan is in colour, and a progress bar is drawn.
#[cfg(unix)]
fn apply_on_a_terminal(repo: &Path, answer: &str, env: &[(&str, &str)]) -> (i32, String) {
    use std::io::Write;
    let command = format!(
        "{} apply --sandbox --repo {}",
        env!("CARGO_BIN_EXE_incidentops"),
        repo.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` (package bsdutils) runs commands on a pseudo-terminal");
    // The terminal holds the line until apply reads it at the prompt.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[cfg(unix)]
#[test]
fn apply_on_a_terminal_asks_and_only_yes_applies() {
    let repo = quickstart();
    let (code, text) = apply_on_a_terminal(repo.path(), "n", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Apply these changes? [y/N]"), "{text}");
    assert!(
        text.contains("apply cancelled; nothing was changed"),
        "{text}"
    );
    assert!(text.contains("\u{1b}["), "colour on a terminal: {text}");
    let plan = incidentops(repo.path(), &["plan", "--sandbox", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "nothing was applied: {}", plan.stderr);

    let (code, text) = apply_on_a_terminal(repo.path(), "y", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Apply these changes? [y/N]"), "{text}");
    assert!(text.contains(" requests, "), "a progress bar: {text}");
    assert!(text.contains("ETA"), "a progress bar: {text}");
    assert!(!text.contains("applied 1/"), "no CI progress lines: {text}");
    assert!(
        text.contains("Apply complete: 3 incident(s) changed"),
        "{text}"
    );
    let plan = incidentops(repo.path(), &["plan", "--sandbox", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "converged: {}", plan.stdout);
}

#[cfg(unix)]
#[test]
fn no_color_turns_colour_off_on_a_terminal_too() {
    let repo = quickstart();
    let (code, text) = apply_on_a_terminal(repo.path(), "n", &[("NO_COLOR", "1")]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Plan: 3 incidents to change"), "{text}");
    assert!(!text.contains("\u{1b}[3"), "no colour: {text}");
    assert!(!text.contains("\u{1b}[1m"), "no bold: {text}");
}

/// Logs written to a pipe or a file (CI) are plain text, even without `NO_COLOR`.
#[test]
fn verbose_logs_off_a_terminal_have_no_colour_codes() {
    let repo = quickstart();
    let output = Command::new(env!("CARGO_BIN_EXE_incidentops"))
        .args(["--verbose", "plan", "--sandbox", "--repo"])
        .arg(repo.path())
        .env_clear()
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DEBUG GET /api/incidents/"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Plan: 3 incidents to change"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
}

#[test]
fn apply_without_a_terminal_refuses_unless_auto_approved() {
    let repo = quickstart();
    let run = incidentops(repo.path(), &["apply", "--sandbox"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("refusing to apply without confirmation"),
        "{}",
        run.stderr
    );
    assert_eq!(incident(repo.path(), 924565)["status"], "Active");
}

#[test]
fn sandbox_reset_starts_over_from_the_sample_data() {
    let repo = quickstart();
    assert_eq!(
        incidentops(repo.path(), &["apply", "--sandbox", "--auto-approve"]).code,
        0
    );
    let run = incidentops(
        repo.path(),
        &[
            "plan",
            "--sandbox",
            "--sandbox-reset",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn rev_and_changed_since_drive_what_is_planned() {
    let repo = quickstart();
    fs::rename(
        repo.path().join("incidents/924565.yaml"),
        repo.path().join("924565.yaml"),
    )
    .unwrap();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "incidents"]);
    git(repo.path(), &["commit", "-qm", "base"]);
    fs::rename(
        repo.path().join("924565.yaml"),
        repo.path().join("incidents/924565.yaml"),
    )
    .unwrap();
    git(repo.path(), &["add", "incidents"]);
    git(
        repo.path(),
        &["commit", "-qm", "resolve the ransomware incident"],
    );
    // Uncommitted: a change to 1000001.
    fs::write(
        repo.path().join("incidents/1000001.yaml"),
        "id: 1000001\nstatus: Resolved\n",
    )
    .unwrap();

    let (_, work) = plan_json(repo.path(), &[]);
    assert_eq!(planned_ids(&work), vec![1000001, 1000008, 924565, 924518]);
    let (_, committed) = plan_json(repo.path(), &["--rev", "HEAD"]);
    assert_eq!(planned_ids(&committed), vec![1000008, 924565, 924518]);
    assert!(committed["source"]["commit"].as_str().unwrap().len() == 40);
    let (_, previous) = plan_json(repo.path(), &["--rev", "HEAD~1"]);
    assert_eq!(planned_ids(&previous), vec![1000008, 924518]);
    let (_, pr) = plan_json(repo.path(), &["--rev", "HEAD", "--changed-since", "HEAD~1"]);
    assert_eq!(planned_ids(&pr), vec![924565]);
    assert_eq!(pr["summary"]["incidents"], 1);
    let (_, local) = plan_json(repo.path(), &["--changed-since", "HEAD"]);
    assert_eq!(planned_ids(&local), vec![1000001]);
}

// --- reading current state at the least cost ----------------------------------------------

mod fetch {
    use std::sync::Arc;

    use incidentops::api::{ApiConfig, Client, Credentials, Secret, VirtualClock};
    use incidentops::fetch::{Strategy, current_state};
    use incidentops::sandbox::{self, Emulator, EmulatorConfig, FIRST_GENERATED_ID, Limits};

    const TOKEN: &str = "fetch-test-token";

    async fn setup(generated: usize) -> (Emulator, Client) {
        let mut config = EmulatorConfig::seeded(generated, 3);
        config.limits = Limits::unlimited();
        config.credentials = sandbox::Credentials::default().with_static_token(TOKEN);
        let emulator = Emulator::start(config, ([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let clock = Arc::new(VirtualClock::new(std::time::SystemTime::UNIX_EPOCH));
        let client = Client::new(
            ApiConfig::new(&emulator.url()).unwrap().with_clock(clock),
            Credentials::Token(Secret::new(TOKEN)),
        )
        .unwrap();
        (emulator, client)
    }

    #[tokio::test]
    async fn many_managed_incidents_are_listed_in_pages_not_fetched_one_by_one() {
        let (_emulator, client) = setup(1_000).await;
        let ids: Vec<u64> = (FIRST_GENERATED_ID..FIRST_GENERATED_ID + 1_000).collect();
        let state = current_state(&client, &ids).await.unwrap();
        assert_eq!(state.strategy, Strategy::List);
        assert_eq!(state.incidents.len(), 1_000);
        // 1,003 incidents: at most ⌈1003 / 100⌉ + 1 list calls, against 1,000 GETs.
        assert!(state.calls <= 12, "{} calls", state.calls);
    }

    #[tokio::test]
    async fn a_few_old_incidents_are_fetched_by_id() {
        let (_emulator, client) = setup(1_000).await;
        let ids = [
            FIRST_GENERATED_ID + 3,
            FIRST_GENERATED_ID + 10,
            FIRST_GENERATED_ID + 20,
            924565,
        ];
        let state = current_state(&client, &ids).await.unwrap();
        assert_eq!(state.strategy, Strategy::ById);
        assert_eq!(state.incidents.len(), 4);
        // One list page to estimate, then one GET per incident the page did not show.
        assert!(state.calls <= ids.len() as u64 + 1, "{} calls", state.calls);
    }

    #[tokio::test]
    async fn recent_incidents_come_from_the_first_page_and_unknown_ids_are_absent() {
        let (_emulator, client) = setup(1_000).await;
        let newest = FIRST_GENERATED_ID + 999;
        let ids: Vec<u64> = (newest - 29..=newest).chain([42]).collect();
        let state = current_state(&client, &ids).await.unwrap();
        assert_eq!(state.incidents.len(), 30);
        assert!(!state.incidents.contains_key(&42));
        // The first page holds them all; only the unknown id is confirmed by a GET.
        assert!(state.calls <= 2, "{} calls", state.calls);
    }

    #[tokio::test]
    async fn a_handful_of_incidents_cost_at_most_one_call_each() {
        let (_emulator, client) = setup(1_000).await;
        let ids: Vec<u64> = (0..10).map(|i| FIRST_GENERATED_ID + i * 97).collect();
        let state = current_state(&client, &ids).await.unwrap();
        assert_eq!(state.strategy, Strategy::ById);
        assert_eq!(state.incidents.len(), 10);
        assert_eq!(state.calls, 10);
    }
}

// --- a remote API (the sandbox command) and Ctrl-C ------------------------------------------

#[cfg(unix)]
#[test]
fn ctrl_c_stops_apply_cleanly_and_a_rerun_converges_without_duplicates() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let repo = TempDir::new().unwrap();
    fs::create_dir_all(repo.path().join("incidents")).unwrap();
    let first = incidentops::sandbox::FIRST_GENERATED_ID;
    for id in first..first + 60 {
        fs::write(
            repo.path().join(format!("incidents/{id}.yaml")),
            format!("id: {id}\ncomments: [\"reviewed in the ctrl-c test\", \"second note\"]\n"),
        )
        .unwrap();
    }
    let data = repo.path().join("api-state.json");
    incidentops::sandbox::save_incidents(&data, &incidentops::sandbox::generate_incidents(60, 1))
        .unwrap();
    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_incidentops"))
        // Quotas lifted so pacing does not slow the test; latency keeps the apply in flight
        // long enough to be interrupted.
        .args([
            "sandbox",
            "--persist",
            "--data",
            data.to_str().unwrap(),
            "--latency",
            "100ms",
            "--max-calls-per-minute",
            "10000",
            "--max-calls-per-hour",
            "100000",
        ])
        .env_clear()
        .env("INCIDENTOPS_TOKEN", "ctrl-c-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(sandbox.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();

    let remote = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_incidentops"));
        cmd.current_dir(repo.path())
            .args(args)
            .args([
                "--api-url",
                &url,
                "--max-calls-per-minute",
                "10000",
                "--max-calls-per-hour",
                "100000",
            ])
            .env_clear()
            .env("NO_COLOR", "1")
            .env("INCIDENTOPS_TOKEN", "ctrl-c-token")
            .stdin(Stdio::null());
        cmd
    };
    let mut apply = remote(&["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(apply.stderr.take().unwrap());
    let mut seen = String::new();
    // Interrupt once the first progress line shows requests going out.
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.starts_with("applied ") {
            let kill = Command::new("kill")
                .args(["-INT", &apply.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            break;
        }
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    let status = apply.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(
        seen.contains("Stopping: finishing the requests in flight"),
        "{seen}"
    );
    assert!(seen.contains("Apply incomplete"), "{seen}");
    assert!(seen.contains("stopped: applied: incidents"), "{seen}");
    assert!(seen.contains("stopped: not applied: incidents"), "{seen}");

    // Rerunning converges: everything lands, no comment twice.
    let rerun = remote(&["apply", "--auto-approve"]).output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let check = remote(&["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let client_check = remote(&["plan", "--format", "json"]).output().unwrap();
    let plan: Value = serde_json::from_slice(&client_check.stdout).unwrap();
    assert_eq!(plan["summary"]["unchanged"], 60);

    let stop = Command::new("kill")
        .args(["-INT", &sandbox.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    assert!(sandbox.wait().unwrap().success());
    let saved: Value = serde_json::from_str(&fs::read_to_string(&data).unwrap()).unwrap();
    for incident in saved["value"].as_array().unwrap() {
        if incident["incidentId"].as_u64().unwrap() < first {
            continue;
        }
        for text in ["reviewed in the ctrl-c test", "second note"] {
            let copies = incident["comments"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["comment"] == text)
                .count();
            assert_eq!(copies, 1, "{text} on {}", incident["incidentId"]);
        }
    }
}

#[test]
fn import_then_plan_shows_zero_changes_and_existing_files_are_kept() {
    let repo = TempDir::new().unwrap();
    let run = incidentops(
        repo.path(),
        &["import", "--sandbox", "--filter", "status eq 'Active'"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(repo.path().join("incidents/924565.yaml").exists());
    assert!(incidentops(repo.path(), &["validate"]).code == 0);
    let plan = incidentops(repo.path(), &["plan", "--sandbox", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);

    fs::write(
        repo.path().join("incidents/924565.yaml"),
        "id: 924565\nstatus: Resolved\n",
    )
    .unwrap();
    let again = incidentops(
        repo.path(),
        &["import", "--sandbox", "--id", "924565", "--id", "924521"],
    );
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("already exists (use --force"),
        "{}",
        again.stderr
    );
    assert_eq!(
        fs::read_to_string(repo.path().join("incidents/924565.yaml")).unwrap(),
        "id: 924565\nstatus: Resolved\n"
    );
    let forced = incidentops(
        repo.path(),
        &["import", "--sandbox", "--id", "924565", "--force"],
    );
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(
        fs::read_to_string(repo.path().join("incidents/924565.yaml"))
            .unwrap()
            .contains("status: Active")
    );
}
