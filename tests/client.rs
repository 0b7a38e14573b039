//! The API client against a wiremock server on loopback. Deliberate waits go through a
//! `VirtualClock` (instant, recorded), so tests assert the exact waits without sleeping.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use incidentops::api::wire::IncidentUpdate;
use incidentops::api::{
    ApiConfig, ApiError, CallStats, Client, Credentials, Limits, RetryPolicy, Secret,
    TransportKind, VirtualClock,
};
use incidentops::model::Status;
use serde_json::{Value, json};
use wiremock::matchers::{bearer_token, body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "tok-static-3f9a1c";
const CLIENT_SECRET: &str = "client-secret-8d2e7b";
const TENANT: &str = "contoso.onmicrosoft.com";
const TOKEN_PATH: &str = "/contoso.onmicrosoft.com/oauth2/v2.0/token";

/// 2026-12-04T10:00:00Z, the virtual wall clock's start.
fn wall_start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_378_400)
}

fn config(server: &MockServer, clock: &Arc<VirtualClock>) -> ApiConfig {
    ApiConfig::new(&server.uri())
        .unwrap()
        .with_clock(clock.clone())
        .with_retry(RetryPolicy {
            jitter_seed: Some(7),
            ..RetryPolicy::default()
        })
        .with_request_timeout(Some(Duration::from_secs(10)))
}

/// A client with a ready token.
fn client(server: &MockServer) -> (Client, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let client = Client::new(
        config(server, &clock),
        Credentials::Token(Secret::new(TOKEN)),
    )
    .unwrap();
    (client, clock)
}

fn env_credentials(vars: &[(&str, &str)]) -> Credentials {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Credentials::from_lookup(|name| map.get(name).cloned()).unwrap()
}

/// Client-secret credentials whose token endpoint is the mock server.
fn secret_credentials(server: &MockServer) -> Credentials {
    env_credentials(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "app-id"),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
        ("AZURE_AUTHORITY_HOST", &server.uri()),
    ])
}

/// A loopback port that was just free: nothing listens there, so every connect is refused.
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn incident(id: u64) -> Value {
    json!({
        "incidentId": id,
        "incidentName": format!("incident {id}"),
        "lastUpdateTime": "2026-12-01T08:00:00Z",
        "status": "Active",
        "classification": "Unknown",
        "determination": "NotAvailable",
        "assignedTo": null,
        "tags": [],
        "comments": []
    })
}

fn token_answer(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "access_token": token
    }))
}

async fn requests_to(server: &MockServer, verb: &str, url_path: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == url_path)
        .collect()
}

fn throttled(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(429).set_body_json(body)
}

async fn mount_once_then_ok(server: &MockServer, first: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path("/api/incidents/1"))
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/incidents/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(incident(1)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn throttled_call_waits_the_retry_after_seconds_then_succeeds() {
    let server = MockServer::start().await;
    let too_many = throttled(json!({"error": {"code": "TooManyRequests", "message": "Slow down"}}))
        .insert_header("Retry-After", "3");
    mount_once_then_ok(&server, too_many, 1).await;
    let (client, clock) = client(&server);

    let found = client.get(1).await.unwrap().unwrap();

    assert_eq!(found.incident_id, 1);
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(3)]);
    assert_eq!(
        client.stats(),
        CallStats {
            get: 2,
            throttled: 1,
            waited: Duration::from_secs(3),
            ..CallStats::default()
        }
    );
}

#[tokio::test]
async fn throttled_call_honours_an_http_date_retry_after() {
    let server = MockServer::start().await;
    let resume = httpdate::fmt_http_date(wall_start() + Duration::from_secs(7));
    mount_once_then_ok(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", resume.as_str()),
        1,
    )
    .await;
    let (client, clock) = client(&server);

    client.get(1).await.unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(7)]);
}

