//! The diff engine: desired state + current state in, the minimal changes out. Pure: no I/O.
//!
//! It owns the rules: only managed (present) fields are compared, equal values are never sent,
//! tags are a set, comments are append-only, and the determination rule is checked on the
//! effective state (current merged with desired).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::wire::{Incident, IncidentUpdate};
use crate::model::{Classification, DesiredIncident, Determination};

/// One field that changes, as `before → after`. A new comment is a change of `comment` from
/// nothing to its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// What must change on one incident, and the requests that change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentDiff {
    pub fields: Vec<FieldChange>,
    /// The PATCH bodies, in order: every changed field plus the first new comment, then one
    /// body per further new comment.
    pub requests: Vec<IncidentUpdate>,
}

impl IncidentDiff {
    pub fn new_comments(&self) -> usize {
        self.fields.iter().filter(|f| f.field == "comment").count()
    }

    pub fn changed_fields(&self) -> usize {
        self.fields.len() - self.new_comments()
    }
}

/// Why an incident cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffError {
    /// The incident was merged into another; its state is no longer its own.
    Redirected { into: Option<u64> },
    /// The change would leave a determination on an incident that is not a true positive.
    Rule {
        determination: String,
        classification: Option<String>,
    },
}

impl std::fmt::Display for DiffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiffError::Redirected { into: Some(into) } => write!(
                f,
                "the incident was merged into incident {into} (status Redirected) and can no longer be changed; manage incident {into} instead"
            ),
            DiffError::Redirected { into: None } => write!(
                f,
                "the incident has status Redirected (merged into another) and can no longer be changed"
            ),
            DiffError::Rule {
                determination,
                classification,
            } => write!(
                f,
                "this would leave determination {determination} on an incident classified {}, and the API allows a determination only on TruePositive; set `determination: NotAvailable`, or `classification: TruePositive`",
                classification.as_deref().unwrap_or("(not set)")
            ),
        }
    }
}

/// Compares one desired incident with its current state. `Ok(None)`: nothing to do.
pub fn diff(
    desired: &DesiredIncident,
    current: &Incident,
) -> Result<Option<IncidentDiff>, DiffError> {
    if current.redirect_incident_id.is_some() || current.status.as_deref() == Some("Redirected") {
        return Err(DiffError::Redirected {
            into: current.redirect_incident_id,
        });
    }

    // The determination rule on the state the incident will have afterwards.
    let classification_after = desired
        .classification
        .map(|c| c.as_str().to_string())
        .or_else(|| current.classification.clone());
    let determination_after = desired
        .determination
        .map(|d| d.as_str().to_string())
        .or_else(|| current.determination.clone());
    let rule_holds = match determination_after.as_deref() {
        None => true,
        Some(d) if d == Determination::NotAvailable.as_str() => true,
        Some(_) => classification_after.as_deref() == Some(Classification::TruePositive.as_str()),
    };
    let touches_rule = desired.classification.is_some() || desired.determination.is_some();
    if touches_rule && !rule_holds {
        return Err(DiffError::Rule {
            determination: determination_after.unwrap_or_default(),
            classification: classification_after,
        });
    }

    let mut fields = Vec::new();
    let mut update = IncidentUpdate::default();

    if let Some(status) = desired.status
        && current.status.as_deref() != Some(status.as_str())
    {
        fields.push(change("status", &current.status, status.as_str()));
        update.status = Some(status);
    }
    if let Some(owner) = &desired.assigned_to
        && current.assigned_to.as_deref() != Some(owner.as_str())
    {
        fields.push(change("assignedTo", &current.assigned_to, owner));
        update.assigned_to = Some(owner.clone());
    }
    if let Some(classification) = desired.classification
        && current.classification.as_deref() != Some(classification.as_str())
    {
        fields.push(change(
            "classification",
            &current.classification,
            classification.as_str(),
        ));
        update.classification = Some(classification);
    }
    if let Some(determination) = desired.determination
        && current.determination.as_deref() != Some(determination.as_str())
    {
        fields.push(change(
            "determination",
            &current.determination,
            determination.as_str(),
        ));
        update.determination = Some(determination);
    }
    if let Some(tags) = &desired.tags {
        let wanted: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
        let have: BTreeSet<&str> = current.tags.iter().map(String::as_str).collect();
        if wanted != have {
            let mut seen = BTreeSet::new();
            let list: Vec<String> = tags
                .iter()
                .filter(|t| seen.insert(t.as_str()))
                .cloned()
                .collect();
            fields.push(FieldChange {
                field: "tags".into(),
                before: Value::from(current.tags.clone()),
                after: Value::from(list.clone()),
            });
            update.tags = Some(list);
        }
    }
    let mut new_comments = Vec::new();
    if let Some(comments) = &desired.comments {
        let have: BTreeSet<&str> = current
            .comments
            .iter()
            .map(|c| c.comment.as_str())
            .collect();
        let mut seen = BTreeSet::new();
        for comment in comments {
            if !have.contains(comment.as_str()) && seen.insert(comment.as_str()) {
                fields.push(FieldChange {
                    field: "comment".into(),
                    before: Value::Null,
                    after: Value::from(comment.as_str()),
                });
                new_comments.push(comment.clone());
            }
        }
    }

    if fields.is_empty() {
        return Ok(None);
    }
    let mut comments = new_comments.into_iter();
    update.comment = comments.next();
    let mut requests = vec![update];
    requests.extend(comments.map(|comment| IncidentUpdate {
        comment: Some(comment),
        ..Default::default()
    }));
    Ok(Some(IncidentDiff { fields, requests }))
}

fn change(field: &str, before: &Option<String>, after: &str) -> FieldChange {
    FieldChange {
        field: field.into(),
        before: before.clone().map_or(Value::Null, Value::from),
        after: Value::from(after),
    }
}

/// The API's documented effect of one PATCH body on an incident (tags replace, comment
/// appends). Used to check plans and to re-derive what an ambiguous request did.
pub fn apply_update(incident: &mut Incident, update: &IncidentUpdate) {
    if let Some(status) = update.status {
        incident.status = Some(status.as_str().into());
    }
    if let Some(owner) = &update.assigned_to {
        incident.assigned_to = Some(owner.clone());
    }
    if let Some(classification) = update.classification {
        incident.classification = Some(classification.as_str().into());
    }
    if let Some(determination) = update.determination {
        incident.determination = Some(determination.as_str().into());
    }
    if let Some(tags) = &update.tags {
        incident.tags = tags.clone();
    }
    if let Some(comment) = &update.comment {
        incident.comments.push(crate::api::wire::Comment {
            comment: comment.clone(),
            created_by: None,
            created_time: None,
        });
    }
}

#[cfg(test)]
mod tests;
