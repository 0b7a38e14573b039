//! The emulator's incidents: kept whole as JSON (fields the client does not model survive a
//! round trip), ordered newest first, loaded from and saved to `incidents-list.json`-shaped
//! files, and changed only through the PATCH rules of the real API.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Utc};
use serde_json::{Map, Value};

use super::config::SandboxError;
use crate::model::{Classification, Determination, Status, determination_allowed};

/// Formats like the API: seconds with 7 fractional digits and a `Z`.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    let ticks = (t.timestamp_subsec_nanos() / 100).min(9_999_999);
    format!("{}.{ticks:07}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// Parses an ISO-8601 timestamp: RFC 3339, or without offset (UTC), or a bare date.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Reads incidents from `{"value": [...]}` (or a bare array).
pub fn load_incidents(path: &Path) -> Result<Vec<Value>, SandboxError> {
    let text = std::fs::read(path).map_err(|source| SandboxError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let document: Value = serde_json::from_slice(&text).map_err(|source| SandboxError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    match document {
        Value::Array(items) => Ok(items),
        Value::Object(mut object) => match object.remove("value") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(SandboxError::Data(format!(
                "{}: expected an object with a \"value\" array of incidents",
                path.display()
            ))),
        },
        _ => Err(SandboxError::Data(format!(
            "{}: expected an object with a \"value\" array of incidents",
            path.display()
        ))),
    }
}

/// Writes `{"@odata.context": ..., "value": [...]}` atomically: a temporary file in the same
/// folder, flushed, then renamed over `path`, so a crash never leaves half a file.
pub fn save_incidents(path: &Path, incidents: &[Value]) -> Result<(), SandboxError> {
    let write_error = |source| SandboxError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let document = serde_json::json!({
        "@odata.context": "https://api.security.microsoft.com/api/$metadata#Incidents",
        "value": incidents,
    });
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(write_error)?;
    {
        let mut writer = std::io::BufWriter::new(file.as_file_mut());
        serde_json::to_writer_pretty(&mut writer, &document)
            .map_err(|e| write_error(std::io::Error::other(e)))?;
        writer.write_all(b"\n").map_err(write_error)?;
        writer.flush().map_err(write_error)?;
    }
    file.as_file().sync_all().map_err(write_error)?;
    file.persist(path).map_err(|e| write_error(e.error))?;
    Ok(())
}

/// An API error the handlers turn into `{"error":{"code","message","target"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(id: impl std::fmt::Display) -> Self {
        ApiError {
            status: 404,
            code: "NotFound",
            message: format!("Incident {id} was not found."),
        }
    }
}

/// The fields a PATCH body may set, validated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Update {
    status: Option<Status>,
    /// `Some(None)`: unassign (`"assignedTo": null`).
    assigned_to: Option<Option<String>>,
    classification: Option<Classification>,
    determination: Option<Determination>,
    tags: Option<Vec<String>>,
    comment: Option<String>,
}

const PATCH_PROPERTIES: &[&str] = &[
    "status",
    "assignedTo",
    "classification",
    "determination",
    "tags",
    "comment",
];

/// Validates a PATCH body the way the API does: a JSON object, case-sensitive known properties,
/// documented enum values.
pub fn parse_update(body: &Value) -> Result<Update, ApiError> {
    let invalid = |message: String| ApiError::bad_request("InvalidRequestBody", message);
    let Value::Object(object) = body else {
        return Err(invalid("The request body must be a JSON object.".into()));
    };
    let mut update = Update::default();
    for (key, value) in object {
        match key.as_str() {
            "status" => update.status = Some(parse_enum(key, value, Status::parse, Status::ALL)?),
            "classification" => {
                update.classification = Some(parse_enum(
                    key,
                    value,
                    Classification::parse,
                    Classification::ALL,
                )?)
            }
            "determination" => {
                update.determination = Some(parse_enum(
                    key,
                    value,
                    Determination::parse,
                    Determination::ALL,
                )?)
            }
            "assignedTo" => {
                update.assigned_to = Some(match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    _ => {
                        return Err(invalid(
                            "The property 'assignedTo' must be a string.".into(),
                        ));
                    }
                })
            }
            "tags" => {
                let items = value.as_array().ok_or_else(|| {
                    invalid("The property 'tags' must be an array of strings.".into())
                })?;
                let tags = items
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        invalid("The property 'tags' must be an array of strings.".into())
                    })?;
                update.tags = Some(tags);
            }
            "comment" => match value {
                Value::String(s) if !s.trim().is_empty() => update.comment = Some(s.clone()),
                Value::String(_) => {
                    return Err(invalid("The property 'comment' must not be empty.".into()));
                }
                _ => return Err(invalid("The property 'comment' must be a string.".into())),
            },
            other => {
                return Err(invalid(format!(
                    "The property '{other}' does not exist on type 'Incident'. Properties that can be updated: {}.",
                    PATCH_PROPERTIES.join(", ")
                )));
            }
        }
    }
    Ok(update)
}

