//! The plan: what would change, incident by incident, and the exact requests apply will send.
//!
//! [`Plan`] is also the stable, versioned JSON format of `plan --format json` and of a saved
//! plan file (`plan --out FILE`, then `apply FILE`). Building it is pure: desired state and
//! current state in, plan out.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::api::wire::{Incident, IncidentUpdate};
use crate::engine::{self, DiffError, FieldChange};
use crate::source::{DesiredState, LoadedIncident};

/// The version of the JSON plan format. Bump on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub format_version: u32,
    pub source: PlanSource,
    /// Incidents whose managed fields differ from the current state, in file order.
    pub changes: Vec<PlannedChange>,
    /// Problems that stop the plan from being applied at all.
    #[serde(default)]
    pub errors: Vec<PlanError>,
    pub summary: Summary,
}

/// Where the desired state came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSource {
    pub repo: String,
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since: Option<String>,
}

/// One incident to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    pub id: u64,
    /// The incident's name in Defender, for people reading the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The desired-state file, relative to `--repo`, and the line of the document.
    pub file: String,
    pub line: u64,
    /// The incident's `lastUpdateTime` when the plan read it: apply of a saved plan refuses
    /// an incident that changed since.
    #[serde(default)]
    pub last_update_time: Option<String>,
    /// Every changed field, `before → after`; a new comment is a `comment` from `null`.
    pub fields: Vec<FieldChange>,
    pub requests: Vec<Request>,
}

impl PlannedChange {
    pub fn new_comments(&self) -> usize {
        self.fields.iter().filter(|f| f.field == "comment").count()
    }

    pub fn changed_fields(&self) -> usize {
        self.fields.len() - self.new_comments()
    }
}

/// One HTTP request apply will send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: IncidentUpdate,
}

/// Why an incident cannot be planned; any error stops the whole apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanError {
    pub id: u64,
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Managed incidents considered.
    pub incidents: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// Changed fields (new comments not included).
    pub fields: usize,
    pub comments: usize,
    /// PATCH requests apply will send.
    pub requests: usize,
    /// Every call apply will send: the PATCHes, plus the reads that check nobody changed a
    /// planned incident since the plan read it (a GET per incident while that fits in the
    /// hourly quota, else a listing per 10 s of apply).
    #[serde(default)]
    pub apply_calls: usize,
    pub errors: usize,
    /// API calls spent reading the current state.
    pub read_calls: u64,
    /// The PATCH quota the estimate below assumes.
    pub calls_per_minute: u32,
    pub calls_per_hour: u32,
    /// Estimated time apply needs at those quotas, in seconds.
    pub estimated_seconds: u64,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// What the plan is computed against: the current state of each managed incident (`None`:
/// the API does not know the id), how many calls reading it cost, and the quotas.
pub struct Inputs<'a> {
    pub desired: &'a DesiredState,
    pub current: &'a HashMap<u64, Incident>,
    pub source: PlanSource,
    pub read_calls: u64,
    pub calls_per_minute: u32,
    pub calls_per_hour: u32,
    /// How apply will check for concurrent edits (its calls are in the estimate).
    pub edit_check: crate::apply::EditCheck,
}

/// Builds the plan. Pure.
pub fn build(inputs: Inputs<'_>) -> Plan {
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    let mut unchanged = 0;
    for loaded in &inputs.desired.incidents {
        let id = loaded.incident.id;
        let file = inputs.desired.file_of(loaded).path.clone();
        let Some(current) = inputs.current.get(&id) else {
            errors.push(error_at(loaded, &file, "id", format!(
                "incident {id} does not exist in Defender (the API answered 404); check the id, or remove the file"
            )));
            continue;
        };
        match engine::diff(&loaded.incident, current) {
            Ok(None) => unchanged += 1,
            Ok(Some(diff)) => changes.push(PlannedChange {
                id,
                name: current.incident_name.clone(),
                file,
                line: loaded.start.line,
                last_update_time: current.last_update_time.clone(),
                fields: diff.fields,
                requests: diff
                    .requests
                    .into_iter()
                    .map(|body| Request {
                        method: "PATCH".into(),
                        path: format!("/api/incidents/{id}"),
                        body,
                    })
                    .collect(),
            }),
            Err(error) => {
                let at = match error {
                    DiffError::Rule { .. } if loaded.fields.contains_key("determination") => {
                        "determination"
                    }
                    DiffError::Rule { .. } => "classification",
                    DiffError::Redirected { .. } => "id",
                };
                errors.push(error_at(
                    loaded,
                    &file,
                    at,
                    format!("incident {id}: {error}"),
                ));
            }
        }
    }
    let requests: usize = changes.iter().map(|c| c.requests.len()).sum();
    let checks = inputs.edit_check.calls(
        requests,
        changes.len(),
        inputs.read_calls,
        inputs.calls_per_minute,
        inputs.calls_per_hour,
    );
    let summary = Summary {
        incidents: inputs.desired.incidents.len(),
        changed: changes.len(),
        unchanged,
        fields: changes.iter().map(PlannedChange::changed_fields).sum(),
        comments: changes.iter().map(PlannedChange::new_comments).sum(),
        requests,
        apply_calls: requests + checks,
        errors: errors.len(),
        read_calls: inputs.read_calls,
        calls_per_minute: inputs.calls_per_minute,
        calls_per_hour: inputs.calls_per_hour,
        estimated_seconds: estimate_seconds(
            requests as u64,
            checks as u64,
            inputs.calls_per_minute,
            inputs.calls_per_hour,
        ),
    };
    Plan {
        format_version: FORMAT_VERSION,
        source: inputs.source,
        changes,
        errors,
        summary,
    }
}

