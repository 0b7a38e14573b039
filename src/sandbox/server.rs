//! The running emulator: axum routes served by hyper on a plain `TcpListener`, so that a fault
//! can close a connection without any HTTP answer (hyper aborts a connection whose service
//! fails). Every API call goes through the same steps: latency, bearer check, injected 429,
//! quota, injected failure before the operation, the operation, injected failure after it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::auth::{self, Tokens};
use super::clock::Clock;
use super::config::{Credentials, EmulatorConfig, Faults, Limits, SandboxError};
use super::log::{Fault, LogEntry, RequestLog};
use super::odata::{ListQuery, decode_query};
use super::rng::SplitMix64;
use super::state::{self, ApiError, Store, format_timestamp, parse_update};
use super::throttle::{ApiMethod, Throttle, retry_after_secs};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by every request of one emulator.
struct Shared {
    store: Mutex<Store>,
    throttle: Mutex<Throttle>,
    tokens: Mutex<Tokens>,
    /// Fault and latency draws: seeded, so a sequential run is reproducible.
    faults_rng: Mutex<SplitMix64>,
    /// Tracking ids of error bodies.
    ids_rng: Mutex<SplitMix64>,
    faults: Faults,
    max_page_size: usize,
    credentials: Credentials,
    token_lifetime: Duration,
    clock: Clock,
    log: RequestLog,
    addr: SocketAddr,
}

/// A response marked like this makes the connection close without an answer.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

#[derive(Debug)]
struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for ConnectionDropped {}

/// One draw per API request, taken up front so the sequence does not depend on which branch a
/// request takes.
struct Draw {
    fault: f64,
    after: f64,
    latency: f64,
}

enum Operation {
    List { query: Option<String> },
    Get { id: String },
    Patch { id: String, body: Bytes },
}

impl Shared {
    fn tracking_id(&self) -> String {
        let mut rng = lock(&self.ids_rng);
        let (a, b) = (rng.next_u64(), rng.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn error(&self, status: u16, code: &str, message: &str) -> Response {
        let body =
            json!({"error": {"code": code, "message": message, "target": self.tracking_id()}});
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(body)).into_response()
    }

    fn api_error(&self, error: &ApiError) -> Response {
        self.error(error.status, error.code, &error.message)
    }

    fn too_many_requests(&self, secs: u64) -> Response {
        let mut response = self.error(
            429,
            "TooManyRequests",
            &format!("Rate limit is exceeded. Try again in {secs} seconds."),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }

    fn draw(&self) -> Draw {
        let mut rng = lock(&self.faults_rng);
        Draw {
            fault: rng.next_f64(),
            after: rng.next_f64(),
            latency: rng.next_f64(),
        }
    }

    fn choose_fault(&self, draw: &Draw, is_patch: bool) -> Option<Fault> {
        let faults = &self.faults;
        let after = is_patch && draw.after < faults.after_apply;
        let mut edge = faults.fail_429;
        if draw.fault < edge {
            return Some(Fault::Throttled);
        }
        edge += faults.fail_500;
        if draw.fault < edge {
            return Some(if after {
                Fault::ServerErrorAfterApply
            } else {
                Fault::ServerError
            });
        }
        edge += faults.drop;
        if draw.fault < edge {
            return Some(if after {
                Fault::DroppedAfterApply
            } else {
                Fault::Dropped
            });
        }
        None
    }

    fn finish(&self, mut entry: LogEntry, response: Response) -> Response {
        entry.status = if response.extensions().get::<DropConnection>().is_some() {
            None
        } else {
            Some(response.status().as_u16())
        };
        self.log.record(entry);
        response
    }

    async fn api_call(
        &self,
        method: ApiMethod,
        headers: &HeaderMap,
        uri: &Uri,
        operation: Operation,
    ) -> Response {
        let verb = match method {
            ApiMethod::Patch => "PATCH",
            ApiMethod::List | ApiMethod::Get => "GET",
        };
        let path = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
        let mut entry = LogEntry::new(format_timestamp(self.clock.now_utc()), verb, path);
        match &operation {
            Operation::Get { id } => entry.incident_id = id.parse().ok(),
            Operation::Patch { id, body } => {
                entry.incident_id = id.parse().ok();
                if !body.trim_ascii().is_empty() {
                    entry.body = Some(serde_json::from_slice(body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(body).into_owned())
                    }));
                }
            }
            Operation::List { .. } => {}
        }

        let draw = self.draw();
        if let Some(delay) = self.faults.latency.pick(draw.latency) {
            entry.latency_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            tokio::time::sleep(delay).await;
        }

        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = match lock(&self.tokens).check(
            authorization,
            &self.credentials,
            self.clock.elapsed(),
        ) {
            Ok(principal) => principal,
            Err(refusal) => {
                let response = self.error(401, "Unauthorized", refusal.message());
                return self.finish(entry, response);
            }
        };
        entry.client = Some(principal.clone());

        let fault = self.choose_fault(&draw, method == ApiMethod::Patch);
        entry.fault = fault;
        if fault == Some(Fault::Throttled) {
            let response = self.too_many_requests(self.faults.retry_after_secs.max(1));
            return self.finish(entry, response);
        }
        let admitted = lock(&self.throttle).admit(method, self.clock.elapsed());
        if let Err(wait) = admitted {
            entry.fault = None;
            let response = self.too_many_requests(retry_after_secs(wait));
            return self.finish(entry, response);
        }
        match fault {
            Some(Fault::ServerError) => {
                let response = self.internal_error();
                return self.finish(entry, response);
            }
            Some(Fault::Dropped) => return self.finish(entry, dropped()),
            _ => {}
        }

        let (response, applied) = self.execute(operation, &principal, headers);
        entry.applied = applied;
        let response = match fault {
            Some(Fault::ServerErrorAfterApply) => self.internal_error(),
            Some(Fault::DroppedAfterApply) => dropped(),
            _ => response,
        };
        self.finish(entry, response)
    }

