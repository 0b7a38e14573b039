//! Credentials and bearer tokens: resolution from the environment (SPEC order), the OAuth 2.0
//! client-credentials flow against Entra ID (client secret or federated assertion), and a token
//! cache refreshed before expiry and after a `401`.
//!
//! Secrets live in [`Secret`], whose `Debug`/`Display` print `[redacted]`; token request bodies
//! and responses are never logged.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use super::clock::Clock;
use super::config::parse_endpoint_url;
use super::error::{ApiError, AuthError};

/// Entra ID's public cloud authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The scope of the Defender API for the client-credentials flow.
pub const API_SCOPE: &str = "https://api.security.microsoft.com/.default";

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const REDACTED: &str = "[redacted]";

/// A secret string (client secret, assertion, bearer token). Prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Where bearer tokens come from. `Debug` never shows a secret (they are [`Secret`]s).
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A ready bearer token (`INCIDENTOPS_TOKEN`); cannot be refreshed.
    Token(Secret),
    /// Client credentials with a client secret.
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: Secret,
        authority: Url,
    },
    /// Workload identity federation: the JWT assertion is read from a file at every token
    /// request (CI rotates it).
    FederatedToken {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
        authority: Url,
    },
}

impl Credentials {
    /// Resolves credentials from the process environment (see [`Credentials::from_lookup`]).
    pub fn from_env() -> Result<Self, ApiError> {
        Credentials::from_lookup(|name| std::env::var(name).ok())
    }

    /// Resolves credentials from `lookup(name)`, first match wins: `INCIDENTOPS_TOKEN`; else
    /// `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET`; else `AZURE_TENANT_ID` +
    /// `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE`. The token endpoint's host is
    /// `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`). Empty values count
    /// as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = get("INCIDENTOPS_TOKEN") {
            let token = strip_bearer_prefix(&token).to_owned();
            return Ok(Credentials::Token(Secret::new(token)));
        }

        let tenant = get("AZURE_TENANT_ID");
        let client = get("AZURE_CLIENT_ID");
        let secret = get("AZURE_CLIENT_SECRET");
        let file = get("AZURE_FEDERATED_TOKEN_FILE");
        let (Some(tenant_id), Some(client_id)) = (tenant.clone(), client.clone()) else {
            let found: Vec<&str> = [
                ("AZURE_TENANT_ID", tenant.is_some()),
                ("AZURE_CLIENT_ID", client.is_some()),
                ("AZURE_CLIENT_SECRET", secret.is_some()),
                ("AZURE_FEDERATED_TOKEN_FILE", file.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            let found = if found.is_empty() {
                "none of them is set".to_owned()
            } else {
                format!("only {} is set", found.join(", "))
            };
            return Err(ApiError::Config(format!(
                "no API credentials: set INCIDENTOPS_TOKEN, or AZURE_TENANT_ID and \
                 AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE \
                 ({found})"
            )));
        };
        check_tenant_id(&tenant_id)?;
        let authority = parse_endpoint_url(
            get("AZURE_AUTHORITY_HOST")
                .as_deref()
                .unwrap_or(DEFAULT_AUTHORITY_HOST),
            "AZURE_AUTHORITY_HOST",
        )?;
        if let Some(secret) = secret {
            return Ok(Credentials::ClientSecret {
                tenant_id,
                client_id,
                secret: Secret::new(secret),
                authority,
            });
        }
        if let Some(file) = file {
            return Ok(Credentials::FederatedToken {
                tenant_id,
                client_id,
                token_file: PathBuf::from(file),
                authority,
            });
        }
        Err(ApiError::Config(
            "AZURE_TENANT_ID and AZURE_CLIENT_ID are set, but neither AZURE_CLIENT_SECRET nor \
             AZURE_FEDERATED_TOKEN_FILE is"
                .to_owned(),
        ))
    }

    /// The token endpoint, or `None` for a ready token.
    pub fn token_endpoint(&self) -> Option<Url> {
        match self {
            Credentials::Token(_) => None,
            Credentials::ClientSecret {
                tenant_id,
                authority,
                ..
            }
            | Credentials::FederatedToken {
                tenant_id,
                authority,
                ..
            } => authority
                .join(&format!("{tenant_id}/oauth2/v2.0/token"))
                .ok(),
        }
    }

    /// True when a new token can be requested (after expiry or a `401`).
    pub fn can_refresh(&self) -> bool {
        !matches!(self, Credentials::Token(_))
    }
}

fn strip_bearer_prefix(token: &str) -> &str {
    match token.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    }
}

