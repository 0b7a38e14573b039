use proptest::prelude::*;

use super::*;
use crate::api::wire::Comment;
use crate::model::Status;

fn current() -> Incident {
    serde_json::from_value(serde_json::json!({
        "incidentId": 924565, "incidentName": "Ransomware activity", "status": "Active",
        "classification": "Unknown", "determination": "NotAvailable", "assignedTo": null,
        "tags": ["a", "b"], "comments": [{"comment": "test comment for docs"}],
        "lastUpdateTime": "2020-09-06T14:46:57.29Z"
    }))
    .unwrap()
}

fn desired(yaml: &str) -> DesiredIncident {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn unchanged_incident_has_no_diff_and_no_request() {
    let d = desired(
        "id: 924565\nstatus: Active\nclassification: Unknown\ntags: [b, a, a]\ncomments: [test comment for docs]\n",
    );
    assert_eq!(diff(&d, &current()).unwrap(), None);
}

#[test]
fn plan_skips_unchanged_tags_in_any_order() {
    let d = desired("id: 924565\ntags: [b, a]\nstatus: Resolved\n");
    let change = diff(&d, &current()).unwrap().unwrap();
    assert_eq!(change.fields.len(), 1);
    assert_eq!(change.requests[0].tags, None);
}

#[test]
fn only_changed_fields_and_the_first_comment_go_in_the_first_request() {
    let d = desired(
        "id: 924565\nstatus: Resolved\nassignedTo: secop2@contoso.com\nclassification: TruePositive\ndetermination: Malware\ntags: [ransomware]\ncomments: [test comment for docs, pen testing, valid incident]\n",
    );
    let change = diff(&d, &current()).unwrap().unwrap();
    let fields: Vec<&str> = change.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "status",
            "assignedTo",
            "classification",
            "determination",
            "tags",
            "comment",
            "comment"
        ]
    );
    assert_eq!(change.requests.len(), 2);
    assert_eq!(
        serde_json::to_value(&change.requests[0]).unwrap(),
        serde_json::json!({"status": "Resolved", "assignedTo": "secop2@contoso.com", "classification": "TruePositive",
            "determination": "Malware", "tags": ["ransomware"], "comment": "pen testing"})
    );
    assert_eq!(
        serde_json::to_value(&change.requests[1]).unwrap(),
        serde_json::json!({"comment": "valid incident"})
    );
    assert_eq!(change.fields[0].before, Value::from("Active"));
    assert_eq!(change.fields[1].before, Value::Null);
}

#[test]
fn determination_rule_is_checked_on_the_effective_state() {
    let mut incident = current();
    incident.classification = Some("TruePositive".into());
    incident.determination = Some("Malware".into());
    // Reclassifying as a false positive while the determination stays Malware breaks the rule.
    let err = diff(
        &desired("id: 1\nclassification: FalsePositive\n"),
        &incident,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("set `determination: NotAvailable`"),
        "{err}"
    );
    // ...and is fine when the determination is reset in the same change.
    assert!(
        diff(
            &desired("id: 1\nclassification: FalsePositive\ndetermination: NotAvailable\n"),
            &incident
        )
        .is_ok()
    );
    // A determination on an incident that is already TruePositive needs no classification.
    let err = diff(&desired("id: 1\ndetermination: Apt\n"), &current()).unwrap_err();
    assert!(matches!(err, DiffError::Rule { .. }));
}

#[test]
fn redirected_incident_names_the_incident_it_was_merged_into() {
    let mut incident = current();
    incident.status = Some("Redirected".into());
    incident.redirect_incident_id = Some(924600);
    let err = diff(&desired("id: 924565\nstatus: Resolved\n"), &incident).unwrap_err();
    assert!(
        err.to_string().contains("merged into incident 924600"),
        "{err}"
    );
}

#[test]
fn unknown_api_values_are_shown_as_they_are() {
    let mut incident = current();
    incident.status = Some("InProgress".into());
    let change = diff(&desired("id: 1\nstatus: Resolved\n"), &incident)
        .unwrap()
        .unwrap();
    assert_eq!(change.fields[0].before, Value::from("InProgress"));
}

fn status() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("Active".to_string())),
        Just(Some("Resolved".to_string())),
        Just(Some("InProgress".to_string())),
    ]
}

fn one_of(values: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(values).prop_map(|v| Some(v.to_string()))
    ]
}

const CLASSIFICATIONS: &[&str] = &[
    "Unknown",
    "FalsePositive",
    "TruePositive",
    "InformationalExpectedActivity",
];
const DETERMINATIONS: &[&str] = &[
    "NotAvailable",
    "Apt",
    "Malware",
    "Other",
    "MultiStagedAttack",
];
const WORDS: &[&str] = &["a", "b", "c", "d"];

