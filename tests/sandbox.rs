//! The Defender incidents API emulator, driven over HTTP with reqwest as a real client would.
//! Time never passes on the wall clock here: the emulator runs on a manual clock that the tests
//! move forward.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use incidentops::sandbox::{
    Clock, Credentials, Emulator, EmulatorConfig, FIRST_GENERATED_ID, Fault, Faults, Latency,
    Limits, generate_incidents, load_incidents,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "static-test-token-5f1e";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "client-secret-do-not-log-8c2d";
const FEDERATED_ID: &str = "fed-app-0001";
const ASSERTION: &str = "eyJhbGciOiJSUzI1NiJ9.assertion-do-not-log.c2ln";
const SCOPE: &str = "https://api.security.microsoft.com/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn config() -> EmulatorConfig {
    EmulatorConfig {
        credentials: Credentials::default()
            .with_static_token(TOKEN)
            .with_client_secret(CLIENT_ID, SECRET)
            .with_federated_client(FEDERATED_ID),
        limits: Limits::unlimited(),
        clock: Clock::manual(start_time()),
        ..EmulatorConfig::default()
    }
}

async fn start(config: EmulatorConfig) -> Emulator {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Emulator::start(config, listen)
        .await
        .expect("emulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(emulator: &Emulator, path_and_query: &str) -> Answer {
    get_url(&format!("{}{path_and_query}", emulator.url())).await
}

async fn get_url(url: &str) -> Answer {
    answer(
        http()
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET"),
    )
    .await
}

async fn list(emulator: &Emulator, query: &[(&str, &str)]) -> Answer {
    let response = http()
        .get(format!("{}/api/incidents", emulator.url()))
        .query(query)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list");
    answer(response).await
}

async fn patch_with(emulator: &Emulator, id: u64, token: &str, body: &Value) -> Answer {
    let response = http()
        .patch(format!("{}/api/incidents/{id}", emulator.url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("PATCH");
    answer(response).await
}

async fn patch(emulator: &Emulator, id: u64, body: Value) -> Answer {
    patch_with(emulator, id, TOKEN, &body).await
}

async fn request_token(emulator: &Emulator, form: &[(&str, &str)]) -> Answer {
    let response = http()
        .post(emulator.token_url("contoso-tenant"))
        .form(form)
        .send()
        .await
        .expect("token request");
    answer(response).await
}

type Form<'a> = &'a [(&'a str, &'a str)];

fn secret_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
        ("scope", SCOPE),
    ]
}

fn ids(body: &Value) -> Vec<u64> {
    body["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|i| i["incidentId"].as_u64().expect("incidentId"))
        .collect()
}

fn assert_api_error(answer: &Answer, status: StatusCode, code: &str, message_part: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "message {message:?} should mention {message_part:?}"
    );
    let target = answer.body["error"]["target"].as_str().unwrap_or_default();
    assert_eq!(target.len(), 36, "tracking id {target:?}");
    assert_eq!(target.matches('-').count(), 4, "tracking id {target:?}");
}

// ---------- list ----------

#[tokio::test]
async fn list_returns_documented_incidents_newest_first() {
    let emulator = start(config()).await;
    let page = list(&emulator, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(ids(&page.body), [924565, 924521, 924518]);
    assert!(
        page.body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/api/$metadata#Incidents")
    );
    assert!(page.body.get("@odata.nextLink").is_none());
    // Fields the client does not model are served as loaded.
    assert_eq!(
        page.body["value"][0]["alerts"][0]["alertId"],
        "caD70CFEE2-1F54-32DB-9988-3A868A1EBFAC"
    );
}

#[tokio::test]
async fn list_orders_by_created_time_then_id_descending() {
    let mut config = config();
    config.incidents = vec![
        json!({"incidentId": 10, "createdTime": "2021-01-01T00:00:00Z"}),
        json!({"incidentId": 30, "createdTime": "2020-01-01T00:00:00Z"}),
        json!({"incidentId": 20, "createdTime": "2021-01-01T00:00:00Z"}),
        json!({"incidentId": 40, "createdTime": "2022-01-01T00:00:00.5Z"}),
    ];
    let emulator = start(config).await;
    assert_eq!(ids(&list(&emulator, &[]).await.body), [40, 20, 10, 30]);
}

#[tokio::test]
async fn list_pages_with_top_skip_and_next_link() {
    let mut config = config();
    config.incidents = generate_incidents(250, 7);
    let emulator = start(config).await;

    // Default page size is 100; following nextLink visits every incident once, newest first.
    let mut seen = Vec::new();
    let mut page = list(&emulator, &[]).await;
    let mut pages = 1;
    loop {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(ids(&page.body).len() <= 100);
        seen.extend(ids(&page.body));
        match page.body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&emulator.url()), "absolute: {next}");
                page = get_url(next).await;
                pages += 1;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    // What the emulator serves is what the client's wire types read.
    let typed: incidentops::api::wire::IncidentPage =
        serde_json::from_value(list(&emulator, &[("$top", "2")]).await.body).unwrap();
    assert_eq!(typed.value.len(), 2);
    assert!(typed.next_link.is_some_and(|l| l.contains("$skip=2")));
    assert_eq!(seen.len(), 253);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 253);
    assert_eq!(seen[0], FIRST_GENERATED_ID + 249, "newest generated first");
    assert_eq!(&seen[250..], [924565, 924521, 924518]);

    // $top and $skip select a window; nextLink keeps $top and moves $skip on.
    let window = list(&emulator, &[("$top", "10"), ("$skip", "5")]).await;
    assert_eq!(ids(&window.body), seen[5..15]);
    let next = window.body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.contains("$top=10") && next.contains("$skip=15"),
        "{next}"
    );
    assert_eq!(ids(&get_url(next).await.body), seen[15..25]);

    // The last page has no nextLink; skipping past the end gives an empty page.
    let last = list(&emulator, &[("$top", "3"), ("$skip", "250")]).await;
    assert_eq!(ids(&last.body), seen[250..]);
    assert!(last.body.get("@odata.nextLink").is_none());
    let beyond = list(&emulator, &[("$skip", "1000")]).await;
    assert_eq!(beyond.status, StatusCode::OK);
    assert!(ids(&beyond.body).is_empty());
}

