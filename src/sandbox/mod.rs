//! The local emulator of the Defender incidents API (axum).
//!
//! It serves list, get and patch with the documented behaviour (OData paging and filters, the
//! PATCH rules, per-method throttling) plus an Entra-like token endpoint, and can inject faults,
//! so it is both the test double of the test suite and a tenant-free playground.

pub mod auth;
pub mod clock;
pub mod config;
pub mod log;
pub mod odata;
pub mod rng;
pub mod seed;
pub mod server;
pub mod state;
pub mod throttle;

pub use clock::Clock;
pub use config::{
    ClientApp, Credentials, EmulatorConfig, Faults, Latency, Limits, SandboxError, Secret,
};
pub use log::{Fault, LogEntry};
pub use seed::{
    BENCHMARK_COMMENT, DesiredFile, FIRST_GENERATED_ID, documented_incidents,
    generate_desired_files, generate_incidents,
};
pub use server::Emulator;
pub use state::{load_incidents, save_incidents};
