//! The result of a run: a human table and a JSON document of the same numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// One step's numbers. Latencies cover every request that got an answer (errors included);
/// skipped requests count as errors but have no latency.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// `register`, `login`, `create`, ... or `setup ...` for preparation.
    pub name: String,
    /// False for preparation steps (users and seed orders of the endpoint scenario).
    pub measured: bool,
    /// Requests, including skipped ones.
    pub count: u64,
    /// Requests with the expected status and body.
    pub ok: u64,
    /// `count - ok`.
    pub errors: u64,
    /// Errors by HTTP status (`"503"`), `"bad body"`, `"no response"` or `"skipped: why"`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Median latency.
    pub p50_ms: f64,
    /// 95th percentile latency.
    pub p95_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
    /// Mean latency.
    pub mean_ms: f64,
    /// From the first request's start to the last one's end.
    pub span_s: f64,
    /// Requests sent divided by `span_s`.
    pub throughput_per_s: f64,
    /// The first few error bodies (status and the start of the body).
    pub error_samples: Vec<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `journey` or `endpoint <name>`.
    pub scenario: String,
    /// The server.
    pub base_url: String,
    /// Virtual users (journey) or pre-made users (endpoint).
    pub users: u64,
    /// Orders per user in the journey.
    pub orders_per_user: Option<u64>,
    /// Concurrent connections of the endpoint scenario.
    pub connections: Option<u64>,
    /// Wall time of the measured part: every journey, or the endpoint's timed run.
    pub wall_s: f64,
    /// Journeys whose every step succeeded.
    pub journeys_completed: Option<u64>,
    /// `journeys_completed / wall_s`.
    pub journeys_per_s: Option<f64>,
    /// Steps in the order they happen.
    pub steps: Vec<StepReport>,
}

impl Report {
    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Errors of every step, preparation included.
    pub fn total_errors(&self) -> u64 {
        self.steps.iter().map(|s| s.errors).sum()
    }

    /// The report as a text table followed by the errors, if any.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{} against {}: ", self.scenario, self.base_url);
        match (self.journeys_completed, self.orders_per_user) {
            (Some(done), Some(orders)) => {
                let _ = writeln!(
                    out,
                    "{} users x {orders} orders; {done} of {} journeys completed in {:.2} s ({:.2} journeys/s)",
                    self.users,
                    self.users,
                    self.wall_s,
                    self.journeys_per_s.unwrap_or(0.0)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{} connections for {:.2} s, {} users",
                    self.connections.unwrap_or(0),
                    self.wall_s,
                    self.users
                );
            }
        }
        let _ = writeln!(
            out,
            "  {:<16} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "step", "count", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s"
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "  {:<16} {:>8} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.1}",
                s.name,
                s.count,
                s.errors,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.max_ms,
                s.throughput_per_s
            );
        }
        for s in self.steps.iter().filter(|s| s.errors > 0) {
            let kinds: Vec<String> = s
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} x{n}"))
                .collect();
            let _ = writeln!(out, "  ERRORS in {}: {}", s.name, kinds.join(", "));
            for b in &s.error_samples {
                let _ = writeln!(out, "    {b}");
            }
        }
        out
    }
}
