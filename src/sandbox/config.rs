//! What an emulator run is made of: its data, quotas, faults, credentials and files. Every
//! knob is a plain value so that the CLI can build a config straight from its flags.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::clock::Clock;
use super::seed;
use super::state;

/// Everything that can go wrong starting, feeding or stopping the emulator.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid JSON: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid incident data: {0}")]
    Data(String),
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the emulator's server task failed: {0}")]
    Server(String),
}

pub use crate::api::Secret;

/// An application registration the token endpoint knows.
#[derive(Debug, Clone)]
pub struct ClientApp {
    pub client_id: String,
    /// `None`: the app has no secret and can only use a federated assertion.
    pub client_secret: Option<Secret>,
    /// Accept any non-empty `client_assertion` (workload identity federation) for this app.
    pub allow_assertion: bool,
}

/// Who may get a token, and which ready-made bearer token is accepted.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// When set, other tenants in the token URL are rejected like Entra does.
    pub tenant: Option<String>,
    pub clients: Vec<ClientApp>,
    /// A bearer token accepted as is (for `INCIDENTOPS_TOKEN`), never expiring.
    pub static_token: Option<Secret>,
    /// `createdBy` of comments added with the static token.
    pub static_token_principal: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            tenant: None,
            clients: Vec::new(),
            static_token: None,
            static_token_principal: "API-App:incidentops-sandbox".into(),
        }
    }
}

impl Credentials {
    /// Adds an app that authenticates with a client secret (and may also use an assertion).
    pub fn with_client_secret(
        mut self,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.clients.push(ClientApp {
            client_id: client_id.into(),
            client_secret: Some(Secret::new(secret)),
            allow_assertion: true,
        });
        self
    }

    /// Adds an app that authenticates only with a federated assertion.
    pub fn with_federated_client(mut self, client_id: impl Into<String>) -> Self {
        self.clients.push(ClientApp {
            client_id: client_id.into(),
            client_secret: None,
            allow_assertion: true,
        });
        self
    }

    /// Accepts `token` as a bearer token without going through the token endpoint.
    pub fn with_static_token(mut self, token: impl Into<String>) -> Self {
        self.static_token = Some(Secret::new(token));
        self
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&ClientApp> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

/// Quotas, counted in sliding windows of accepted calls. A quota of 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub list_per_minute: u32,
    pub get_per_minute: u32,
    pub patch_per_minute: u32,
    /// Shared by every API call.
    pub per_hour: u32,
    /// Divides the window lengths: 60 makes the minute window 1 s and the hour window 60 s.
    pub window_scale: u32,
    /// Largest `$top` and the default page size.
    pub max_page_size: usize,
}

impl Default for Limits {
    /// Microsoft's documented quotas.
    fn default() -> Self {
        Limits {
            list_per_minute: 50,
            get_per_minute: 100,
            patch_per_minute: 50,
            per_hour: 1500,
            window_scale: 1,
            max_page_size: 100,
        }
    }
}

impl Limits {
    /// The client-side convention of SPEC §3: `n` list and PATCH calls a minute, twice that for
    /// GET by id, and `per_hour` calls an hour in all.
    pub fn per_minute(n: u32, per_hour: u32) -> Self {
        Limits {
            list_per_minute: n,
            get_per_minute: n.saturating_mul(2),
            patch_per_minute: n,
            per_hour,
            ..Limits::default()
        }
    }

    /// No throttling at all (page size stays 100).
    pub fn unlimited() -> Self {
        Limits {
            list_per_minute: 0,
            get_per_minute: 0,
            patch_per_minute: 0,
            per_hour: 0,
            ..Limits::default()
        }
    }

    pub(crate) fn minute_window(&self) -> Duration {
        Duration::from_secs(60) / self.window_scale.max(1)
    }

