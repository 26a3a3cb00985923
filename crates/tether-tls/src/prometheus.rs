//! The process's Prometheus recorder, installed once and shared by `tether serve` and `tether
//! gateway` (and by both when a test runs them in one process, so each one's `/metrics` shows
//! what it recorded).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The handle that renders `/metrics`.
pub fn handle() -> PrometheusHandle {
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        let b = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match b.install_recorder() {
            Ok(h) => h,
            // Another recorder is installed (an embedding program's): render an empty registry.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
    .clone()
}
