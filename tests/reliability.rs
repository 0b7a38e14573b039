//! Reliability of `apply`: the real binary against the in-process emulator, under injected
//! faults, SIGKILL and Ctrl-C, edits by another client, and a quota shared with another tool.
//! Every outcome is checked in the emulator's state and request log, never in the apply's own
//! words alone. `cargo test --test reliability -- --nocapture` prints the figures of
//! `docs/RELIABILITY.md`; `RELIABILITY_SEEDS=4,5,6` runs other seeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use incidentops::sandbox::{
    self, Emulator, EmulatorConfig, Fault, Faults, Latency, Limits, LogEntry,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const STATIC_TOKEN: &str = "reliability-static-token";
/// The principal of the static token: "another client" in these tests.
const OTHER_CLIENT: &str = "API-App:incidentops-sandbox";
const APP_ID: &str = "reliability-app";
const APP_SECRET: &str = "reliability-app-secret";
/// The principal incidentops authenticates as when it uses client credentials.
const APP_PRINCIPAL: &str = "API-App:reliability-app";
const OWNER: &str = "reliability@contoso.com";
/// `apply` works on this many incidents at once (src/apply.rs).
const APPLY_CONCURRENCY: usize = 8;

fn seeds() -> Vec<u64> {
    std::env::var("RELIABILITY_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|s: &Vec<u64>| !s.is_empty())
        .unwrap_or_else(|| vec![1, 2, 3])
}

// --- the workload ---------------------------------------------------------------------------

/// The desired state of one incident, as written to its YAML file.
#[derive(Debug, Clone)]
struct Desired {
    id: u64,
    tags: Vec<String>,
    comments: Vec<String>,
}

impl Desired {
    fn yaml(&self) -> String {
        let quoted = |items: &[String]| {
            items
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "id: {}\nstatus: Resolved\nassignedTo: {OWNER}\nclassification: TruePositive\n\
             determination: Malware\ntags: [{}]\ncomments: [{}]\n",
            self.id,
            quoted(&self.tags),
            quoted(&self.comments)
        )
    }

    /// Every managed field as the API shows it once converged.
    fn fields(&self) -> [(&'static str, Value); 5] {
        [
            ("status", json!("Resolved")),
            ("assignedTo", json!(OWNER)),
            ("classification", json!("TruePositive")),
            ("determination", json!("Malware")),
            ("tags", json!(self.tags)),
        ]
    }
}

/// `n` incidents to change, each with a new comment and every `second_comment_every`-th with
/// a second one, and the emulator data they start from.
struct Workload {
    data: Vec<Value>,
    desired: Vec<Desired>,
    repo: TempDir,
}

impl Workload {
    fn new(n: usize, seed: u64, second_comment_every: usize) -> Workload {
        let data = sandbox::generate_incidents(n + n / 5 + 10, seed);
        let desired: Vec<Desired> = data
            .iter()
            .skip(3) // Microsoft's documented incidents
            .filter(|i| i["status"] != "Redirected")
            .take(n)
            .enumerate()
            .map(|(k, incident)| {
                let id = incident["incidentId"].as_u64().unwrap();
                let mut comments = vec![format!("reliability seed {seed}: reviewed {id}")];
                if k % second_comment_every == 0 {
                    comments.push(format!("reliability seed {seed}: closed {id}"));
                }
                Desired {
                    id,
                    tags: vec!["reliability".into(), format!("batch-{}", k % 7)],
                    comments,
                }
            })
            .collect();
        assert_eq!(desired.len(), n, "not enough incidents generated");
        let repo = TempDir::new().unwrap();
        std::fs::create_dir_all(repo.path().join("incidents")).unwrap();
        for incident in &desired {
            std::fs::write(
                repo.path().join(format!("incidents/{}.yaml", incident.id)),
                incident.yaml(),
            )
            .unwrap();
        }
        Workload {
            data,
            desired,
            repo,
        }
    }

    /// The PATCH requests a plan needs: one per incident, one more per further comment.
    fn minimal_patches(&self) -> usize {
        self.desired.iter().map(|d| d.comments.len()).sum()
    }

    fn ids(&self) -> BTreeSet<u64> {
        self.desired.iter().map(|d| d.id).collect()
    }
}

// --- the emulator and the binary ------------------------------------------------------------

struct Setup {
    faults: Faults,
    limits: Limits,
    token_lifetime: Duration,
    seed: u64,
}

impl Setup {
    /// No faults but a fixed latency on every answer (keeps requests in flight).
    fn with_latency(seed: u64, latency: &str) -> Setup {
        Setup {
            faults: Faults {
                latency: Latency::parse(latency).unwrap(),
                ..Faults::default()
            },
            ..Setup::quiet(seed)
        }
    }

    fn quiet(seed: u64) -> Setup {
        Setup {
            faults: Faults::default(),
            limits: Limits::unlimited(),
            token_lifetime: Duration::from_secs(3599),
            seed,
        }
    }
}

async fn start(workload: &Workload, setup: Setup) -> Emulator {
    let mut config = EmulatorConfig::new(workload.data.clone());
    config.faults = setup.faults;
    config.limits = setup.limits;
    config.token_lifetime = setup.token_lifetime;
    config.seed = setup.seed;
    config.credentials = sandbox::Credentials::default()
        .with_static_token(STATIC_TOKEN)
        .with_client_secret(APP_ID, APP_SECRET);
    Emulator::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

/// `incidentops ARGS --api-url URL` with lifted client quotas (the emulator decides what is
/// throttled), authenticating with client credentials through the emulator's token endpoint.
fn incidentops(repo: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_incidentops"));
    command
        .current_dir(repo)
        .args(args)
        .args(["--api-url", url])
        .args(["--max-calls-per-minute", "1000000"])
        .args(["--max-calls-per-hour", "1000000"])
        .env_clear()
        .env("NO_COLOR", "1")
        .env("AZURE_TENANT_ID", "reliability-tenant")
        .env("AZURE_CLIENT_ID", APP_ID)
        .env("AZURE_CLIENT_SECRET", APP_SECRET)
        .env("AZURE_AUTHORITY_HOST", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

struct Run {
    code: Option<i32>,
    stderr: String,
}

async fn run(mut command: Command) -> Run {
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Collects a running child's stderr in the background.
fn collect_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    })
}

/// Waits until the request log satisfies `point`; fails if the child exits first.
async fn wait_for_point(
    emulator: &Emulator,
    child: &mut Child,
    what: &str,
    point: impl Fn(&[LogEntry]) -> bool,
) -> usize {
    tokio::select! {
        entries = emulator.wait_for_requests(point) => entries.len(),
        status = child.wait() => panic!("apply ended ({status:?}) before the kill point: {what}"),
    }
}

// --- what the emulator ends with -------------------------------------------------------------

/// How far the emulator's state is from the desired state.
#[derive(Debug, Default)]
struct Check {
    /// Managed fields not equal to the desired value.
    field_mismatches: Vec<String>,
    /// Desired comments absent.
    missing_comments: usize,
    /// Desired comments present more than once (extra copies).
    duplicate_comments: usize,
}

impl Check {
    fn converged(&self) -> bool {
        self.field_mismatches.is_empty() && self.missing_comments == 0
    }
}

fn check(emulator: &Emulator, desired: &[Desired], skip: &BTreeSet<u64>) -> Check {
    let mut result = Check::default();
    for want in desired.iter().filter(|d| !skip.contains(&d.id)) {
        let have = emulator.incident(want.id).unwrap();
        for (field, value) in want.fields() {
            let same = match field {
                "tags" => tag_set(&have[field]) == tag_set(&value),
                _ => have[field] == value,
            };
            if !same {
                result.field_mismatches.push(format!(
                    "{} {field}: {} (want {value})",
                    want.id, have[field]
                ));
            }
        }
        for comment in &want.comments {
            match comment_count(&have, comment) {
                0 => result.missing_comments += 1,
                1 => {}
                n => result.duplicate_comments += n - 1,
            }
        }
    }
    result
}

fn tag_set(tags: &Value) -> BTreeSet<String> {
    tags.as_array()
        .map(|t| {
            t.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn comment_count(incident: &Value, text: &str) -> usize {
    incident["comments"]
        .as_array()
        .map_or(0, |c| c.iter().filter(|c| c["comment"] == text).count())
}

fn is_patch(entry: &LogEntry) -> bool {
    entry.method == "PATCH"
}

fn is_get_by_id(entry: &LogEntry) -> bool {
    entry.method == "GET" && entry.incident_id.is_some()
}

/// PATCH bodies (sent by `principal`) holding a managed field with a value other than the
/// desired one: a write over someone's newer value, or a stale value resent.
fn foreign_writes(log: &[LogEntry], desired: &[Desired], principal: &str) -> Vec<String> {
    let by_id: HashMap<u64, &Desired> = desired.iter().map(|d| (d.id, d)).collect();
    let mut wrong = Vec::new();
    for entry in log
        .iter()
        .filter(|e| is_patch(e) && e.client.as_deref() == Some(principal))
    {
        let (Some(id), Some(body)) = (entry.incident_id, &entry.body) else {
            continue;
        };
        let Some(want) = by_id.get(&id) else {
            wrong.push(format!("PATCH of unplanned incident {id}"));
            continue;
        };
        for (field, value) in want.fields() {
            if let Some(sent) = body.get(field) {
                let same = match field {
                    "tags" => tag_set(sent) == tag_set(&value),
                    _ => *sent == value,
                };
                if !same {
                    wrong.push(format!("{id} {field}: sent {sent}"));
                }
            }
        }
        if let Some(comment) = body.get("comment") {
            if !want.comments.iter().any(|c| comment == c.as_str()) {
                wrong.push(format!("{id}: unplanned comment {comment}"));
            }
        }
    }
    wrong
}

fn count(log: &[LogEntry], pred: impl Fn(&LogEntry) -> bool) -> usize {
    log.iter().filter(|e| pred(e)).count()
}

/// The figure of a `... N throttled (waited S s) ...` summary line.
fn waited_seconds(stderr: &str) -> Option<u64> {
    let rest = stderr.split("(waited ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

fn report(title: &str, rows: &[String]) {
    let mut text = format!("\n{title}\n");
    for row in rows {
        let _ = writeln!(text, "  {row}");
    }
    eprintln!("{text}");
}

// --- 1. chaos apply ----------------------------------------------------------------------------

/// What one chaos run measured.
struct ChaosFigures {
    seed: u64,
    code: Option<i32>,
    check: Check,
    foreign_writes: Vec<String>,
    patches: usize,
    minimal: usize,
    requests: usize,
    listings: usize,
    faults: BTreeMap<&'static str, usize>,
    tokens: usize,
    unauthorized: usize,
    elapsed: Duration,
    stderr: String,
}

async fn chaos_run(seed: u64) -> ChaosFigures {
    let workload = Workload::new(300, seed, 5);
    let emulator = start(
        &workload,
        Setup {
            faults: Faults {
                latency: Latency::parse("0..200ms").unwrap(),
                fail_429: 0.10,
                retry_after_secs: 1,
                fail_500: 0.05,
                drop: 0.02,
                after_apply: 0.5,
            },
            // Shorter than the run: the client must renew its token as it goes.
            token_lifetime: Duration::from_secs(6),
            ..Setup::quiet(seed)
        },
    )
    .await;
    let started = Instant::now();
    // The listing check: the mode `auto` picks for large applies, here under faults.
    let apply = run(incidentops(
        workload.repo.path(),
        &emulator.url(),
        &["apply", "--auto-approve", "--edit-check", "list"],
    ))
    .await;
    let elapsed = started.elapsed();
    let log = emulator.requests();
    let api = |e: &LogEntry| e.path.starts_with("/api/");
    let fault = |f: Fault| count(&log, |e| e.fault == Some(f));
    let faults = BTreeMap::from([
        ("429", fault(Fault::Throttled)),
        ("500 before", fault(Fault::ServerError)),
        ("500 after", fault(Fault::ServerErrorAfterApply)),
        ("drop before", fault(Fault::Dropped)),
        ("drop after", fault(Fault::DroppedAfterApply)),
    ]);
    ChaosFigures {
        seed,
        code: apply.code,
        check: check(&emulator, &workload.desired, &BTreeSet::new()),
        foreign_writes: foreign_writes(&log, &workload.desired, APP_PRINCIPAL),
        patches: count(&log, is_patch),
        minimal: workload.minimal_patches(),
        requests: count(&log, api),
        listings: count(&log, is_listing_since),
        faults,
        tokens: count(&log, |e| e.method == "POST"),
        unauthorized: count(&log, |e| api(e) && e.status == Some(401)),
        elapsed,
        stderr: apply.stderr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_apply_converges_under_faults_with_few_extra_patches() {
    // Seeds run side by side: each waits mostly on injected latency and Retry-After.
    let runs = futures_join(seeds().into_iter().map(chaos_run)).await;
    let mut rows = Vec::new();
    for r in &runs {
        rows.push(format!(
            "seed {}: exit {:?}, converged {}, missing comments {}, duplicate comments {}, \
             foreign writes {}, PATCH {} / minimal {} = {:.2}x, API requests {} ({} listings), \
             faults {:?}, \
             token requests {}, 401s {}, {:.1} s",
            r.seed,
            r.code,
            r.check.converged(),
            r.check.missing_comments,
            r.check.duplicate_comments,
            r.foreign_writes.len(),
            r.patches,
            r.minimal,
            r.patches as f64 / r.minimal as f64,
            r.requests,
            r.listings,
            r.faults,
            r.tokens,
            r.unauthorized,
            r.elapsed.as_secs_f64()
        ));
    }
    report("chaos apply (300 incidents)", &rows);
    for r in &runs {
        let seed = r.seed;
        assert_eq!(r.code, Some(0), "seed {seed}: {}", r.stderr);
        assert!(
            r.check.converged(),
            "seed {seed}: {:?}\n{}",
            r.check,
            r.stderr
        );
        assert_eq!(r.check.duplicate_comments, 0, "seed {seed}");
        assert!(
            r.foreign_writes.is_empty(),
            "seed {seed}: {:?}",
            r.foreign_writes
        );
        assert!(
            r.patches as f64 <= 1.3 * r.minimal as f64,
            "seed {seed}: {} PATCH calls for {} planned",
            r.patches,
            r.minimal
        );
        // The faults were really there, and the token really expired during the run.
        for (name, n) in &r.faults {
            assert!(*n > 0, "seed {seed}: no {name} fault was injected");
        }
        assert!(r.tokens >= 2, "seed {seed}: {} token requests", r.tokens);
        assert!(
            r.stderr.contains("Apply complete: 300 incident(s) changed"),
            "seed {seed}: {}",
            r.stderr
        );
    }
}

/// Runs futures concurrently on the current runtime and returns their results in order.
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

// --- 2. SIGKILL and resume, Ctrl-C --------------------------------------------------------------

fn applied_patches(log: &[LogEntry]) -> usize {
    count(log, |e| is_patch(e) && e.applied)
}

fn applied_patches_of(log: &[LogEntry], id: u64) -> usize {
    count(log, |e| {
        is_patch(e) && e.applied && e.incident_id == Some(id)
    })
}

/// Whether a run has reached a point, judged from the request log so far.
type Reached = Box<dyn Fn(&[LogEntry]) -> bool + Send + Sync>;

/// A point of a run, chosen from the request log.
struct KillPoint {
    name: &'static str,
    reached: Reached,
}

fn kill_points(workload: &Workload) -> Vec<KillPoint> {
    let minimal = workload.minimal_patches();
    let two_step: BTreeSet<u64> = workload
        .desired
        .iter()
        .filter(|d| d.comments.len() > 1)
        .map(|d| d.id)
        .collect();
    vec![
        KillPoint {
            name: "after the first re-read, before any PATCH",
            reached: Box::new(|log| count(log, is_get_by_id) >= 1),
        },
        KillPoint {
            name: "after the first applied PATCH",
            reached: Box::new(|log| applied_patches(log) >= 1),
        },
        KillPoint {
            name: "between the two PATCHes of one incident",
            reached: Box::new(move |log| {
                two_step.iter().any(|&id| applied_patches_of(log, id) == 1)
            }),
        },
        KillPoint {
            name: "halfway through the PATCHes",
            reached: Box::new(move |log| applied_patches(log) >= minimal / 2),
        },
        KillPoint {
            name: "five PATCHes before the end",
            reached: Box::new(move |log| applied_patches(log) >= minimal - 5),
        },
    ]
}

/// Kills an apply with SIGKILL at `point`, reruns it, and returns the figures.
async fn kill_and_resume(seed: u64, point_index: usize) -> String {
    let workload = Workload::new(100, seed, 4);
    let point = kill_points(&workload).swap_remove(point_index);
    // Latency keeps requests in flight at the moment of the kill.
    let emulator = start(&workload, Setup::with_latency(seed, "20ms")).await;
    let url = emulator.url();
    let mut child = incidentops(workload.repo.path(), &url, &["apply", "--auto-approve"])
        .spawn()
        .unwrap();
    let at_kill = wait_for_point(&emulator, &mut child, point.name, point.reached).await;
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let first = emulator.requests();
    let applied_first = applied_patches(&first);
    let landed_after_kill = applied_first - applied_patches(&first[..at_kill.min(first.len())]);

    let rerun = run(incidentops(
        workload.repo.path(),
        &url,
        &["apply", "--auto-approve"],
    ))
    .await;
    let all = emulator.requests();
    let rerun_patches = count(&all[first.len()..], is_patch);
    let result = check(&emulator, &workload.desired, &BTreeSet::new());
    let context = format!("seed {seed}, killed {}", point.name);
    assert_eq!(rerun.code, Some(0), "{context}: {}", rerun.stderr);
    assert!(result.converged(), "{context}: {result:?}");
    assert_eq!(result.duplicate_comments, 0, "{context}");
    // The rerun sends exactly what had not landed: nothing twice, nothing forgotten.
    assert_eq!(
        applied_first + rerun_patches,
        workload.minimal_patches(),
        "{context}: {applied_first} PATCHes before the kill, {rerun_patches} after"
    );
    format!(
        "seed {seed}, {}: {applied_first}/{} PATCHes applied before the kill ({landed_after_kill} \
         landed after it), rerun sent {rerun_patches}, converged, 0 duplicates",
        point.name,
        workload.minimal_patches()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_five_points_then_rerun_converges_without_duplicate_comments() {
    let mut runs = Vec::new();
    for seed in seeds() {
        for point in 0..5 {
            runs.push(kill_and_resume(seed, point));
        }
    }
    let rows = futures_join(runs.into_iter()).await;
    report("SIGKILL and rerun (100 incidents)", &rows);
}

/// The incident ids of a `stopped: <label>: incidents 1, 2, 3` line.
fn listed(stderr: &str, label: &str) -> BTreeSet<u64> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix(label))
        .flat_map(|rest| {
            rest.trim_start_matches(" incidents ")
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect()
}

async fn ctrl_c_run(seed: u64) -> String {
    let workload = Workload::new(60, seed, 3);
    let emulator = start(&workload, Setup::with_latency(seed, "30ms")).await;
    let url = emulator.url();
    let mut child = incidentops(workload.repo.path(), &url, &["apply", "--auto-approve"])
        .spawn()
        .unwrap();
    let stderr = collect_stderr(&mut child);
    let at_signal = wait_for_point(&emulator, &mut child, "10 PATCHes", |log| {
        applied_patches(log) >= 10
    })
    .await;
    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = child.wait().await.unwrap();
    let stderr = stderr.await.unwrap();
    let log = emulator.requests();
    let context = format!("seed {seed}: {stderr}");
    assert_eq!(status.code(), Some(1), "{context}");

    // Stopping finishes what is in flight (at most one request per incident being applied)
    // and starts nothing new.
    let after_signal = log.len() - at_signal;
    assert!(
        after_signal <= 2 * APPLY_CONCURRENCY,
        "{after_signal} requests after Ctrl-C; {context}"
    );

    // What it says was applied, partly applied and not applied is what the API shows.
    let applied = listed(&stderr, "stopped: applied:");
    let partial = listed(&stderr, "stopped: incidents");
    let not_applied = listed(&stderr, "stopped: not applied:");
    let named: BTreeSet<u64> = applied
        .iter()
        .chain(&partial)
        .chain(&not_applied)
        .copied()
        .collect();
    assert_eq!(
        named,
        workload.ids(),
        "every planned incident is named; {context}"
    );
    assert_eq!(
        applied.len() + partial.len() + not_applied.len(),
        named.len(),
        "no incident named twice; {context}"
    );
    let done: BTreeSet<u64> = named.difference(&not_applied).copied().collect();
    let fully = check(
        &emulator,
        &workload.desired,
        &named.difference(&applied).copied().collect(),
    );
    assert!(fully.converged(), "incidents reported applied: {fully:?}");
    for want in &workload.desired {
        let patches = applied_patches_of(&log, want.id);
        if not_applied.contains(&want.id) {
            assert_eq!(patches, 0, "{} reported not applied; {context}", want.id);
        } else if partial.contains(&want.id) {
            assert!(
                patches > 0 && patches < want.comments.len(),
                "{} reported partly applied with {patches} PATCHes; {context}",
                want.id
            );
        }
    }

    let rerun = run(incidentops(
        workload.repo.path(),
        &url,
        &["apply", "--auto-approve"],
    ))
    .await;
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    let result = check(&emulator, &workload.desired, &BTreeSet::new());
    assert!(
        result.converged() && result.duplicate_comments == 0,
        "{result:?}"
    );
    format!(
        "seed {seed}: {} requests after Ctrl-C; reported applied {}, partly {}, not applied {} \
         (all match the API); rerun converged, 0 duplicates ({} incidents touched first)",
        after_signal,
        applied.len(),
        partial.len(),
        not_applied.len(),
        done.len()
    )
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_reports_exactly_what_the_api_shows_and_starts_no_new_request() {
    let rows = futures_join(seeds().into_iter().map(ctrl_c_run)).await;
    report("Ctrl-C (60 incidents)", &rows);
}

// --- 3. edits by another client during an apply -------------------------------------------------

const SOMEONE_ELSE: &str = "someone-else@contoso.com";

/// Another client edits these incidents: every other one in a field the plan manages
/// (`assignedTo`), the rest in one it does not (`severity`).
fn edit_as_someone_else(emulator: &Emulator, victims: impl Iterator<Item = u64>) {
    for (k, id) in victims.enumerate() {
        let (field, value) = if k % 2 == 0 {
            ("assignedTo", json!(SOMEONE_ELSE))
        } else {
            ("severity", json!("High"))
        };
        assert!(emulator.set_incident_field(id, field, value));
    }
}

async fn edits_during_apply(seed: u64, saved_plan: bool) -> String {
    let workload = Workload::new(60, seed, 3);
    let emulator = start(&workload, Setup::with_latency(seed, "20ms")).await;
    let url = emulator.url();
    let args: &[&str] = if saved_plan {
        let plan = run(incidentops(
            workload.repo.path(),
            &url,
            &["plan", "--out", "reviewed.json"],
        ))
        .await;
        assert_eq!(plan.code, Some(0), "{}", plan.stderr);
        &["apply", "reviewed.json"]
    } else {
        &["apply", "--auto-approve"]
    };
    let mut child = incidentops(workload.repo.path(), &url, args)
        .spawn()
        .unwrap();
    let stderr = collect_stderr(&mut child);
    let log = emulator
        .wait_for_requests(|log| applied_patches(log) >= 1)
        .await;
    // Another client edits four planned incidents the apply has not reached yet (the last in
    // plan order: eight are applied at a time), two of them in a field the plan manages.
    let touched: BTreeSet<u64> = log.iter().filter_map(|e| e.incident_id).collect();
    let victims: Vec<u64> = workload
        .desired
        .iter()
        .rev()
        .map(|d| d.id)
        .filter(|id| !touched.contains(id))
        .take(4)
        .collect();
    edit_as_someone_else(&emulator, victims.iter().copied());
    let status = child.wait().await.unwrap();
    let stderr = stderr.await.unwrap();
    let context = format!("seed {seed}, saved plan {saved_plan}: {stderr}");
    assert_eq!(status.code(), Some(1), "{context}");
    let log = emulator.requests();
    for (k, &id) in victims.iter().enumerate() {
        assert!(
            stderr.contains(&format!(
                "conflict: incident {id} changed since the plan read it"
            )),
            "{id} not reported; {context}"
        );
        assert_eq!(
            applied_patches_of(&log, id),
            0,
            "{id} was written; {context}"
        );
        if k % 2 == 0 {
            assert_eq!(emulator.incident(id).unwrap()["assignedTo"], SOMEONE_ELSE);
        }
    }
    let skip: BTreeSet<u64> = victims.iter().copied().collect();
    let others = check(&emulator, &workload.desired, &skip);
    assert!(others.converged(), "{others:?}; {context}");
    assert_eq!(others.duplicate_comments, 0);
    assert!(
        stderr.contains("4 incident(s) changed since the plan read them and were not overwritten"),
        "{context}"
    );
    format!(
        "seed {seed}, {}: 4 incidents edited by another client during the run: all 4 reported \
         as conflicts and left as edited, the other 56 converged; {} GET re-reads",
        if saved_plan {
            "saved plan"
        } else {
            "fresh plan"
        },
        count(&log, |e| is_get_by_id(e)
            && e.client.as_deref() == Some(APP_PRINCIPAL))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_never_overwrites_an_incident_edited_after_the_plan_read_it() {
    let mut runs = Vec::new();
    for seed in seeds() {
        runs.push(edits_during_apply(seed, false));
        runs.push(edits_during_apply(seed, true));
    }
    let rows = futures_join(runs.into_iter()).await;
    report("edits by another client during apply (60 incidents)", &rows);
}

// --- 3b. the listing check (`--edit-check list`) -----------------------------------------------

/// A client of the library, as the binary builds it, with the quotas lifted.
fn library_client(emulator: &Emulator) -> incidentops::api::Client {
    use incidentops::api::{self, ApiConfig, Client};
    Client::new(
        ApiConfig::new(&emulator.url())
            .unwrap()
            .with_limits(api::Limits::from_quota(1_000_000, 1_000_000)),
        api::Credentials::Token(api::Secret::new(STATIC_TOKEN)),
    )
    .unwrap()
}

/// `incidentops plan --out`, read back.
async fn saved_plan(workload: &Workload, url: &str) -> incidentops::plan::Plan {
    let plan = run(incidentops(
        workload.repo.path(),
        url,
        &["plan", "--out", "reviewed.json"],
    ))
    .await;
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    let text = std::fs::read_to_string(workload.repo.path().join("reviewed.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// What `apply PLANFILE` does before writing: re-read every planned incident (the run's first
/// read, which the listings start from) and refuse a stale plan.
async fn reread(client: &incidentops::api::Client, plan: &incidentops::plan::Plan) {
    let ids: Vec<u64> = plan.changes.iter().map(|c| c.id).collect();
    let current = incidentops::fetch::current_state(client, &ids)
        .await
        .unwrap();
    assert!(incidentops::apply::stale(plan, &current.incidents).is_empty());
}

fn is_listing_since(entry: &LogEntry) -> bool {
    entry.method == "GET" && entry.path.contains("lastUpdateTime")
}

async fn apply_in_process(
    client: &incidentops::api::Client,
    plan: &incidentops::plan::Plan,
    options: incidentops::apply::Options,
) -> tokio::task::JoinHandle<incidentops::apply::Outcome> {
    let (client, plan) = (client.clone(), plan.clone());
    tokio::spawn(async move {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        incidentops::apply::apply(
            &client,
            &plan,
            options,
            stop,
            std::sync::Arc::new(|_, _| {}),
        )
        .await
    })
}

/// The listing check keeps the promise for every edit made before the listing that checks the
/// incident. With the listing's maximum age at zero every incident gets a fresh listing, so
/// all four edits made during the run are conflicts, exactly as with a GET per incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_check_reports_edits_made_before_it_and_writes_none_of_them() {
    use incidentops::apply::{EditCheck, Options};
    let workload = Workload::new(60, 1, 3);
    let emulator = start(&workload, Setup::with_latency(1, "20ms")).await;
    let plan = saved_plan(&workload, &emulator.url()).await;
    let client = library_client(&emulator);
    reread(&client, &plan).await;
    let started = emulator.requests().len();
    let options = Options {
        edit_check: EditCheck::List,
        listing_max_age: Duration::ZERO,
    };
    let apply = apply_in_process(&client, &plan, options).await;
    emulator
        .wait_for_requests(|log| applied_patches(log) >= 1)
        .await;
    // The last four in plan order: eight incidents are applied at a time.
    let victims: BTreeSet<u64> = plan.changes.iter().rev().take(4).map(|c| c.id).collect();
    edit_as_someone_else(&emulator, victims.iter().copied());
    let outcome = apply.await.unwrap();
    let conflicts: BTreeSet<u64> = outcome.conflicts.iter().map(|(id, _)| *id).collect();
    assert_eq!(conflicts, victims, "{:?}", outcome.conflicts);
    assert_eq!(outcome.applied.len(), 56);
    let log = emulator.requests();
    for (k, &id) in victims.iter().enumerate() {
        assert_eq!(applied_patches_of(&log, id), 0, "{id} was written");
        if k % 2 == 0 {
            assert_eq!(emulator.incident(id).unwrap()["assignedTo"], SOMEONE_ELSE);
        }
    }
    let others = check(&emulator, &workload.desired, &victims);
    assert!(others.converged(), "{others:?}");
    let during = &log[started..];
    assert_eq!(count(during, is_get_by_id), 0, "no GET per incident");
    assert_eq!(
        count(during, is_listing_since),
        60,
        "one listing per incident"
    );
}

/// What the listing check costs: with its default age a short apply needs a single listing
/// and no GET per incident. When more incidents changed than a few pages hold (a busy tenant),
/// it falls back to a GET per incident and still applies everything.
/// Applies `workload` in list mode with the default age, as `apply PLANFILE` would, and
/// returns the listings and GETs by id the apply itself made.
async fn listing_apply(workload: &Workload, seed: u64) -> (usize, usize) {
    use incidentops::apply::{EditCheck, Options};
    let options = Options {
        edit_check: EditCheck::List,
        ..Options::default()
    };
    let emulator = start(workload, Setup::quiet(seed)).await;
    let plan = saved_plan(workload, &emulator.url()).await;
    let client = library_client(&emulator);
    reread(&client, &plan).await;
    let started = emulator.requests().len();
    let outcome = apply_in_process(&client, &plan, options)
        .await
        .await
        .unwrap();
    assert_eq!(outcome.applied.len(), 60, "{:?}", outcome.failed);
    assert!(check(&emulator, &workload.desired, &BTreeSet::new()).converged());
    let log = emulator.requests();
    (
        count(&log[started..], is_listing_since),
        count(&log[started..], is_get_by_id),
    )
}

/// What the listing check costs: with its default age a short apply needs a single listing
/// and no GET per incident. When more incidents changed than a few pages hold (a busy tenant),
/// it falls back to a GET per incident and still applies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_check_costs_one_listing_per_ten_seconds_and_falls_back_to_gets_when_busy() {
    let quiet = Workload::new(60, 2, 3);
    assert_eq!(listing_apply(&quiet, 2).await, (1, 0), "(listings, GETs)");

    // 350 incidents nobody here manages were updated a moment ago: more than three pages.
    let mut busy = Workload::new(60, 3, 3);
    let newest = busy
        .data
        .iter()
        .filter_map(|i| i["incidentId"].as_u64())
        .max()
        .unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let template = busy.data[3].clone();
    for k in 1..=350 {
        let mut incident = template.clone();
        incident["incidentId"] = json!(newest + k);
        incident["lastUpdateTime"] = json!(now);
        busy.data.push(incident);
    }
    assert_eq!(
        listing_apply(&busy, 3).await,
        (3, 60),
        "three pages of listing, then a GET per incident"
    );
}

/// With an hourly quota smaller than the incidents at work, the PATCH slots reserved before
/// the checks cannot fill the hour and starve the checks' own reads: the apply finishes (on a
/// virtual clock: hours of pacing take no time), in both check modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_hourly_quota_slows_apply_but_never_stalls_it() {
    use incidentops::api::{self, ApiConfig, Client, VirtualClock};
    use incidentops::apply::{EditCheck, Options};
    for (seed, edit_check) in [(7, EditCheck::Get), (8, EditCheck::List)] {
        let workload = Workload::new(4, seed, 2);
        let emulator = start(&workload, Setup::quiet(seed)).await;
        let plan = saved_plan(&workload, &emulator.url()).await;
        let clock = Arc::new(VirtualClock::new(std::time::SystemTime::now()));
        let client = Client::new(
            ApiConfig::new(&emulator.url())
                .unwrap()
                .with_limits(api::Limits::from_quota(50, 2))
                .with_clock(clock.clone()),
            api::Credentials::Token(api::Secret::new(STATIC_TOKEN)),
        )
        .unwrap();
        reread(&client, &plan).await;
        let options = Options {
            edit_check,
            ..Options::default()
        };
        // On a runtime of its own: a stalled apply spins on the virtual clock without
        // yielding, and must fail this test rather than hang it.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn({
            let (client, plan) = (client.clone(), plan.clone());
            move || {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let outcome = runtime.block_on(incidentops::apply::apply(
                    &client,
                    &plan,
                    options,
                    stop,
                    Arc::new(|_, _| {}),
                ));
                let _ = sender.send(outcome);
            }
        });
        let outcome =
            tokio::task::spawn_blocking(move || receiver.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap()
                .unwrap_or_else(|_| panic!("{edit_check:?}: apply stalled"));
        assert_eq!(outcome.applied.len(), 4, "{edit_check:?}: {outcome:?}");
        assert!(check(&emulator, &workload.desired, &BTreeSet::new()).converged());
        // Two calls an hour: 4 re-reads, then 6 PATCHes and their checks, in hours.
        assert!(
            clock.elapsed() >= Duration::from_secs(3 * 3600),
            "{:?}",
            clock.elapsed()
        );
    }
}

// --- 6. a quota shared with another tool -------------------------------------------------------

/// Another tool with its own token: GETs of a documented incident, a burst first, then a
/// steady trickle until told to stop.
async fn other_tool(url: String, burst: usize, stop: tokio::sync::watch::Receiver<bool>) {
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{url}/api/incidents/924565"))
            .bearer_auth(STATIC_TOKEN)
            .send()
    };
    for _ in 0..burst {
        let _ = get().await;
    }
    // Load generation, not waiting for an event: 10 calls a second.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !*stop.borrow() {
        tick.tick().await;
        let _ = get().await;
    }
}

async fn shared_quota_run(seed: u64) -> String {
    let workload = Workload::new(60, seed, 3);
    let emulator = start(
        &workload,
        Setup {
            limits: Limits {
                // One "hour" lasts 10 s, one "minute" 1/6 s.
                window_scale: 360,
                per_hour: 300,
                get_per_minute: 1_000,
                ..Limits::default()
            },
            ..Setup::quiet(seed)
        },
    )
    .await;
    let url = emulator.url();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tool = tokio::spawn(other_tool(url.clone(), 250, stopped));
    // The other tool has spent 250 of the 300 calls of the window before the apply starts.
    emulator
        .wait_for_requests(|log| count(log, |e| e.status == Some(200)) >= 250)
        .await;
    let started = Instant::now();
    let apply = run(incidentops(
        workload.repo.path(),
        &url,
        &["apply", "--auto-approve"],
    ))
    .await;
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let _ = tool.await;
    let log = emulator.requests();
    let ours = |e: &LogEntry| e.client.as_deref() == Some(APP_PRINCIPAL);
    let throttled = count(&log, |e| ours(e) && e.status == Some(429));
    let theirs = count(&log, |e| {
        e.client.as_deref() == Some(OTHER_CLIENT) && e.status == Some(200)
    });
    let context = format!("seed {seed}: {}", apply.stderr);
    assert_eq!(apply.code, Some(0), "{context}");
    let result = check(&emulator, &workload.desired, &BTreeSet::new());
    assert!(
        result.converged() && result.duplicate_comments == 0,
        "{result:?}"
    );
    assert!(throttled > 0, "the quota never pushed back; {context}");
    let waited = waited_seconds(&apply.stderr).expect("the summary says how long it waited");
    assert!(waited >= 1, "{context}");
    // Wall-clock time, not the sum over the calls that waited together.
    assert!(
        waited <= elapsed.as_secs(),
        "reported {waited} s of waiting in a {elapsed:?} run; {context}"
    );
    assert!(
        apply.stderr.contains(&format!("{throttled} throttled")),
        "the summary counts the 429s; {context}"
    );
    format!(
        "seed {seed}: other tool made {theirs} calls; apply got {throttled} 429s, reported \
         waiting {waited} s, exit 0, converged in {:.1} s",
        elapsed.as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_waits_out_a_quota_shared_with_another_tool_and_says_how_long() {
    let rows = futures_join(seeds().into_iter().map(shared_quota_run)).await;
    report("quota shared with another tool (60 incidents)", &rows);
}