#[tokio::test]
async fn throttled_call_honours_seconds_found_in_the_body() {
    let server = MockServer::start().await;
    let body = json!({"error": {"code": "TooManyRequests",
        "message": "Rate limit is exceeded. Try again in 12 seconds."}});
    mount_once_then_ok(&server, throttled(body), 1).await;
    let (client, clock) = client(&server);

    let logs = captured_logs();
    client.get(1).await.unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(12)]);
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logs.contains("throttled by the API, resuming in 12 s"),
        "{logs}"
    );
}

#[tokio::test]
async fn throttled_call_honours_a_time_found_in_the_body() {
    let server = MockServer::start().await;
    let body = json!({"error": {"code": "TooManyRequests",
        "message": "You can begin making new calls after 2026-12-04T10:00:20Z."}});
    mount_once_then_ok(&server, throttled(body), 1).await;
    let (client, clock) = client(&server);

    client.get(1).await.unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(20)]);
}

#[tokio::test]
async fn throttled_call_without_a_hint_backs_off_exponentially() {
    let server = MockServer::start().await;
    mount_once_then_ok(&server, ResponseTemplate::new(429), 3).await;
    let (client, clock) = client(&server);

    client.get(1).await.unwrap();

    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 3, "{sleeps:?}");
    // Steps of 1, 2 and 4 s with jitter in the upper half, and never under 1 s.
    let secs = |s: u64| Duration::from_secs(s);
    assert!(sleeps[0] == secs(1), "{sleeps:?}");
    assert!(sleeps[1] >= secs(1) && sleeps[1] <= secs(2), "{sleeps:?}");
    assert!(sleeps[2] >= secs(2) && sleeps[2] <= secs(4), "{sleeps:?}");
    assert_eq!(client.stats().throttled, 3);
}

#[tokio::test]
async fn endless_throttling_gives_up_with_the_429_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    let error = client.get(1).await.unwrap_err();

    assert_eq!(error.status(), Some(429));
    assert_eq!(client.stats().get, 11, "the first try and 10 retries");
}

#[tokio::test]
async fn expired_token_is_refreshed_once_after_a_401_and_the_call_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_answer("tok-first", 3599))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_answer("tok-second", 3599))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/incidents/1"))
        .and(bearer_token("tok-first"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"error": {"code": "Unauthorized", "message": "token expired"}}),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/incidents/1"))
        .and(bearer_token("tok-second"))
        .and(header("user-agent", incidentops::api::USER_AGENT))
        .respond_with(ResponseTemplate::new(200).set_body_json(incident(1)))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let client = Client::new(config(&server, &clock), secret_credentials(&server)).unwrap();

    let found = client.get(1).await.unwrap();

    assert_eq!(found.map(|i| i.incident_id), Some(1));
    let token_requests = requests_to(&server, "POST", TOKEN_PATH).await;
    assert_eq!(token_requests.len(), 2);
    let form = String::from_utf8_lossy(&token_requests[0].body).into_owned();
    for field in [
        "grant_type=client_credentials",
        "client_id=app-id",
        "scope=https%3A%2F%2Fapi.security.microsoft.com%2F.default",
        "client_secret=client-secret-8d2e7b",
    ] {
        assert!(
            form.contains(field),
            "{field} missing from the token request"
        );
    }
    assert_eq!(client.stats().get, 2);
    assert_eq!(client.stats().token_requests, 2);
}

#[tokio::test]
async fn token_endpoint_outage_is_retried_but_a_rejected_secret_is_not() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_answer("tok-after-outage", 3599))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "error_description": "AADSTS70021: no match"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(bearer_token("tok-after-outage"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let client = Client::new(config(&server, &clock), secret_credentials(&server)).unwrap();

    let error = client.get(1).await.unwrap_err();

    // 503 → retried → token; its 401 → one refresh, which Entra refuses: not retried.
    assert_eq!(requests_to(&server, "POST", TOKEN_PATH).await.len(), 3);
    assert!(error.to_string().contains("invalid_grant"), "{error}");
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(2)]);
}

