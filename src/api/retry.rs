//! When and how long to wait before trying a call again.
//!
//! The classification is explicit: a `429` is retried after the wait the API asks for
//! (`Retry-After`, else a time or a number of seconds in the body, else capped exponential
//! backoff with jitter); a `401` gets one token refresh; connect failures are retried for every
//! method (the request never reached the server); `5xx`, timeouts and interrupted connections are
//! retried for reads, but for a PATCH they are ambiguous (it may have landed), so the client
//! re-reads the incident and resends only what is missing. Other `4xx` are final.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::error::TransportKind;
use super::throttle::CallKind;
use super::wire::{ErrorBody, Incident, IncidentUpdate};

/// The longest wait a throttling hint is taken at (a day); longer hints are clamped.
pub const MAX_HINT: Duration = Duration::from_secs(86_400);

/// Bounds on retrying one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call when failures are transient (5xx, transport), the first included.
    pub max_attempts: u32,
    /// `429` answers tolerated per call before giving up.
    pub max_throttled: u32,
    /// Total waiting (throttling and backoff) one call may accumulate before giving up.
    pub max_wait: Duration,
    /// First backoff step; doubles per attempt up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Seed of the backoff jitter; `None` seeds from the wall clock.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_throttled: 10,
            max_wait: Duration::from_secs(3600),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            jitter_seed: None,
        }
    }
}

/// What went wrong with one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The API answered with this (non-2xx) status.
    Status(u16),
    /// The request failed below HTTP.
    Transport(TransportKind),
    /// No answer within the per-request time limit.
    Timeout,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Final: report the error.
    Fail,
    /// Get a new token and retry once.
    RefreshToken,
    /// Throttled: wait as the API asks (every task sharing the client waits too), then retry.
    RetryThrottled,
    /// Transient: wait a backoff step, then retry.
    RetryWithBackoff,
    /// A PATCH that may have landed: re-read the incident, resend only what is missing.
    RereadThenResend,
}

/// The retry classification, one place for every method.
pub fn classify(kind: CallKind, failure: Failure) -> Decision {
    let idempotent = kind != CallKind::Patch;
    match failure {
        Failure::Status(429) => Decision::RetryThrottled,
        Failure::Status(401) => Decision::RefreshToken,
        Failure::Status(500..=599)
        | Failure::Timeout
        | Failure::Transport(TransportKind::Interrupted) => {
            if idempotent {
                Decision::RetryWithBackoff
            } else {
                Decision::RereadThenResend
            }
        }
        Failure::Transport(TransportKind::Connect) => Decision::RetryWithBackoff,
        Failure::Status(_) => Decision::Fail,
    }
}

/// Capped exponential backoff with "equal jitter" (half fixed, half random), deterministic for
/// a given seed.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    state: u64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            base,
            cap,
            state: seed,
        }
    }

    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let half = step / 2;
        let fraction = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        half + half.mul_f64(fraction)
    }

    /// splitmix64: tiny, good enough for jitter, and no dependency.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The wait a throttled answer asks for: `Retry-After` (seconds or HTTP date), else a time or
/// a number of seconds in the body. `None` when the answer gives no hint.
pub fn throttle_hint(headers: &HeaderMap, body: &[u8], now: SystemTime) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
        .or_else(|| {
            let text = String::from_utf8_lossy(body);
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| text.into_owned());
            parse_body_hint(&message, now)
        })
}

/// A `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_HINT));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_HINT),
    )
}

/// A time ("... after 2026-12-04T10:00:00Z") or a number of seconds or minutes ("Try again in
/// 12 seconds") found in a throttling message.
pub fn parse_body_hint(message: &str, now: SystemTime) -> Option<Duration> {
    let words: Vec<&str> = message
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| matches!(c, ',' | ';' | '(' | ')' | '"' | '\'')))
        .collect();
    for word in &words {
        if let Some(at) = parse_timestamp(word.trim_end_matches('.')) {
            let at = SystemTime::from(at);
            return Some(
                at.duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_HINT),
            );
        }
    }
    for pair in words.windows(2) {
        let Ok(amount) = pair[0].parse::<f64>() else {
            continue;
        };
        if !amount.is_finite() || amount < 0.0 {
            continue;
        }
        let unit = pair[1].trim_end_matches('.').to_ascii_lowercase();
        let seconds = match unit.as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => amount,
            "min" | "mins" | "minute" | "minutes" => amount * 60.0,
            _ => continue,
        };
        return Duration::try_from_secs_f64(seconds.min(MAX_HINT.as_secs_f64())).ok();
    }
    None
}

