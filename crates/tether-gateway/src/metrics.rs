//! The gateway's Prometheus metrics, on `metrics_listen` with `/healthz` and `/readyz`:
//!
//! - `tether_gateway_requests_total{route, status}`: every answer;
//! - `tether_gateway_rejections_total{route, reason}`: every refusal, by [`crate::guard::Rejection::reason`];
//! - `tether_gateway_upstream_seconds{route}`: upstream latency (histogram);
//! - `tether_gateway_introspection_cache_total{result}`: `hit` or `miss`.
//!
//! Every request touches two of these. Looking a metric up by name and labels builds the labels
//! (allocations) and hashes the key into the recorder's registry each time, so the handles of
//! the hot metrics are looked up once and kept: per route in [`RouteMetrics`] (one counter per
//! status code seen, the latency histogram), per issuer in [`CacheMetrics`]. Handles are taken
//! lazily, at first use, so they come from the recorder installed by then.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};

/// A refusal's reason, carried on the response for the metrics and the access log.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub &'static str);

/// Status codes 100..=599 have a kept counter; any other is looked up each time.
const STATUSES: std::ops::RangeInclusive<u16> = 100..=599;

/// The kept metric handles of one route (see the module docs).
pub struct RouteMetrics {
    route: String,
    by_status: Box<[OnceLock<Counter>]>,
    upstream: OnceLock<Histogram>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics").field("route", &self.route).finish_non_exhaustive()
    }
}

impl RouteMetrics {
    pub fn new(route: &str) -> Self {
        let by_status = STATUSES.map(|_| OnceLock::new()).collect();
        RouteMetrics { route: route.to_string(), by_status, upstream: OnceLock::new() }
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    /// One answer of this route.
    pub fn answered(&self, status: u16, refused: Option<&'static str>) {
        let counter = |s: u16| metrics::counter!("tether_gateway_requests_total", "route" => self.route.clone(), "status" => s.to_string());
        match self.by_status.get(usize::from(status.wrapping_sub(*STATUSES.start()))) {
            Some(slot) if STATUSES.contains(&status) => slot.get_or_init(|| counter(status)).increment(1),
            _ => counter(status).increment(1),
        }
        if let Some(r) = refused {
            metrics::counter!("tether_gateway_rejections_total", "route" => self.route.clone(), "reason" => r)
                .increment(1);
        }
    }

    pub fn upstream_latency(&self, d: Duration) {
        self.upstream
            .get_or_init(|| metrics::histogram!("tether_gateway_upstream_seconds", "route" => self.route.clone()))
            .record(d.as_secs_f64());
    }
}

/// The kept handles of the introspection cache's counters (one set per issuer).
#[derive(Default)]
pub struct CacheMetrics {
    hit: OnceLock<Counter>,
    miss: OnceLock<Counter>,
}

impl std::fmt::Debug for CacheMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheMetrics").finish_non_exhaustive()
    }
}

impl CacheMetrics {
    pub fn count(&self, hit: bool) {
        let (slot, result) = if hit { (&self.hit, "hit") } else { (&self.miss, "miss") };
        slot.get_or_init(|| metrics::counter!("tether_gateway_introspection_cache_total", "result" => result))
            .increment(1);
    }
}