#[tokio::test]
async fn a_second_401_after_a_refresh_is_reported_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_answer("tok-any", 3599))
        .mount(&server)
        .await;
    always(&server, "GET", 401).await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let client = Client::new(config(&server, &clock), secret_credentials(&server)).unwrap();

    let error = client.get(1).await.unwrap_err();

    assert_eq!(error.status(), Some(401));
    assert_eq!(requests_to(&server, "POST", TOKEN_PATH).await.len(), 2);
    assert_eq!(client.stats().get, 2);
}

#[tokio::test]
async fn a_401_with_a_ready_token_is_reported_without_retrying() {
    let server = MockServer::start().await;
    always(&server, "GET", 401).await;
    let (client, _clock) = client(&server);

    let error = client.get(1).await.unwrap_err();

    assert_eq!(error.status(), Some(401));
    assert_eq!(client.stats().get, 1);
}

#[tokio::test]
async fn token_endpoint_error_shows_entra_error_but_never_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": format!(
                "AADSTS7000215: Invalid client secret provided ({CLIENT_SECRET}).\r\nTrace ID: abc"
            )
        })))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let client = Client::new(config(&server, &clock), secret_credentials(&server)).unwrap();

    let error = client.get(1).await.unwrap_err();
    let shown = error.to_string();

    assert!(matches!(error, ApiError::Auth(_)), "{error:?}");
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(shown.contains("AADSTS7000215"), "{shown}");
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
    assert!(!format!("{error:?}").contains(CLIENT_SECRET));
    assert_eq!(client.stats().get, 0, "no API call without a token");
}

#[tokio::test]
async fn server_error_on_get_is_retried_with_backoff() {
    let server = MockServer::start().await;
    mount_once_then_ok(&server, ResponseTemplate::new(500), 2).await;
    let (client, clock) = client(&server);

    let found = client.get(1).await.unwrap();

    assert!(found.is_some());
    assert_eq!(client.stats().get, 3);
    assert_eq!(clock.sleeps().len(), 2);
}

#[tokio::test]
async fn server_errors_on_get_stop_after_the_attempt_limit() {
    let server = MockServer::start().await;
    always(&server, "GET", 503).await;
    let (client, _clock) = client(&server);

    let error = client.get(1).await.unwrap_err();

    assert_eq!(error.status(), Some(503));
    assert_eq!(client.stats().get, 6);
}

#[tokio::test]
async fn bad_request_is_not_retried_and_its_error_body_is_shown() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/api/incidents/5"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": "InvalidRequestBody",
            "message": "Determination requires classification TruePositive",
            "target": "43f4cb08-8fac-4b65-9db1-745c2ae65f3a"
        }})))
        .mount(&server)
        .await;
    let (client, clock) = client(&server);
    let update = IncidentUpdate {
        status: Some(Status::Resolved),
        ..Default::default()
    };

    let error = client.patch(5, &update).await.unwrap_err();

    assert_eq!(
        error.to_string(),
        "PATCH /api/incidents/5: 400 InvalidRequestBody: Determination requires \
         classification TruePositive (tracking id: 43f4cb08-8fac-4b65-9db1-745c2ae65f3a)"
    );
    assert_eq!(error.code(), Some("InvalidRequestBody"));
    assert_eq!(
        requests_to(&server, "PATCH", "/api/incidents/5")
            .await
            .len(),
        1
    );
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn get_of_an_unknown_incident_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(
                json!({"error": {"code": "NotFound", "message": "Incident not found"}}),
            ),
        )
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    assert_eq!(client.get(42).await.unwrap(), None);
    assert_eq!(client.stats().get, 1);
}

#[tokio::test]
async fn patch_sends_the_update_with_a_json_content_type() {
    let server = MockServer::start().await;
    let mut updated = incident(5);
    updated["status"] = json!("Resolved");
    Mock::given(method("PATCH"))
        .and(path("/api/incidents/5"))
        .and(bearer_token(TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"status": "Resolved", "comment": "done"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(updated))
        .expect(1)
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);
    let update = IncidentUpdate {
        status: Some(Status::Resolved),
        comment: Some("done".into()),
        ..Default::default()
    };

    let result = client.patch(5, &update).await.unwrap();

    assert_eq!(result.status.as_deref(), Some("Resolved"));
    assert_eq!(client.stats().patch, 1);
}

