//! The emulator's notion of time. Throttling windows, token expiry and `lastUpdateTime` all read
//! this clock, so tests can use a manual clock and move time forward without sleeping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A shared clock: the system clock, or a manual one that only moves when told to.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

#[derive(Debug)]
enum ClockInner {
    System {
        start: Instant,
    },
    Manual {
        start_utc: DateTime<Utc>,
        offset: Mutex<Duration>,
    },
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// Real time.
    pub fn system() -> Self {
        Clock {
            inner: Arc::new(ClockInner::System {
                start: Instant::now(),
            }),
        }
    }

    /// A clock frozen at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock {
            inner: Arc::new(ClockInner::Manual {
                start_utc: start,
                offset: Mutex::new(Duration::ZERO),
            }),
        }
    }

    /// Monotonic time since the clock was created.
    pub fn elapsed(&self) -> Duration {
        match &*self.inner {
            ClockInner::System { start } => start.elapsed(),
            ClockInner::Manual { offset, .. } => {
                *offset.lock().unwrap_or_else(PoisonError::into_inner)
            }
        }
    }

    /// Wall-clock time, used for timestamps written into incidents and the request log.
    pub fn now_utc(&self) -> DateTime<Utc> {
        match &*self.inner {
            ClockInner::System { .. } => Utc::now(),
            ClockInner::Manual { start_utc, offset } => {
                let offset = *offset.lock().unwrap_or_else(PoisonError::into_inner);
                chrono::Duration::from_std(offset)
                    .ok()
                    .and_then(|d| start_utc.checked_add_signed(d))
                    .unwrap_or(*start_utc)
            }
        }
    }

    /// Moves a manual clock forward; returns false (and does nothing) on the system clock.
    pub fn advance(&self, by: Duration) -> bool {
        match &*self.inner {
            ClockInner::System { .. } => false,
            ClockInner::Manual { offset, .. } => {
                let mut offset = offset.lock().unwrap_or_else(PoisonError::into_inner);
                *offset = offset.saturating_add(by);
                true
            }
        }
    }

    /// True for a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(&*self.inner, ClockInner::Manual { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        assert_eq!(clock.elapsed(), Duration::ZERO);
        assert_eq!(clock.now_utc(), start);
        assert!(clock.advance(Duration::from_secs(90)));
        assert_eq!(clock.elapsed(), Duration::from_secs(90));
        assert_eq!(clock.now_utc().to_rfc3339(), "2024-01-01T00:01:30+00:00");
    }

    #[test]
    fn system_clock_cannot_be_advanced() {
        assert!(!Clock::system().advance(Duration::from_secs(1)));
    }
}
