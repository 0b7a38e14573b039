//! Reading the current state of the managed incidents at the least cost.
//!
//! A GET by id costs one call per incident (100/min); the list costs one call per 100
//! incidents (50/min) but pages through incidents nobody manages. The first list page tells
//! how dense incident ids are, which estimates how many pages reach the oldest managed id;
//! the cheaper of the two is taken, and listing stops as soon as every managed id is found.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::api::client::PAGE_SIZE;
use crate::api::wire::Incident;
use crate::api::{ApiError, Client};

/// Up to this many managed incidents are read one GET each, without a first list page to
/// estimate: the estimate itself would cost a call, and at most this many GETs is cheap.
const DIRECT_GETS: usize = 10;

/// How many GETs may be in flight at once; the client's pacing decides when they are sent.
const GET_CONCURRENCY: usize = 16;

/// How the current state was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Nothing to read.
    Nothing,
    /// One GET per managed incident.
    ById,
    /// Pages of the list (then GETs for the few ids the pages did not reach).
    List,
}

/// The current state of the managed incidents; an id absent from `incidents` does not exist.
#[derive(Debug)]
pub struct CurrentState {
    pub incidents: HashMap<u64, Incident>,
    pub strategy: Strategy,
    /// API calls spent (retries and re-reads included).
    pub calls: u64,
}

/// Reads the current state of `ids`.
pub async fn current_state(client: &Client, ids: &[u64]) -> Result<CurrentState, ApiError> {
    let before = client.stats().calls();
    let wanted: BTreeSet<u64> = ids.iter().copied().collect();
    let mut found = HashMap::new();
    let strategy = if wanted.is_empty() {
        Strategy::Nothing
    } else if wanted.len() <= DIRECT_GETS {
        get_each(client, &wanted, &mut found).await?;
        Strategy::ById
    } else {
        let first = client.list_page(None, PAGE_SIZE, 0).await?;
        let complete = first.value.len() < PAGE_SIZE as usize;
        let estimate = remaining_pages(&first.value, &wanted);
        keep(&mut found, first.value, &wanted);
        if complete {
            Strategy::List
        } else {
            let missing: BTreeSet<u64> = wanted.difference(&keys(&found)).copied().collect();
            if estimate < missing.len() as u64 {
                list_until_found(client, &wanted, &mut found).await?;
                let missing: BTreeSet<u64> = wanted.difference(&keys(&found)).copied().collect();
                // Ids the list did not show (a listing that shifted, or ids older than it
                // reaches): confirm them one by one rather than call them unknown.
                get_each(client, &missing, &mut found).await?;
                Strategy::List
            } else {
                get_each(client, &missing, &mut found).await?;
                Strategy::ById
            }
        }
    };
    Ok(CurrentState {
        incidents: found,
        strategy,
        calls: client.stats().calls() - before,
    })
}

fn keys(found: &HashMap<u64, Incident>) -> BTreeSet<u64> {
    found.keys().copied().collect()
}

fn keep(found: &mut HashMap<u64, Incident>, page: Vec<Incident>, wanted: &BTreeSet<u64>) {
    for incident in page {
        if wanted.contains(&incident.incident_id) {
            found.insert(incident.incident_id, incident);
        }
    }
}

/// Pages still needed to reach the oldest managed id, from the id density of a full first
/// page (newest first, ids roughly follow creation). Unknown density: assume the worst.
pub fn remaining_pages(first_page: &[Incident], wanted: &BTreeSet<u64>) -> u64 {
    let (Some(newest), Some(oldest_listed)) = (
        first_page.iter().map(|i| i.incident_id).max(),
        first_page.iter().map(|i| i.incident_id).min(),
    ) else {
        return 0;
    };
    let Some(&oldest_wanted) = wanted.iter().next() else {
        return 0;
    };
    if oldest_wanted >= oldest_listed {
        return 0;
    }
    let span = newest - oldest_listed + 1;
    let per_id = first_page.len() as f64 / span as f64;
    let incidents = (oldest_listed - oldest_wanted) as f64 * per_id;
    (incidents / f64::from(PAGE_SIZE)).ceil() as u64 + 1
}

async fn list_until_found(
    client: &Client,
    wanted: &BTreeSet<u64>,
    found: &mut HashMap<u64, Incident>,
) -> Result<(), ApiError> {
    let mut skip = PAGE_SIZE;
    while found.len() < wanted.len() {
        let page = client.list_page(None, PAGE_SIZE, skip).await?;
        let count = page.value.len();
        keep(found, page.value, wanted);
        if count < PAGE_SIZE as usize {
            break;
        }
        skip += PAGE_SIZE;
    }
    Ok(())
}

async fn get_each(
    client: &Client,
    ids: &BTreeSet<u64>,
    found: &mut HashMap<u64, Incident>,
) -> Result<(), ApiError> {
    let permits = Arc::new(Semaphore::new(GET_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for &id in ids {
        let client = client.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            client.get(id).await
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Some(incident))) => {
                found.insert(incident.incident_id, incident);
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                if first_error.is_none() {
                    first_error = Some(error);
                    tasks.abort_all();
                }
            }
            Err(_) => {} // aborted after the first error
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: impl Iterator<Item = u64>) -> Vec<Incident> {
        ids.map(|id| serde_json::from_value(serde_json::json!({"incidentId": id})).unwrap())
            .collect()
    }

    #[test]
    fn remaining_pages_follow_the_id_density() {
        // Dense ids: 100 incidents in ids 901..=1000; the oldest wanted id 401 is 500 ids (5
        // pages) further, plus one for the page it sits on.
        let first = page((901..=1000).rev());
        let wanted: BTreeSet<u64> = [401, 950].into();
        assert_eq!(remaining_pages(&first, &wanted), 6);
        // Sparse ids: every 10th id; the same distance is 50 incidents, under a page.
        let first = page((0..100).map(|i| 10_000 - i * 10));
        let wanted: BTreeSet<u64> = [8_510].into();
        assert_eq!(remaining_pages(&first, &wanted), 2);
        // Everything wanted is on the first page.
        let wanted: BTreeSet<u64> = [9_990].into();
        assert_eq!(remaining_pages(&first, &wanted), 0);
    }
}