#[tokio::test]
async fn next_link_keeps_the_filter() {
    let mut config = config();
    config.incidents = generate_incidents(300, 3);
    let emulator = start(config).await;
    let filter = "status eq 'Active' and createdTime ge 2024-01-01T00:00:00Z";
    let mut page = list(&emulator, &[("$filter", filter), ("$top", "50")]).await;
    let mut total = 0;
    loop {
        for incident in page.body["value"].as_array().unwrap() {
            assert_eq!(incident["status"], "Active");
            total += 1;
        }
        match page.body["@odata.nextLink"].as_str() {
            Some(next) => page = get_url(next).await,
            None => break,
        }
    }
    let expected = emulator
        .incidents()
        .iter()
        .filter(|i| {
            i["status"] == "Active" && i["incidentId"].as_u64().unwrap() >= FIRST_GENERATED_ID
        })
        .count();
    assert_eq!(total, expected);
    assert!(total > 50, "several pages: {total}");
}

#[tokio::test]
async fn top_above_100_is_an_odata_error() {
    let emulator = start(config()).await;
    assert_api_error(
        &list(&emulator, &[("$top", "101")]).await,
        StatusCode::BAD_REQUEST,
        "ODataError",
        "101",
    );
    assert_eq!(
        list(&emulator, &[("$top", "100")]).await.status,
        StatusCode::OK
    );
    assert_api_error(
        &list(&emulator, &[("$skip", "-1")]).await,
        StatusCode::BAD_REQUEST,
        "ODataError",
        "$skip",
    );
    assert_api_error(
        &list(&emulator, &[("$orderby", "createdTime")]).await,
        StatusCode::BAD_REQUEST,
        "ODataError",
        "$orderby",
    );
}

#[tokio::test]
async fn filter_supports_each_property_and_operator() {
    let emulator = start(config()).await;
    // 924565 created 14:46:57, updated 14:46:57.29; 924521 created 12:18:03; 924518 12:07:55.
    let cases: &[(&str, &[u64])] = &[
        ("lastUpdateTime ge 2020-09-06T14:00:00Z", &[924565]),
        ("lastUpdateTime ge '2020-09-06T14:00:00Z'", &[924565]),
        ("lastUpdateTime gt 2020-09-06T14:46:57.29Z", &[]),
        (
            "lastUpdateTime le 2020-09-06T12:18:03.81Z",
            &[924521, 924518],
        ),
        ("lastUpdateTime lt 2020-09-06T12:18:03.81Z", &[924518]),
        ("lastUpdateTime eq 2020-09-06T12:07:55.32Z", &[924518]),
        ("createdTime lt 2020-09-06T12:10:00Z", &[924518]),
        (
            "createdTime ge 2020-09-06T12:10:00Z and createdTime le 2020-09-06T13:00:00Z",
            &[924521],
        ),
        (
            "createdTime gt 2020-09-06T00:00:00Z",
            &[924565, 924521, 924518],
        ),
        ("createdTime eq 2020-09-06T14:46:57.0733333Z", &[924565]),
        ("status eq 'Active'", &[924565, 924521, 924518]),
        ("status eq 'Resolved'", &[]),
        ("assignedTo eq null", &[924565, 924521, 924518]),
    ];
    for (filter, expected) in cases {
        let page = list(&emulator, &[("$filter", filter)]).await;
        assert_eq!(page.status, StatusCode::OK, "{filter}: {}", page.body);
        assert_eq!(ids(&page.body), *expected, "{filter}");
    }

    patch(
        &emulator,
        924521,
        json!({"status": "Resolved", "assignedTo": "secop2@contoso.com"}),
    )
    .await;
    let cases: &[(&str, &[u64])] = &[
        ("status eq 'Resolved'", &[924521]),
        ("assignedTo eq 'secop2@contoso.com'", &[924521]),
        (
            "assignedTo eq 'secop2@contoso.com' and status eq 'Active'",
            &[],
        ),
        (
            "assignedTo ge 'secop1' and assignedTo lt 'secop3'",
            &[924521],
        ),
        // The PATCH bumped lastUpdateTime to the emulator's clock (2024).
        ("lastUpdateTime ge 2024-06-01T00:00:00Z", &[924521]),
    ];
    for (filter, expected) in cases {
        let page = list(&emulator, &[("$filter", filter)]).await;
        assert_eq!(ids(&page.body), *expected, "{filter}");
    }
}

#[tokio::test]
async fn unsupported_filters_are_rejected_with_a_reason() {
    let emulator = start(config()).await;
    let cases = [
        ("severity eq 'High'", "'severity'"),
        ("status ne 'Active'", "'ne'"),
        ("status eq 'Active' or status eq 'Resolved'", "'or'"),
        ("contains(assignedTo,'secop')", "'contains'"),
        ("startswith(incidentName, 'Ransom')", "'startswith'"),
        ("status eq Active", "quoted string"),
        ("lastUpdateTime ge last-tuesday", "not a valid timestamp"),
        ("%%%garbage", "'%%%garbage'"),
    ];
    for (filter, reason) in cases {
        assert_api_error(
            &list(&emulator, &[("$filter", filter)]).await,
            StatusCode::BAD_REQUEST,
            "ODataError",
            reason,
        );
    }
}

// ---------- get ----------

/// `Date` comes from the emulator's clock, the one `lastUpdateTime` is written with, so a
/// client can use it to list what changed since (apply's `--edit-check list` does).
#[tokio::test]
async fn every_answer_dates_itself_with_the_emulator_clock() {
    let emulator = start(config()).await;
    let date = |response: &reqwest::Response| {
        response.headers()[reqwest::header::DATE]
            .to_str()
            .unwrap()
            .to_string()
    };
    let client = http();
    let url = format!("{}/api/incidents/924521", emulator.url());
    let found = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(date(&found), "Sat, 01 Jun 2024 00:00:00 GMT");
    emulator.clock().advance(std::time::Duration::from_secs(90));
    let patched = client
        .patch(&url)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"status": "Resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(date(&patched), "Sat, 01 Jun 2024 00:01:30 GMT");
    let body: Value = patched.json().await.unwrap();
    assert!(
        body["lastUpdateTime"]
            .as_str()
            .unwrap()
            .starts_with("2024-06-01T00:01:30"),
        "{body}"
    );
    let unauthorized = client.get(&url).send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(date(&unauthorized), "Sat, 01 Jun 2024 00:01:30 GMT");
}