/// A PATCH slot taken with `try_take_patch_slot` is used by the first attempt of
/// `patch_in_slot` without waiting; it counts against the quota like any sent call.
#[tokio::test]
async fn a_taken_patch_slot_sends_at_once_and_counts_against_the_quota() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/api/incidents/5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(incident(5)))
        .expect(3)
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let client = Client::new(
        config(&server, &clock).with_limits(Limits::from_quota(1, 1500)),
        Credentials::Token(Secret::new(TOKEN)),
    )
    .unwrap();
    let update = comment_update();

    let slot = client.try_take_patch_slot().expect("the minute is empty");
    assert!(client.try_take_patch_slot().is_none(), "one PATCH a minute");
    client.patch_in_slot(5, &update, None, slot).await.unwrap();
    assert!(clock.sleeps().is_empty(), "{:?}", clock.sleeps());
    // The slot was the minute's only one: the next PATCH waits for the window.
    client.patch(5, &update).await.unwrap();
    assert_eq!(clock.elapsed(), Duration::from_secs(61));

    // A 429 pause that begins after the slot was taken still holds the PATCH back.
    clock.advance(Duration::from_secs(61));
    let slot = client.try_take_patch_slot().expect("a new minute");
    client.throttle().pause_for(Duration::from_secs(7));
    client.patch_in_slot(5, &update, None, slot).await.unwrap();
    assert_eq!(clock.sleeps().last(), Some(&Duration::from_secs(7)));
    assert_eq!(clock.elapsed(), Duration::from_secs(61 + 61 + 7));
}

