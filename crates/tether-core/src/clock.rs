//! The one source of time. Everything that needs "now" takes a [`Clock`], so tests run at a fixed,
//! steerable time and never sleep to expire a code or a token (ARCHITECTURE.md pattern 8).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
    /// Microseconds since the Unix epoch (orders audit events within a second); a clock without
    /// sub-second precision answers whole seconds.
    fn now_micros(&self) -> i64 {
        self.now().saturating_mul(1_000_000)
    }
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        #[allow(clippy::disallowed_methods)] // the one allowed place
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        d.as_secs() as i64
    }
    fn now_micros(&self) -> i64 {
        #[allow(clippy::disallowed_methods)] // the one allowed place
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn set(&self, t: UnixTime) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Is a time a client or browser sent (`iat`, a cookie's or form's timestamp) acceptable at `now`:
/// at most `future_skew` seconds ahead and at most `lifetime` seconds old? Saturating, so an
/// extreme value (`i64::MIN`) is refused instead of overflowing `now - iat` into an accepted
/// negative age (or a panic with overflow checks).
pub fn issued_within(iat: UnixTime, now: UnixTime, future_skew: i64, lifetime: i64) -> bool {
    iat <= now.saturating_add(future_skew) && now.saturating_sub(iat) <= lifetime
}

#[cfg(test)]
mod tests {
    use super::issued_within;

    #[test]
    fn issued_within_the_window_and_never_overflows() {
        let now = 1_700_000_000;
        assert!(issued_within(now, now, 5, 300));
        assert!(issued_within(now + 5, now, 5, 300));
        assert!(issued_within(now - 300, now, 5, 300));
        assert!(!issued_within(now + 6, now, 5, 300));
        assert!(!issued_within(now - 301, now, 5, 300));
        // `now - i64::MIN` overflowed to a negative age: accepted in release builds.
        assert!(!issued_within(i64::MIN, now, 5, 300));
        assert!(!issued_within(i64::MIN + 1, now, 5, 300));
        assert!(!issued_within(i64::MAX, now, 5, 300));
        assert!(!issued_within(now, i64::MAX, i64::MAX, 300));
        assert!(issued_within(i64::MAX, i64::MAX, 5, 300));
    }
}
