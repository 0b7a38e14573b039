//! The Defender incidents API client: wire types, credentials, pacing, retries and errors.

pub mod wire;
