//! Client configuration: the API base URL (validated), quotas, retry policy, timeouts and clock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::clock::{Clock, TokioClock};
use super::error::ApiError;
use super::retry::RetryPolicy;
use super::throttle::Limits;

/// The public Defender API.
pub const DEFAULT_API_URL: &str = "https://api.security.microsoft.com";

/// How to reach the API and how hard to push it.
#[derive(Clone)]
pub struct ApiConfig {
    pub(crate) base_url: Url,
    pub(crate) limits: Limits,
    pub(crate) retry: RetryPolicy,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("base_url", &self.base_url.as_str())
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl ApiConfig {
    /// Validates `url`: `https`, or plain `http` only for a loopback host (127.0.0.0/8, ::1,
    /// `localhost`). Defaults: the documented quotas, a 60 s per-request timeout, tokio time.
    pub fn new(url: &str) -> Result<Self, ApiError> {
        Ok(ApiConfig {
            base_url: parse_endpoint_url(url, "API URL")?,
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            request_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Some(Duration::from_secs(10)),
            clock: Arc::new(TokioClock),
        })
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Per-request time limit (`None`: no limit). Runs on tokio time, never on the [`Clock`].
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The clock for throttling, backoff and token lifetimes (tests use a virtual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// Parses an endpoint URL (API base or authority host): http(s) only, plain http only for a
/// loopback host, no user info, query or fragment. The result ends with `/` so paths join
/// below it.
pub(crate) fn parse_endpoint_url(raw: &str, what: &str) -> Result<Url, ApiError> {
    let raw = raw.trim();
    let mut url =
        Url::parse(raw).map_err(|e| ApiError::Config(format!("{what} `{raw}` is invalid: {e}")))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::Config(format!("{what} `{raw}` has no host")))?
        .to_owned();
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(ApiError::Config(format!(
                "{what} `{raw}` uses plain http: only https is allowed, except for a loopback \
                 address (127.0.0.1, ::1, localhost)"
            )));
        }
        other => {
            return Err(ApiError::Config(format!(
                "{what} `{raw}` has scheme `{other}`: only https (or http on loopback) is allowed"
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::Config(format!(
            "{what} must not contain user credentials"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::Config(format!(
            "{what} `{raw}` must not have a query or fragment"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `host` as `Url::host_str` gives it (IPv6 in brackets, domains lowercased).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_on_loopback_are_accepted() {
        for ok in [
            "https://api.security.microsoft.com",
            "https://example.com/prefix",
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:9000",
            "http://localhost:3000/",
            "http://LOCALHOST",
        ] {
            assert!(ApiConfig::new(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn plain_http_off_loopback_and_other_schemes_are_refused() {
        for bad in [
            "http://api.security.microsoft.com",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://[::2]",
            "ftp://127.0.0.1",
            "file:///etc/passwd",
            "not a url",
            "https://user:pw@example.com",
            "https://example.com/?x=1",
        ] {
            assert!(
                matches!(ApiConfig::new(bad), Err(ApiError::Config(_))),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn base_url_gets_a_trailing_slash_so_paths_join_below_it() {
        let config = ApiConfig::new("https://example.com/prefix").unwrap();
        assert_eq!(
            config.base_url().join("api/incidents").unwrap().as_str(),
            "https://example.com/prefix/api/incidents"
        );
    }
}
