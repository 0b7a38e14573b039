//! The local emulator of the Defender incidents API (axum).