    fn internal_error(&self) -> Response {
        self.error(
            500,
            "InternalServerError",
            "An unexpected error occurred while processing the request.",
        )
    }

    fn execute(
        &self,
        operation: Operation,
        principal: &str,
        headers: &HeaderMap,
    ) -> (Response, bool) {
        let base = base_url(headers, self.addr);
        match operation {
            Operation::List { query } => (self.list(&base, query.as_deref()), false),
            Operation::Get { id } => {
                let found = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| lock(&self.store).get(n));
                match found {
                    Some(incident) => (ok_entity(&base, incident), false),
                    None => (self.api_error(&ApiError::not_found(&id)), false),
                }
            }
            Operation::Patch { id, body } => match self.patch(&id, &body, principal) {
                Ok((incident, changed)) => (ok_entity(&base, incident), changed),
                Err(error) => (self.api_error(&error), false),
            },
        }
    }

    fn list(&self, base: &str, raw_query: Option<&str>) -> Response {
        let query = match ListQuery::parse(raw_query, self.max_page_size) {
            Ok(query) => query,
            Err(message) => return self.error(400, "ODataError", &message),
        };
        let top = query.top.unwrap_or(self.max_page_size);
        let (page, more) = lock(&self.store).page(
            |incident| query.filter.as_ref().is_none_or(|f| f.matches(incident)),
            query.skip,
            top,
        );
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            Value::String(format!("{base}/api/$metadata#Incidents")),
        );
        let next_skip = query.skip.saturating_add(page.len());
        body.insert("value".into(), Value::Array(page));
        if more && top > 0 {
            body.insert(
                "@odata.nextLink".into(),
                Value::String(format!(
                    "{base}/api/incidents?{}",
                    query.next_page_query(next_skip)
                )),
            );
        }
        (StatusCode::OK, axum::Json(Value::Object(body))).into_response()
    }

    fn patch(&self, id: &str, body: &[u8], principal: &str) -> Result<(Value, bool), ApiError> {
        let document: Value = if body.trim_ascii().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(
                    "InvalidRequestBody",
                    format!("The request body is not valid JSON: {e}"),
                )
            })?
        };
        let update = parse_update(&document)?;
        let id: u64 = id.parse().map_err(|_| ApiError::not_found(id))?;
        let now = self.clock.now_utc();
        lock(&self.store).patch(id, &update, principal, now)
    }

    fn token(&self, tenant: &str, uri: &Uri, body: &[u8]) -> Response {
        // Only the path: the body holds secrets and is never logged.
        let mut entry = LogEntry::new(
            format_timestamp(self.clock.now_utc()),
            "POST",
            uri.path().to_string(),
        );
        let form = decode_query(&String::from_utf8_lossy(body));
        entry.client = form
            .iter()
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.clone());
        let response = match auth::check_token_request(tenant, &form, &self.credentials) {
            Ok(client_id) => {
                let token =
                    lock(&self.tokens).issue(&client_id, self.clock.elapsed(), self.token_lifetime);
                let lifetime = self.token_lifetime.as_secs();
                (
                    StatusCode::OK,
                    [(header::CACHE_CONTROL, "no-store, no-cache")],
                    axum::Json(json!({
                        "token_type": "Bearer",
                        "expires_in": lifetime,
                        "ext_expires_in": lifetime,
                        "access_token": token,
                    })),
                )
                    .into_response()
            }
            Err(error) => {
                let trace_id = self.tracking_id();
                let correlation_id = self.tracking_id();
                let timestamp = self
                    .clock
                    .now_utc()
                    .format("%Y-%m-%d %H:%M:%SZ")
                    .to_string();
                let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
                (
                    status,
                    axum::Json(json!({
                        "error": error.error,
                        "error_description": format!(
                            "{} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                            error.description
                        ),
                        "error_codes": [error.code],
                        "timestamp": timestamp,
                        "trace_id": trace_id,
                        "correlation_id": correlation_id,
                    })),
                )
                    .into_response()
            }
        };
        self.finish(entry, response)
    }
}

