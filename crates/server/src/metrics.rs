//! Prometheus metrics: one process-wide recorder, rendered on `/metrics`.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds: fine below 10 ms where most requests land, coarse above.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder once per process and returns its handle.
pub fn recorder() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("bucket list is non-empty")
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}

/// Describes the metrics this crate emits, so `/metrics` carries HELP lines.
pub fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route template and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route template"
    );
    metrics::describe_gauge!(
        "db_pool_connections",
        "Database pool connections by state (in_use, idle)"
    );
    metrics::describe_histogram!(
        "shopkeep_sqlite_writer_wait_seconds",
        metrics::Unit::Seconds,
        "SQLite: how long each write transaction waited for the one writer"
    );
    metrics::describe_histogram!(
        "shopkeep_sqlite_writer_held_seconds",
        metrics::Unit::Seconds,
        "SQLite: how long each write transaction held the one writer; the sum's rate is the writer's busy share"
    );
    metrics::describe_gauge!(
        "shopkeep_build_info",
        "Always 1; labels carry version, commit and engine"
    );
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.db.pool_stats();
    metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(f64::from(stats.size.saturating_sub(stats.idle)));
    metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(stats.idle));
    crate::webhooks::refresh_gauges(&state.db).await;
    let handle = recorder();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
