//! Per-step recording: every request's latency and outcome, summarised into a [`StepReport`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::report::StepReport;

/// How many error bodies a step keeps to show.
const SAMPLES: usize = 3;
/// How much of an error body a sample keeps.
const SAMPLE_CHARS: usize = 300;

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    /// The expected status, and the body passed its check.
    Ok,
    /// Another status; the body is kept as a sample.
    Status(u16, String),
    /// The expected status, but the body was not what a correct server sends.
    Check(String),
    /// No response: connect, read or timeout error.
    Transport(String),
    /// Not sent, because an earlier step it depends on failed.
    Skipped(String),
}

/// One step of a scenario (`register`, `create`, ...): requests recorded from many tasks.
#[derive(Debug)]
pub struct Step {
    name: String,
    measured: bool,
    inner: Mutex<Data>,
}

#[derive(Debug, Default)]
struct Data {
    latencies_us: Vec<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Step {
    /// A step whose numbers are the measurement.
    pub fn new(name: impl Into<String>) -> Step {
        Step {
            name: name.into(),
            measured: true,
            inner: Mutex::new(Data::default()),
        }
    }

    /// A preparation step (users, seed orders): reported, but not the measurement.
    pub fn setup(name: impl Into<String>) -> Step {
        Step {
            measured: false,
            ..Step::new(name)
        }
    }

    /// Records one request that started at `start` and took `took` (zero for a skipped one).
    pub fn record(&self, start: Instant, took: Duration, outcome: Outcome) {
        let mut d = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (key, sample) = match outcome {
            Outcome::Ok => {
                d.ok += 1;
                (None, None)
            }
            Outcome::Status(code, body) => {
                (Some(code.to_string()), Some(format!("{code}: {body}")))
            }
            Outcome::Check(why) => (Some("bad body".to_string()), Some(why)),
            Outcome::Transport(e) => (Some("no response".to_string()), Some(e)),
            Outcome::Skipped(why) => (Some(format!("skipped: {why}")), None),
        };
        if let Some(k) = key.as_ref() {
            *d.errors.entry(k.clone()).or_default() += 1;
        }
        if let Some(s) = sample
            && d.samples.len() < SAMPLES
        {
            d.samples.push(s.chars().take(SAMPLE_CHARS).collect());
        }
        if key.as_deref().is_some_and(|k| k.starts_with("skipped")) {
            return; // nothing was sent: no latency, no time span
        }
        d.latencies_us
            .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        let end = start + took;
        d.first = Some(d.first.map_or(start, |f| f.min(start)));
        d.last = Some(d.last.map_or(end, |l| l.max(end)));
    }

    /// The summary so far.
    pub fn report(&self) -> StepReport {
        let d = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut lat = d.latencies_us.clone();
        lat.sort_unstable();
        let errors: u64 = d.errors.values().sum();
        let span_s = match (d.first, d.last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        };
        let sent = lat.len() as u64;
        StepReport {
            name: self.name.clone(),
            measured: self.measured,
            count: d.ok + errors,
            ok: d.ok,
            errors,
            errors_by_kind: d.errors.clone(),
            p50_ms: percentile_ms(&lat, 50.0),
            p95_ms: percentile_ms(&lat, 95.0),
            p99_ms: percentile_ms(&lat, 99.0),
            max_ms: lat.last().map_or(0.0, |&us| us as f64 / 1000.0),
            mean_ms: if lat.is_empty() {
                0.0
            } else {
                lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
            },
            span_s,
            throughput_per_s: if span_s > 0.0 {
                sent as f64 / span_s
            } else {
                0.0
            },
            error_samples: d.samples.clone(),
        }
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds (0 when empty).
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[7000], 95.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn errors_are_counted_by_kind_with_samples() {
        let s = Step::new("create");
        let t = Instant::now();
        s.record(t, Duration::from_millis(2), Outcome::Ok);
        s.record(
            t,
            Duration::from_millis(4),
            Outcome::Status(503, "busy".into()),
        );
        s.record(t, Duration::ZERO, Outcome::Skipped("no token".into()));
        s.record(t, Duration::from_millis(1), Outcome::Check("no id".into()));
        let r = s.report();
        assert_eq!((r.count, r.ok, r.errors), (4, 1, 3));
        assert_eq!(r.errors_by_kind["503"], 1);
        assert_eq!(r.errors_by_kind["skipped: no token"], 1);
        assert_eq!(r.errors_by_kind["bad body"], 1);
        assert_eq!(r.error_samples, vec!["503: busy", "no id"]);
        assert_eq!(r.max_ms, 4.0);
    }
}
