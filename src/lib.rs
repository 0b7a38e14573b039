//! incidentops: manage Microsoft Defender XDR incidents as code.
//!
//! The pipeline, in order: load desired state (files or a git revision) → validate (schema and
//! the determination rule) → fetch current state → diff → plan → apply.

pub mod api;
pub mod apply;
pub mod cli;
pub mod engine;
pub mod fetch;
pub mod import;
pub mod model;
pub mod plan;
pub mod render;
pub mod sandbox;
pub mod source;
pub mod validate;
