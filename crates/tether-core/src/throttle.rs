//! Failure throttling for secrets people type: passwords (per username and per source address)
//! and device user codes (per session and per source address, RFC 8628 §5.1: a user code carries
//! few bits). A fixed window per key, counted on the provider's clock so tests need not wait.
//!
//! Counters live in the node's memory: a cluster of N nodes allows up to N times the limit, which
//! still bounds guessing; keeping them in the database would make every failed attempt a write on
//! the shared store, which is what an attacker would then aim at.

use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many keys are tracked; beyond it, expired windows are dropped first, then (under
/// a flood of distinct keys) the whole table, which only ever errs towards letting someone retry.
const MAX_KEYS: usize = 100_000;

pub struct Throttle {
    max_failures: u32,
    window: i64,
    entries: Mutex<HashMap<String, (i64, u32)>>,
}

impl Throttle {
    pub fn new(max_failures: u32, window: i64) -> Self {
        Self { max_failures, window, entries: Mutex::new(HashMap::new()) }
    }

    /// Seconds until `key` may try again, or `None` when it may try now.
    pub fn blocked(&self, key: &str, now: i64) -> Option<i64> {
        let e = self.entries.lock().ok()?;
        let (start, count) = *e.get(key)?;
        (count >= self.max_failures && now < start + self.window).then_some(start + self.window - now)
    }

    pub fn fail(&self, key: &str, now: i64) {
        let Ok(mut e) = self.entries.lock() else { return };
        if e.len() >= MAX_KEYS {
            let window = self.window;
            e.retain(|_, (start, _)| now < *start + window);
            if e.len() >= MAX_KEYS {
                e.clear();
            }
        }
        let entry = e.entry(key.to_string()).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    pub fn clear(&self, key: &str) {
        if let Ok(mut e) = self.entries.lock() {
            e.remove(key);
        }
    }
}

/// The throttles of one node.
pub struct Throttles {
    pub login_user: Throttle,
    pub login_addr: Throttle,
    pub user_code_session: Throttle,
    pub user_code_addr: Throttle,
}

impl Default for Throttles {
    fn default() -> Self {
        Self {
            login_user: Throttle::new(10, 300),
            login_addr: Throttle::new(30, 300),
            user_code_session: Throttle::new(5, 300),
            user_code_addr: Throttle::new(20, 300),
        }
    }
}

/// "3 minutes" / "40 seconds".
pub fn wait_text(secs: i64) -> String {
    if secs > 90 { format!("{} minutes", (secs + 59) / 60) } else { format!("{} seconds", secs.max(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = Throttle::new(3, 60);
        for _ in 0..3 {
            assert_eq!(t.blocked("k", 100), None);
            t.fail("k", 100);
        }
        assert_eq!(t.blocked("k", 110), Some(50));
        assert_eq!(t.blocked("other", 110), None);
        assert_eq!(t.blocked("k", 160), None);
        t.fail("k", 160);
        assert_eq!(t.blocked("k", 161), None, "a new window");
        t.clear("k");
        assert_eq!(t.blocked("k", 161), None);
    }
}