fn parse_enum<T: Copy + std::fmt::Display>(
    key: &str,
    value: &Value,
    parse: fn(&str) -> Option<T>,
    all: &[T],
) -> Result<T, ApiError> {
    let allowed = all
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match value {
        Value::String(s) => parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidRequestBody",
                format!(
                    "The value '{s}' is not valid for property '{key}'. Allowed values: {allowed}."
                ),
            )
        }),
        other => Err(ApiError::bad_request(
            "InvalidRequestBody",
            format!(
                "The value {other} is not valid for property '{key}'. Allowed values: {allowed}."
            ),
        )),
    }
}

/// What the filter needs to know about one incident.
#[derive(Debug, Clone, Copy)]
pub struct IncidentView<'a> {
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub status: Option<&'a str>,
    pub assigned_to: Option<&'a str>,
}

#[derive(Debug, Clone)]
struct Stored {
    id: u64,
    created: Option<DateTime<Utc>>,
    updated: Option<DateTime<Utc>>,
    value: Map<String, Value>,
}

impl Stored {
    fn refresh_times(&mut self) {
        self.created = self.text("createdTime").and_then(parse_timestamp);
        self.updated = self.text("lastUpdateTime").and_then(parse_timestamp);
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(Value::as_str)
    }

    fn view(&self) -> IncidentView<'_> {
        IncidentView {
            created: self.created,
            updated: self.updated,
            status: self.text("status"),
            assigned_to: self.text("assignedTo"),
        }
    }
}

/// All incidents, in file order, with an index by id and the newest-first order of the list.
#[derive(Debug)]
pub struct Store {
    incidents: Vec<Stored>,
    by_id: HashMap<u64, usize>,
    newest_first: Vec<usize>,
    last_stamp: Option<DateTime<Utc>>,
}

impl Store {
    pub fn new(incidents: Vec<Value>) -> Result<Store, SandboxError> {
        let mut stored = Vec::with_capacity(incidents.len());
        let mut by_id = HashMap::with_capacity(incidents.len());
        for (index, incident) in incidents.into_iter().enumerate() {
            let Value::Object(value) = incident else {
                return Err(SandboxError::Data(format!(
                    "incident #{index} is not a JSON object"
                )));
            };
            let Some(id) = value.get("incidentId").and_then(Value::as_u64) else {
                return Err(SandboxError::Data(format!(
                    "incident #{index} has no integer incidentId"
                )));
            };
            if by_id.insert(id, stored.len()).is_some() {
                return Err(SandboxError::Data(format!(
                    "incidentId {id} appears more than once"
                )));
            }
            let mut item = Stored {
                id,
                created: None,
                updated: None,
                value,
            };
            item.refresh_times();
            stored.push(item);
        }
        let mut store = Store {
            incidents: stored,
            by_id,
            newest_first: Vec::new(),
            last_stamp: None,
        };
        store.sort();
        Ok(store)
    }