prop_compose! {
    fn arb_current()(
        status in status(),
        owner in one_of(&["x@contoso.com", "y@contoso.com"]),
        classification in one_of(CLASSIFICATIONS),
        determination in one_of(DETERMINATIONS),
        tags in proptest::collection::vec(proptest::sample::select(WORDS), 0..4),
        comments in proptest::collection::vec(proptest::sample::select(WORDS), 0..3),
    ) -> Incident {
        Incident {
            incident_id: 1, incident_uri: None, redirect_incident_id: None, incident_name: None,
            created_time: None, last_update_time: None, severity: None,
            status, assigned_to: owner, classification, determination,
            tags: tags.into_iter().map(String::from).collect(),
            comments: comments.into_iter().map(|c| Comment { comment: c.into(), created_by: None, created_time: None }).collect(),
        }
    }
}

prop_compose! {
    fn arb_desired()(
        status in proptest::option::of(proptest::sample::select(Status::ALL)),
        owner in proptest::option::of(proptest::sample::select(&["x@contoso.com", "z@contoso.com"][..])),
        classification in proptest::option::of(proptest::sample::select(Classification::ALL)),
        determination in proptest::option::of(proptest::sample::select(Determination::ALL)),
        tags in proptest::option::of(proptest::collection::vec(proptest::sample::select(WORDS), 0..5)),
        comments in proptest::option::of(proptest::collection::vec(proptest::sample::select(WORDS), 0..4)),
    ) -> DesiredIncident {
        DesiredIncident {
            id: 1,
            status: status.filter(|s| *s != Status::Redirected),
            assigned_to: owner.map(String::from),
            classification, determination,
            tags: tags.map(|t| t.into_iter().map(String::from).collect()),
            comments: comments.map(|c| c.into_iter().map(String::from).collect()),
        }
    }
}

proptest! {
    #[test]
    fn applying_the_plan_converges_with_minimal_requests(current in arb_current(), desired in arb_desired()) {
        let Ok(change) = diff(&desired, &current) else {
            // Only the rule can refuse here, and only when the effective state breaks it.
            let classification = desired.classification.map(|c| c.as_str().to_string()).or(current.classification.clone());
            let determination = desired.determination.map(|d| d.as_str().to_string()).or(current.determination.clone());
            prop_assert!(determination.is_some_and(|d| d != "NotAvailable") && classification.as_deref() != Some("TruePositive"));
            return Ok(());
        };
        let Some(change) = change else {
            return Ok(());
        };
        let new_comments = change.new_comments();
        prop_assert_eq!(change.requests.len(), new_comments.max(1));
        // No body holds a field whose value is unchanged.
        let first = &change.requests[0];
        if let Some(s) = first.status { prop_assert_ne!(current.status.as_deref(), Some(s.as_str())); }
        if let Some(o) = &first.assigned_to { prop_assert_ne!(current.assigned_to.as_ref(), Some(o)); }
        if let Some(c) = first.classification { prop_assert_ne!(current.classification.as_deref(), Some(c.as_str())); }
        if let Some(d) = first.determination { prop_assert_ne!(current.determination.as_deref(), Some(d.as_str())); }
        if let Some(t) = &first.tags {
            let a: BTreeSet<&String> = t.iter().collect();
            let b: BTreeSet<&String> = current.tags.iter().collect();
            prop_assert_ne!(a, b);
        }
        for request in &change.requests {
            if let Some(comment) = &request.comment {
                prop_assert!(!current.comments.iter().any(|c| &c.comment == comment));
            }
        }
        for later in &change.requests[1..] {
            prop_assert!(later.comment.is_some());
            prop_assert_eq!(IncidentUpdate { comment: None, ..later.clone() }, IncidentUpdate::default());
        }
        // Applied with the API's semantics, the incident has every managed value...
        let mut after = current.clone();
        for request in &change.requests {
            apply_update(&mut after, request);
        }
        if let Some(s) = desired.status { prop_assert_eq!(after.status.as_deref(), Some(s.as_str())); }
        if let Some(o) = &desired.assigned_to { prop_assert_eq!(after.assigned_to.as_ref(), Some(o)); }
        if let Some(c) = desired.classification { prop_assert_eq!(after.classification.as_deref(), Some(c.as_str())); }
        if let Some(d) = desired.determination { prop_assert_eq!(after.determination.as_deref(), Some(d.as_str())); }
        if let Some(tags) = &desired.tags {
            let a: BTreeSet<&String> = tags.iter().collect();
            let b: BTreeSet<&String> = after.tags.iter().collect();
            prop_assert_eq!(a, b);
        }
        for comment in desired.comments.iter().flatten() {
            prop_assert_eq!(after.comments.iter().filter(|c| &c.comment == comment).count().max(1),
                current.comments.iter().filter(|c| &c.comment == comment).count().max(1));
        }
        // ...and a second plan is empty.
        prop_assert_eq!(diff(&desired, &after).unwrap(), None);
    }
}
