//! Per-method per-minute quotas and a shared per-hour quota, counted in sliding windows of the
//! calls that were accepted (a throttled call does not use up quota).

use std::collections::VecDeque;
use std::time::Duration;

use super::config::Limits;

/// The three API calls, each with its own per-minute quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMethod {
    List,
    Get,
    Patch,
}

#[derive(Debug, Default)]
struct Window {
    accepted: VecDeque<Duration>,
}

impl Window {
    /// How long until a slot frees, or `None` when one is free now.
    fn wait(&mut self, quota: u32, length: Duration, now: Duration) -> Option<Duration> {
        while self
            .accepted
            .front()
            .is_some_and(|&t| t.saturating_add(length) <= now)
        {
            self.accepted.pop_front();
        }
        if quota == 0 || self.accepted.len() < quota as usize {
            return None;
        }
        // The oldest accepted call that must leave the window for the count to drop below quota.
        let excess = self.accepted.len() - quota as usize;
        let leaving = self.accepted.get(excess).copied().unwrap_or(now);
        Some(leaving.saturating_add(length).saturating_sub(now))
    }

    fn record(&mut self, quota: u32, now: Duration) {
        if quota != 0 {
            self.accepted.push_back(now);
        }
    }
}

/// The quota book-keeping of one emulator.
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    list: Window,
    get: Window,
    patch: Window,
    hour: Window,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Throttle {
            limits,
            list: Window::default(),
            get: Window::default(),
            patch: Window::default(),
            hour: Window::default(),
        }
    }

    /// Accepts the call (and counts it) or says how long until it would be accepted.
    pub fn admit(&mut self, method: ApiMethod, now: Duration) -> Result<(), Duration> {
        let limits = self.limits;
        let (window, quota) = match method {
            ApiMethod::List => (&mut self.list, limits.list_per_minute),
            ApiMethod::Get => (&mut self.get, limits.get_per_minute),
            ApiMethod::Patch => (&mut self.patch, limits.patch_per_minute),
        };
        let minute_wait = window.wait(quota, limits.minute_window(), now);
        let hour_wait = self.hour.wait(limits.per_hour, limits.hour_window(), now);
        match minute_wait.max(hour_wait) {
            Some(wait) => Err(wait),
            None => {
                window.record(quota, now);
                self.hour.record(limits.per_hour, now);
                Ok(())
            }
        }
    }
}

/// Whole seconds for `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, per_hour: u32) -> Limits {
        Limits {
            list_per_minute: per_minute,
            get_per_minute: per_minute * 2,
            patch_per_minute: per_minute,
            per_hour,
            ..Limits::default()
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn minute_quota_slides_with_the_oldest_accepted_call() {
        let mut throttle = Throttle::new(limits(2, 0));
        assert!(throttle.admit(ApiMethod::Patch, S(0)).is_ok());
        assert!(throttle.admit(ApiMethod::Patch, S(10)).is_ok());
        assert_eq!(throttle.admit(ApiMethod::Patch, S(20)), Err(S(40)));
        // The refused call was not counted: at 60 s the first call left the window.
        assert!(throttle.admit(ApiMethod::Patch, S(60)).is_ok());
        assert_eq!(throttle.admit(ApiMethod::Patch, S(61)), Err(S(9)));
    }

    #[test]
    fn each_method_has_its_own_minute_quota() {
        let mut throttle = Throttle::new(limits(1, 0));
        assert!(throttle.admit(ApiMethod::List, S(0)).is_ok());
        assert!(throttle.admit(ApiMethod::List, S(0)).is_err());
        assert!(throttle.admit(ApiMethod::Patch, S(0)).is_ok());
        assert!(throttle.admit(ApiMethod::Get, S(0)).is_ok());
        assert!(throttle.admit(ApiMethod::Get, S(0)).is_ok());
        assert!(throttle.admit(ApiMethod::Get, S(0)).is_err());
    }

    #[test]
    fn hour_quota_is_shared_by_all_methods() {
        let mut throttle = Throttle::new(limits(0, 3));
        assert!(throttle.admit(ApiMethod::List, S(0)).is_ok());
        assert!(throttle.admit(ApiMethod::Get, S(100)).is_ok());
        assert!(throttle.admit(ApiMethod::Patch, S(200)).is_ok());
        assert_eq!(throttle.admit(ApiMethod::Get, S(300)), Err(S(3300)));
        assert!(throttle.admit(ApiMethod::Get, S(3600)).is_ok());
    }

    #[test]
    fn window_scale_shortens_the_windows() {
        let mut throttle = Throttle::new(Limits {
            window_scale: 60,
            ..limits(1, 0)
        });
        assert!(throttle.admit(ApiMethod::List, S(0)).is_ok());
        assert_eq!(
            throttle.admit(ApiMethod::List, Duration::from_millis(250)),
            Err(Duration::from_millis(750))
        );
        assert!(throttle.admit(ApiMethod::List, S(1)).is_ok());
    }

    #[test]
    fn zero_quota_means_unlimited() {
        let mut throttle = Throttle::new(Limits::unlimited());
        for _ in 0..10_000 {
            assert!(throttle.admit(ApiMethod::Patch, S(0)).is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(S(40)), 40);
    }
}
