//! The Entra ID token endpoint (client credentials, with a secret or a federated assertion) and
//! the bearer-token check of the API routes. Tokens are opaque random strings remembered with
//! their expiry on the emulator clock.

use std::collections::HashMap;
use std::time::Duration;

use super::config::Credentials;
use super::rng::SplitMix64;

pub const SCOPE: &str = "https://api.security.microsoft.com/.default";
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An OAuth error as Entra answers it: HTTP status, `error`, AADSTS code and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub description: String,
}

impl TokenError {
    fn new(status: u16, error: &'static str, code: u32, description: impl Into<String>) -> Self {
        TokenError {
            status,
            error,
            code,
            description: format!("AADSTS{code}: {}", description.into()),
        }
    }

    fn missing(parameter: &str) -> Self {
        TokenError::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{parameter}'."),
        )
    }
}

/// Checks a token request's form fields; on success returns the client id.
/// Error descriptions name parameters, never their secret values.
pub fn check_token_request(
    tenant: &str,
    form: &[(String, String)],
    credentials: &Credentials,
) -> Result<String, TokenError> {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if credentials
        .tenant
        .as_deref()
        .is_some_and(|expected| expected != tenant)
    {
        return Err(TokenError::new(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    let grant_type = field("grant_type").ok_or_else(|| TokenError::missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(TokenError::new(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let client_id = field("client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TokenError::missing("client_id"))?;
    let scope = field("scope").ok_or_else(|| TokenError::missing("scope"))?;
    if scope != SCOPE {
        return Err(TokenError::new(
            400,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI); this API expects {SCOPE}."
            ),
        ));
    }
    let secret = field("client_secret");
    let assertion_type = field("client_assertion_type");
    let assertion = field("client_assertion");
    let Some(app) = credentials.client(client_id) else {
        return Err(TokenError::new(
            400,
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory."),
        ));
    };
    match (secret, assertion_type, assertion) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(TokenError::new(
            400,
            "invalid_request",
            50027,
            "Only one client authentication method may be used: client_secret or client_assertion.",
        )),
        (Some(secret), None, None) => match &app.client_secret {
            Some(expected) if expected.expose() == secret => Ok(client_id.to_string()),
            _ => Err(TokenError::new(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            )),
        },
        (None, Some(kind), Some(assertion)) => {
            if kind != ASSERTION_TYPE {
                return Err(TokenError::new(
                    400,
                    "invalid_request",
                    7000216,
                    format!("'client_assertion_type' must be '{ASSERTION_TYPE}'."),
                ));
            }
            if assertion.is_empty() || !app.allow_assertion {
                return Err(TokenError::new(
                    401,
                    "invalid_client",
                    700025,
                    "Client assertion is not valid for this application.",
                ));
            }
            Ok(client_id.to_string())
        }
        (None, Some(_), None) => Err(TokenError::missing("client_assertion")),
        (None, None, Some(_)) => Err(TokenError::missing("client_assertion_type")),
        (None, None, None) => Err(TokenError::new(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Unknown,
    Expired,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "Authorization header is missing or is not a Bearer token.",
            Refusal::Unknown => "The access token is invalid.",
            Refusal::Expired => "The access token has expired.",
        }
    }
}

#[derive(Debug)]
struct Issued {
    principal: String,
    expires_at: Duration,
}

/// The tokens this emulator issued.
#[derive(Debug)]
pub struct Tokens {
    issued: HashMap<String, Issued>,
    rng: SplitMix64,
}

impl Tokens {
    pub fn new(seed: u64) -> Self {
        Tokens {
            issued: HashMap::new(),
            rng: SplitMix64::new(seed),
        }
    }

    /// Issues a token for `client_id`, valid for `lifetime` from `now`.
    pub fn issue(&mut self, client_id: &str, now: Duration, lifetime: Duration) -> String {
        self.issued.retain(|_, t| t.expires_at > now);
        let token = format!(
            "sbx1.{:016x}{:016x}{:016x}",
            self.rng.next_u64(),
            self.rng.next_u64(),
            self.rng.next_u64()
        );
        self.issued.insert(
            token.clone(),
            Issued {
                principal: format!("API-App:{client_id}"),
                expires_at: now.saturating_add(lifetime),
            },
        );
        token
    }

    /// The principal behind an `Authorization` header value.
    pub fn check(
        &self,
        authorization: Option<&str>,
        credentials: &Credentials,
        now: Duration,
    ) -> Result<String, Refusal> {
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?;
        if credentials
            .static_token
            .as_ref()
            .is_some_and(|expected| expected.expose() == token)
        {
            return Ok(credentials.static_token_principal.clone());
        }
        let issued = self.issued.get(token).ok_or(Refusal::Unknown)?;
        if issued.expires_at <= now {
            return Err(Refusal::Expired);
        }
        Ok(issued.principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn credentials() -> Credentials {
        Credentials::default()
            .with_client_secret("app-1", "s3cret-value")
            .with_federated_client("app-2")
    }

    #[test]
    fn secret_and_assertion_forms_are_accepted() {
        let secret = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app-1"),
            ("client_secret", "s3cret-value"),
            ("scope", SCOPE),
        ]);
        assert_eq!(
            check_token_request("t", &secret, &credentials()).unwrap(),
            "app-1"
        );
        let federated = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app-2"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", "eyJhbGciOi.jwt.sig"),
            ("scope", SCOPE),
        ]);
        assert_eq!(
            check_token_request("t", &federated, &credentials()).unwrap(),
            "app-2"
        );
    }

    #[test]
    fn bad_requests_get_entra_errors_without_the_secret() {
        let base = [
            ("grant_type", "client_credentials"),
            ("client_id", "app-1"),
            ("scope", SCOPE),
        ];
        let mut wrong = base.to_vec();
        wrong.push(("client_secret", "not-the-secret"));
        let err = check_token_request("t", &form(&wrong), &credentials()).unwrap_err();
        assert_eq!((err.status, err.error), (401, "invalid_client"));
        assert!(!err.description.contains("not-the-secret"));

        let err = check_token_request("t", &form(&base), &credentials()).unwrap_err();
        assert_eq!(err.error, "invalid_client");

        let err = check_token_request("t", &form(&base[1..]), &credentials()).unwrap_err();
        assert_eq!((err.status, err.error), (400, "invalid_request"));

        let mut bad_scope = base.to_vec();
        bad_scope[2] = ("scope", "https://graph.microsoft.com/.default");
        bad_scope.push(("client_secret", "s3cret-value"));
        let err = check_token_request("t", &form(&bad_scope), &credentials()).unwrap_err();
        assert_eq!(err.error, "invalid_scope");
    }

    #[test]
    fn tokens_expire_on_the_emulator_clock() {
        let credentials = credentials().with_static_token("static");
        let mut tokens = Tokens::new(1);
        let token = tokens.issue("app-1", Duration::ZERO, Duration::from_secs(60));
        let header = format!("Bearer {token}");
        assert_eq!(
            tokens.check(Some(&header), &credentials, Duration::from_secs(59)),
            Ok("API-App:app-1".to_string())
        );
        assert_eq!(
            tokens.check(Some(&header), &credentials, Duration::from_secs(60)),
            Err(Refusal::Expired)
        );
        assert_eq!(
            tokens.check(Some("Bearer nope"), &credentials, Duration::ZERO),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            tokens.check(Some("Basic abc"), &credentials, Duration::ZERO),
            Err(Refusal::Missing)
        );
        assert_eq!(
            tokens.check(None, &credentials, Duration::ZERO),
            Err(Refusal::Missing)
        );
        assert!(
            tokens
                .check(
                    Some("bearer static"),
                    &credentials,
                    Duration::from_secs(99_999)
                )
                .is_ok()
        );
    }
}
