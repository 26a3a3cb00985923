//! The gateway's Prometheus metrics, on `metrics_listen` with `/healthz` and `/readyz`:
//!
//! - `tether_gateway_requests_total{route, status}`: every answer;
//! - `tether_gateway_rejections_total{route, reason}`: every refusal, by [`crate::guard::Rejection::reason`];
//! - `tether_gateway_upstream_seconds{route}`: upstream latency (histogram);
//! - `tether_gateway_introspection_cache_total{result}`: `hit` or `miss`.

use std::time::Duration;

/// A refusal's reason, carried on the response for the metrics and the access log.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub &'static str);

pub fn answered(route: &str, status: u16, refused: Option<&'static str>) {
    metrics::counter!("tether_gateway_requests_total", "route" => route.to_string(), "status" => status.to_string())
        .increment(1);
    if let Some(r) = refused {
        metrics::counter!("tether_gateway_rejections_total", "route" => route.to_string(), "reason" => r).increment(1);
    }
}

pub fn upstream_latency(route: &str, d: Duration) {
    metrics::histogram!("tether_gateway_upstream_seconds", "route" => route.to_string()).record(d.as_secs_f64());
}

pub fn introspection_cache(hit: bool) {
    metrics::counter!("tether_gateway_introspection_cache_total", "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}
