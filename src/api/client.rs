//! The Defender incidents API client: list (paged), get, patch, each paced by the [`Throttle`],
//! authenticated by the token source, and retried as [`super::retry`] classifies failures.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::auth::{Credentials, Secret, TokenSource, root_cause};
use super::clock::Clock;
use super::config::ApiConfig;
use super::error::{ApiError, TransportKind};
use super::retry::{
    Backoff, Decision, Failure, RetryPolicy, classify, throttle_hint, unapplied_fields,
};
use super::throttle::{CallKind, Reservation, Throttle};
use super::wire::{ErrorBody, Incident, IncidentPage, IncidentUpdate};

/// The user agent of every request.
pub const USER_AGENT: &str = concat!("incidentops/", env!("CARGO_PKG_VERSION"));
/// The API's maximum page size.
pub const PAGE_SIZE: u32 = 100;

/// What the client has done so far; the plan and apply summaries print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// `GET /api/incidents` requests sent (retries included).
    pub list: u64,
    /// `GET /api/incidents/{id}` requests sent (retries and re-reads included).
    pub get: u64,
    /// `PATCH /api/incidents/{id}` requests sent (retries included).
    pub patch: u64,
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// `429` answers received.
    pub throttled: u64,
    /// Total time spent waiting for throttling and backoff.
    pub waited: Duration,
}

impl CallStats {
    /// API requests sent, all methods.
    pub fn calls(&self) -> u64 {
        self.list + self.get + self.patch
    }
}

impl fmt::Display for CallStats {
    /// One line for summaries: `12 API calls (list 2, get 0, patch 10), 1 throttled (429), waited 3 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} API calls (list {}, get {}, patch {}), {} throttled (429), waited {}",
            self.calls(),
            self.list,
            self.get,
            self.patch,
            self.throttled,
            seconds(self.waited)
        )
    }
}

/// A client of the Defender incidents API. Cheap to clone: clones share the connection pool,
/// the token cache, the throttle (windows and 429 pause) and the statistics.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    tokens: TokenSource,
    throttle: Throttle,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    backoff: Mutex<Backoff>,
    stats: Mutex<CallStats>,
    held_back: Mutex<HeldBack>,
    /// The `Date` of the first successful API answer: the server's time at (or just after) the
    /// first read of this run.
    first_server_date: Mutex<Option<DateTime<Utc>>>,
}

/// Wall-clock time during which at least one call was waiting: concurrent calls that wait
/// out the same pause count it once, unlike [`CallStats::waited`], which adds up every call.
#[derive(Default)]
struct HeldBack {
    waiting: u32,
    since: Option<tokio::time::Instant>,
    total: Duration,
}

/// Counts a call as waiting until dropped (also when its future is cancelled).
struct Waiting<'a> {
    client: &'a Client,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let now = self.client.inner.clock.now();
        let mut held = self.client.held_back_lock();
        held.waiting = held.waiting.saturating_sub(1);
        if held.waiting == 0
            && let Some(since) = held.since.take()
        {
            held.total += now.saturating_duration_since(since);
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("tokens", &self.inner.tokens)
            .field("throttle", &self.inner.throttle)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// One request to send (possibly several times).
struct Call {
    kind: CallKind,
    url: Url,
    body: Option<Vec<u8>>,
}

impl Call {
    fn method(&self) -> &'static str {
        match self.kind {
            CallKind::List | CallKind::Get => "GET",
            CallKind::Patch => "PATCH",
        }
    }

    fn path(&self) -> String {
        self.url.path().to_owned()
    }
}

/// What the API answered to one attempt.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// An attempt that got no answer, classified for retrying.
type NoAnswer = (Failure, ApiError);

/// Why [`Client::execute`] stopped without a 2xx answer.
enum CallError {
    /// Report as is.
    Final(ApiError),
    /// A PATCH that may have landed.
    Ambiguous(ApiError),
}

/// Retry bookkeeping of one logical call (`waited` counts 429 pauses and backoff, not pacing).
#[derive(Default)]
struct Budget {
    failures: u32,
    throttled: u32,
    waited: Duration,
    /// The next attempt's pacing slot, already reserved ([`PatchSlot`]).
    reserved: Option<Reservation>,
}

