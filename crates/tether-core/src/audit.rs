//! Audit events (admin-api.md A-4): who did what, from where, recorded from the one place each act
//! happens (the issuance pipeline, the sign-in flow, logout, the admin service).
//!
//! An event is written at once as one JSON log line on the `audit` target (for log shippers), and
//! stored in the database in batches: [`Auditor`] queues events and a background task
//! (`Provider::spawn_auditor`) writes them every 200 ms, up to 500 per transaction, so that recording `token.issued` on
//! every issuance costs the store one extra write per batch, not per token. A crash can lose the
//! last 200 ms of stored events (never of log lines); `Auditor::flush` writes what is queued.
//!
//! Events never carry a token, secret, password or code: details are built from names, ids and
//! public ids only.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use crate::secret::{hex, random_bytes};
use crate::store::{EventRecord, Store};

/// Event types (admin-api.md A-4).
pub mod kind {
    pub const LOGIN_SUCCESS: &str = "login.success";
    pub const LOGIN_FAILURE: &str = "login.failure";
    pub const LOGOUT: &str = "logout";
    pub const TOKEN_ISSUED: &str = "token.issued";
    pub const TOKEN_REFRESHED: &str = "token.refreshed";
    pub const TOKEN_REVOKED: &str = "token.revoked";
    pub const TOKEN_REFRESH_REUSE: &str = "token.refresh_reuse";
    pub const BINDING_MISMATCH: &str = "binding.mismatch";
    pub const DEVICE_APPROVED: &str = "device.approved";
    pub const DEVICE_DENIED: &str = "device.denied";
    pub const ADMIN_CHANGE: &str = "admin.change";
    pub const THROTTLE_BLOCKED: &str = "throttle.blocked";
    /// A back-channel logout could not be delivered and was given up (`detail.target`: the app).
    pub const LOGOUT_BACKCHANNEL_FAILED: &str = "logout.backchannel_failed";
    pub const ALL: &[&str] = &[
        LOGIN_SUCCESS,
        LOGIN_FAILURE,
        LOGOUT,
        TOKEN_ISSUED,
        TOKEN_REFRESHED,
        TOKEN_REVOKED,
        TOKEN_REFRESH_REUSE,
        BINDING_MISMATCH,
        DEVICE_APPROVED,
        DEVICE_DENIED,
        ADMIN_CHANGE,
        THROTTLE_BLOCKED,
        LOGOUT_BACKCHANNEL_FAILED,
    ];
}

/// Who made the request an event records.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn client(client_id: &str) -> Self {
        Actor { client_id: Some(client_id.to_string()), ..Default::default() }
    }
    pub fn with_user(mut self, username: Option<&str>) -> Self {
        self.username = username.map(str::to_string);
        self
    }
    pub fn from(mut self, ip: Option<&str>) -> Self {
        self.ip = ip.map(str::to_string);
        self
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A new event at `now` (Unix seconds).
pub fn event(now: i64, kind: &str, actor: &Actor, detail: Value) -> EventRecord {
    event_us(now.saturating_mul(1_000_000), kind, actor, detail)
}

/// The smallest event id of the second `unix` (ids begin with the second in 11 hex digits): every
/// event at or after `unix` has an id `>=` it, every earlier one an id `<` it. Listings and the
/// purge select time ranges through the primary key with it (no index on `time` to maintain on
/// every insert).
pub fn id_floor(unix: i64) -> String {
    format!("{:011x}", unix.max(0))
}

/// A new event at `now_us` (Unix microseconds). Ids sort by time: seconds, microseconds, a
/// per-process sequence, and random bits (unique across nodes). The microseconds order the events
/// of one second made by several processes (nodes, CLI invocations), newest first in listings.
pub fn event_us(now_us: i64, kind: &str, actor: &Actor, detail: Value) -> EventRecord {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let (now, us) = (now_us.div_euclid(1_000_000), now_us.rem_euclid(1_000_000));
    // Actor fields can come from a request (a username typed at sign-in): control characters are
    // replaced, so an event is always storable (PostgreSQL refuses NUL in text) and printable.
    let clean = |v: &Option<String>| {
        v.as_ref().map(|s| s.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).take(256).collect())
    };
    EventRecord {
        id: format!("{}{us:05x}{seq:08x}{}", id_floor(now), hex(&random_bytes::<5>())),
        time: now,
        kind: kind.to_string(),
        client_id: clean(&actor.client_id),
        username: clean(&actor.username),
        ip: clean(&actor.ip),
        user_agent: clean(&actor.user_agent),
        detail,
    }
}