    pub(crate) fn hour_window(&self) -> Duration {
        Duration::from_secs(3600) / self.window_scale.max(1)
    }
}

/// Added response time: none, fixed, or uniform in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    #[default]
    None,
    Fixed(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
}

impl Latency {
    /// Parses `"0"`, `"50ms"`, `"2s"`, `"1.5s"`, `"0..200ms"`, `"10ms..1s"`. A bare number is
    /// milliseconds; a range's unit may be given once, at its end.
    pub fn parse(text: &str) -> Result<Latency, SandboxError> {
        let bad = || {
            SandboxError::Config(format!(
                "invalid latency '{text}': expected e.g. 50ms, 2s or 0..200ms"
            ))
        };
        let text = text.trim();
        if let Some((low, high)) = text.split_once("..") {
            let high_unit = unit_of(high.trim());
            let min = parse_duration(low.trim(), high_unit).ok_or_else(bad)?;
            let max = parse_duration(high.trim(), "ms").ok_or_else(bad)?;
            if min > max {
                return Err(bad());
            }
            return Ok(if min == max {
                Latency::Fixed(min)
            } else {
                Latency::Uniform { min, max }
            });
        }
        let fixed = parse_duration(text, "ms").ok_or_else(bad)?;
        Ok(if fixed.is_zero() {
            Latency::None
        } else {
            Latency::Fixed(fixed)
        })
    }

    /// The delay for one request, given a uniform draw in `[0, 1)`.
    pub(crate) fn pick(&self, draw: f64) -> Option<Duration> {
        match *self {
            Latency::None => None,
            Latency::Fixed(d) => Some(d),
            Latency::Uniform { min, max } => Some(min + (max - min).mul_f64(draw.clamp(0.0, 1.0))),
        }
    }
}

impl FromStr for Latency {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Latency::parse(s)
    }
}

fn unit_of(text: &str) -> &'static str {
    if text.ends_with("ms") {
        "ms"
    } else if text.ends_with('s') {
        "s"
    } else {
        "ms"
    }
}

fn parse_duration(text: &str, default_unit: &str) -> Option<Duration> {
    let (number, unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, "ms")
    } else if let Some(n) = text.strip_suffix('s') {
        (n, "s")
    } else {
        (text, default_unit)
    };
    let value: f64 = number.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let secs = if unit == "ms" { value / 1000.0 } else { value };
    Duration::try_from_secs_f64(secs).ok()
}

/// Injected failures. Rates are fractions of API requests in `[0, 1]`; their sum must be ≤ 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    pub latency: Latency,
    /// Share answered `429 TooManyRequests` (not counted against the quotas).
    pub fail_429: f64,
    /// `Retry-After` seconds sent with an injected 429.
    pub retry_after_secs: u64,
    /// Share answered `500 InternalServerError`.
    pub fail_500: f64,
    /// Share whose connection is closed without any HTTP answer.
    pub drop: f64,
    /// For PATCH: the share of injected 500s and drops that happen after the change was applied.
    pub after_apply: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Latency::None,
            fail_429: 0.0,
            retry_after_secs: 1,
            fail_500: 0.0,
            drop: 0.0,
            after_apply: 0.0,
        }
    }
}

impl Faults {
    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        let rates = [
            ("fail_429", self.fail_429),
            ("fail_500", self.fail_500),
            ("drop", self.drop),
            ("after_apply", self.after_apply),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(SandboxError::Config(format!(
                    "{name} must be between 0 and 1, got {rate}"
                )));
            }
        }
        if self.fail_429 + self.fail_500 + self.drop > 1.0 + 1e-9 {
            return Err(SandboxError::Config(
                "fail_429 + fail_500 + drop must not exceed 1".into(),
            ));
        }
        Ok(())
    }
}

