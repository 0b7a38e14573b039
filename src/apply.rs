//! Executing a plan through the paced client: incidents in parallel (the client's pacing
//! decides when each request leaves), the requests of one incident in order, incidents started
//! in plan order. A stop request (Ctrl-C) lets the requests in flight finish and starts no new
//! ones.
//!
//! The API has no conditional PATCH, so each incident is checked for edits made since the plan
//! read it, when pacing lets its first PATCH go at once: one that changed is skipped as a
//! conflict rather than overwritten. Its later requests are checked against our own last
//! write. The check ([`EditCheck`]) is one GET per incident, or a listing of recently changed
//! incidents (`$filter=lastUpdateTime ge T`, T moving forward with the server's `Date`) shared
//! by every incident checked within [`LISTING_MAX_AGE`]. On the hourly quota that all calls
//! share, GETs halve how many incidents an hour can change; listings cost about one call per
//! burst of PATCHes. The listings overlap and start at the run's first read, so every change
//! since the plan read shows up in one of them. When the server sends no `Date`, a listing
//! fails, or it would take more than [`LISTING_MAX_PAGES`] pages (a busy tenant), each incident
//! is read by one GET instead.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use crate::api::wire::Incident;
use crate::api::{ApiError, CallKind, Client};
use crate::plan::{Plan, PlannedChange};

/// Incidents applied at the same time (the client paces the requests themselves).
const CONCURRENCY: usize = 8;

/// In listing mode, an incident's first PATCH is sent at most this long (plus the latency of
/// the pacing race it may lose) after a read showed it unchanged.
pub const LISTING_MAX_AGE: Duration = Duration::from_secs(10);

/// Each listing starts this long before the server time of the previous one (the first: of
/// the run's first read), for the `Date` header's whole seconds and replication lag.
const LISTING_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// A listing longer than this is no cheaper than a GET per incident: fall back to those.
const LISTING_MAX_PAGES: u32 = 3;

/// How apply checks that nobody changed an incident since the plan read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EditCheck {
    /// `get` while the apply's calls, with those already made (the plan's reads), fit in the
    /// hourly quota (the GETs then cost no time: they have their own per-minute quota), `list`
    /// when they would not.
    #[default]
    Auto,
    /// One GET per incident right before its first write: the shortest window for a
    /// concurrent edit to slip through, one extra call per incident on the hourly quota.
    Get,
    /// A listing of recently changed incidents for every incident that starts within 10 s: a
    /// few calls for any number of incidents, and a window of up to 10 s for an edit to slip
    /// through.
    List,
}

impl EditCheck {
    /// `Get` or `List`, for an apply of `requests` PATCHes to `changes` incidents, `spent`
    /// calls having been made this hour already (the plan's reads).
    pub fn resolve(self, requests: usize, changes: usize, spent: u64, per_hour: u32) -> EditCheck {
        let with_gets = (requests + changes) as u64 + spent;
        match self {
            EditCheck::Auto if with_gets <= u64::from(per_hour) => EditCheck::Get,
            EditCheck::Auto => EditCheck::List,
            chosen => chosen,
        }
    }

    /// The calls the check costs such an apply.
    pub fn calls(
        self,
        requests: usize,
        changes: usize,
        spent: u64,
        per_minute: u32,
        per_hour: u32,
    ) -> usize {
        match self.resolve(requests, changes, spent, per_hour) {
            EditCheck::List => expected_listings(requests, per_minute),
            _ => changes,
        }
    }
}

/// Listings an apply of `requests` PATCHes at `per_minute` makes, at most: one per
/// [`LISTING_MAX_AGE`] of pacing, at least one. (Pacing sends PATCHes in bursts as each
/// minute's window frees, so in practice it is closer to one per burst.)
pub fn expected_listings(requests: usize, per_minute: u32) -> usize {
    if requests == 0 {
        return 0;
    }
    let seconds = (requests as u64 * 60).div_ceil(u64::from(per_minute.max(1)));
    1 + (seconds / LISTING_MAX_AGE.as_secs()) as usize
}

/// How to apply.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub edit_check: EditCheck,
    /// How old a listing may be and still vouch for an incident it did not show.
    pub listing_max_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            edit_check: EditCheck::Auto,
            listing_max_age: LISTING_MAX_AGE,
        }
    }
}

/// What happened to each planned incident.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every request of these incidents succeeded.
    pub applied: Vec<u64>,
    /// The first failed request of each of these incidents, with the API's explanation.
    pub failed: Vec<(u64, String)>,
    /// Not started because the apply was stopped (Ctrl-C).
    pub not_started: Vec<u64>,
    /// Incidents whose requests were partly sent when the apply stopped.
    pub partial: Vec<u64>,
    /// Changed by someone else since the plan read them: left as they are, with the reason.
    pub conflicts: Vec<(u64, String)>,
    pub requests_sent: usize,
    pub elapsed: Duration,
}