fn dropped() -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

fn ok_entity(base: &str, incident: Value) -> Response {
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{base}/api/$metadata#Incidents/$entity")),
    );
    if let Value::Object(fields) = incident {
        body.extend(fields);
    }
    (StatusCode::OK, axum::Json(Value::Object(body))).into_response()
}

/// `http://<Host header>` so links work through whatever address the client used.
fn base_url(headers: &HeaderMap, addr: SocketAddr) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        });
    match host {
        Some(host) => format!("http://{host}"),
        None => format!("http://{}", loopback(addr)),
    }
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

async fn list_incidents(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let query = uri.query().map(str::to_owned);
    shared
        .api_call(ApiMethod::List, &headers, &uri, Operation::List { query })
        .await
}

async fn get_incident(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    shared
        .api_call(ApiMethod::Get, &headers, &uri, Operation::Get { id })
        .await
}

async fn patch_incident(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    shared
        .api_call(
            ApiMethod::Patch,
            &headers,
            &uri,
            Operation::Patch { id, body },
        )
        .await
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    shared.token(&tenant, &uri, &body)
}

async fn fallback(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let entry = LogEntry::new(
        format_timestamp(shared.clock.now_utc()),
        method.as_str(),
        uri.path().to_string(),
    );
    let response = shared.error(
        404,
        "NotFound",
        &format!("No such resource: {} {}", method, uri.path()),
    );
    shared.finish(entry, response)
}