fn comment_update() -> IncidentUpdate {
    IncidentUpdate {
        status: Some(Status::Resolved),
        comment: Some("pen testing".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn ambiguous_patch_failure_whose_comment_landed_is_not_resent() {
    let server = MockServer::start().await;
    always(&server, "PATCH", 500).await;
    let mut landed = incident(5);
    landed["status"] = json!("Resolved");
    landed["comments"] = json!([{"comment": "pen testing", "createdBy": "app"}]);
    Mock::given(method("GET"))
        .and(path("/api/incidents/5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(landed))
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    let result = client.patch(5, &comment_update()).await.unwrap();

    assert_eq!(result.comments.len(), 1);
    assert_eq!(
        requests_to(&server, "PATCH", "/api/incidents/5")
            .await
            .len(),
        1
    );
    assert_eq!(client.stats().get, 1);
}

#[tokio::test]
async fn ambiguous_patch_failure_resends_only_the_fields_that_did_not_land() {
    let server = MockServer::start().await;
    let mut done = incident(5);
    done["status"] = json!("Resolved");
    Mock::given(method("PATCH"))
        .and(body_json(json!({"status": "Resolved"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(done))
        .with_priority(1)
        .mount(&server)
        .await;
    always(&server, "PATCH", 502).await;
    let mut partly = incident(5);
    partly["comments"] = json!([{"comment": "pen testing"}]);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(partly))
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    let result = client.patch(5, &comment_update()).await.unwrap();

    assert_eq!(result.status.as_deref(), Some("Resolved"));
    let patches = requests_to(&server, "PATCH", "/api/incidents/5").await;
    assert_eq!(patches.len(), 2);
    let resent: Value = serde_json::from_slice(&patches[1].body).unwrap();
    assert_eq!(resent, json!({"status": "Resolved"}));
}

#[tokio::test]
async fn ambiguous_patch_timeout_rereads_before_resending() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let mut landed = incident(5);
    landed["status"] = json!("Resolved");
    landed["comments"] = json!([{"comment": "pen testing"}]);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(landed))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let config = config(&server, &clock).with_request_timeout(Some(Duration::from_millis(200)));
    let client = Client::new(config, Credentials::Token(Secret::new(TOKEN))).unwrap();

    let result = client.patch(5, &comment_update()).await.unwrap();

    assert_eq!(result.status.as_deref(), Some("Resolved"));
    assert_eq!(
        requests_to(&server, "PATCH", "/api/incidents/5")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn patch_if_unchanged_refuses_to_overwrite_someone_elses_edit() {
    let server = MockServer::start().await;
    always(&server, "PATCH", 500).await;
    let mut edited = incident(5);
    edited["lastUpdateTime"] = json!("2026-12-04T09:59:00Z");
    edited["assignedTo"] = json!("someone@contoso.com");
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(edited))
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    let error = client
        .patch_if_unchanged(5, &comment_update(), "2026-12-01T08:00:00Z")
        .await
        .unwrap_err();

    assert!(
        matches!(error, ApiError::Conflict { id: 5, .. }),
        "{error:?}"
    );
    assert_eq!(
        requests_to(&server, "PATCH", "/api/incidents/5")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn patch_is_retried_when_the_connection_was_refused() {
    let url = refused_url();
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let config = ApiConfig::new(&url)
        .unwrap()
        .with_clock(clock.clone())
        .with_retry(RetryPolicy {
            jitter_seed: Some(1),
            ..RetryPolicy::default()
        });
    let client = Client::new(config, Credentials::Token(Secret::new(TOKEN))).unwrap();

    let error = client.patch(5, &comment_update()).await.unwrap_err();

    assert!(
        matches!(
            error,
            ApiError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(client.stats().patch, 6, "retried up to the attempt limit");
    assert_eq!(
        client.stats().get,
        0,
        "a refused connection needs no re-read"
    );
    assert_eq!(clock.sleeps().len(), 5);
}

#[tokio::test]
async fn list_pages_through_250_incidents() {
    let server = MockServer::start().await;
    for (skip, ids) in [(0, 0..100), (100, 100..200), (200, 200..250)] {
        let value: Vec<Value> = ids.map(incident).collect();
        Mock::given(method("GET"))
            .and(path("/api/incidents"))
            .and(query_param("$top", "100"))
            .and(query_param("$skip", skip.to_string()))
            .and(query_param("$filter", "status eq 'Active'"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": value})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let (client, _clock) = client(&server);

    let all = client.list(Some("status eq 'Active'")).await.unwrap();

    let ids: Vec<u64> = all.iter().map(|i| i.incident_id).collect();
    assert_eq!(ids, (0..250).collect::<Vec<_>>());
    assert_eq!(client.stats().list, 3);
}

/// Every `method` request to `server` is answered `status`, with no body.
async fn always(server: &MockServer, method_name: &str, status: u16) {
    Mock::given(method(method_name))
        .respond_with(ResponseTemplate::new(status))
        .mount(server)
        .await;
}

/// A second page (incident 2) at `?page=2`; returns its address, for an `@odata.nextLink`.
async fn mount_second_page(server: &MockServer) -> String {
    Mock::given(method("GET"))
        .and(path("/api/incidents"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [incident(2)]})))
        .with_priority(1)
        .mount(server)
        .await;
    format!("{}/api/incidents?page=2", server.uri())
}

#[tokio::test]
async fn list_follows_the_next_link() {
    let server = MockServer::start().await;
    let next = mount_second_page(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/incidents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": [incident(1)], "@odata.nextLink": next})),
        )
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    let all = client.list(None).await.unwrap();

    assert_eq!(
        all.iter().map(|i| i.incident_id).collect::<Vec<_>>(),
        [1, 2]
    );
}

/// The listing of recent changes follows `@odata.nextLink` even after a short page (a server
/// that pages below 100), dates itself with the first page's `Date`, and gives up past its
/// page budget.
#[tokio::test]
async fn listing_changes_since_follows_next_links_and_keeps_to_its_page_budget() {
    let server = MockServer::start().await;
    let next = mount_second_page(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/incidents"))
        .and(query_param(
            "$filter",
            "lastUpdateTime ge 2026-12-04T10:00:00Z",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("date", "Fri, 04 Dec 2026 10:05:00 GMT")
                .set_body_json(json!({"value": [incident(1)], "@odata.nextLink": next})),
        )
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);
    let since = "2026-12-04T10:00:00Z".parse().unwrap();

    let (listed, date) = client.list_updated_since(since, 2).await.unwrap().unwrap();
    assert_eq!(
        listed.iter().map(|i| i.incident_id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(date, Some("2026-12-04T10:05:00Z".parse().unwrap()));
    assert_eq!(client.first_server_date(), date);
    // One page allowed, two needed: the caller falls back to a GET per incident.
    assert!(client.list_updated_since(since, 1).await.unwrap().is_none());
}

#[tokio::test]
async fn next_link_to_another_origin_is_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [incident(1)],
            "@odata.nextLink": "https://attacker.example.com/api/incidents?$skip=1"
        })))
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    let error = client.list(None).await.unwrap_err();

    assert!(error.to_string().contains("another origin"), "{error}");
    assert_eq!(client.stats().list, 1);
}

#[tokio::test]
async fn list_page_asks_for_the_given_window() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/incidents"))
        .and(query_param("$top", "100"))
        .and(query_param("$skip", "300"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::from_str::<Value>(include_str!("fixtures/incidents-list.json")).unwrap(),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let (client, _clock) = client(&server);

    let page = client.list_page(None, 500, 300).await.unwrap();

    assert_eq!(page.value.len(), 3);
    assert_eq!(page.value[0].incident_id, 924565);
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let error = ApiConfig::new("http://api.security.microsoft.com").unwrap_err();
    assert!(matches!(error, ApiError::Config(_)));
    assert!(error.to_string().contains("plain http"), "{error}");
    assert!(ApiConfig::new("http://127.0.0.1:8080").is_ok());
}

#[tokio::test]
async fn federated_assertion_file_is_reread_at_every_token_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        // A short-lived token: refreshed at half-life, 30 s.
        .respond_with(token_answer("tok-short", 60))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(incident(1)))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "assertion-one\n").unwrap();
    let credentials = env_credentials(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "app-id"),
        ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", &server.uri()),
    ]);
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let client = Client::new(config(&server, &clock), credentials).unwrap();

    client.get(1).await.unwrap();
    client.get(1).await.unwrap();
    assert_eq!(
        requests_to(&server, "POST", TOKEN_PATH).await.len(),
        1,
        "token cached"
    );
    std::fs::write(&file, "assertion-two\n").unwrap();
    clock.advance(Duration::from_secs(31));
    client.get(1).await.unwrap();

    let forms: Vec<String> = requests_to(&server, "POST", TOKEN_PATH)
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(forms.len(), 2);
    assert!(
        forms[0].contains("client_assertion=assertion-one"),
        "{}",
        forms[0]
    );
    assert!(
        forms[1].contains("client_assertion=assertion-two"),
        "{}",
        forms[1]
    );
    assert!(forms[1].contains(
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    ));
    assert!(!forms[1].contains("client_secret"));
}

/// Everything logged in this test binary, at TRACE, including `log` records of dependencies.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = Capture(buffer.clone());
            use tracing_subscriber::util::SubscriberInitExt;
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish()
                .try_init();
            buffer
        })
        .clone()
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_appear_in_trace_logs_debug_output_or_errors() {
    let logs = captured_logs();
    let api_token = "tok-issued-5c1d9e";
    let assertion = "eyJhbGciOi.assertion-7b3c";
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_answer(api_token, 3599))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/incidents/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(incident(1)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": "InvalidInput", "message": "bad", "target": "trk-1"}})))
        .mount(&server)
        .await;

    // Client secret: a token fetch, a successful call, a failing call.
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let credentials = secret_credentials(&server);
    let client = Client::new(config(&server, &clock), credentials.clone()).unwrap();
    client.get(1).await.unwrap();
    let patch_error = client.patch(1, &comment_update()).await.unwrap_err();

    // Federated assertion: a token fetch and a call.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, assertion).unwrap();
    let federated = env_credentials(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "app-id"),
        ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", &server.uri()),
    ]);
    let federated_client = Client::new(config(&server, &clock), federated.clone()).unwrap();
    federated_client.get(1).await.unwrap();

    // A ready token, and a failure to reach the API.
    let ready = Credentials::Token(Secret::new(TOKEN));
    let refused = Client::new(
        ApiConfig::new(&refused_url())
            .unwrap()
            .with_clock(clock.clone())
            .with_retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            }),
        ready.clone(),
    )
    .unwrap();
    let refused_error = refused.get(1).await.unwrap_err();

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logs.contains("GET /api/incidents/1 -> 200"),
        "logs were not captured:\n{logs}"
    );
    let shown = [
        logs,
        format!("{client:?} {federated_client:?} {refused:?}"),
        format!("{credentials:?} {federated:?} {ready:?}"),
        format!("{patch_error} {patch_error:?} {refused_error} {refused_error:?}"),
    ];
    for text in &shown {
        for secret in [CLIENT_SECRET, assertion, api_token, TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
        }
    }
}

