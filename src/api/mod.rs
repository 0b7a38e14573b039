//! The Defender incidents API client: wire types, credentials, pacing, retries and errors.
//!
//! [`Client`] is the entry point: built from an [`ApiConfig`] (validated base URL, quotas,
//! retry policy, clock) and [`Credentials`] (resolved from the environment).
//!
//! Every deliberate wait goes through a [`Clock`] (see [`clock`] for why tests use a virtual
//! one against loopback servers instead of pausing tokio time); per-request timeouts stay on
//! real tokio time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), incidentops::api::ApiError> {
//! use incidentops::api::{ApiConfig, Client, Credentials, Limits};
//!
//! let config = ApiConfig::new("https://api.security.microsoft.com")?
//!     .with_limits(Limits::from_quota(50, 1500));
//! let client = Client::new(config, Credentials::from_env()?)?;
//! let active = client.list(Some("status eq 'Active'")).await?;
//! eprintln!("{} incidents; {}", active.len(), client.stats());
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod retry;
pub mod throttle;
pub mod wire;

pub use auth::{Credentials, Secret};
pub use client::{CallStats, Client, PatchSlot, USER_AGENT};
pub use clock::{Clock, TokioClock, VirtualClock};
pub use config::{ApiConfig, DEFAULT_API_URL};
pub use error::{ApiError, AuthError, TransportKind};
pub use retry::RetryPolicy;
pub use throttle::{CallKind, Limits, Throttle};