/// Resolves once shutdown is asked for (or the emulator handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Every answer carries `Date` from the emulator's clock, the clock `lastUpdateTime` is written
/// with (as the API's own `Date` and timestamps share one clock), not the host's.
async fn date_header(State(shared): State<Arc<Shared>>, mut response: Response) -> Response {
    let now = std::time::SystemTime::from(shared.clock.now_utc());
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

async fn serve_connection(stream: TcpStream, router: Router, mut shutdown: watch::Receiver<bool>) {
    let inner = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |request| {
        let answer = inner.call(request);
        async move {
            let response = match answer.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                Err(ConnectionDropped)
            } else {
                Ok(response)
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "sandbox connection ended");
            }
        }
        () = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn accept_loop(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "sandbox cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// A running emulator. Dropping it stops the server (without saving); call
/// [`Emulator::shutdown`] to stop gracefully and save.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    persist_to: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .field("persist_to", &self.persist_to)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Emulator {
    /// Binds `listen` (use port 0 for any free port) and starts serving on the current tokio
    /// runtime. Fails on invalid fault rates, bad incident data, or an address in use.
    pub async fn start(
        config: EmulatorConfig,
        listen: SocketAddr,
    ) -> Result<Emulator, SandboxError> {
        config.faults.validate()?;
        let limits: Limits = config.limits;
        if limits.max_page_size == 0 {
            return Err(SandboxError::Config(
                "max_page_size must be at least 1".into(),
            ));
        }
        let store = Store::new(config.incidents)?;
        let log = RequestLog::open(config.request_log.as_deref())?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
        // Tokens must not be guessable from the seed alone; fault draws must be.
        let entropy = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(addr.port()).rotate_left(48);
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            throttle: Mutex::new(Throttle::new(limits)),
            tokens: Mutex::new(Tokens::new(config.seed ^ entropy)),
            faults_rng: Mutex::new(SplitMix64::new(config.seed)),
            ids_rng: Mutex::new(SplitMix64::new(config.seed ^ 0x7261_636b_6964_7321)),
            faults: config.faults,
            max_page_size: limits.max_page_size,
            credentials: config.credentials,
            token_lifetime: config.token_lifetime,
            clock: config.clock,
            log,
            addr,
        });
        let router = Router::new()
            .route("/api/incidents", get(list_incidents))
            .route(
                "/api/incidents/{id}",
                get(get_incident).patch(patch_incident),
            )
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .fallback(fallback)
            .layer(axum::middleware::map_response_with_state(
                Arc::clone(&shared),
                date_header,
            ))
            .with_state(Arc::clone(&shared));
        let (shutdown, receiver) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, router, receiver));
        Ok(Emulator {
            addr,
            shared,
            persist_to: config.persist_to,
            shutdown,
            server: Some(server),
        })
    }

    /// The bound address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the API base URL, and the authority host of the token endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", loopback(self.addr))
    }

    /// The token endpoint for `tenant`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.url())
    }

    /// The emulator's clock (advance it in tests when it is a manual clock).
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// One incident as the emulator holds it (every field), `None` if unknown.
    pub fn incident(&self, id: u64) -> Option<Value> {
        lock(&self.shared.store).get(id)
    }

    /// Every incident, in the order they were loaded.
    pub fn incidents(&self) -> Vec<Value> {
        lock(&self.shared.store).all()
    }

    /// Sets a field as another client would (no validation) and bumps `lastUpdateTime`.
    /// Returns false for an unknown id.
    pub fn set_incident_field(&self, id: u64, field: &str, value: Value) -> bool {
        let now = self.shared.clock.now_utc();
        lock(&self.shared.store).set_field(id, field, value, now)
    }

    /// The request log so far.
    pub fn requests(&self) -> Vec<LogEntry> {
        self.shared.log.entries()
    }

    /// Waits until `done` holds for the request log (checked after each request), and returns
    /// the log: tests use it to act at a chosen point of a run without polling.
    pub async fn wait_for_requests(&self, done: impl Fn(&[LogEntry]) -> bool) -> Vec<LogEntry> {
        self.shared.log.wait_for(done).await
    }

    /// Saves the current state to `path` atomically, in the shape it is loaded from.
    pub fn save_to(&self, path: impl AsRef<FsPath>) -> Result<(), SandboxError> {
        let incidents = self.incidents();
        state::save_incidents(path.as_ref(), &incidents)
    }

    /// Stops accepting, lets in-flight requests finish, then saves to `persist_to` if set.
    pub async fn shutdown(mut self) -> Result<(), SandboxError> {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            server
                .await
                .map_err(|e| SandboxError::Server(e.to_string()))?;
        }
        if let Some(path) = &self.persist_to {
            self.save_to(path)?;
        }
        Ok(())
    }
}
