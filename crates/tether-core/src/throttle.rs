//! Failure throttling for secrets people type: passwords and device user codes (RFC 8628 §5.1: a
//! user code carries few bits). Windows are counted on the provider's clock so tests need not
//! wait.
//!
//! An attempt is *reserved* before the costly or decisive check and counts as a failure until it
//! is [`Throttle::release`]d by a success: a burst of parallel guesses cannot all pass a check
//! made before any of them has failed.
//!
//! Two shapes:
//! - a fixed window ([`Throttle::new`]): `max` failures in `window` seconds, then refused until
//!   the window ends (per device, per address, per session);
//! - a backoff ([`Throttle::backoff`]): after `max` failures in the window, one attempt is let
//!   through per interval, the interval doubling from `min` up to `cap` seconds. Used where a
//!   stranger's failures must never lock the real user out (per username): it slows guessing to
//!   one try per `cap` seconds without ever closing the door.
//!
//! Counters live in the node's memory: a cluster of N nodes allows up to N times the limit, which
//! still bounds guessing; keeping them in the database would make every failed attempt a write on
//! the shared store, which is what an attacker would then aim at.

use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many keys are tracked; beyond it, expired windows are dropped first, then (under
/// a flood of distinct keys) the whole table, which only ever errs towards letting someone retry.
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy)]
struct Entry {
    start: i64,
    /// The latest attempt: a backoff entry is forgotten a window after it.
    last: i64,
    count: u32,
    /// Backoff only: no attempt before this time, and the interval set after the next one.
    next_at: i64,
    interval: i64,
}

pub struct Throttle {
    max_failures: u32,
    window: i64,
    /// `(min, cap)` seconds of the doubling interval, for a backoff throttle.
    backoff: Option<(i64, i64)>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    /// A fixed window: `max_failures` in `window` seconds, then refused until the window ends.
    pub fn new(max_failures: u32, window: i64) -> Self {
        Self { max_failures, window, backoff: None, entries: Mutex::new(HashMap::new()) }
    }

    /// After `max_failures` in `window` seconds, one attempt per interval, doubling `min..=cap`.
    pub fn backoff(max_failures: u32, window: i64, min: i64, cap: i64) -> Self {
        Self { max_failures, window, backoff: Some((min, cap)), entries: Mutex::new(HashMap::new()) }
    }

    /// Is `e` over, so that `key` starts afresh? A fixed window ends `window` seconds after it
    /// started; a backoff a window after the latest attempt (a slow, steady guesser stays slowed).
    fn fresh(&self, e: &Entry, now: i64) -> bool {
        match self.backoff {
            None => now >= e.start + self.window,
            Some(_) => now >= e.last + self.window && now >= e.next_at,
        }
    }

    /// Seconds until `key` may try again, or `None` when it may try now. Reserves nothing.
    pub fn blocked(&self, key: &str, now: i64) -> Option<i64> {
        let e = self.entries.lock().ok()?;
        let e = e.get(key).filter(|e| !self.fresh(e, now))?;
        if e.count < self.max_failures {
            return None;
        }
        match self.backoff {
            None => Some(e.start + self.window - now),
            Some(_) => (now < e.next_at).then_some(e.next_at - now),
        }
    }

    /// Count an attempt on `key` before it is checked. `Err(seconds)` when it must wait instead;
    /// then nothing is counted.
    pub fn reserve(&self, key: &str, now: i64) -> Result<(), i64> {
        let Ok(mut map) = self.entries.lock() else { return Ok(()) };
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, e| !self.fresh(e, now));
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let new = Entry { start: now, last: now, count: 0, next_at: now, interval: 0 };
        let e = map.entry(key.to_string()).or_insert(new);
        if self.fresh(e, now) {
            *e = new;
        }
        if e.count >= self.max_failures {
            match self.backoff {
                None => return Err(e.start + self.window - now),
                Some(_) if now < e.next_at => return Err(e.next_at - now),
                Some((min, cap)) => {
                    e.interval = if e.interval == 0 { min } else { (e.interval * 2).min(cap) };
                    e.next_at = now + e.interval;
                }
            }
        }
        e.count = e.count.saturating_add(1);
        e.last = now;
        if let Some((min, _)) = self.backoff
            && e.count == self.max_failures
        {
            // The limit is reached: the first interval starts now.
            e.interval = min;
            e.next_at = now + min;
        }
        Ok(())
    }

    /// A reserved attempt succeeded: it no longer counts as a failure.
    pub fn release(&self, key: &str) {
        if let Ok(mut map) = self.entries.lock()
            && let Some(e) = map.get_mut(key)
        {
            e.count = e.count.saturating_sub(1);
        }
    }

    /// Count a failure that was not reserved (user codes, checked without a reservation).
    pub fn fail(&self, key: &str, now: i64) {
        let _ = self.reserve(key, now);
    }

    /// Forget every failure of `key`.
    pub fn clear(&self, key: &str) {
        if let Ok(mut e) = self.entries.lock() {
            e.remove(key);
        }
    }

    /// Forget every key that starts with `prefix`.
    pub fn clear_prefix(&self, prefix: &str) {
        if let Ok(mut e) = self.entries.lock() {
            e.retain(|k, _| !k.starts_with(prefix));
        }
    }

    /// Forget every key (an operator's unlock).
    pub fn clear_all(&self) {
        if let Ok(mut e) = self.entries.lock() {
            e.clear();
        }
    }
}