#[tokio::test]
async fn get_returns_the_whole_incident_or_404() {
    let emulator = start(config()).await;
    let found = get(&emulator, "/api/incidents/924521").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["incidentId"], 924521);
    assert_eq!(
        found.body["incidentName"],
        "'Mimikatz' hacktool was detected on one endpoint"
    );
    assert!(
        found.body["alerts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );

    assert_api_error(
        &get(&emulator, "/api/incidents/1").await,
        StatusCode::NOT_FOUND,
        "NotFound",
        "1",
    );
    assert_api_error(
        &get(&emulator, "/api/incidents/not-a-number").await,
        StatusCode::NOT_FOUND,
        "NotFound",
        "not-a-number",
    );
}

#[tokio::test]
async fn unknown_routes_answer_404_json() {
    let emulator = start(config()).await;
    assert_api_error(
        &get(&emulator, "/api/alerts").await,
        StatusCode::NOT_FOUND,
        "NotFound",
        "/api/alerts",
    );
}

// ---------- patch ----------

#[tokio::test]
async fn patch_sets_each_field_and_answers_the_whole_incident() {
    let emulator = start(config()).await;
    let done = patch(
        &emulator,
        924565,
        json!({
            "status": "Resolved",
            "assignedTo": "secop2@contoso.com",
            "classification": "TruePositive",
            "determination": "Malware",
        }),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    for (field, value) in [
        ("status", "Resolved"),
        ("assignedTo", "secop2@contoso.com"),
        ("classification", "TruePositive"),
        ("determination", "Malware"),
    ] {
        assert_eq!(done.body[field], value, "{field} in the answer");
        assert_eq!(
            emulator.incident(924565).unwrap()[field],
            value,
            "{field} stored"
        );
    }
    assert_eq!(done.body["incidentName"], "Ransomware activity");
    assert!(done.body["alerts"].is_array());

    // Each field can also be set on its own.
    for body in [
        json!({"status": "Active"}),
        json!({"assignedTo": "secop1@contoso.com"}),
        json!({"classification": "FalsePositive", "determination": "NotAvailable"}),
    ] {
        let answer = patch(&emulator, 924565, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let (field, value) = body.as_object().unwrap().iter().next().unwrap();
        assert_eq!(&answer.body[field], value);
    }

    // assignedTo null unassigns.
    let unassigned = patch(&emulator, 924565, json!({"assignedTo": null})).await;
    assert_eq!(unassigned.body["assignedTo"], Value::Null);
}

#[tokio::test]
async fn patch_tags_replace_the_list() {
    let emulator = start(config()).await;
    patch(
        &emulator,
        924521,
        json!({"tags": ["ransomware", "pen-test"]}),
    )
    .await;
    let answer = patch(&emulator, 924521, json!({"tags": ["vip"]})).await;
    assert_eq!(answer.body["tags"], json!(["vip"]));
    let cleared = patch(&emulator, 924521, json!({"tags": []})).await;
    assert_eq!(cleared.body["tags"], json!([]));
    assert_eq!(emulator.incident(924521).unwrap()["tags"], json!([]));
}

#[tokio::test]
async fn patch_comment_appends_with_author_and_time() {
    let emulator = start(config()).await;
    let token = request_token(&emulator, &secret_form()).await;
    let token = token.body["access_token"].as_str().unwrap().to_string();

    let answer = patch_with(
        &emulator,
        924565,
        &token,
        &json!({"comment": "pen testing"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let comments = answer.body["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2);
    assert_eq!(
        comments[0]["comment"], "test comment for docs",
        "existing kept"
    );
    assert_eq!(
        comments[1],
        json!({
            "comment": "pen testing",
            "createdBy": format!("API-App:{CLIENT_ID}"),
            "createdTime": "2024-06-01T00:00:00.0000000Z",
        })
    );

    // The same text again is another comment: comments are append-only.
    emulator.clock().advance(Duration::from_secs(5));
    let again = patch(&emulator, 924565, json!({"comment": "pen testing"})).await;
    let comments = again.body["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 3);
    assert_eq!(comments[2]["createdBy"], "API-App:incidentops-sandbox");
    assert_eq!(comments[2]["createdTime"], "2024-06-01T00:00:05.0000000Z");
}

#[tokio::test]
async fn patch_bumps_last_update_time_only_when_something_changed() {
    let emulator = start(config()).await;
    let before = emulator.incident(924518).unwrap()["lastUpdateTime"].clone();
    assert_eq!(before, "2020-09-06T12:07:55.32Z");

    for no_op in [
        json!({}),
        json!({"status": "Active", "tags": [], "classification": "Unknown"}),
    ] {
        let answer = patch(&emulator, 924518, no_op).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["lastUpdateTime"], before);
    }
    // An empty body (no JSON at all) is also a no-op.
    let response = http()
        .patch(format!("{}/api/incidents/924518", emulator.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(emulator.incident(924518).unwrap()["lastUpdateTime"], before);

    let first = patch(&emulator, 924518, json!({"status": "Resolved"})).await;
    assert_eq!(first.body["lastUpdateTime"], "2024-06-01T00:00:00.0000000Z");
    // Same clock reading: still strictly later.
    let second = patch(&emulator, 924518, json!({"assignedTo": "x@contoso.com"})).await;
    assert_eq!(
        second.body["lastUpdateTime"],
        "2024-06-01T00:00:00.0000001Z"
    );
    emulator.clock().advance(Duration::from_millis(1500));
    let third = patch(&emulator, 924518, json!({"tags": ["a"]})).await;
    assert_eq!(third.body["lastUpdateTime"], "2024-06-01T00:00:01.5000000Z");
}

#[tokio::test]
async fn patch_rejects_unknown_properties_and_bad_values() {
    let emulator = start(config()).await;
    let cases = [
        (json!({"severity": "High"}), "'severity'"),
        (json!({"Status": "Resolved"}), "'Status'"),
        (json!({"comments": ["x"]}), "'comments'"),
        (json!({"status": "Closed"}), "'Closed'"),
        (json!({"classification": "truepositive"}), "'truepositive'"),
        (json!({"determination": "Ransomware"}), "'Ransomware'"),
        (json!({"tags": "ransomware"}), "tags"),
        (json!({"status": 1}), "status"),
        (json!(["status"]), "JSON object"),
    ];
    for (body, reason) in cases {
        assert_api_error(
            &patch(&emulator, 924565, body).await,
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            reason,
        );
    }
    let response = http()
        .patch(format!("{}/api/incidents/924565", emulator.url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_api_error(
        &answer(response).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestBody",
        "not valid JSON",
    );
    // Nothing was changed by any of them.
    assert_eq!(
        emulator.incident(924565).unwrap()["lastUpdateTime"],
        "2020-09-06T14:46:57.29Z"
    );
}

#[tokio::test]
async fn patch_enforces_the_determination_rule() {
    let emulator = start(config()).await;
    // Current classification is Unknown.
    assert_api_error(
        &patch(&emulator, 924565, json!({"determination": "Malware"})).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestBody",
        "TruePositive",
    );
    assert_api_error(
        &patch(
            &emulator,
            924565,
            json!({"classification": "FalsePositive", "determination": "Apt"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestBody",
        "TruePositive",
    );
    // NotAvailable is always allowed.
    let answer = patch(&emulator, 924565, json!({"determination": "NotAvailable"})).await;
    assert_eq!(answer.status, StatusCode::OK);
    // Allowed when the same body sets TruePositive...
    let answer = patch(
        &emulator,
        924565,
        json!({"classification": "TruePositive", "determination": "SecurityTesting"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // ...and afterwards, when the current classification is TruePositive.
    let answer = patch(&emulator, 924565, json!({"determination": "Other"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["determination"], "Other");
}

#[tokio::test]
async fn patch_of_a_redirected_incident_is_refused() {
    let mut config = config();
    config.incidents.push(json!({
        "incidentId": 924000, "redirectIncidentId": 924565, "status": "Redirected",
        "createdTime": "2020-09-01T00:00:00Z", "lastUpdateTime": "2020-09-01T00:00:00Z",
    }));
    let emulator = start(config).await;
    assert_api_error(
        &patch(&emulator, 924000, json!({"comment": "hello"})).await,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "redirected",
    );
    assert_eq!(emulator.incident(924000).unwrap().get("comments"), None);
}

#[tokio::test]
async fn patch_of_an_unknown_incident_is_404() {
    let emulator = start(config()).await;
    assert_api_error(
        &patch(&emulator, 42, json!({"status": "Resolved"})).await,
        StatusCode::NOT_FOUND,
        "NotFound",
        "42",
    );
}

#[tokio::test]
async fn concurrent_patches_all_apply_with_distinct_increasing_stamps() {
    let emulator = std::sync::Arc::new(start(config()).await);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let emulator = std::sync::Arc::clone(&emulator);
        tasks.spawn(async move {
            patch(&emulator, 924518, json!({"comment": format!("note {n}")}))
                .await
                .status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let incident = emulator.incident(924518).unwrap();
    assert_eq!(incident["comments"].as_array().unwrap().len(), 20);
    // 20 bumps at one clock reading: 19 ticks of 100 ns after the first.
    assert_eq!(incident["lastUpdateTime"], "2024-06-01T00:00:00.0000019Z");
}

#[tokio::test]
async fn another_clients_edit_bumps_last_update_time() {
    let emulator = start(config()).await;
    emulator.clock().advance(Duration::from_secs(60));
    assert!(emulator.set_incident_field(924521, "assignedTo", json!("someone@contoso.com")));
    let incident = get(&emulator, "/api/incidents/924521").await.body;
    assert_eq!(incident["assignedTo"], "someone@contoso.com");
    assert_eq!(incident["lastUpdateTime"], "2024-06-01T00:01:00.0000000Z");
    assert!(!emulator.set_incident_field(1, "status", json!("Resolved")));
}

// ---------- authentication ----------

#[tokio::test]
async fn api_calls_without_a_valid_token_are_401() {
    let emulator = start(config()).await;
    let url = format!("{}/api/incidents", emulator.url());
    let missing = answer(http().get(&url).send().await.unwrap()).await;
    assert_api_error(
        &missing,
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "missing",
    );
    let unknown = answer(http().get(&url).bearer_auth("forged").send().await.unwrap()).await;
    assert_api_error(
        &unknown,
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "invalid",
    );
    let basic = answer(
        http()
            .get(&url)
            .basic_auth(CLIENT_ID, Some(SECRET))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    let patched = patch_with(&emulator, 924565, "forged", &json!({"status": "Resolved"})).await;
    assert_eq!(patched.status, StatusCode::UNAUTHORIZED);
    assert_eq!(emulator.incident(924565).unwrap()["status"], "Active");
}

#[tokio::test]
async fn issued_tokens_expire_after_their_lifetime() {
    let mut config = config();
    config.token_lifetime = Duration::from_secs(600);
    let emulator = start(config).await;
    let issued = request_token(&emulator, &secret_form()).await;
    assert_eq!(issued.body["expires_in"], 600);
    let token = issued.body["access_token"].as_str().unwrap().to_string();
    let url = format!("{}/api/incidents/924565", emulator.url());

    emulator.clock().advance(Duration::from_secs(599));
    let fresh = answer(http().get(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(fresh.status, StatusCode::OK);

    emulator.clock().advance(Duration::from_secs(1));
    let expired = answer(http().get(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_api_error(
        &expired,
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "expired",
    );

    // The static token does not expire.
    assert_eq!(
        get(&emulator, "/api/incidents/924565").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn token_endpoint_accepts_a_client_secret() {
    let emulator = start(config()).await;
    let issued = request_token(&emulator, &secret_form()).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.body["token_type"], "Bearer");
    assert_eq!(issued.body["expires_in"], 3599);
    let token = issued.body["access_token"].as_str().unwrap();
    assert!(token.len() >= 32);
    let again = request_token(&emulator, &secret_form()).await;
    assert_ne!(again.body["access_token"], token, "every token is new");

    let listed = http()
        .get(format!("{}/api/incidents", emulator.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_accepts_a_federated_assertion() {
    let emulator = start(config()).await;
    let issued = request_token(
        &emulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FEDERATED_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", ASSERTION),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let token = issued.body["access_token"].as_str().unwrap().to_string();
    let answer = patch_with(&emulator, 924565, &token, &json!({"comment": "from CI"})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body["comments"][1]["createdBy"],
        format!("API-App:{FEDERATED_ID}")
    );
}

#[tokio::test]
async fn token_endpoint_refuses_bad_credentials_like_entra() {
    let emulator = start(config()).await;
    let wrong_secret = request_token(
        &emulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong-secret-value"),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_eq!(wrong_secret.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_secret.body["error"], "invalid_client");
    let description = wrong_secret.body["error_description"].as_str().unwrap();
    assert!(description.starts_with("AADSTS7000215"), "{description}");
    assert!(!wrong_secret.body.to_string().contains("wrong-secret-value"));

    let cases: [(Form, u16, &str); 5] = [
        (
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", SCOPE),
            ],
            400,
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", SECRET),
                ("scope", SCOPE),
            ],
            400,
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
            ],
            400,
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
            400,
            "invalid_scope",
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_id", FEDERATED_ID),
                ("client_assertion_type", "jwt"),
                ("client_assertion", ASSERTION),
                ("scope", SCOPE),
            ],
            400,
            "invalid_request",
        ),
    ];
    for (form, status, error) in cases {
        let refused = request_token(&emulator, form).await;
        assert_eq!(
            refused.status.as_u16(),
            status,
            "{form:?}: {}",
            refused.body
        );
        assert_eq!(refused.body["error"], error, "{form:?}");
        assert!(refused.body["error_codes"].is_array());
    }
    let unknown_app = request_token(
        &emulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("client_secret", SECRET),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_eq!(unknown_app.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_app.body["error"], "unauthorized_client");
}

// ---------- throttling ----------

fn small_quotas() -> Limits {
    Limits {
        list_per_minute: 2,
        get_per_minute: 4,
        patch_per_minute: 2,
        per_hour: 6,
        ..Limits::default()
    }
}

#[tokio::test]
async fn list_is_throttled_after_its_minute_quota_with_retry_after() {
    let mut config = config();
    config.limits = small_quotas();
    let emulator = start(config).await;
    assert_eq!(list(&emulator, &[]).await.status, StatusCode::OK);
    emulator.clock().advance(Duration::from_secs(20));
    assert_eq!(list(&emulator, &[]).await.status, StatusCode::OK);

    let throttled = list(&emulator, &[]).await;
    assert_api_error(
        &throttled,
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Rate limit is exceeded. Try again in 40 seconds.",
    );
    assert_eq!(throttled.headers["retry-after"], "40");

    // The other methods have their own minute quotas.
    assert_eq!(
        get(&emulator, "/api/incidents/924565").await.status,
        StatusCode::OK
    );
    assert_eq!(
        patch(&emulator, 924565, json!({})).await.status,
        StatusCode::OK
    );

    // The window slides: 40.5 s later the first call has left it.
    emulator.clock().advance(Duration::from_millis(39_500));
    let almost = list(&emulator, &[]).await;
    assert_eq!(almost.headers["retry-after"], "1", "rounded up");
    emulator.clock().advance(Duration::from_millis(500));
    assert_eq!(list(&emulator, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn patch_is_throttled_after_its_minute_quota() {
    let mut config = config();
    config.limits = small_quotas();
    let emulator = start(config).await;
    for status in ["Resolved", "Active"] {
        let answer = patch(&emulator, 924565, json!({"status": status})).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let throttled = patch(&emulator, 924565, json!({"status": "Resolved"})).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers["retry-after"], "60");
    assert_eq!(
        emulator.incident(924565).unwrap()["status"],
        "Active",
        "not applied"
    );
}

#[tokio::test]
async fn hour_quota_is_shared_and_throttled_calls_do_not_count() {
    let mut config = config();
    config.limits = small_quotas(); // 6 calls per hour in all
    let emulator = start(config).await;
    for minute in 0..3 {
        assert_eq!(
            list(&emulator, &[]).await.status,
            StatusCode::OK,
            "minute {minute}"
        );
        assert_eq!(
            get(&emulator, "/api/incidents/924565").await.status,
            StatusCode::OK
        );
        // Refused calls in between must not use up the hour.
        emulator.clock().advance(Duration::from_secs(60));
    }
    let throttled = get(&emulator, "/api/incidents/924565").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        throttled.headers["retry-after"], "3420",
        "first call leaves at 60 min"
    );
    for _ in 0..5 {
        assert_eq!(
            patch(&emulator, 924565, json!({})).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    emulator.clock().advance(Duration::from_secs(3420));
    assert_eq!(
        patch(&emulator, 924565, json!({})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn window_scale_shrinks_the_windows_for_benchmarks() {
    let mut config = config();
    config.limits = Limits {
        window_scale: 60,
        ..small_quotas()
    };
    let emulator = start(config).await;
    list(&emulator, &[]).await;
    list(&emulator, &[]).await;
    let throttled = list(&emulator, &[]).await;
    assert_eq!(throttled.headers["retry-after"], "1");
    emulator.clock().advance(Duration::from_secs(1));
    assert_eq!(list(&emulator, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unauthenticated_calls_do_not_use_quota() {
    let mut config = config();
    config.limits = small_quotas();
    let emulator = start(config).await;
    let url = format!("{}/api/incidents", emulator.url());
    for _ in 0..5 {
        let refused = http().get(&url).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(list(&emulator, &[]).await.status, StatusCode::OK);
}

// ---------- fault injection ----------

async fn fault_run(seed: u64) -> (Vec<Option<Fault>>, Vec<Option<u16>>) {
    let mut config = config();
    config.seed = seed;
    config.faults = Faults {
        fail_429: 0.1,
        fail_500: 0.2,
        drop: 0.1,
        retry_after_secs: 7,
        ..Faults::default()
    };
    let emulator = start(config).await;
    let client = http();
    for _ in 0..200 {
        let result = client
            .get(format!("{}/api/incidents/924565", emulator.url()))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if let Ok(response) = result {
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(response.headers()["retry-after"], "7");
            }
        }
    }
    let log = emulator.requests();
    (
        log.iter().map(|e| e.fault).collect(),
        log.iter().map(|e| e.status).collect(),
    )
}

#[tokio::test]
async fn injected_faults_follow_their_fractions_reproducibly() {
    let (faults, statuses) = fault_run(42).await;
    assert_eq!(faults.len(), 200);
    let count = |f: Fault| faults.iter().filter(|x| **x == Some(f)).count();
    let (throttled, errors, drops) = (
        count(Fault::Throttled),
        count(Fault::ServerError),
        count(Fault::Dropped),
    );
    assert!((8..=35).contains(&throttled), "429s: {throttled}");
    assert!((22..=60).contains(&errors), "500s: {errors}");
    assert!((8..=35).contains(&drops), "drops: {drops}");
    assert_eq!(
        faults.iter().filter(|f| f.is_none()).count(),
        200 - throttled - errors - drops
    );
    for (fault, status) in faults.iter().zip(&statuses) {
        let expected = match fault {
            None => Some(200),
            Some(Fault::Throttled) => Some(429),
            Some(Fault::ServerError) => Some(500),
            Some(Fault::Dropped) => None,
            Some(other) => panic!("GET cannot fail after applying: {other:?}"),
        };
        assert_eq!(*status, expected);
    }

    let (same_seed, _) = fault_run(42).await;
    assert_eq!(faults, same_seed, "same seed, same faults");
    let (other_seed, _) = fault_run(43).await;
    assert_ne!(faults, other_seed);
}

#[tokio::test]
async fn patch_500_after_apply_changes_the_incident_anyway() {
    let mut config = config();
    config.faults = Faults {
        fail_500: 1.0,
        after_apply: 1.0,
        ..Faults::default()
    };
    let emulator = start(config).await;
    let answer = patch(
        &emulator,
        924565,
        json!({"status": "Resolved", "comment": "once"}),
    )
    .await;
    assert_api_error(
        &answer,
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "",
    );
    let incident = emulator.incident(924565).unwrap();
    assert_eq!(incident["status"], "Resolved");
    assert_eq!(incident["comments"].as_array().unwrap().len(), 2);
    let entry = emulator.requests().pop().unwrap();
    assert_eq!(entry.fault, Some(Fault::ServerErrorAfterApply));
    assert!(entry.applied);
    assert_eq!(entry.status, Some(500));
}

#[tokio::test]
async fn patch_500_before_apply_changes_nothing() {
    let mut config = config();
    config.faults = Faults {
        fail_500: 1.0,
        after_apply: 0.0,
        ..Faults::default()
    };
    let emulator = start(config).await;
    let answer = patch(&emulator, 924565, json!({"status": "Resolved"})).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(emulator.incident(924565).unwrap()["status"], "Active");
    let entry = emulator.requests().pop().unwrap();
    assert_eq!(entry.fault, Some(Fault::ServerError));
    assert!(!entry.applied);
}

#[tokio::test]
async fn dropped_connection_gives_no_http_answer() {
    for after_apply in [0.0, 1.0] {
        let mut config = config();
        config.faults = Faults {
            drop: 1.0,
            after_apply,
            ..Faults::default()
        };
        let emulator = start(config).await;
        let result = http()
            .patch(format!("{}/api/incidents/924565", emulator.url()))
            .bearer_auth(TOKEN)
            .json(&json!({"status": "Resolved"}))
            .send()
            .await;
        let error = result.expect_err("no HTTP answer");
        assert!(error.status().is_none(), "{error}");

        let applied = after_apply > 0.0;
        let expected_status = if applied { "Resolved" } else { "Active" };
        assert_eq!(
            emulator.incident(924565).unwrap()["status"],
            expected_status
        );
        let entry = emulator.requests().pop().unwrap();
        assert_eq!(entry.status, None);
        assert_eq!(entry.applied, applied);
        let fault = if applied {
            Fault::DroppedAfterApply
        } else {
            Fault::Dropped
        };
        assert_eq!(entry.fault, Some(fault));

        emulator.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn latency_is_added_to_each_call() {
    let mut config = config();
    config.faults.latency = Latency::parse("25ms").unwrap();
    let emulator = start(config).await;
    let started = std::time::Instant::now();
    assert_eq!(
        get(&emulator, "/api/incidents/924565").await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(25));
    assert_eq!(emulator.requests()[0].latency_ms, Some(25));
}

#[tokio::test]
async fn uniform_latency_stays_in_its_range() {
    let mut config = config();
    config.faults.latency = Latency::parse("1..4ms").unwrap();
    let emulator = start(config).await;
    for _ in 0..10 {
        get(&emulator, "/api/incidents/924565").await;
    }
    let latencies: Vec<u64> = emulator
        .requests()
        .iter()
        .map(|e| e.latency_ms.unwrap())
        .collect();
    assert!(
        latencies.iter().all(|ms| (1..=4).contains(ms)),
        "{latencies:?}"
    );
}

#[tokio::test]
async fn invalid_fault_rates_are_refused_at_start() {
    let mut config = config();
    config.faults.fail_500 = 0.8;
    config.faults.drop = 0.5;
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let error = Emulator::start(config, listen).await.unwrap_err();
    assert!(error.to_string().contains("must not exceed 1"), "{error}");
}

// ---------- request log ----------

#[tokio::test]
async fn request_log_never_contains_secrets_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("requests.jsonl");
    let mut config = config();
    config.request_log = Some(log_path.clone());
    let emulator = start(config).await;

    let issued = request_token(&emulator, &secret_form()).await;
    let token = issued.body["access_token"].as_str().unwrap().to_string();
    request_token(
        &emulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FEDERATED_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", ASSERTION),
            ("scope", SCOPE),
        ],
    )
    .await;
    request_token(
        &emulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "typo-secret-zz"),
            ("scope", SCOPE),
        ],
    )
    .await;
    patch_with(
        &emulator,
        924565,
        &token,
        &json!({"comment": "keep this comment", "status": "Resolved"}),
    )
    .await;
    patch_with(
        &emulator,
        924565,
        "forged-token-qq",
        &json!({"status": "Active"}),
    )
    .await;
    list(&emulator, &[("$filter", "status eq 'Resolved'")]).await;
    emulator.shutdown().await.unwrap();

    let text = std::fs::read_to_string(&log_path).unwrap();
    for secret in [
        SECRET,
        ASSERTION,
        TOKEN,
        token.as_str(),
        "typo-secret-zz",
        "forged-token-qq",
    ] {
        assert!(!text.contains(secret), "log leaks {secret:?}:\n{text}");
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["path"], "/contoso-tenant/oauth2/v2.0/token");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[2]["status"], 401);
    let patched = &lines[3];
    assert_eq!(patched["method"], "PATCH");
    assert_eq!(patched["incidentId"], 924565);
    assert_eq!(patched["applied"], true);
    assert_eq!(patched["body"]["comment"], "keep this comment");
    assert_eq!(patched["client"], format!("API-App:{CLIENT_ID}"));
    assert_eq!(lines[4]["status"], 401);
    assert_eq!(lines[4]["applied"], false);
    assert!(
        lines[5]["path"]
            .as_str()
            .unwrap()
            .starts_with("/api/incidents?%24filter=")
    );
    assert!(
        lines
            .iter()
            .all(|l| l["time"].as_str().unwrap().starts_with("2024-06-01T"))
    );
}

// ---------- state ----------

#[tokio::test]
async fn state_is_saved_on_shutdown_and_reloads_with_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("nested").join("sandbox.json");
    let mut config = config();
    config.persist_to = Some(state_path.clone());
    let emulator = start(config).await;
    patch(
        &emulator,
        924521,
        json!({"tags": ["persisted"], "comment": "saved"}),
    )
    .await;
    emulator.shutdown().await.unwrap();

    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert!(saved["@odata.context"].is_string());
    assert_eq!(saved["value"].as_array().unwrap().len(), 3);
    let leftovers: Vec<_> = std::fs::read_dir(state_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");

    let mut reloaded = EmulatorConfig::from_file(&state_path).unwrap();
    reloaded.credentials = Credentials::default().with_static_token(TOKEN);
    let emulator = start(reloaded).await;
    let incident = get(&emulator, "/api/incidents/924521").await.body;
    assert_eq!(incident["tags"], json!(["persisted"]));
    assert_eq!(incident["comments"][0]["comment"], "saved");
    assert_eq!(
        incident["alerts"][0]["alertId"], "da637349914833441527_393341063",
        "alerts survive the round trip"
    );
    // Everything else is exactly as it was loaded.
    let original = incidentops::sandbox::documented_incidents();
    assert_eq!(emulator.incident(924565).unwrap(), original[0]);
    assert_eq!(emulator.incident(924518).unwrap(), original[2]);
}

#[tokio::test]
async fn persistent_sandbox_is_seeded_once_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".incidentops").join("sandbox.json");
    let mut first = EmulatorConfig::load_or_seed(&path, 20, 3).unwrap();
    assert!(path.exists(), "seed data written on first use");
    assert_eq!(first.incidents.len(), 23);
    first.credentials = Credentials::default().with_static_token(TOKEN);
    let emulator = start(first).await;
    patch(
        &emulator,
        FIRST_GENERATED_ID,
        json!({"tags": ["converged"]}),
    )
    .await;
    emulator.shutdown().await.unwrap();

    let second = EmulatorConfig::load_or_seed(&path, 20, 3).unwrap();
    let incident = second
        .incidents
        .iter()
        .find(|i| i["incidentId"] == FIRST_GENERATED_ID)
        .unwrap();
    assert_eq!(incident["tags"], json!(["converged"]));
    assert_eq!(second.persist_to.as_deref(), Some(path.as_path()));
}

#[tokio::test]
async fn save_and_load_round_trip_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.json");
    let incidents = generate_incidents(50, 5);
    incidentops::sandbox::save_incidents(&path, &incidents).unwrap();
    assert_eq!(load_incidents(&path).unwrap(), incidents);
}

#[tokio::test]
async fn bad_state_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("not-json.json", "{", "not valid JSON"),
        ("no-value.json", r#"{"items": []}"#, "\"value\" array"),
        (
            "no-id.json",
            r#"{"value": [{"incidentName": "x"}]}"#,
            "incidentId",
        ),
        (
            "dup.json",
            r#"{"value": [{"incidentId": 1}, {"incidentId": 1}]}"#,
            "more than once",
        ),
    ];
    for (name, text, reason) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let error = match EmulatorConfig::from_file(&path) {
            Err(error) => error,
            Ok(config) => Emulator::start(config, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap_err(),
        };
        assert!(error.to_string().contains(reason), "{name}: {error}");
    }
    let missing = EmulatorConfig::from_file(dir.path().join("missing.json")).unwrap_err();
    assert!(missing.to_string().contains("missing.json"));
}

// ---------- seed data ----------

#[test]
fn generator_is_deterministic_per_seed() {
    let a = generate_incidents(500, 11);
    let b = generate_incidents(500, 11);
    let c = generate_incidents(500, 12);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 503);
    let generated = &a[3..];
    for (i, incident) in generated.iter().enumerate() {
        assert_eq!(incident["incidentId"], FIRST_GENERATED_ID + i as u64);
        for field in [
            "incidentName",
            "createdTime",
            "lastUpdateTime",
            "severity",
            "status",
        ] {
            assert!(incident[field].is_string(), "{field} in {incident}");
        }
    }
    let names: HashSet<&str> = generated
        .iter()
        .map(|i| i["incidentName"].as_str().unwrap())
        .collect();
    assert!(names.len() > 100, "varied names");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("Multi-stage incident involving"))
    );
    assert!(
        generated
            .iter()
            .any(|i| !i["tags"].as_array().unwrap().is_empty())
    );
    assert!(
        generated
            .iter()
            .any(|i| !i["comments"].as_array().unwrap().is_empty())
    );
    // Every generated incident parses with the tolerant wire type.
    for incident in &a {
        let parsed: incidentops::api::wire::Incident =
            serde_json::from_value(incident.clone()).unwrap();
        assert!(parsed.created_time.is_some());
    }
}

#[tokio::test]
async fn one_hundred_thousand_generated_incidents_are_served() {
    let mut config = EmulatorConfig::seeded(100_000, 1);
    config.credentials = Credentials::default().with_static_token(TOKEN);
    config.limits = Limits::unlimited();
    assert_eq!(config.incidents.len(), 100_003);
    let emulator = start(config).await;
    let first = list(&emulator, &[("$top", "5")]).await;
    assert_eq!(
        ids(&first.body),
        (0..5)
            .map(|i| FIRST_GENERATED_ID + 99_999 - i)
            .collect::<Vec<_>>()
    );
    let last = list(&emulator, &[("$skip", "100000")]).await;
    assert_eq!(ids(&last.body), [924565, 924521, 924518]);
    assert_eq!(
        get(
            &emulator,
            &format!("/api/incidents/{}", FIRST_GENERATED_ID + 54_321)
        )
        .await
        .body["incidentId"],
        FIRST_GENERATED_ID + 54_321
    );
}

// --- the `incidentops sandbox` command -----------------------------------------------------

/// `incidentops sandbox --persist --data <copy of the fixture>` as a child process, once it
/// has printed its address: the child, the address, and the data file.
#[cfg(unix)]
fn sandbox_command(dir: &std::path::Path) -> (std::process::Child, String, std::path::PathBuf) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let data = dir.join("state.json");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/incidents-list.json"
        ),
        &data,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_incidentops"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--persist", "--data"])
        .arg(&data)
        .env_clear()
        .env("INCIDENTOPS_TOKEN", "cli-test-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (child, url, data)
}

#[cfg(unix)]
#[tokio::test]
async fn sandbox_command_prints_its_address_serves_and_saves_state_on_ctrl_c() {
    use std::process::Command;

    let dir = tempfile::TempDir::new().unwrap();
    let (mut child, url, data) = sandbox_command(dir.path());

    let client = http();
    let response = client
        .patch(format!("{url}/api/incidents/924565"))
        .bearer_auth("cli-test-token")
        .json(&json!({"status": "Resolved", "comment": "from the cli test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let unauthorized = client
        .get(format!("{url}/api/incidents"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");

    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    let incident = saved["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["incidentId"] == 924565)
        .unwrap();
    assert_eq!(incident["status"], "Resolved");
    assert_eq!(incident["comments"].as_array().unwrap().len(), 2);
    assert!(
        !incident["alerts"].as_array().unwrap().is_empty(),
        "unknown fields survive"
    );
}

/// A stop request sent the instant the address is printed is a clean stop that saves state,
/// never the default kill: the handlers are installed before the address is announced. Each
/// signal is tried several times, since the race it guards against lasts microseconds.
#[cfg(unix)]
#[test]
fn sandbox_command_stops_cleanly_on_sigint_or_sigterm_sent_as_soon_as_it_is_ready() {
    use std::process::Command;

    for signal in ["-INT", "-TERM"] {
        for attempt in 0..5 {
            let dir = tempfile::TempDir::new().unwrap();
            let (mut child, _, data) = sandbox_command(dir.path());
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            let exit = child.wait().unwrap();
            assert!(exit.success(), "kill {signal}, attempt {attempt}: {exit:?}");
            // Shutdown rewrites the file in the emulator's own layout: it differs from the fixture.
            let saved = std::fs::read_to_string(&data).unwrap();
            let fixture = include_str!("fixtures/incidents-list.json");
            assert_ne!(
                saved, fixture,
                "kill {signal}, attempt {attempt}: state saved"
            );
            let saved: Value = serde_json::from_str(&saved).unwrap();
            assert_eq!(saved["value"].as_array().unwrap().len(), 3);
        }
    }
}

// --- the real client against the emulator ----------------------------------------------------

/// The client and the emulator together: under 20% injected `429`s, every patch lands exactly
/// once (one new comment each), every 429 is waited out, and no call fails.
#[tokio::test]
async fn client_round_trip_under_injected_429s_applies_every_patch_exactly_once() {
    use incidentops::api::{self, ApiConfig, Client, VirtualClock, wire::IncidentUpdate};
    use incidentops::model::Status;
    use std::sync::Arc;

    let mut config = config();
    config.incidents = incidentops::sandbox::generate_incidents(60, 7);
    config.faults = Faults {
        fail_429: 0.2,
        retry_after_secs: 2,
        ..Faults::default()
    };
    config.seed = 42;
    let emulator = start(config).await;
    let clock = Arc::new(VirtualClock::new(std::time::SystemTime::UNIX_EPOCH));
    let client = Client::new(
        ApiConfig::new(&emulator.url())
            .unwrap()
            .with_clock(clock.clone()),
        api::Credentials::Token(api::Secret::new(TOKEN)),
    )
    .unwrap();

    let incidents = client.list(None).await.unwrap();
    assert_eq!(incidents.len(), 63);
    let targets: Vec<u64> = incidents
        .iter()
        .filter(|i| i.status.as_deref() != Some("Redirected") && i.redirect_incident_id.is_none())
        .map(|i| i.incident_id)
        .take(40)
        .collect();
    assert_eq!(targets.len(), 40);
    for id in &targets {
        let update = IncidentUpdate {
            status: Some(Status::Resolved),
            comment: Some(format!("closed by round trip {id}")),
            ..Default::default()
        };
        client.patch(*id, &update).await.unwrap();
    }

    for id in &targets {
        let incident = emulator.incident(*id).unwrap();
        assert_eq!(incident["status"], "Resolved");
        let text = format!("closed by round trip {id}");
        let copies = incident["comments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["comment"] == text.as_str())
            .count();
        assert_eq!(copies, 1, "incident {id}");
    }
    let log = emulator.requests();
    let throttled = log.iter().filter(|r| r.status == Some(429)).count();
    let applied = log
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == Some(200))
        .count();
    assert!(
        throttled >= 5,
        "the faults were injected ({throttled} 429s)"
    );
    assert_eq!(applied, targets.len(), "one successful PATCH per incident");
    assert_eq!(client.stats().throttled as usize, throttled);
}