/// Progress after each request: (requests done, requests planned).
pub type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Sends every request of the plan.
pub async fn apply(
    client: &Client,
    plan: &Plan,
    options: Options,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> Outcome {
    let started = Instant::now();
    let total: usize = plan.changes.iter().map(|c| c.requests.len()).sum();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let per_hour = client.throttle().limits().per_hour;
    // Each incident at work may hold a reserved PATCH slot while its check waits for a slot of
    // its own: fewer at work than the hourly quota, or the reservations could fill the hour
    // and the checks wait forever.
    let concurrency = CONCURRENCY.min(per_hour.saturating_sub(1) as usize).max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let edit_check =
        options
            .edit_check
            .resolve(total, plan.changes.len(), client.stats().calls(), per_hour);
    let checks = Arc::new(Checks::new(
        client,
        plan,
        edit_check,
        options.listing_max_age,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    // Incidents start in plan order: a permit is taken before the next task is spawned.
    for change in plan.changes.clone() {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (client, stop, done, progress, checks) = (
            client.clone(),
            stop.clone(),
            done.clone(),
            progress.clone(),
            checks.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let ended = apply_one(&client, &checks, &change, &stop, &|| {
                let now = done.fetch_add(1, Ordering::SeqCst) + 1;
                progress(now, total);
            })
            .await;
            (change.id, ended)
        });
    }
    let mut outcome = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok((id, ended)) = joined else {
            continue;
        };
        outcome.requests_sent += ended.sent;
        match ended.how {
            End::Done => outcome.applied.push(id),
            End::Stopped if ended.sent == 0 => outcome.not_started.push(id),
            End::Stopped => outcome.partial.push(id),
            End::Conflict(reason) => outcome.conflicts.push((id, reason)),
            End::Failed(error) => outcome.failed.push((id, error)),
        }
    }
    // Report in plan order, not completion order.
    let order: HashMap<u64, usize> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let rank = |id: &u64| order.get(id).copied().unwrap_or(usize::MAX);
    outcome.applied.sort_by_key(rank);
    outcome.failed.sort_by_key(|(id, _)| rank(id));
    outcome.not_started.sort_by_key(rank);
    outcome.partial.sort_by_key(rank);
    outcome.conflicts.sort_by_key(|(id, _)| rank(id));
    outcome.elapsed = started.elapsed();
    outcome
}

/// How the requests of one incident ended, and how many of them were sent.
struct Ended {
    sent: usize,
    how: End,
}

enum End {
    Done,
    Stopped,
    Conflict(String),
    Failed(String),
}

/// The requests of one incident, in order, after checking nobody changed it since the plan.
async fn apply_one(
    client: &Client,
    checks: &Checks,
    change: &PlannedChange,
    stop: &AtomicBool,
    request_done: &(dyn Fn() + Sync),
) -> Ended {
    let ended = |sent, how| Ended { sent, how };
    if stop.load(Ordering::SeqCst) {
        return ended(0, End::Stopped);
    }
    // Checked once a pacing slot for its first PATCH is reserved, and sent in that slot: the
    // check is never older than one read when the PATCH leaves, and never wasted on a slot
    // that another incident takes meanwhile.
    let (mut expected, mut slot) = loop {
        client.wait_for_room(CallKind::Patch).await;
        if stop.load(Ordering::SeqCst) {
            return ended(0, End::Stopped);
        }
        let Some(slot) = client.try_take_patch_slot() else {
            continue; // another incident took the room first
        };
        // After an ambiguous failure the client re-reads the incident; any update other than
        // our own last one is someone else's, and stops this incident.
        match checks.unchanged_since_plan(change).await {
            Ok(expected) => break (expected, Some(slot)),
            Err(how) => return ended(0, how),
        }
    };
    let mut sent = 0;
    for request in &change.requests {
        if stop.load(Ordering::SeqCst) {
            return ended(sent, End::Stopped);
        }
        let result = match (slot.take(), &expected) {
            (Some(slot), expected) => {
                client
                    .patch_in_slot(change.id, &request.body, expected.as_deref(), slot)
                    .await
            }
            (None, Some(time)) => {
                client
                    .patch_if_unchanged(change.id, &request.body, time)
                    .await
            }
            (None, None) => client.patch(change.id, &request.body).await,
        };
        match result {
            Ok(incident) => {
                sent += 1;
                expected = incident.last_update_time;
                request_done();
            }
            Err(error @ ApiError::Conflict { .. }) => {
                return ended(sent, End::Conflict(error.to_string()));
            }
            Err(error) => return ended(sent, End::Failed(error.to_string())),
        }
    }
    ended(sent, End::Done)
}

/// How incidents are checked before their first write.
enum Mode {
    /// Listings of what changed since the previous one.
    Listing {
        /// Where the next listing starts (server time).
        since: DateTime<Utc>,
        /// When the last listing was requested (client clock); `None` before the first.
        listed_at: Option<tokio::time::Instant>,
        /// The newest listed state of incidents not checked yet.
        listed: HashMap<u64, Incident>,
    },
    /// One GET per incident.
    ById,
}

/// The concurrent-edit check shared by the incidents of one apply.
struct Checks {
    client: Client,
    max_age: Duration,
    state: Mutex<(Mode, HashSet<u64>)>,
}

impl Checks {
    fn new(client: &Client, plan: &Plan, check: EditCheck, max_age: Duration) -> Checks {
        let date = client.first_server_date();
        if check == EditCheck::List && date.is_none() {
            tracing::info!("the API sent no Date header; checking each incident with a GET");
        }
        let mode = match date.filter(|_| check == EditCheck::List) {
            Some(date) => Mode::Listing {
                since: date - LISTING_OVERLAP,
                listed_at: None,
                listed: HashMap::new(),
            },
            None => Mode::ById,
        };
        let unchecked = plan.changes.iter().map(|c| c.id).collect();
        Checks {
            client: client.clone(),
            max_age,
            state: Mutex::new((mode, unchecked)),
        }
    }

    /// Whether `change` may be written: the `lastUpdateTime` to expect from here on, or why
    /// not (a conflict, or a failed read).
    async fn unchanged_since_plan(&self, change: &PlannedChange) -> Result<Option<String>, End> {
        let mut state = self.state.lock().await;
        let (mode, unchecked) = &mut *state;
        if let Mode::Listing {
            since,
            listed_at,
            listed,
        } = mode
        {
            let now = self.client.now();
            if listed_at.is_none_or(|at| now.saturating_duration_since(at) >= self.max_age) {
                match self
                    .client
                    .list_updated_since(*since, LISTING_MAX_PAGES)
                    .await
                {
                    Ok(Some((incidents, Some(date)))) => {
                        for incident in incidents {
                            // Incidents already started are ours to write now.
                            if unchecked.contains(&incident.incident_id) {
                                listed.insert(incident.incident_id, incident);
                            }
                        }
                        *since = date - LISTING_OVERLAP;
                        *listed_at = Some(now);
                    }
                    Ok(Some((_, None))) => {
                        tracing::info!(
                            "the API sent no Date header; checking each incident with a GET"
                        );
                        *mode = Mode::ById;
                    }
                    Ok(None) => {
                        tracing::info!(
                            "more than {} incidents changed since {since}; checking each incident with a GET",
                            LISTING_MAX_PAGES * crate::api::client::PAGE_SIZE
                        );
                        *mode = Mode::ById;
                    }
                    Err(error) => {
                        tracing::warn!(
                            "cannot list the incidents changed since {since} ({error}); checking each incident with a GET"
                        );
                        *mode = Mode::ById;
                    }
                }
            }
        }
        // From here on, listings that show this incident show our own writes.
        unchecked.remove(&change.id);
        let listed = match mode {
            Mode::Listing { listed, .. } => Some(listed.remove(&change.id)),
            Mode::ById => None,
        };
        drop(state);
        let current = match listed {
            // Not listed: unchanged since the plan read it.
            Some(None) => return Ok(change.last_update_time.clone()),
            Some(Some(current)) => current,
            None => match self.client.get(change.id).await {
                Ok(Some(current)) => current,
                Ok(None) => return Err(End::Conflict("it no longer exists".to_string())),
                Err(error) => return Err(End::Failed(error.to_string())),
            },
        };
        match changed_since(change, &current) {
            Some(reason) => Err(End::Conflict(reason)),
            None => Ok(current.last_update_time),
        }
    }
}

/// Planned incidents that changed since the plan was made: their `lastUpdateTime`, or a
/// planned field's current value, is no longer what the plan saw. Each with the reason.
pub fn stale(plan: &Plan, current: &HashMap<u64, Incident>) -> Vec<(u64, String)> {
    let mut stale = Vec::new();
    for change in &plan.changes {
        let Some(incident) = current.get(&change.id) else {
            stale.push((change.id, "no longer exists".to_string()));
            continue;
        };
        if let Some(reason) = changed_since(change, incident) {
            stale.push((change.id, reason));
        }
    }
    stale
}

fn changed_since(change: &PlannedChange, incident: &Incident) -> Option<String> {
    if change.last_update_time != incident.last_update_time {
        return Some(format!(
            "it was updated at {} (the plan saw {})",
            incident
                .last_update_time
                .as_deref()
                .unwrap_or("an unknown time"),
            change
                .last_update_time
                .as_deref()
                .unwrap_or("no update time")
        ));
    }
    for field in &change.fields {
        let now = match field.field.as_str() {
            "status" => json(&incident.status),
            "assignedTo" => json(&incident.assigned_to),
            "classification" => json(&incident.classification),
            "determination" => json(&incident.determination),
            "tags" => {
                let now: BTreeSet<&str> = incident.tags.iter().map(String::as_str).collect();
                let planned: BTreeSet<&str> = field
                    .before
                    .as_array()
                    .map(|tags| tags.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if now != planned {
                    return Some(format!("its tags are now {:?}", incident.tags));
                }
                continue;
            }
            _ => continue,
        };
        if now != field.before {
            return Some(format!(
                "its {} is now {now} (the plan saw {})",
                field.field, field.before
            ));
        }
    }
    None
}

fn json(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::from)
}
