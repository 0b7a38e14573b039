//! Executing a plan through the paced client: incidents in parallel (the client's pacing
//! decides when each request leaves), the requests of one incident in order. A stop request
//! (Ctrl-C) lets the requests in flight finish and starts no new ones.
//!
//! The API has no conditional PATCH, so each incident is re-read (one GET) right before its
//! first request: one that changed since the plan read it is skipped as a conflict rather
//! than overwritten. Its later requests are checked against our own last write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api::wire::Incident;
use crate::api::{ApiError, Client};
use crate::plan::{Plan, PlannedChange};

/// Incidents applied at the same time (the client paces the requests themselves).
const CONCURRENCY: usize = 8;

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
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> Outcome {
    let started = Instant::now();
    let total: usize = plan.changes.iter().map(|c| c.requests.len()).sum();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for change in plan.changes.clone() {
        let (client, stop, done, progress, permits) = (
            client.clone(),
            stop.clone(),
            done.clone(),
            progress.clone(),
            permits.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let ended = apply_one(&client, &change, &stop, &|| {
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
    change: &PlannedChange,
    stop: &AtomicBool,
    request_done: &(dyn Fn() + Sync),
) -> Ended {
    let ended = |sent, how| Ended { sent, how };
    if stop.load(Ordering::SeqCst) {
        return ended(0, End::Stopped);
    }
    let current = match client.get(change.id).await {
        Ok(Some(current)) => current,
        Ok(None) => return ended(0, End::Conflict("it no longer exists".to_string())),
        Err(error) => return ended(0, End::Failed(error.to_string())),
    };
    if let Some(reason) = changed_since(change, &current) {
        return ended(0, End::Conflict(reason));
    }
    // After an ambiguous failure the client re-reads the incident; any update other than our
    // own last one is someone else's, and stops this incident.
    let mut expected = current.last_update_time;
    let mut sent = 0;
    for request in &change.requests {
        if stop.load(Ordering::SeqCst) {
            return ended(sent, End::Stopped);
        }
        let result = match &expected {
            Some(time) => {
                client
                    .patch_if_unchanged(change.id, &request.body, time)
                    .await
            }
            None => client.patch(change.id, &request.body).await,
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
