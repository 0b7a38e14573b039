//! Client-side pacing under the API's documented quotas, so a long apply is not throttled.
//!
//! Exact sliding-window logs, not a token bucket: in any 60 s window at most the per-minute quota
//! of a method is sent, in any 3600 s window at most the hourly quota (shared by all methods),
//! and a queue of work runs exactly at the quota (the k-th call waits until the window frees).
//! A `429` sets a shared "paused until" instant that every task using the throttle honours.
//!
//! The server counts calls when they *arrive*, a little after we send them (network, load), so
//! each window is kept one second longer than the server's: a call is never counted inside the
//! server's window of the call `quota` places before it. That costs under 2% of the per-minute
//! rate and was measured to remove the self-inflicted `429`s (BENCHMARKS.md).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::clock::{Clock, TokioClock};

/// Slack for the delay between our send and the server's count of the call.
pub const ARRIVAL_MARGIN: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60 + ARRIVAL_MARGIN.as_secs());
const HOUR: Duration = Duration::from_secs(3600 + ARRIVAL_MARGIN.as_secs());

/// The kinds of call the API meters separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `GET /api/incidents`
    List,
    /// `GET /api/incidents/{id}`
    Get,
    /// `PATCH /api/incidents/{id}`
    Patch,
}

impl CallKind {
    pub const ALL: [CallKind; 3] = [CallKind::List, CallKind::Get, CallKind::Patch];

    fn index(self) -> usize {
        match self {
            CallKind::List => 0,
            CallKind::Get => 1,
            CallKind::Patch => 2,
        }
    }
}

/// Call quotas. A quota of 0 is treated as 1 (a throttle that never lets anything through
/// would hang); the command line should refuse 0 before it gets here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub list_per_minute: u32,
    pub get_per_minute: u32,
    pub patch_per_minute: u32,
    /// Shared by every call.
    pub per_hour: u32,
}

impl Default for Limits {
    /// The documented quotas of the Defender incidents API.
    fn default() -> Self {
        Limits::from_quota(50, 1500)
    }
}

impl Limits {
    /// `per_minute` is the quota of list and PATCH; GET by id keeps its documented ratio (2×).
    pub fn from_quota(per_minute: u32, per_hour: u32) -> Self {
        Limits {
            list_per_minute: per_minute,
            get_per_minute: per_minute.saturating_mul(2),
            patch_per_minute: per_minute,
            per_hour,
        }
    }

    /// The per-minute quota of one kind of call.
    pub fn per_minute(&self, kind: CallKind) -> u32 {
        match kind {
            CallKind::List => self.list_per_minute,
            CallKind::Get => self.get_per_minute,
            CallKind::Patch => self.patch_per_minute,
        }
    }
}

/// Paces calls; cheap to clone, clones share their windows and pause.
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Limits,
    clock: Arc<dyn Clock>,
    /// One FIFO queue per kind: waiters of a kind are served in arrival order, and a PATCH
    /// waiting for its per-minute slot does not hold back a GET that may go now.
    queues: [tokio::sync::Mutex<()>; 3],
    windows: Mutex<Windows>,
    /// Wakes waiters when a reservation gives its slot back (their wake-up times counted it).
    released: tokio::sync::Notify,
}

#[derive(Default)]
struct Windows {
    minute: [VecDeque<Instant>; 3],
    hour: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// Slots reserved and not sent yet, per kind; each counts in its kind's minute and in the
    /// hour as if sent now.
    reserved: [usize; 3],
}

/// A slot held by [`Throttle::try_reserve`].
#[must_use = "a reservation holds a slot until it is stamped or dropped"]
pub struct Reservation {
    throttle: Throttle,
    kind: CallKind,
    stamped: bool,
}

