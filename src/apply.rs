//! Executing a plan through the paced client: incidents in parallel (the client's pacing
//! decides when each request leaves), the requests of one incident in order. A stop request
//! (Ctrl-C) lets the requests in flight finish and starts no new ones.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api::Client;
use crate::api::wire::Incident;
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
            let mut sent = 0;
            for request in &change.requests {
                if stop.load(Ordering::SeqCst) {
                    return (change.id, sent, None, true);
                }
                match client.patch(change.id, &request.body).await {
                    Ok(_) => {
                        sent += 1;
                        let now = done.fetch_add(1, Ordering::SeqCst) + 1;
                        progress(now, total);
                    }
                    Err(error) => return (change.id, sent, Some(error.to_string()), false),
                }
            }
            (change.id, sent, None, false)
        });
    }
    let mut outcome = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok((id, sent, error, stopped)) = joined else {
            continue;
        };
        outcome.requests_sent += sent;
        match (error, stopped) {
            (Some(error), _) => outcome.failed.push((id, error)),
            (None, true) if sent == 0 => outcome.not_started.push(id),
            (None, true) => outcome.partial.push(id),
            (None, false) => outcome.applied.push(id),
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
    outcome.elapsed = started.elapsed();
    outcome
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