/// The throttles of one node.
pub struct Throttles {
    /// Sign-ins with a device cookie vouching for the username: per (username, device).
    pub login_device: Throttle,
    /// Sign-ins without one, per username: a doubling backoff, never a lock.
    pub login_user: Throttle,
    /// Failed sign-ins per source address (the pages only).
    pub login_addr: Throttle,
    /// The password grant: per (username, client_id) and per (username, address).
    pub password_grant: Throttle,
    pub user_code_session: Throttle,
    pub user_code_addr: Throttle,
}

impl Throttles {
    /// An operator's unlock: forget the user's sign-in failures (every device, the backoff, the
    /// password grant's counters) on this node.
    pub fn unlock_user(&self, username: &str) {
        self.login_user.clear(username);
        self.login_device.clear_prefix(&format!("{username}\u{0}"));
        self.password_grant.clear_prefix(&format!("client\u{0}{username}\u{0}"));
        self.password_grant.clear_prefix(&format!("addr\u{0}{username}\u{0}"));
    }
}

impl Default for Throttles {
    fn default() -> Self {
        Self {
            login_device: Throttle::new(10, 300),
            login_user: Throttle::backoff(10, 300, 1, 60),
            login_addr: Throttle::new(30, 300),
            password_grant: Throttle::backoff(10, 300, 1, 60),
            user_code_session: Throttle::new(5, 300),
            user_code_addr: Throttle::new(20, 300),
        }
    }
}

/// "3 minutes" / "40 seconds" / "1 second".
pub fn wait_text(secs: i64) -> String {
    match secs {
        ..=1 => "1 second".to_string(),
        2..=90 => format!("{secs} seconds"),
        _ => format!("{} minutes", (secs + 59) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_window_blocks_after_the_limit_until_it_ends() {
        let t = Throttle::new(3, 60);
        for _ in 0..3 {
            assert_eq!(t.blocked("k", 100), None);
            assert_eq!(t.reserve("k", 100), Ok(()));
        }
        assert_eq!(t.blocked("k", 110), Some(50));
        assert_eq!(t.reserve("k", 110), Err(50), "refused, and not counted");
        assert_eq!(t.blocked("other", 110), None);
        assert_eq!(t.blocked("k", 160), None);
        t.fail("k", 160);
        assert_eq!(t.blocked("k", 161), None, "a new window");
        t.clear("k");
        assert_eq!(t.blocked("k", 161), None);
    }

    #[test]
    fn reservations_stop_a_burst_before_any_check_fails() {
        let t = Throttle::new(10, 300);
        let passed = (0..100).filter(|_| t.reserve("alice", 0).is_ok()).count();
        assert_eq!(passed, 10, "only the first 10 of a simultaneous burst are checked");
        t.release("alice");
        assert_eq!(t.reserve("alice", 0), Ok(()), "a released (successful) attempt frees its slot");
        assert!(t.reserve("alice", 0).is_err());
    }

    #[test]
    fn a_backoff_lets_one_attempt_through_per_doubling_interval() {
        let t = Throttle::backoff(10, 300, 1, 60);
        for _ in 0..10 {
            t.reserve("carol", 0).unwrap();
        }
        // After the 10th, untrusted attempts wait the first interval (refused, not counted).
        assert_eq!(t.reserve("carol", 0), Err(1));
        assert_eq!(t.blocked("carol", 0), Some(1));
        // Then one attempt per interval, parallel ones refused; the interval doubles.
        assert_eq!(t.reserve("carol", 1), Ok(()));
        assert_eq!(t.reserve("carol", 1), Err(2), "the interval doubles");
        let mut now = 3;
        let mut waits = vec![];
        for _ in 0..8 {
            assert_eq!(t.reserve("carol", now), Ok(()));
            let w = t.reserve("carol", now).unwrap_err();
            waits.push(w);
            now += w;
        }
        assert_eq!(waits, [4, 8, 16, 32, 60, 60, 60, 60], "capped at 60 s, never a hard lock");
        // Long after the last attempt the slate is clean.
        assert_eq!(t.blocked("carol", now + 400), None);
        for _ in 0..10 {
            assert_eq!(t.reserve("carol", now + 400), Ok(()));
        }
    }

    #[test]
    fn wait_texts() {
        assert_eq!(wait_text(0), "1 second");
        assert_eq!(wait_text(40), "40 seconds");
        assert_eq!(wait_text(300), "5 minutes");
    }
}