/// A PATCH slot reserved in the pacing windows by [`Client::try_take_patch_slot`]: the first
/// attempt of [`Client::patch_in_slot`] is sent in it without waiting (retries are paced as
/// usual). Dropped unused, the slot is given back.
#[derive(Debug)]
pub struct PatchSlot(Reservation);

impl Client {
    /// A client for `config`, authenticating with `credentials`.
    pub fn new(config: ApiConfig, credentials: Credentials) -> Result<Self, ApiError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // The API does not redirect; never carry a bearer token anywhere else.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(timeout) = config.request_timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(timeout) = config.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        let http = builder.build().map_err(|e| {
            ApiError::Config(format!("cannot build the HTTP client: {}", root_cause(&e)))
        })?;
        let seed = config.retry.jitter_seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5EED)
        });
        let backoff = Backoff::new(config.retry.backoff_base, config.retry.backoff_cap, seed);
        Ok(Client {
            inner: Arc::new(Inner {
                tokens: TokenSource::new(credentials, http.clone(), config.clock.clone()),
                throttle: Throttle::with_clock(config.limits, config.clock.clone()),
                http,
                base_url: config.base_url,
                retry: config.retry,
                clock: config.clock,
                backoff: Mutex::new(backoff),
                stats: Mutex::new(CallStats::default()),
                held_back: Mutex::new(HeldBack::default()),
                first_server_date: Mutex::new(None),
            }),
        })
    }

    /// Every incident matching the OData `filter`, newest first: pages of 100 with `$skip`,
    /// following `@odata.nextLink` when the API sends one. An incident that shifts to the next
    /// page while paging is listed once.
    pub async fn list(&self, filter: Option<&str>) -> Result<Vec<Incident>, ApiError> {
        let mut incidents = Vec::new();
        let mut seen = HashSet::new();
        let mut skip: u32 = 0;
        let mut next: Option<Url> = None;
        loop {
            let page = match next.take() {
                Some(url) => self.fetch_page(url).await?,
                None => self.list_page(filter, PAGE_SIZE, skip).await?,
            };
            let count = page.value.len();
            let before = incidents.len();
            for incident in page.value {
                if seen.insert(incident.incident_id) {
                    incidents.push(incident);
                }
            }
            skip = skip.saturating_add(count as u32);
            let new = incidents.len() - before;
            if count > 0 && new == 0 {
                return Err(ApiError::InvalidResponse {
                    method: "GET",
                    path: "/api/incidents".to_owned(),
                    status: 200,
                    detail: format!(
                        "paging repeated a page of incidents already listed (at $skip={skip}); \
                         refusing to loop"
                    ),
                });
            }
            match page.next_link {
                Some(link) if count > 0 => next = Some(self.next_link_url(&link)?),
                _ if count < PAGE_SIZE as usize => break,
                _ => {}
            }
        }
        Ok(incidents)
    }

    /// One page of `GET /api/incidents?$top={top}&$skip={skip}[&$filter=...]`.
    pub async fn list_page(
        &self,
        filter: Option<&str>,
        top: u32,
        skip: u32,
    ) -> Result<IncidentPage, ApiError> {
        let mut url = self.url("api/incidents")?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("$top", &top.min(PAGE_SIZE).to_string());
            query.append_pair("$skip", &skip.to_string());
            if let Some(filter) = filter {
                query.append_pair("$filter", filter);
            }
        }
        self.fetch_page(url).await
    }

    /// `GET /api/incidents/{id}`; `None` when the API answers 404.
    pub async fn get(&self, id: u64) -> Result<Option<Incident>, ApiError> {
        let call = Call {
            kind: CallKind::Get,
            url: self.url(&format!("api/incidents/{id}"))?,
            body: None,
        };
        match self.execute(&call, &mut Budget::default()).await {
            Ok(answer) => parse(&call, &answer).map(Some),
            Err(CallError::Final(ApiError::Api { status: 404, .. })) => Ok(None),
            Err(CallError::Final(e) | CallError::Ambiguous(e)) => Err(e),
        }
    }

    /// `PATCH /api/incidents/{id}` with `update`; the incident as the API returns it.
    ///
    /// After an ambiguous failure (5xx, timeout, connection lost after sending) the incident is
    /// re-read and only the fields it does not show yet are resent; a comment is never added
    /// twice. If everything had landed, the re-read incident is returned.
    pub async fn patch(&self, id: u64, update: &IncidentUpdate) -> Result<Incident, ApiError> {
        self.patch_checked(id, update, None, None).await
    }

    /// Like [`Client::patch`], but when a re-read after an ambiguous failure shows a
    /// `lastUpdateTime` other than `expected_last_update` while the update has not (fully)
    /// landed, someone else edited the incident: [`ApiError::Conflict`] instead of overwriting.
    pub async fn patch_if_unchanged(
        &self,
        id: u64,
        update: &IncidentUpdate,
        expected_last_update: &str,
    ) -> Result<Incident, ApiError> {
        self.patch_checked(id, update, Some(expected_last_update), None)
            .await
    }

    /// Reserves a PATCH slot if pacing allows one now (see [`PatchSlot`]).
    pub fn try_take_patch_slot(&self) -> Option<PatchSlot> {
        self.inner
            .throttle
            .try_reserve(CallKind::Patch)
            .map(PatchSlot)
    }

    /// [`Client::patch`] or, with `expected_last_update`, [`Client::patch_if_unchanged`], whose
    /// first attempt goes out at once in `slot`: what was read right before it is not made
    /// stale by a wait for pacing.
    pub async fn patch_in_slot(
        &self,
        id: u64,
        update: &IncidentUpdate,
        expected_last_update: Option<&str>,
        slot: PatchSlot,
    ) -> Result<Incident, ApiError> {
        self.patch_checked(id, update, expected_last_update, Some(slot))
            .await
    }

    /// Counters so far.
    pub fn stats(&self) -> CallStats {
        let mut stats = self.stats_lock().clone();
        stats.token_requests = self.inner.tokens.requests();
        stats
    }

    /// Wall-clock time so far during which at least one call waited (pacing, a 429 pause or
    /// backoff): what waiting cost a run, however many calls waited together.
    pub fn time_held_back(&self) -> Duration {
        let now = self.inner.clock.now();
        let held = self.held_back_lock();
        held.total
            + held
                .since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// The server's `Date` on the first successful answer of this client (of any clone): no
    /// incident this run has read was read before it. `None` until then, or when the server
    /// sends no `Date`.
    pub fn first_server_date(&self) -> Option<DateTime<Utc>> {
        *self
            .inner
            .first_server_date
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Monotonic now, on the client's clock (the one pacing uses).
    pub fn now(&self) -> tokio::time::Instant {
        self.inner.clock.now()
    }

    /// The incidents updated at or after `since` (`$filter=lastUpdateTime ge ...`), in at most
    /// `max_pages` pages (following `@odata.nextLink`), with the server's `Date` on the first
    /// page, in the order read. `None` when more pages would be needed: the caller falls back
    /// to reading incidents one by one.
    pub async fn list_updated_since(
        &self,
        since: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<Option<(Vec<Incident>, Option<DateTime<Utc>>)>, ApiError> {
        let filter = format!(
            "lastUpdateTime ge {}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let mut incidents = Vec::new();
        let mut page = self.list_page(Some(&filter), PAGE_SIZE, 0).await?;
        let date = page.server_date;
        let mut skip: u32 = 0;
        let mut pages = 1;
        loop {
            let count = page.value.len();
            // Inserts while paging only repeat an incident on the next page (the filter only
            // ever gains members, and the list is ordered by creation), never hide one. A
            // repeated incident is kept twice, the later (newer) read last.
            incidents.extend(page.value);
            skip = skip.saturating_add(count as u32);
            let next = match page.next_link {
                Some(link) if count > 0 => Some(self.next_link_url(&link)?),
                _ if count < PAGE_SIZE as usize => return Ok(Some((incidents, date))),
                _ => None,
            };
            if pages >= max_pages {
                return Ok(None);
            }
            pages += 1;
            page = match next {
                Some(url) => self.fetch_page(url).await?,
                None => self.list_page(Some(&filter), PAGE_SIZE, skip).await?,
            };
        }
    }

    /// Waits until a call of `kind` could be sent now (pacing and any `429` pause), without
    /// taking its slot; the wait counts in [`Client::time_held_back`].
    pub async fn wait_for_room(&self, kind: CallKind) {
        let _waiting = self.waiting();
        self.inner.throttle.wait_for_room(kind).await;
    }

    /// The throttle shared by every clone of this client.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    async fn patch_checked(
        &self,
        id: u64,
        update: &IncidentUpdate,
        expected_last_update: Option<&str>,
        slot: Option<PatchSlot>,
    ) -> Result<Incident, ApiError> {
        let url = self.url(&format!("api/incidents/{id}"))?;
        let path = url.path().to_owned();
        if update.is_empty() {
            // Nothing to send: report the incident as it is.
            return self.get(id).await?.ok_or(ApiError::Api {
                method: "GET",
                path,
                status: 404,
                code: Some("NotFound".to_owned()),
                message: Some(format!("incident {id} does not exist")),
                target: None,
            });
        }
        let mut remaining = update.clone();
        let mut budget = Budget {
            reserved: slot.map(|PatchSlot(reservation)| reservation),
            ..Budget::default()
        };
        loop {
            let body = serde_json::to_vec(&remaining)
                .map_err(|e| ApiError::Config(format!("cannot encode the update: {e}")))?;
            let call = Call {
                kind: CallKind::Patch,
                url: url.clone(),
                body: Some(body),
            };
            let error = match self.execute(&call, &mut budget).await {
                Ok(answer) => return parse(&call, &answer),
                Err(CallError::Final(e)) => return Err(e),
                Err(CallError::Ambiguous(e)) => e,
            };
            budget.failures += 1;
            if budget.failures >= self.inner.retry.max_attempts {
                return Err(error);
            }
            let delay = self.backoff_delay(budget.failures - 1);
            if budget.waited.saturating_add(delay) > self.inner.retry.max_wait {
                return Err(error);
            }
            tracing::warn!(
                "{error}; re-reading incident {id} in {} before resending what did not land",
                seconds(delay)
            );
            self.wait(delay, &mut budget).await;
            let Some(current) = self.get(id).await? else {
                return Err(error);
            };
            remaining = unapplied_fields(&remaining, &current);
            if remaining.is_empty() {
                tracing::info!("PATCH {path}: the update had landed before the failure");
                return Ok(current);
            }
            if let Some(expected) = expected_last_update {
                let found = current.last_update_time.as_deref().unwrap_or("");
                if !same_time(found, expected) {
                    return Err(ApiError::Conflict {
                        id,
                        expected: expected.to_owned(),
                        found: found.to_owned(),
                    });
                }
            }
        }
    }

    async fn fetch_page(&self, url: Url) -> Result<IncidentPage, ApiError> {
        let call = Call {
            kind: CallKind::List,
            url,
            body: None,
        };
        match self.execute(&call, &mut Budget::default()).await {
            Ok(answer) => {
                let mut page: IncidentPage = parse(&call, &answer)?;
                page.server_date = server_date(&answer.headers);
                Ok(page)
            }
            Err(CallError::Final(e) | CallError::Ambiguous(e)) => Err(e),
        }
    }

    /// Sends `call` until it gets a 2xx answer or a final error: paced, authenticated, with
    /// one token refresh on 401, throttling and backoff as classified.
    async fn execute(&self, call: &Call, budget: &mut Budget) -> Result<Answer, CallError> {
        let retry = &self.inner.retry;
        let mut refreshed = false;
        loop {
            // Pacing waits are not retry waits: only the latter count against `max_wait`.
            let waited = if let Some(reservation) = budget.reserved.take() {
                // The slot is ours, but a 429 pause that began after it was reserved still
                // holds every call back.
                let _waiting = self.waiting();
                let waited = self.inner.throttle.wait_out_pause().await;
                reservation.stamp();
                waited
            } else {
                let _waiting = self.waiting();
                self.inner.throttle.acquire(call.kind).await
            };
            self.stats_lock().waited += waited;
            let token = self.inner.tokens.token().await.map_err(CallError::Final)?;
            let authorization = bearer_header(&token).map_err(CallError::Final)?;
            self.count(call.kind);
            let (failure, error, answer) = match self.send_once(call, authorization).await {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    if let Some(date) = server_date(&answer.headers) {
                        self.inner
                            .first_server_date
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(date);
                    }
                    return Ok(answer);
                }
                Ok(answer) => (
                    Failure::Status(answer.status),
                    api_error(call, answer.status, &answer.body),
                    Some(answer),
                ),
                Err((failure, error)) => (failure, error, None),
            };
            match classify(call.kind, failure) {
                Decision::Fail => return Err(CallError::Final(error)),
                Decision::RereadThenResend => return Err(CallError::Ambiguous(error)),
                Decision::RefreshToken => {
                    if refreshed {
                        return Err(CallError::Final(error));
                    }
                    refreshed = true;
                    match self.inner.tokens.refresh_after_rejection(&token).await {
                        Ok(Some(_)) => {
                            tracing::info!(
                                "{} {}: token rejected (401), retrying with a new one",
                                call.method(),
                                call.path()
                            );
                        }
                        Ok(None) => return Err(CallError::Final(error)),
                        Err(e) => return Err(CallError::Final(e)),
                    }
                }
                Decision::RetryThrottled => {
                    self.stats_lock().throttled += 1;
                    budget.throttled += 1;
                    if budget.throttled > retry.max_throttled {
                        return Err(CallError::Final(error));
                    }
                    let hint = answer.as_ref().and_then(|a| {
                        throttle_hint(&a.headers, &a.body, self.inner.clock.system_now())
                    });
                    let delay = hint
                        .unwrap_or_else(|| self.backoff_delay(budget.throttled - 1))
                        .max(Duration::from_secs(1));
                    if budget.waited.saturating_add(delay) > retry.max_wait {
                        return Err(CallError::Final(error));
                    }
                    budget.waited += delay;
                    self.inner.throttle.pause_for(delay);
                    tracing::info!("throttled by the API, resuming in {}", seconds(delay));
                }
                Decision::RetryWithBackoff => {
                    budget.failures += 1;
                    if budget.failures >= retry.max_attempts {
                        return Err(CallError::Final(error));
                    }
                    let delay = self.backoff_delay(budget.failures - 1);
                    if budget.waited.saturating_add(delay) > retry.max_wait {
                        return Err(CallError::Final(error));
                    }
                    tracing::warn!("{error}; retrying in {}", seconds(delay));
                    self.wait(delay, budget).await;
                }
            }
        }
    }

    /// One attempt: the answer, whatever its status, or a transport failure.
    async fn send_once(&self, call: &Call, authorization: HeaderValue) -> Result<Answer, NoAnswer> {
        let method = match call.kind {
            CallKind::List | CallKind::Get => Method::GET,
            CallKind::Patch => Method::PATCH,
        };
        let mut request = self
            .inner
            .http
            .request(method, call.url.clone())
            .header(AUTHORIZATION, authorization);
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let started = std::time::Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| transport_failure(call, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_failure(call, &e))?;
        tracing::debug!(
            "{} {} -> {status} in {} ms",
            call.method(),
            call.path(),
            started.elapsed().as_millis()
        );
        Ok(Answer {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    fn url(&self, path: &str) -> Result<Url, ApiError> {
        self.inner
            .base_url
            .join(path)
            .map_err(|e| ApiError::Config(format!("cannot build the URL of {path}: {e}")))
    }

    /// `@odata.nextLink` must stay on the API's origin: the bearer token goes with it.
    fn next_link_url(&self, link: &str) -> Result<Url, ApiError> {
        let invalid = |detail: String| ApiError::InvalidResponse {
            method: "GET",
            path: "/api/incidents".to_owned(),
            status: 200,
            detail,
        };
        let url = self
            .inner
            .base_url
            .join(link)
            .map_err(|e| invalid(format!("@odata.nextLink is not a URL: {e}")))?;
        let base = &self.inner.base_url;
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return Err(invalid(format!(
                "@odata.nextLink points to another origin ({}); not following it",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    fn backoff_delay(&self, attempt: u32) -> Duration {
        self.inner
            .backoff
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .delay(attempt)
    }

    async fn wait(&self, delay: Duration, budget: &mut Budget) {
        {
            let _waiting = self.waiting();
            self.inner.clock.sleep(delay).await;
        }
        budget.waited += delay;
        self.stats_lock().waited += delay;
    }

    fn count(&self, kind: CallKind) {
        let mut stats = self.stats_lock();
        match kind {
            CallKind::List => stats.list += 1,
            CallKind::Get => stats.get += 1,
            CallKind::Patch => stats.patch += 1,
        }
    }

    fn waiting(&self) -> Waiting<'_> {
        let now = self.inner.clock.now();
        let mut held = self.held_back_lock();
        if held.waiting == 0 {
            held.since = Some(now);
        }
        held.waiting += 1;
        Waiting { client: self }
    }

    fn held_back_lock(&self) -> MutexGuard<'_, HeldBack> {
        self.inner
            .held_back
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stats_lock(&self) -> MutexGuard<'_, CallStats> {
        // Counters stay meaningful even if a holder panicked.
        self.inner
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `Authorization: Bearer <token>`, marked sensitive so no `Debug` output of the request
/// (hyper or h2 trace logs) can show it.
fn bearer_header(token: &Secret) -> Result<HeaderValue, ApiError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        ApiError::Config(
            "the bearer token holds characters not allowed in an HTTP header".to_owned(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The `Date` header as a time, if present and well formed.
fn server_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let text = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    httpdate::parse_http_date(text)
        .ok()
        .map(DateTime::<Utc>::from)
}

fn parse<T: DeserializeOwned>(call: &Call, answer: &Answer) -> Result<T, ApiError> {
    serde_json::from_slice(&answer.body).map_err(|e| ApiError::InvalidResponse {
        method: call.method(),
        path: call.path(),
        status: answer.status,
        detail: e.to_string(),
    })
}

/// The API's error answer as an [`ApiError`], with its `code`, `message` and `target`.
fn api_error(call: &Call, status: u16, body: &[u8]) -> ApiError {
    let (code, message, target) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => (
            Some(error.code).filter(|c| !c.is_empty()),
            Some(error.message).filter(|m| !m.is_empty()),
            error.target.filter(|t| !t.is_empty()),
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = (!text.is_empty()).then(|| crate::api::error::truncate(text, 300));
            (None, message, None)
        }
    };
    ApiError::Api {
        method: call.method(),
        path: call.path(),
        status,
        code,
        message,
        target,
    }
}

fn transport_failure(call: &Call, error: &reqwest::Error) -> (Failure, ApiError) {
    if error.is_timeout() && !error.is_connect() {
        return (
            Failure::Timeout,
            ApiError::Timeout {
                method: call.method(),
                path: call.path(),
            },
        );
    }
    let kind = if error.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Interrupted
    };
    (
        Failure::Transport(kind),
        ApiError::Transport {
            method: call.method(),
            path: call.path(),
            kind,
            detail: root_cause(error),
        },
    )
}

/// Two `lastUpdateTime` values name the same instant (formats may differ in precision).
fn same_time(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A wait for humans: whole seconds, rounded up ("12 s").
fn seconds(delay: Duration) -> String {
    let whole = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    format!("{whole} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_shown_in_whole_seconds_rounded_up() {
        assert_eq!(seconds(Duration::from_secs(12)), "12 s");
        assert_eq!(seconds(Duration::from_millis(1_200)), "2 s");
    }

    #[test]
    fn stats_read_as_one_summary_line() {
        let stats = CallStats {
            list: 2,
            patch: 10,
            throttled: 1,
            waited: Duration::from_secs(3),
            ..CallStats::default()
        };
        assert_eq!(
            stats.to_string(),
            "12 API calls (list 2, get 0, patch 10), 1 throttled (429), waited 3 s"
        );
    }

    #[test]
    fn last_update_times_compare_as_instants() {
        assert!(same_time(
            "2020-09-06T14:46:57.29Z",
            "2020-09-06T14:46:57.2900000Z"
        ));
        assert!(!same_time(
            "2020-09-06T14:46:57.29Z",
            "2020-09-06T14:46:58Z"
        ));
    }
}