    /// Newest first: by `createdTime` descending, then id descending.
    fn sort(&mut self) {
        let incidents = &self.incidents;
        let mut order: Vec<usize> = (0..incidents.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&incidents[a], &incidents[b]);
            b.created.cmp(&a.created).then(b.id.cmp(&a.id))
        });
        self.newest_first = order;
    }

    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<Value> {
        let index = *self.by_id.get(&id)?;
        self.incidents
            .get(index)
            .map(|s| Value::Object(s.value.clone()))
    }

    /// Every incident, in file order.
    pub fn all(&self) -> Vec<Value> {
        self.incidents
            .iter()
            .map(|s| Value::Object(s.value.clone()))
            .collect()
    }

    /// One page of the incidents `keep` accepts, newest first, and whether more follow.
    pub fn page(
        &self,
        keep: impl Fn(&IncidentView<'_>) -> bool,
        skip: usize,
        top: usize,
    ) -> (Vec<Value>, bool) {
        let mut matching = self
            .newest_first
            .iter()
            .filter_map(|&i| self.incidents.get(i))
            .filter(|s| keep(&s.view()))
            .skip(skip);
        let page: Vec<Value> = matching
            .by_ref()
            .take(top)
            .map(|s| Value::Object(s.value.clone()))
            .collect();
        let more = matching.next().is_some();
        (page, more)
    }

    /// A new `lastUpdateTime`: `now` at 100 ns precision, strictly after every stamp this store
    /// issued and after the incident's current one.
    fn next_stamp(&mut self, index: usize, now: DateTime<Utc>) -> DateTime<Utc> {
        let tick = chrono::Duration::nanoseconds(100);
        let mut stamp = now.trunc_subsecs(7);
        let floor = [
            self.last_stamp,
            self.incidents.get(index).and_then(|s| s.updated),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(floor) = floor.filter(|floor| stamp <= *floor) {
            stamp = floor.trunc_subsecs(7) + tick;
        }
        self.last_stamp = Some(stamp);
        stamp
    }

    fn bump(&mut self, index: usize, now: DateTime<Utc>) {
        let stamp = self.next_stamp(index, now);
        if let Some(item) = self.incidents.get_mut(index) {
            item.value.insert(
                "lastUpdateTime".into(),
                Value::String(format_timestamp(stamp)),
            );
            item.updated = Some(stamp);
        }
    }

    /// Applies a validated PATCH. Returns the incident after the change and whether anything
    /// changed (`lastUpdateTime` is bumped only then).
    pub fn patch(
        &mut self,
        id: u64,
        update: &Update,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(Value, bool), ApiError> {
        let index = *self.by_id.get(&id).ok_or_else(|| ApiError::not_found(id))?;
        let Some(item) = self.incidents.get_mut(index) else {
            return Err(ApiError::not_found(id));
        };
        if item.text("status") == Some("Redirected") {
            let target = item
                .value
                .get("redirectIncidentId")
                .filter(|v| !v.is_null())
                .map(|v| format!(" It was merged into incident {v}."))
                .unwrap_or_default();
            return Err(ApiError::bad_request(
                "BadRequest",
                format!("Incident {id} is redirected and cannot be updated.{target}"),
            ));
        }
        if let Some(determination) = update.determination {
            let classification = update
                .classification
                .or_else(|| item.text("classification").and_then(Classification::parse));
            if !determination_allowed(classification, Some(determination)) {
                return Err(ApiError::bad_request(
                    "InvalidRequestBody",
                    format!(
                        "The determination '{determination}' can be set only if classification is TruePositive (it would be {}).",
                        classification.map_or("unset".to_string(), |c| c.to_string())
                    ),
                ));
            }
        }

        let mut changed = false;
        let mut set = |key: &str, value: Value| {
            if item.value.get(key) != Some(&value) {
                item.value.insert(key.to_string(), value);
                changed = true;
            }
        };
        if let Some(status) = update.status {
            set("status", Value::from(status.as_str()));
        }
        if let Some(assigned_to) = &update.assigned_to {
            set(
                "assignedTo",
                assigned_to.clone().map_or(Value::Null, Value::String),
            );
        }
        if let Some(classification) = update.classification {
            set("classification", Value::from(classification.as_str()));
        }
        if let Some(determination) = update.determination {
            set("determination", Value::from(determination.as_str()));
        }
        if let Some(tags) = &update.tags {
            set(
                "tags",
                Value::Array(tags.iter().cloned().map(Value::String).collect()),
            );
        }
        if let Some(comment) = &update.comment {
            let entry = serde_json::json!({
                "comment": comment,
                "createdBy": created_by,
                "createdTime": format_timestamp(now),
            });
            match item.value.get_mut("comments") {
                Some(Value::Array(comments)) => comments.push(entry),
                _ => {
                    item.value
                        .insert("comments".into(), Value::Array(vec![entry]));
                }
            }
            changed = true;
        }
        if changed {
            self.bump(index, now);
        }
        let value = self
            .incidents
            .get(index)
            .map(|s| Value::Object(s.value.clone()))
            .unwrap_or(Value::Null);
        Ok((value, changed))
    }

    /// Sets any field as another client would, bumping `lastUpdateTime` (unless that is the field
    /// being set). Returns false for an unknown id.
    pub fn set_field(&mut self, id: u64, field: &str, value: Value, now: DateTime<Utc>) -> bool {
        let Some(&index) = self.by_id.get(&id) else {
            return false;
        };
        let Some(item) = self.incidents.get_mut(index) else {
            return false;
        };
        item.value.insert(field.to_string(), value);
        item.refresh_times();
        if field != "lastUpdateTime" {
            self.bump(index, now);
        }
        if field == "createdTime" {
            self.sort();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn time(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    fn store() -> Store {
        Store::new(vec![
            json!({"incidentId": 1, "createdTime": "2020-01-01T00:00:00Z", "lastUpdateTime": "2020-01-02T00:00:00Z",
                   "status": "Active", "classification": "Unknown", "determination": "NotAvailable", "tags": ["a"], "comments": []}),
            json!({"incidentId": 2, "createdTime": "2020-01-03T00:00:00Z", "status": "Redirected", "redirectIncidentId": 1}),
        ])
        .unwrap()
    }

    #[test]
    fn timestamps_have_seven_fractional_digits() {
        assert_eq!(
            format_timestamp(time("2020-09-06T14:46:57.29Z")),
            "2020-09-06T14:46:57.2900000Z"
        );
        assert_eq!(
            format_timestamp(time("2021-01-26T01:00:37.8404534Z")),
            "2021-01-26T01:00:37.8404534Z"
        );
        assert_eq!(time("2020-09-06"), time("2020-09-06T00:00:00Z"));
        assert_eq!(time("2020-09-06T01:02:03"), time("2020-09-06T01:02:03Z"));
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn store_rejects_missing_and_duplicate_ids() {
        assert!(Store::new(vec![json!({"incidentName": "x"})]).is_err());
        assert!(Store::new(vec![json!({"incidentId": 1}), json!({"incidentId": 1})]).is_err());
        assert!(Store::new(vec![json!([1])]).is_err());
    }

    #[test]
    fn stamps_are_strictly_increasing_even_when_the_clock_stands_still() {
        let mut store = store();
        let now = time("2024-01-01T00:00:00Z");
        let update = parse_update(&json!({"comment": "one"})).unwrap();
        let (first, _) = store.patch(1, &update, "me", now).unwrap();
        let (second, _) = store.patch(1, &update, "me", now).unwrap();
        assert_eq!(first["lastUpdateTime"], "2024-01-01T00:00:00.0000000Z");
        assert_eq!(second["lastUpdateTime"], "2024-01-01T00:00:00.0000001Z");
    }

    #[test]
    fn stamp_never_goes_behind_the_incidents_own_time() {
        let mut store = store();
        let update = parse_update(&json!({"status": "Resolved"})).unwrap();
        let (value, changed) = store
            .patch(1, &update, "me", time("2019-01-01T00:00:00Z"))
            .unwrap();
        assert!(changed);
        assert_eq!(value["lastUpdateTime"], "2020-01-02T00:00:00.0000001Z");
    }

    #[test]
    fn redirected_incidents_cannot_be_patched() {
        let mut store = store();
        let err = store
            .patch(2, &Update::default(), "me", Utc::now())
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.contains("merged into incident 1"),
            "{}",
            err.message
        );
    }

    #[test]
    fn update_parsing_names_the_unknown_property_and_bad_value() {
        let err = parse_update(&json!({"Status": "Active"})).unwrap_err();
        assert!(err.message.contains("'Status'"));
        let err = parse_update(&json!({"status": "Closed"})).unwrap_err();
        assert!(err.message.contains("'Closed'"));
        let err = parse_update(&json!({"tags": "x"})).unwrap_err();
        assert!(err.message.contains("tags"));
        assert!(parse_update(&json!([])).is_err());
        assert!(parse_update(&json!({"assignedTo": null})).is_ok());
    }

    #[test]
    fn newest_first_order_breaks_ties_by_id() {
        let store = Store::new(vec![
            json!({"incidentId": 5, "createdTime": "2020-01-01T00:00:00Z"}),
            json!({"incidentId": 7, "createdTime": "2020-01-01T00:00:00Z"}),
            json!({"incidentId": 6, "createdTime": "2021-01-01T00:00:00Z"}),
        ])
        .unwrap();
        let (page, more) = store.page(|_| true, 0, 10);
        let ids: Vec<_> = page
            .iter()
            .map(|v| v["incidentId"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [6, 7, 5]);
        assert!(!more);
    }
}