fn parse_timestamp(word: &str) -> Option<DateTime<Utc>> {
    if !word.contains('T') && !word.contains(':') {
        return None;
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(word) {
        return Some(at.with_timezone(&Utc));
    }
    // Without an offset, Microsoft services mean UTC.
    NaiveDateTime::parse_from_str(word, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// The part of `update` that `current` does not show yet: fields already equal are dropped
/// (tags compared as a set; a comment counts as present when an existing comment has the same
/// text, ignoring surrounding whitespace, so it is never added twice).
pub fn unapplied_fields(update: &IncidentUpdate, current: &Incident) -> IncidentUpdate {
    let same =
        |want: Option<&str>, have: &Option<String>| want.is_some() && want == have.as_deref();
    let mut rest = update.clone();
    if same(update.status.map(|s| s.as_str()), &current.status) {
        rest.status = None;
    }
    if same(update.assigned_to.as_deref(), &current.assigned_to) {
        rest.assigned_to = None;
    }
    if same(
        update.classification.map(|c| c.as_str()),
        &current.classification,
    ) {
        rest.classification = None;
    }
    if same(
        update.determination.map(|d| d.as_str()),
        &current.determination,
    ) {
        rest.determination = None;
    }
    if let Some(tags) = &update.tags {
        let want: HashSet<&str> = tags.iter().map(String::as_str).collect();
        let have: HashSet<&str> = current.tags.iter().map(String::as_str).collect();
        if want == have {
            rest.tags = None;
        }
    }
    if let Some(comment) = &update.comment {
        if current
            .comments
            .iter()
            .any(|c| c.comment.trim() == comment.trim())
        {
            rest.comment = None;
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::Comment;
    use crate::model::{Classification, Determination, Status};

    fn at(rfc3339: &str) -> SystemTime {
        SystemTime::from(DateTime::parse_from_rfc3339(rfc3339).unwrap())
    }

    #[test]
    fn throttling_and_unauthorized_are_retried_for_every_method() {
        for kind in CallKind::ALL {
            assert_eq!(
                classify(kind, Failure::Status(429)),
                Decision::RetryThrottled
            );
            assert_eq!(classify(kind, Failure::Status(401)), Decision::RefreshToken);
            assert_eq!(
                classify(kind, Failure::Transport(TransportKind::Connect)),
                Decision::RetryWithBackoff
            );
        }
    }

    #[test]
    fn server_errors_and_timeouts_are_retried_for_reads_but_reread_for_patch() {
        for failure in [
            Failure::Status(500),
            Failure::Status(503),
            Failure::Timeout,
            Failure::Transport(TransportKind::Interrupted),
        ] {
            assert_eq!(classify(CallKind::Get, failure), Decision::RetryWithBackoff);
            assert_eq!(
                classify(CallKind::List, failure),
                Decision::RetryWithBackoff
            );
            assert_eq!(
                classify(CallKind::Patch, failure),
                Decision::RereadThenResend
            );
        }
    }

    #[test]
    fn other_client_errors_are_never_retried() {
        for status in [400, 403, 404, 405, 408, 409, 412, 422] {
            for kind in CallKind::ALL {
                assert_eq!(classify(kind, Failure::Status(status)), Decision::Fail);
            }
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8), 42);
        for (attempt, step) in [(0, 1), (1, 2), (2, 4), (3, 8), (4, 8), (40, 8)] {
            let delay = backoff.delay(attempt);
            let step = Duration::from_secs(step);
            assert!(delay >= step / 2 && delay <= step, "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn backoff_is_deterministic_for_a_seed() {
        let run = |seed| {
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), seed);
            (0..5).map(|a| backoff.delay(a)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = at("2026-12-04T10:00:00Z");
        assert_eq!(parse_retry_after("12", now), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(MAX_HINT)
        );
    }

    #[test]
    fn body_hints_give_seconds_minutes_or_a_time() {
        let now = at("2026-12-04T10:00:00Z");
        let cases = [
            (
                "Rate limit is exceeded. Try again in 12 seconds.",
                Some(12_000),
            ),
            ("Try again in 1.5 s", Some(1_500)),
            ("Try again in 2 minutes.", Some(120_000)),
            (
                "You can make new calls after 2026-12-04T10:00:45Z.",
                Some(45_000),
            ),
            ("Retry after 2026-12-04T10:01:00.500+00:00", Some(60_500)),
            ("Quota resets at 2026-12-04T10:00:07", Some(7_000)),
            ("Too many requests", None),
            ("Error 42 occurred", None),
        ];
        for (message, want) in cases {
            assert_eq!(
                parse_body_hint(message, now),
                want.map(Duration::from_millis),
                "{message}"
            );
        }
    }

    #[test]
    fn retry_after_header_wins_over_the_body() {
        let now = at("2026-12-04T10:00:00Z");
        let mut headers = HeaderMap::new();
        let body = br#"{"error":{"code":"TooManyRequests","message":"Try again in 40 seconds"}}"#;
        assert_eq!(
            throttle_hint(&headers, body, now),
            Some(Duration::from_secs(40))
        );
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(
            throttle_hint(&headers, body, now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(throttle_hint(&HeaderMap::new(), b"", now), None);
    }

    fn incident() -> Incident {
        serde_json::from_value(serde_json::json!({
            "incidentId": 7,
            "status": "Resolved",
            "assignedTo": "a@contoso.com",
            "classification": "TruePositive",
            "determination": "Malware",
            "tags": ["b", "a"],
            "comments": [{"comment": "done"}]
        }))
        .unwrap()
    }

    #[test]
    fn fields_the_incident_already_shows_are_dropped() {
        let update = IncidentUpdate {
            status: Some(Status::Resolved),
            assigned_to: Some("a@contoso.com".into()),
            classification: Some(Classification::TruePositive),
            determination: Some(Determination::Malware),
            tags: Some(vec!["a".into(), "b".into(), "a".into()]),
            comment: Some("done".into()),
        };
        assert!(unapplied_fields(&update, &incident()).is_empty());
    }

    #[test]
    fn fields_that_differ_remain() {
        let update = IncidentUpdate {
            status: Some(Status::Active),
            tags: Some(vec!["a".into()]),
            comment: Some("new note".into()),
            ..Default::default()
        };
        assert_eq!(unapplied_fields(&update, &incident()), update);
        let mut current = incident();
        current.comments.push(Comment {
            comment: " new note ".into(),
            created_by: None,
            created_time: None,
        });
        assert_eq!(unapplied_fields(&update, &current).comment, None);
    }
}