/// Where this process's audit log lines go instead of a `tracing` event, when set: the event as
/// JSON text (`tether serve` writes it straight into its log buffer, as the access log does —
/// tracing's formatter cost several µs per line, on every token issued).
type LogWriter = Box<dyn Fn(&str) + Send + Sync>;
static LOG_WRITER: std::sync::OnceLock<LogWriter> = std::sync::OnceLock::new();

/// Set once per process; a second call is ignored and answers `false`. `RUST_LOG` (`audit=off`)
/// still decides whether a line is written.
pub fn set_log_writer(w: impl Fn(&str) + Send + Sync + 'static) -> bool {
    LOG_WRITER.set(Box::new(w)).is_ok()
}

/// Queues events for the store and logs each on the `audit` target.
pub struct Auditor {
    queue: Mutex<Vec<EventRecord>>,
    /// Held for a whole flush (drain and store), so a flush that finds the queue empty has still
    /// waited for the batch another flush took and is storing: after `flush` returns, every event
    /// recorded before it is in the store.
    flushing: tokio::sync::Mutex<()>,
    /// `[audit] token_events`: record `token.issued` / `token.refreshed`.
    pub token_events: bool,
}

/// Events written per transaction.
const BATCH: usize = 500;
/// Beyond this many queued events (the store is down), new ones are only logged.
const MAX_QUEUED: usize = 100_000;

impl Auditor {
    pub fn new(token_events: bool) -> Self {
        Self { queue: Mutex::new(Vec::new()), flushing: tokio::sync::Mutex::new(()), token_events }
    }

    /// Record an event: logged now, stored with the next batch.
    pub fn record(&self, ev: EventRecord) {
        if tracing::enabled!(target: "audit", tracing::Level::INFO) {
            let json = serde_json::to_string(&ev).unwrap_or_default();
            match LOG_WRITER.get() {
                Some(w) => w(&json),
                None => tracing::info!(target: "audit", event = %json),
            }
        }
        if let Ok(mut q) = self.queue.lock()
            && q.len() < MAX_QUEUED
        {
            q.push(ev);
        }
    }

    /// Write every queued event now.
    pub async fn flush(&self, store: &dyn Store) {
        let _one_at_a_time = self.flushing.lock().await;
        loop {
            let batch: Vec<EventRecord> = match self.queue.lock() {
                Ok(mut q) if !q.is_empty() => {
                    let n = q.len().min(BATCH);
                    q.drain(..n).collect()
                }
                _ => return,
            };
            if let Err(e) = store.insert_events(&batch).await {
                tracing::warn!(error = %e, lost = batch.len(), "cannot store audit events (they are in the log)");
                return;
            }
        }
    }
}

/// `{"target": …}` plus more members.
pub fn target(id: &str) -> Value {
    json!({ "target": id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_never_repeat() {
        let a = event(100, kind::LOGOUT, &Actor::default(), json!({}));
        let b = event(100, kind::LOGOUT, &Actor::default(), json!({}));
        let c = event(101, kind::LOGOUT, &Actor::default(), json!({}));
        assert!(a.id < b.id && b.id < c.id, "{} {} {}", a.id, b.id, c.id);
        // Within a second, microseconds order events of different processes (whatever their
        // sequence numbers).
        let early = event_us(101_000_500, kind::LOGOUT, &Actor::default(), json!({}));
        let late = event_us(101_000_900, kind::LOGOUT, &Actor::default(), json!({}));
        let mut early = early;
        early.id.replace_range(16..24, "ffffffff");
        assert!(c.id < early.id && early.id < late.id, "{} {} {}", c.id, early.id, late.id);
        assert_eq!(late.time, 101);
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["type"], "logout");
    }
}