/// The tenant id goes into the token URL's path: only the characters of a GUID or a domain.
fn check_tenant_id(tenant: &str) -> Result<(), ApiError> {
    let ok = tenant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok && !tenant.starts_with('.') {
        Ok(())
    } else {
        Err(ApiError::Config(format!(
            "AZURE_TENANT_ID `{tenant}` is not a tenant id or domain"
        )))
    }
}

/// Hands out bearer tokens, requesting and caching them as needed.
pub(crate) struct TokenSource {
    credentials: Credentials,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cache: tokio::sync::Mutex<Option<CachedToken>>,
    requests: AtomicU64,
}

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    /// Seconds; Entra sends a number, older endpoints a string.
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct TokenErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    pub(crate) fn new(
        credentials: Credentials,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TokenSource {
            credentials,
            http,
            clock,
            cache: tokio::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn can_refresh(&self) -> bool {
        self.credentials.can_refresh()
    }

    /// Token requests sent so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A valid token: the cached one unless it is due for refresh.
    pub(crate) async fn token(&self) -> Result<Secret, ApiError> {
        if let Credentials::Token(token) = &self.credentials {
            return Ok(token.clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref() {
            if self.clock.now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        let fresh = self.request_token().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// After the API rejected `rejected` with a `401`: a new token, unless another task already
    /// replaced it. `None` when the credentials cannot produce a new token.
    pub(crate) async fn refresh_after_rejection(
        &self,
        rejected: &Secret,
    ) -> Result<Option<Secret>, ApiError> {
        if !self.can_refresh() {
            return Ok(None);
        }
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref() {
            if cached.token != *rejected {
                return Ok(Some(cached.token.clone()));
            }
        }
        let fresh = self.request_token().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(Some(token))
    }

    /// Requests a token, retrying transient failures (transport, 429, 5xx) a few times: a token
    /// request changes nothing, so it is always safe to repeat.
    async fn request_token(&self) -> Result<CachedToken, ApiError> {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.request_token_once().await {
                Err(ApiError::Auth(error)) if attempt < ATTEMPTS && is_transient(&error) => {
                    let delay = Duration::from_secs(1 << attempt);
                    tracing::warn!("{error}; retrying in {} s", delay.as_secs());
                    self.clock.sleep(delay).await;
                }
                result => return result,
            }
        }
    }

    async fn request_token_once(&self) -> Result<CachedToken, ApiError> {
        let endpoint = self.credentials.token_endpoint().ok_or_else(|| {
            ApiError::Config("these credentials have no token endpoint".to_owned())
        })?;
        let shown_endpoint = endpoint.to_string();
        let (client_id, credential_field, credential) = match &self.credentials {
            Credentials::Token(_) => {
                return Err(ApiError::Config(
                    "a ready token cannot be refreshed".to_owned(),
                ));
            }
            Credentials::ClientSecret {
                client_id, secret, ..
            } => (client_id, "client_secret", secret.clone()),
            Credentials::FederatedToken {
                client_id,
                token_file,
                ..
            } => (
                client_id,
                "client_assertion",
                read_assertion(token_file).await?,
            ),
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", API_SCOPE),
        ];
        if credential_field == "client_assertion" {
            form.push(("client_assertion_type", ASSERTION_TYPE));
        }
        form.push((credential_field, credential.expose()));

        tracing::debug!(endpoint = %shown_endpoint, "requesting an access token");
        let started = self.clock.now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Transport {
                endpoint: shown_endpoint.clone(),
                detail: scrub(&root_cause(&e), &credential),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| AuthError::Transport {
            endpoint: shown_endpoint.clone(),
            detail: scrub(&root_cause(&e), &credential),
        })?;
        if !status.is_success() {
            let parsed: TokenErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
            let description = if parsed.error.is_empty() && parsed.error_description.is_empty() {
                crate::api::error::truncate(&String::from_utf8_lossy(&body), 300)
            } else {
                parsed.error_description.replace(['\r', '\n'], " ")
            };
            return Err(AuthError::TokenEndpoint {
                endpoint: shown_endpoint,
                status: status.as_u16(),
                error: scrub(&parsed.error, &credential),
                description: scrub(description.trim(), &credential),
            }
            .into());
        }
        let invalid = || AuthError::InvalidTokenResponse {
            endpoint: shown_endpoint.clone(),
            status: status.as_u16(),
        };
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| invalid())?;
        let token = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(invalid)?;
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map(|seconds| Duration::from_secs(seconds.min(86_400)))
            .unwrap_or(Duration::from_secs(3600));
        tracing::debug!(valid_for_s = lifetime.as_secs(), "access token obtained");
        Ok(CachedToken {
            token: Secret::new(token),
            refresh_at: started + refresh_margin(lifetime),
        })
    }
}

fn is_transient(error: &AuthError) -> bool {
    match error {
        AuthError::Transport { .. } => true,
        AuthError::TokenEndpoint { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

/// When to refresh a token of this lifetime: 5 minutes early, or at half-life when it lives
/// less than 10 minutes.
fn refresh_margin(lifetime: Duration) -> Duration {
    const EARLY: Duration = Duration::from_secs(300);
    if lifetime >= 2 * EARLY {
        lifetime - EARLY
    } else {
        lifetime / 2
    }
}

async fn read_assertion(path: &PathBuf) -> Result<Secret, ApiError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| AuthError::AssertionFile {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    let assertion = text.trim();
    if assertion.is_empty() {
        return Err(AuthError::AssertionFile {
            path: path.clone(),
            detail: "the file is empty".to_owned(),
        }
        .into());
    }
    Ok(Secret::new(assertion))
}

/// The innermost cause of an error chain, which says what actually went wrong.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Removes any occurrence of `secret` from a text that came from elsewhere.
fn scrub(text: &str, secret: &Secret) -> String {
    if secret.expose().len() >= 4 {
        text.replace(secret.expose(), REDACTED)
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Result<Credentials, ApiError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Credentials::from_lookup(|name| map.get(name).cloned())
    }

    const ALL: &[(&str, &str)] = &[
        ("INCIDENTOPS_TOKEN", "ready-token"),
        ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
        ("AZURE_CLIENT_ID", "app-id"),
        ("AZURE_CLIENT_SECRET", "s3cr3t-value"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
    ];

    #[test]
    fn ready_token_wins_over_everything() {
        let creds = resolve(ALL).unwrap();
        assert!(matches!(creds, Credentials::Token(t) if t.expose() == "ready-token"));
    }

    #[test]
    fn client_secret_wins_over_federated_file() {
        let creds = resolve(&ALL[1..]).unwrap();
        let Credentials::ClientSecret {
            tenant_id,
            secret,
            authority,
            ..
        } = &creds
        else {
            panic!("expected client secret, got {creds:?}");
        };
        assert_eq!(tenant_id, "contoso.onmicrosoft.com");
        assert_eq!(secret.expose(), "s3cr3t-value");
        assert_eq!(authority.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(
            creds.token_endpoint().unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn federated_file_is_used_without_a_secret() {
        let creds = resolve(&[ALL[1], ALL[2], ALL[4]]).unwrap();
        assert!(
            matches!(&creds, Credentials::FederatedToken { token_file, .. } if token_file == &PathBuf::from("/var/run/token"))
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let creds = resolve(&[
            ("INCIDENTOPS_TOKEN", "  "),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ])
        .unwrap();
        assert!(matches!(creds, Credentials::FederatedToken { .. }));
    }

    #[test]
    fn missing_credentials_name_the_variables_but_not_their_values() {
        let err = resolve(&[("AZURE_CLIENT_SECRET", "s3cr3t-value")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("INCIDENTOPS_TOKEN"), "{text}");
        assert!(text.contains("only AZURE_CLIENT_SECRET is set"), "{text}");
        assert!(!text.contains("s3cr3t-value"), "{text}");

        let err = resolve(&ALL[1..3]).unwrap_err();
        assert!(
            err.to_string().contains("neither AZURE_CLIENT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn authority_host_is_validated_like_the_api_url() {
        let mut vars = ALL[1..4].to_vec();
        vars.push(("AZURE_AUTHORITY_HOST", "http://login.example.com"));
        assert!(matches!(resolve(&vars), Err(ApiError::Config(_))));
        vars.pop();
        vars.push(("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9999"));
        let creds = resolve(&vars).unwrap();
        assert_eq!(
            creds.token_endpoint().unwrap().as_str(),
            "http://127.0.0.1:9999/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn tenant_id_cannot_smuggle_a_path() {
        let vars = [
            ("AZURE_TENANT_ID", "../evil?x="),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ];
        assert!(matches!(resolve(&vars), Err(ApiError::Config(_))));
    }

    #[test]
    fn bearer_prefix_of_a_pasted_token_is_dropped() {
        let creds = resolve(&[("INCIDENTOPS_TOKEN", "Bearer abc.def")]).unwrap();
        assert!(matches!(creds, Credentials::Token(t) if t.expose() == "abc.def"));
    }

    #[test]
    fn debug_and_display_of_secrets_are_redacted() {
        let creds = resolve(&ALL[1..]).unwrap();
        let shown = format!("{creds:?} {}", Secret::new("s3cr3t-value"));
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn tokens_refresh_five_minutes_early_or_at_half_life() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3599)),
            Duration::from_secs(3299)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
    }
}
