//! What a connection may cost the process: the `[http]` timeouts and the connection cap, the same
//! for `tether serve` and `tether gateway`.
//!
//! - `header_read_timeout`: from accepting a connection to the end of its first request head (TLS
//!   handshake included), and from the first byte of each later HTTP/1.1 request head to its end.
//! - `body_read_timeout`: no byte of a request body for that long, while the handler waits for
//!   it. Not a total: a long upload that keeps sending lives on, and so does a long response.
//! - `idle_timeout`: between requests on a keep-alive connection (HTTP/1.1 and HTTP/2).
//! - the connection cap: at most this many connections at once, shared by every listener of the
//!   process; beyond it each listener holds one accepted connection until there is room and the
//!   next ones wait in the kernel's accept queue, so the process never runs out of file
//!   descriptors. The default, [`default_max_connections`], leaves room below
//!   the open-file limit, which [`raise_nofile_limit`] first raises to the hard limit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 10;
pub const DEFAULT_BODY_READ_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 60;
/// The cap is never above this by default, whatever the open-file limit.
pub const MAX_CONNECTIONS_CEILING: usize = 10_000;
/// File descriptors kept free below the open-file limit (database, upstream, files, logs).
pub const RESERVED_FDS: u64 = 64;

/// Timeouts and the connection cap of every listener of one process.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub connections: ConnectionCap,
}

impl HttpLimits {
    /// The limits from `[http]` settings (seconds). Raises the open-file soft limit to the hard
    /// one first; `max_connections` `None` means [`default_max_connections`].
    pub fn new(header_read: u64, body_read: u64, idle: u64, max_connections: Option<usize>) -> Self {
        let soft = raise_nofile_limit();
        let max = max_connections.unwrap_or_else(|| default_max_connections(soft));
        tracing::debug!(max_connections = max, open_file_limit = ?soft, "connection limits");
        HttpLimits {
            header_read_timeout: Duration::from_secs(header_read),
            body_read_timeout: Duration::from_secs(body_read),
            idle_timeout: Duration::from_secs(idle),
            connections: ConnectionCap::new(max),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self::new(
            DEFAULT_HEADER_READ_TIMEOUT_SECONDS,
            DEFAULT_BODY_READ_TIMEOUT_SECONDS,
            DEFAULT_IDLE_TIMEOUT_SECONDS,
            None,
        )
    }
}

/// Check `[http]` values (seconds; `max_connections` when given), for both config files.
pub fn check(header_read: u64, body_read: u64, idle: u64, max_connections: Option<usize>) -> Result<(), String> {
    for (key, v) in [
        ("header_read_timeout_seconds", header_read),
        ("body_read_timeout_seconds", body_read),
        ("idle_timeout_seconds", idle),
    ] {
        if !(1..=86_400).contains(&v) {
            return Err(format!("[http] {key} = {v}: must be between 1 and 86400"));
        }
    }
    if max_connections == Some(0) {
        return Err("[http] max_connections must be at least 1".into());
    }
    Ok(())
}

/// How many connections may be open at once; clones share the count.
#[derive(Clone, Debug)]
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConnectionCap {
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionCap { permits: Arc::new(Semaphore::new(max)), max }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Wait for room for one more connection; the room is given back when the permit drops.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => unreachable!("the connection semaphore is never closed"),
        }
    }
}

/// Raise the open-file soft limit to the hard limit; returns the soft limit now in force
/// (`None` where it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => Some(soft),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// `min(10000, soft limit − 64)`, at least 1; 10000 when the limit is unknown.
pub fn default_max_connections(soft_nofile: Option<u64>) -> usize {
    match soft_nofile {
        Some(soft) => {
            let room = soft.saturating_sub(RESERVED_FDS);
            usize::try_from(room).unwrap_or(usize::MAX).clamp(1, MAX_CONNECTIONS_CEILING)
        }
        None => MAX_CONNECTIONS_CEILING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_stays_below_the_open_file_limit() {
        assert_eq!(default_max_connections(Some(256)), 192);
        assert_eq!(default_max_connections(Some(1024)), 960);
        assert_eq!(default_max_connections(Some(1_048_576)), 10_000);
        assert_eq!(default_max_connections(Some(u64::MAX)), 10_000);
        assert_eq!(default_max_connections(Some(10)), 1);
        assert_eq!(default_max_connections(None), 10_000);
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let soft = raise_nofile_limit().expect("readable on this platform");
        let (now_soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
        assert_eq!(soft, now_soft);
        assert_eq!(now_soft, hard, "the soft limit is raised to the hard one");
    }

    #[tokio::test]
    async fn the_cap_is_shared_by_clones() {
        let cap = ConnectionCap::new(2);
        let other = cap.clone();
        let a = cap.acquire().await;
        let _b = other.acquire().await;
        assert!(tokio::time::timeout(Duration::from_millis(50), cap.acquire()).await.is_err());
        drop(a);
        assert!(tokio::time::timeout(Duration::from_millis(50), other.acquire()).await.is_ok());
    }
}