/// A bare HTTP/1.1 server on loopback: the first connection reads one request and closes
/// without answering (the request reached the server, the answer never came); later
/// connections answer every request with `answer`. Returns the URL and the request lines seen.
async fn server_that_drops_the_first_answer(answer: Value) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let body = answer.to_string();
        let mut first = true;
        while let Ok((mut socket, _)) = listener.accept().await {
            let drop_it = std::mem::replace(&mut first, false);
            let log = log.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    log.lock()
                        .unwrap()
                        .push(text.lines().next().unwrap_or("").to_owned());
                    buffer.drain(..end + 4 + length);
                    if drop_it {
                        return;
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn patch_whose_connection_closed_after_sending_is_reread_not_resent() {
    let mut landed = incident(5);
    landed["status"] = json!("Resolved");
    landed["comments"] = json!([{"comment": "pen testing"}]);
    let (url, seen) = server_that_drops_the_first_answer(landed).await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let config = ApiConfig::new(&url).unwrap().with_clock(clock.clone());
    let client = Client::new(config, Credentials::Token(Secret::new(TOKEN))).unwrap();

    let result = client.patch(5, &comment_update()).await.unwrap();

    assert_eq!(result.comments.len(), 1);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "PATCH /api/incidents/5 HTTP/1.1",
            "GET /api/incidents/5 HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn get_whose_connection_closed_is_simply_retried() {
    let (url, seen) = server_that_drops_the_first_answer(incident(5)).await;
    let clock = Arc::new(VirtualClock::new(wall_start()));
    let config = ApiConfig::new(&url).unwrap().with_clock(clock.clone());
    let client = Client::new(config, Credentials::Token(Secret::new(TOKEN))).unwrap();

    let found = client.get(5).await.unwrap();

    assert!(found.is_some());
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(clock.sleeps().len(), 1);
}

/// Paused tokio time with a real socket: safe here because no request timeout is set (a paused
/// clock auto-advances while the runtime waits on the socket).
#[tokio::test(start_paused = true)]
async fn a_429_pauses_every_task_sharing_the_client() {
    let server = MockServer::start().await;
    mount_once_then_ok(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "30"),
        1,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/incidents/2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(incident(2)))
        .mount(&server)
        .await;
    let config = ApiConfig::new(&server.uri())
        .unwrap()
        .with_request_timeout(None)
        .with_connect_timeout(None);
    let told = Client::new(config, Credentials::Token(Secret::new(TOKEN))).unwrap();
    let other = told.clone();

    let first = tokio::spawn(async move { told.get(1).await });
    while other.stats().throttled == 0 {
        tokio::task::yield_now().await;
    }
    other.get(2).await.unwrap();
    first.await.unwrap().unwrap();

    // Both the task that was told and the other one waited the 30 s pause.
    assert_eq!(other.stats().waited, Duration::from_secs(60));
}
