//! Time as the client sees it: every deliberate wait (throttle slots, 429 pauses, backoff) goes
//! through a [`Clock`], so tests can make those waits instant and exact.
//!
//! Production uses [`TokioClock`] (tokio time, so `tokio::time::pause()` works in tests that
//! touch no socket, like the throttle tests). Tests that talk to a real loopback server use
//! [`VirtualClock`] instead: a paused tokio clock auto-advances whenever the runtime is idle,
//! including while it waits on a socket, which would fire HTTP timeouts early. The virtual clock
//! leaves tokio time real (per-request timeouts are reqwest's, on tokio time) and turns every
//! requested sleep into an immediate jump of its own "now", recording the duration.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A boxed future, as returned by [`Clock::sleep`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of monotonic time, wall-clock time and sleeps.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic now, for pacing.
    fn now(&self) -> Instant;
    /// Wall-clock now, to turn an HTTP date or an ISO-8601 time into a wait.
    fn system_now(&self) -> SystemTime;
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> Sleep<'_>;
}

/// Real time through tokio (honours `tokio::time::pause()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn system_now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock whose sleeps return at once after moving its own time forward; it records every
/// sleep. Meant for sequential tests against a loopback server: concurrent sleepers each
/// advance the clock, so it does not model overlapping waits.
#[derive(Debug)]
pub struct VirtualClock {
    start: Instant,
    wall_start: SystemTime,
    state: Mutex<VirtualState>,
}

#[derive(Debug, Default)]
struct VirtualState {
    elapsed: Duration,
    sleeps: Vec<Duration>,
}

impl VirtualClock {
    /// A virtual clock whose wall-clock time starts at `wall_start`.
    pub fn new(wall_start: SystemTime) -> Self {
        VirtualClock {
            start: Instant::now(),
            wall_start,
            state: Mutex::new(VirtualState::default()),
        }
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    /// Virtual time elapsed since creation (the sum of all sleeps plus manual advances).
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed
    }

    /// Moves time forward without recording a sleep.
    pub fn advance(&self, by: Duration) {
        self.lock().elapsed += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VirtualState> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.start + self.lock().elapsed
    }

    fn system_now(&self) -> SystemTime {
        self.wall_start + self.lock().elapsed
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        let mut state = self.lock();
        state.elapsed += duration;
        state.sleeps.push(duration);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_clock_sleeps_advance_time_and_are_recorded() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = VirtualClock::new(wall);
        let t0 = clock.now();
        clock.sleep(Duration::from_secs(3)).await;
        clock.sleep(Duration::from_millis(500)).await;
        assert_eq!(clock.now() - t0, Duration::from_millis(3_500));
        assert_eq!(clock.system_now(), wall + Duration::from_millis(3_500));
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_secs(3), Duration::from_millis(500)]
        );
    }
}