fn error_at(loaded: &LoadedIncident, file: &str, field: &str, message: String) -> PlanError {
    let pos = loaded.fields.get(field).copied().unwrap_or(loaded.start);
    PlanError {
        id: loaded.incident.id,
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        message,
    }
}

/// Time apply needs at the quotas: `patches` PATCH calls at the minute rate, `rereads` reads
/// (at most the PATCH rate, which their own quotas allow), and, past the hourly quota that all
/// calls share, a wait for the next hour before each further batch, which then runs at the
/// minute rate.
pub fn estimate_seconds(patches: u64, rereads: u64, per_minute: u32, per_hour: u32) -> u64 {
    let calls = patches + rereads;
    if calls == 0 {
        return 0;
    }
    let per_minute = u64::from(per_minute.max(1));
    let per_hour = u64::from(per_hour.max(1));
    let patch_bound = (patches * 60).div_ceil(per_minute);
    let read_bound = (rereads * 60).div_ceil(per_minute);
    let full_hours = (calls - 1) / per_hour;
    let last_batch = calls - full_hours * per_hour;
    let hour_bound = if full_hours == 0 {
        0
    } else {
        full_hours * 3600 + (last_batch * 60).div_ceil(per_minute)
    };
    patch_bound.max(read_bound).max(hour_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_the_minute_quota_then_the_hourly_one() {
        assert_eq!(estimate_seconds(0, 0, 50, 1500), 0);
        assert_eq!(estimate_seconds(5, 0, 50, 1500), 6);
        assert_eq!(estimate_seconds(5, 4, 50, 1500), 6);
        assert_eq!(estimate_seconds(100, 100, 50, 1500), 120);
        // 3000 calls: the hourly quota binds: the first 1500 take 30 min, the second half
        // starts an hour after the first and takes 30 min more.
        assert_eq!(estimate_seconds(3000, 0, 50, 1500), 5400);
        assert_eq!(estimate_seconds(3001, 0, 50, 1500), 7202);
        // The re-reads share the hourly quota: 1000 PATCHes + 1000 GETs cross it.
        assert_eq!(estimate_seconds(1000, 1000, 50, 1500), 4200);
    }

    #[test]
    fn the_concurrent_edit_check_costs_a_get_per_incident_or_a_listing_per_ten_seconds() {
        use crate::apply::{EditCheck, expected_listings};
        assert_eq!(expected_listings(0, 50), 0);
        assert_eq!(expected_listings(5, 50), 1);
        // 50 PATCHes take 60 s at 50/min: a listing at the start and one per 10 s.
        assert_eq!(expected_listings(50, 50), 7);
        // Auto: a GET per incident while everything fits in the hourly quota.
        assert_eq!(EditCheck::Auto.calls(750, 750, 0, 50, 1500), 750);
        assert_eq!(
            EditCheck::Auto.calls(751, 751, 0, 50, 1500),
            expected_listings(751, 50)
        );
        assert_eq!(EditCheck::Get.calls(2000, 2000, 0, 50, 1500), 2000);
        assert_eq!(EditCheck::List.calls(5, 5, 0, 50, 1500), 1);
        // The physical limit is 1,500 incidents an hour (one PATCH each). With listings, 1,339
        // of them fit in the hourly quota; with a GET each, 750.
        let calls =
            |incidents: usize| incidents + EditCheck::Auto.calls(incidents, incidents, 0, 50, 1500);
        assert!(calls(750) <= 1500);
        assert!(calls(1339) <= 1500);
        assert!(calls(1340) > 1500);
        assert!(EditCheck::Get.calls(751, 751, 0, 50, 1500) + 751 > 1500);
        // The plan's own reads count in the hour: 700 incidents fit with a GET each, unless
        // reading them took 101 calls or more.
        assert_eq!(EditCheck::Auto.resolve(700, 700, 100, 1500), EditCheck::Get);
        assert_eq!(
            EditCheck::Auto.resolve(700, 700, 101, 1500),
            EditCheck::List
        );
    }
}
