//! Wire types: what the Defender incidents API sends and accepts.
//!
//! Tolerant by design: unknown fields are ignored and enum-like values are kept as the strings
//! the API sent (the live service returns values newer than its documentation), so reading
//! current state never fails on a value this version does not know.

use serde::{Deserialize, Serialize};

use crate::model::{Classification, Determination, Status};

/// An incident as returned by list, get and patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub incident_id: u64,
    #[serde(default)]
    pub incident_uri: Option<String>,
    #[serde(default)]
    pub redirect_incident_id: Option<u64>,
    #[serde(default)]
    pub incident_name: Option<String>,
    #[serde(default)]
    pub created_time: Option<String>,
    #[serde(default)]
    pub last_update_time: Option<String>,
    #[serde(default)]
    pub assigned_to: Option<String>,
    #[serde(default)]
    pub classification: Option<String>,
    #[serde(default)]
    pub determination: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub comments: Vec<Comment>,
}

/// One comment on an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub comment: String,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub created_time: Option<String>,
}

/// One page of `GET /api/incidents`.
#[derive(Debug, Clone, Deserialize)]
pub struct IncidentPage {
    #[serde(default)]
    pub value: Vec<Incident>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    /// The answer's `Date` header: the server's time when it listed the page.
    #[serde(skip)]
    pub server_date: Option<chrono::DateTime<chrono::Utc>>,
}

/// The body of `PATCH /api/incidents/{id}`: only the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncidentUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub determination: Option<Determination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl IncidentUpdate {
    /// True when the body would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == IncidentUpdate::default()
    }
}

/// The error body of every failed call: `{"error":{"code","message","target"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_incidents_parse() {
        let text = include_str!("../../tests/fixtures/incidents-list.json");
        let page: IncidentPage = serde_json::from_str(text).expect("fixture parses");
        assert_eq!(page.value.len(), 3);
        assert_eq!(page.value[0].incident_id, 924565);
        assert_eq!(page.value[0].comments[0].comment, "test comment for docs");
    }

    #[test]
    fn unknown_enum_values_and_fields_are_kept_or_ignored() {
        let incident: Incident = serde_json::from_str(
            r#"{"incidentId": 1, "status": "InProgress", "classification": "InformationalExpectedActivity",
                "determination": "MultiStagedAttack", "tags": null, "somethingNew": {"x": 1}}"#,
        )
        .expect("tolerant parse");
        assert_eq!(incident.status.as_deref(), Some("InProgress"));
        assert_eq!(incident.determination.as_deref(), Some("MultiStagedAttack"));
        assert!(incident.tags.is_empty());
    }

    #[test]
    fn update_body_holds_only_set_fields() {
        let update = IncidentUpdate {
            status: Some(Status::Resolved),
            comment: Some("done".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&update).unwrap(),
            r#"{"status":"Resolved","comment":"done"}"#
        );
        assert!(IncidentUpdate::default().is_empty());
    }
}
