//! Errors of the API layer, with what a user or support needs to act: the call, the HTTP
//! status, and the API's `code`, `message` and `target` (the tracking id).
//!
//! No variant holds a secret: token endpoint errors carry Entra's `error`/`error_description`
//! (scrubbed of the credential), and transport errors keep only the cause's text.

use std::fmt;
use std::path::PathBuf;

/// An error from a call to the Defender API (or from getting a token for it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The API answered with an error status.
    #[error("{method} {path}: {}", ErrorSummary { status: *status, code, message, target })]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        target: Option<String>,
    },
    /// The request failed below HTTP (connect, reset, TLS, ...).
    #[error("{method} {path}: {kind}: {detail}")]
    Transport {
        method: &'static str,
        path: String,
        kind: TransportKind,
        detail: String,
    },
    /// No answer within the per-request time limit.
    #[error("{method} {path}: no answer within the time limit")]
    Timeout { method: &'static str, path: String },
    /// A success status with a body that is not what the API documents.
    #[error("{method} {path}: unreadable answer ({status}): {detail}")]
    InvalidResponse {
        method: &'static str,
        path: String,
        status: u16,
        detail: String,
    },
    /// Getting or using a token failed.
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// The configuration cannot work (URL, credentials, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// After an ambiguous PATCH failure, the re-read incident shows someone else's newer edit.
    #[error(
        "incident {id} changed since it was planned (lastUpdateTime {expected} → {found}); \
         not overwriting it"
    )]
    Conflict {
        id: u64,
        expected: String,
        found: String,
    },
}

/// Why a request failed below HTTP; decides whether it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connection was never established: the request provably did not reach the server.
    Connect,
    /// The connection failed after the request may have been sent.
    Interrupted,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "could not connect",
            TransportKind::Interrupted => "connection failed",
        })
    }
}

/// An authentication failure. Never holds the secret, assertion or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Entra answered with an error (`{"error","error_description"}`).
    #[error("the token endpoint {endpoint} answered {status} {error}: {description}")]
    TokenEndpoint {
        endpoint: String,
        status: u16,
        error: String,
        description: String,
    },
    /// The token endpoint could not be reached.
    #[error("could not reach the token endpoint {endpoint}: {detail}")]
    Transport { endpoint: String, detail: String },
    /// The token endpoint answered 2xx without a usable token.
    #[error("the token endpoint {endpoint} sent an unreadable answer ({status})")]
    InvalidTokenResponse { endpoint: String, status: u16 },
    /// The federated token file (`AZURE_FEDERATED_TOKEN_FILE`) could not be read.
    #[error("cannot read the federated token file {}: {detail}", path.display())]
    AssertionFile { path: PathBuf, detail: String },
}

impl ApiError {
    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Api { status, .. } | ApiError::InvalidResponse { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The API's error code (`InvalidRequestBody`, `NotFound`, ...), when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

struct ErrorSummary<'a> {
    status: u16,
    code: &'a Option<String>,
    message: &'a Option<String>,
    target: &'a Option<String>,
}

impl fmt::Display for ErrorSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        match self.code.as_deref().filter(|c| !c.is_empty()) {
            Some(code) => write!(f, " {code}")?,
            None => {
                if let Some(reason) = reqwest::StatusCode::from_u16(self.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                {
                    write!(f, " {reason}")?;
                }
            }
        }
        if let Some(message) = self.message.as_deref().filter(|m| !m.is_empty()) {
            write!(f, ": {message}")?;
        }
        if let Some(target) = self.target.as_deref().filter(|t| !t.is_empty()) {
            write!(f, " (tracking id: {target})")?;
        }
        Ok(())
    }
}

/// Cuts text from a server (error bodies) to a readable length for messages.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_shows_call_status_code_message_and_tracking_id() {
        let error = ApiError::Api {
            method: "PATCH",
            path: "/api/incidents/5".into(),
            status: 400,
            code: Some("InvalidRequestBody".into()),
            message: Some("Request body is incorrect".into()),
            target: Some("43f4cb08-8fac-4b65-9db1-745c2ae65f3a".into()),
        };
        assert_eq!(
            error.to_string(),
            "PATCH /api/incidents/5: 400 InvalidRequestBody: Request body is incorrect \
             (tracking id: 43f4cb08-8fac-4b65-9db1-745c2ae65f3a)"
        );
    }

    #[test]
    fn api_error_without_body_shows_the_reason_phrase() {
        let error = ApiError::Api {
            method: "GET",
            path: "/api/incidents".into(),
            status: 502,
            code: None,
            message: None,
            target: None,
        };
        assert_eq!(error.to_string(), "GET /api/incidents: 502 Bad Gateway");
    }
}
