//! Per-caller rate limiting: a token bucket per caller, in memory.
//!
//! A caller is its token's `sub`, or, without one (anonymous, open mode, a
//! token that does not verify), its address. Each bucket holds up to
//! `burst` tokens and refills at `per_second`; a request takes one, and a
//! caller with none left is told how long until the next.
//!
//! Memory is bounded: at most [`MAX_CALLERS`] buckets. A full bucket
//! carries no state (it is what a new caller gets), so full buckets are
//! dropped when room is needed; callers beyond the bound (a flood of
//! addresses) share one overflow bucket until room frees up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most callers tracked at once (a few MiB at most).
pub(super) const MAX_CALLERS: usize = 100_000;

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum CallerKey {
    Subject(String),
    Address(IpAddr),
}

pub(super) struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_callers: usize,
    state: Mutex<State>,
}

struct State {
    buckets: HashMap<CallerKey, Bucket>,
    overflow: Bucket,
    /// When full buckets were last dropped (at most once a second).
    pruned: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket { tokens: burst, at: now }
    }

    /// Refills for the time passed, then takes a token if there is one;
    /// otherwise says how long until there is.
    fn take(&mut self, per_second: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }

    fn is_full(&self, per_second: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * per_second >= burst
    }
}

impl RateLimiter {
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        Self::bounded(per_second, burst, MAX_CALLERS)
    }

    fn bounded(per_second: u32, burst: u32, max_callers: usize) -> Self {
        let (per_second, burst) = (f64::from(per_second.max(1)), f64::from(burst.max(1)));
        let now = Instant::now();
        RateLimiter {
            per_second,
            burst,
            max_callers,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                overflow: Bucket::full(burst, now),
                pruned: now,
            }),
        }
    }

    /// Takes a token of `caller`'s bucket; `Err` carries how long the
    /// caller should wait before trying again.
    pub(super) fn check(&self, caller: CallerKey) -> Result<(), Duration> {
        let (per_second, burst, now) = (self.per_second, self.burst, Instant::now());
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { buckets, overflow, pruned } = &mut *state;
        if let Some(bucket) = buckets.get_mut(&caller) {
            return bucket.take(per_second, burst, now);
        }
        if buckets.len() >= self.max_callers && now.duration_since(*pruned) >= PRUNE_EVERY {
            buckets.retain(|_, b| !b.is_full(per_second, burst, now));
            *pruned = now;
        }
        if buckets.len() >= self.max_callers {
            return overflow.take(per_second, burst, now);
        }
        buckets.entry(caller).or_insert(Bucket::full(burst, now)).take(per_second, burst, now)
    }

    /// Callers tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state.lock().unwrap().buckets.len()
    }
}

/// Dropping full buckets scans them all, so at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> CallerKey {
        CallerKey::Subject(s.to_owned())
    }

    #[test]
    fn a_caller_gets_its_burst_then_waits_while_others_go_on() {
        let limiter = RateLimiter::new(2, 3);
        for _ in 0..3 {
            assert!(limiter.check(sub("a")).is_ok());
        }
        let wait = limiter.check(sub("a")).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(limiter.check(sub("b")).is_ok());
        assert!(limiter.check(CallerKey::Address([127, 0, 0, 1].into())).is_ok());
    }

    #[test]
    fn callers_beyond_the_bound_share_the_overflow_bucket() {
        let limiter = RateLimiter::bounded(1, 2, 10);
        for i in 0..10 {
            assert!(limiter.check(sub(&i.to_string())).is_ok());
        }
        assert_eq!(limiter.tracked(), 10);
        // Every tracked bucket has been used: none can be dropped.
        assert!(limiter.check(sub("x")).is_ok());
        assert!(limiter.check(sub("y")).is_ok());
        assert!(limiter.check(sub("z")).is_err(), "the overflow bucket is spent");
        assert_eq!(limiter.tracked(), 10);
    }
}