impl Reservation {
    /// The call leaves now: the slot counts from this instant.
    pub fn stamp(mut self) {
        let now = self.throttle.inner.clock.now();
        let mut windows = self.throttle.windows();
        windows.reserved[self.kind.index()] -= 1;
        windows.minute[self.kind.index()].push_back(now);
        windows.hour.push_back(now);
        self.stamped = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.stamped {
            self.throttle.windows().reserved[self.kind.index()] -= 1;
            self.throttle.inner.released.notify_waiters();
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// A throttle on tokio time.
    pub fn new(limits: Limits) -> Self {
        Throttle::with_clock(limits, Arc::new(TokioClock))
    }

    pub fn with_clock(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        Throttle {
            inner: Arc::new(Inner {
                limits,
                clock,
                queues: Default::default(),
                windows: Mutex::new(Windows::default()),
                released: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Waits until a call of `kind` may be sent, records it as sent, and returns how long this
    /// call waited (queueing included).
    pub async fn acquire(&self, kind: CallKind) -> Duration {
        let clock = &self.inner.clock;
        let start = clock.now();
        let _turn = self.inner.queues[kind.index()].lock().await;
        loop {
            let now = clock.now();
            let ready_at = self.windows().take_slot(kind, now, &self.inner.limits);
            match ready_at {
                None => return clock.now().saturating_duration_since(start),
                Some(at) => self.sleep_until(now, at).await,
            }
        }
    }

    /// Waits until a call of `kind` could be sent now, without taking the slot: a caller that
    /// must read something right before the call (apply's check for concurrent edits) reads
    /// it when the call can follow at once, not a minute before.
    pub async fn wait_for_room(&self, kind: CallKind) {
        let clock = &self.inner.clock;
        loop {
            let now = clock.now();
            let ready_at = self.windows().ready_at(kind, now, &self.inner.limits);
            match ready_at {
                None => return,
                Some(at) => self.sleep_until(now, at).await,
            }
        }
    }

    /// Reserves a slot for a call of `kind` if one may be sent now, without waiting. The slot
    /// counts as taken at once, and as sent when [`Reservation::stamp`] says the call leaves
    /// (a caller reads something between the two); dropped unstamped, it is given back.
    pub fn try_reserve(&self, kind: CallKind) -> Option<Reservation> {
        let now = self.inner.clock.now();
        let mut windows = self.windows();
        if windows.ready_at(kind, now, &self.inner.limits).is_some() {
            return None;
        }
        windows.reserved[kind.index()] += 1;
        Some(Reservation {
            throttle: self.clone(),
            kind,
            stamped: false,
        })
    }

    /// Waits while a pause (a `429`'s `Retry-After`) is in force; returns how long. A reserved
    /// call waits this out before it leaves.
    pub async fn wait_out_pause(&self) -> Duration {
        let clock = &self.inner.clock;
        let start = clock.now();
        while let Some(until) = self.paused_until() {
            let now = clock.now();
            clock.sleep(until.saturating_duration_since(now)).await;
        }
        clock.now().saturating_duration_since(start)
    }

    /// Sleeps until `at`, or until a reservation gives a slot back.
    async fn sleep_until(&self, now: Instant, at: Instant) {
        let released = self.inner.released.notified();
        tokio::select! {
            () = self.inner.clock.sleep(at.saturating_duration_since(now)) => {}
            () = released => {}
        }
    }

    /// Holds every call back until `until` (extends an existing pause, never shortens it).
    pub fn pause_until(&self, until: Instant) {
        let mut windows = self.windows();
        windows.paused_until = Some(windows.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Holds every call back for `duration` from now; returns the instant calls resume.
    pub fn pause_for(&self, duration: Duration) -> Instant {
        // Waits are clamped to a day well before this point; saturate rather than panic anyway.
        let now = self.inner.clock.now();
        let until = now
            .checked_add(duration)
            .unwrap_or_else(|| now + Duration::from_secs(86_400));
        self.pause_until(until);
        until
    }

    /// The instant calls resume, if a pause is still in force.
    pub fn paused_until(&self) -> Option<Instant> {
        let now = self.inner.clock.now();
        self.windows().paused_until.filter(|p| *p > now)
    }

    fn windows(&self) -> MutexGuard<'_, Windows> {
        // Windows hold plain data and are consistent between statements: a poisoned lock
        // (a panic elsewhere) does not make them wrong.
        self.inner
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Windows {
    /// Records a send at `now` and returns `None` if allowed, else the instant to retry at.
    fn take_slot(&mut self, kind: CallKind, now: Instant, limits: &Limits) -> Option<Instant> {
        let ready_at = self.ready_at(kind, now, limits);
        if ready_at.is_none() {
            self.minute[kind.index()].push_back(now);
            self.hour.push_back(now);
        }
        ready_at
    }

    /// `None` if a call of `kind` may be sent at `now`, else the instant to retry at.
    fn ready_at(&mut self, kind: CallKind, now: Instant, limits: &Limits) -> Option<Instant> {
        let minute = &mut self.minute[kind.index()];
        prune(minute, now, MINUTE);
        prune(&mut self.hour, now, HOUR);

        let reserved_here = self.reserved[kind.index()];
        let reserved_all: usize = self.reserved.iter().sum();
        let mut ready_at = now;
        if let Some(at) = frees_at(minute, reserved_here, limits.per_minute(kind), MINUTE, now) {
            ready_at = ready_at.max(at);
        }
        if let Some(at) = frees_at(&self.hour, reserved_all, limits.per_hour, HOUR, now) {
            ready_at = ready_at.max(at);
        }
        if let Some(paused) = self.paused_until {
            if paused > now {
                ready_at = ready_at.max(paused);
            } else {
                self.paused_until = None;
            }
        }
        (ready_at > now).then_some(ready_at)
    }
}

/// Drops sends that left the window `(now - window, now]`.
fn prune(log: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while log.front().is_some_and(|sent| *sent + window <= now) {
        log.pop_front();
    }
}

/// When the log plus `reserved` unsent calls (counted as sent at `now`, the earliest they can
/// be) is full, the instant enough of them leave the window for one more call.
fn frees_at(
    log: &VecDeque<Instant>,
    reserved: usize,
    quota: u32,
    window: Duration,
    now: Instant,
) -> Option<Instant> {
    let quota = quota.max(1) as usize;
    let counted = log.len() + reserved;
    if counted < quota {
        return None;
    }
    Some(log.get(counted - quota).copied().unwrap_or(now) + window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_keeps_twice_the_list_and_patch_quota() {
        let limits = Limits::from_quota(10, 300);
        assert_eq!(limits.per_minute(CallKind::List), 10);
        assert_eq!(limits.per_minute(CallKind::Patch), 10);
        assert_eq!(limits.per_minute(CallKind::Get), 20);
        assert_eq!(limits.per_hour, 300);
        assert_eq!(
            Limits::default(),
            Limits {
                list_per_minute: 50,
                get_per_minute: 100,
                patch_per_minute: 50,
                per_hour: 1500
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn call_after_the_quota_waits_exactly_until_the_window_frees() {
        let throttle = Throttle::new(Limits::from_quota(2, 100));
        let t0 = Instant::now();
        throttle.acquire(CallKind::Patch).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        throttle.acquire(CallKind::Patch).await;
        let waited = throttle.acquire(CallKind::Patch).await;
        assert_eq!(Instant::now() - t0, MINUTE);
        assert_eq!(waited, MINUTE - Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_quota_is_treated_as_one_instead_of_hanging() {
        let throttle = Throttle::new(Limits::from_quota(0, 0));
        let t0 = Instant::now();
        throttle.acquire(CallKind::List).await;
        throttle.acquire(CallKind::List).await;
        assert_eq!(Instant::now() - t0, HOUR);
    }
}
