//! The request log: one JSON line per request, in memory (for tests) and optionally appended to
//! a file. It holds what a tester needs to explain a run (which fault was injected, whether the
//! change was applied, the PATCH body) and never a bearer token, client secret or assertion.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::config::SandboxError;

/// A fault the emulator injected into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// An injected `429` (not a real quota hit).
    #[serde(rename = "429")]
    Throttled,
    /// `500` before anything was changed.
    #[serde(rename = "500")]
    ServerError,
    /// `500` after a PATCH was applied: the ambiguous failure.
    #[serde(rename = "500-after-apply")]
    ServerErrorAfterApply,
    /// Connection closed without an answer, before anything was changed.
    #[serde(rename = "drop")]
    Dropped,
    /// Connection closed without an answer after a PATCH was applied.
    #[serde(rename = "drop-after-apply")]
    DroppedAfterApply,
}

/// One request as the emulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// When the request arrived (emulator clock), ISO 8601.
    pub time: String,
    pub method: String,
    /// Path and query (the token endpoint's path only).
    pub path: String,
    /// `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Injected latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// True when a PATCH changed the incident (even if the answer was then a fault).
    pub applied: bool,
    /// The authenticated principal (API calls) or the requesting client id (token endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The PATCH body (JSON if it parsed, else the raw text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

impl LogEntry {
    pub(crate) fn new(time: String, method: &str, path: String) -> Self {
        LogEntry {
            time,
            method: method.to_string(),
            path,
            status: None,
            incident_id: None,
            fault: None,
            latency_ms: None,
            applied: false,
            client: None,
            body: None,
        }
    }
}

/// Where log entries go.
#[derive(Debug)]
pub(crate) struct RequestLog {
    memory: Mutex<Vec<LogEntry>>,
    file: Option<Mutex<File>>,
    /// The number of entries, so a test can wait for a request instead of polling.
    recorded: tokio::sync::watch::Sender<usize>,
}

impl RequestLog {
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, SandboxError> {
        let file = match path {
            Some(path) => Some(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| SandboxError::Write {
                        path: path.to_path_buf(),
                        source,
                    })?,
            )),
            None => None,
        };
        Ok(RequestLog {
            memory: Mutex::new(Vec::new()),
            file,
            recorded: tokio::sync::watch::Sender::new(0),
        })
    }

    pub(crate) fn record(&self, entry: LogEntry) {
        if let Some(file) = &self.file {
            match serde_json::to_string(&entry) {
                Ok(mut line) => {
                    line.push('\n');
                    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Err(error) = file.write_all(line.as_bytes()) {
                        tracing::warn!(%error, "cannot append to the sandbox request log");
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot serialize a request log entry"),
            }
        }
        let count = {
            let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
            memory.push(entry);
            memory.len()
        };
        self.recorded.send_replace(count);
    }

    /// Waits until `done` holds for the entries so far, and returns them.
    pub(crate) async fn wait_for(&self, done: impl Fn(&[LogEntry]) -> bool) -> Vec<LogEntry> {
        let mut recorded = self.recorded.subscribe();
        loop {
            let entries = self.entries();
            if done(&entries) {
                return entries;
            }
            // The sender lives as long as `self`: `changed` cannot fail while we borrow it.
            let _ = recorded.changed().await;
        }
    }

    pub(crate) fn entries(&self) -> Vec<LogEntry> {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