/// One emulator run.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The incidents, each kept whole (fields the client does not model, like `alerts`, too).
    pub incidents: Vec<serde_json::Value>,
    pub limits: Limits,
    pub faults: Faults,
    pub credentials: Credentials,
    /// `expires_in` of issued tokens.
    pub token_lifetime: Duration,
    /// Append one JSON line per request to this file.
    pub request_log: Option<PathBuf>,
    /// Save the state here (atomically) on shutdown.
    pub persist_to: Option<PathBuf>,
    /// Seeds fault injection, so a run with the same requests fails the same way.
    pub seed: u64,
    pub clock: Clock,
}

impl Default for EmulatorConfig {
    /// Microsoft's three documented incidents, documented quotas, no faults, no credentials.
    fn default() -> Self {
        EmulatorConfig::new(seed::documented_incidents())
    }
}

impl EmulatorConfig {
    pub fn new(incidents: Vec<serde_json::Value>) -> Self {
        EmulatorConfig {
            incidents,
            limits: Limits::default(),
            faults: Faults::default(),
            credentials: Credentials::default(),
            token_lifetime: Duration::from_secs(3599),
            request_log: None,
            persist_to: None,
            seed: 0,
            clock: Clock::system(),
        }
    }

    /// Incidents from a file shaped like `incidents-list.json` (`{"value": [...]}`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SandboxError> {
        Ok(EmulatorConfig::new(state::load_incidents(path.as_ref())?))
    }

    /// A persistent sandbox (the CLI's `--sandbox`): the state in `path` if it exists, else the
    /// documented incidents plus `n` generated ones, written there first. Saved back to `path`
    /// on shutdown.
    pub fn load_or_seed(path: impl AsRef<Path>, n: usize, seed: u64) -> Result<Self, SandboxError> {
        let path = path.as_ref();
        let mut config = if path.exists() {
            EmulatorConfig::from_file(path)?
        } else {
            let config = EmulatorConfig::seeded(n, seed);
            state::save_incidents(path, &config.incidents)?;
            config
        };
        config.seed = seed;
        config.persist_to = Some(path.to_path_buf());
        Ok(config)
    }

    /// The documented incidents followed by `n` generated ones.
    pub fn seeded(n: usize, seed: u64) -> Self {
        let mut config = EmulatorConfig::new(seed::generate_incidents(n, seed));
        config.seed = seed;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_parses_fixed_values_and_ranges() {
        assert_eq!(Latency::parse("0").unwrap(), Latency::None);
        assert_eq!(
            Latency::parse("50ms").unwrap(),
            Latency::Fixed(Duration::from_millis(50))
        );
        assert_eq!(
            Latency::parse("2s").unwrap(),
            Latency::Fixed(Duration::from_secs(2))
        );
        assert_eq!(
            Latency::parse("75").unwrap(),
            Latency::Fixed(Duration::from_millis(75))
        );
        assert_eq!(
            Latency::parse("0..200ms").unwrap(),
            Latency::Uniform {
                min: Duration::ZERO,
                max: Duration::from_millis(200)
            }
        );
        assert_eq!(
            Latency::parse("10ms..1s").unwrap(),
            Latency::Uniform {
                min: Duration::from_millis(10),
                max: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn latency_rejects_garbage_and_reversed_ranges() {
        for bad in ["", "fast", "-5ms", "200..100ms", "1..2..3", "NaNs"] {
            assert!(Latency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fault_rates_must_be_fractions_that_fit_in_one() {
        let ok = Faults {
            fail_429: 0.5,
            fail_500: 0.5,
            ..Faults::default()
        };
        assert!(ok.validate().is_ok());
        let too_much = Faults { drop: 0.6, ..ok };
        assert!(too_much.validate().is_err());
        let negative = Faults {
            fail_500: -0.1,
            ..Faults::default()
        };
        assert!(negative.validate().is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let credentials = Credentials::default()
            .with_client_secret("app", "hunter2-secret")
            .with_static_token("static-token-value");
        let text = format!("{credentials:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(!text.contains("static-token-value"), "{text}");
        assert!(text.contains("app"));
    }
}
