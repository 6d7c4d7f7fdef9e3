//! The `scheduler` role: cron schedules stored in `job_schedules`, fired by whichever instance
//! wins each tick's compare-and-set, so any number of schedulers enqueue each tick once.
//!
//! A tick missed while no scheduler ran (downtime) fires once when one starts again; the ticks
//! in between are skipped rather than replayed.

use std::time::Duration;

use shopkeep_domain::{Invalid, Timestamp};
use shopkeep_store::StoreError;
use shopkeep_store::jobs::{self as store, NewJob, NewSchedule, ScheduleRow, UniqueKey};
use tokio_util::sync::CancellationToken;

use crate::cron::Cron;
use crate::{Jobs, KindPolicy, valid_name};

/// A schedule to define.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// Unique name (1-64 of letters, digits, `_ - . :`).
    pub name: String,
    /// Cron expression: 5 fields, or 6 with seconds first; `@daily` and friends.
    pub cron: String,
    /// IANA time zone the expression is read in (`UTC` by default).
    pub timezone: String,
    /// Job kind each tick enqueues.
    pub kind: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Its queue; the kind's by default.
    pub queue: Option<String>,
}

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The definition breaks these rules.
    #[error("invalid schedule")]
    Invalid(Vec<Invalid>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Looks up an IANA time zone (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|_| {
        format!("unknown time zone {name:?}; use an IANA name such as UTC or Europe/Berlin")
    })
}

fn to_jiff(micros: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::MAX)
}

/// A schedule that never fires again parks here.
const NEVER: i64 = i64::MAX / 2;

fn next_after(cron: &Cron, tz: &jiff::tz::TimeZone, after: i64) -> i64 {
    cron.next_after(to_jiff(after), tz)
        .map_or(NEVER, |t| t.as_microsecond())
}

impl Jobs {
    fn check_schedule(
        &self,
        s: &ScheduleSpec,
    ) -> Result<(NewSchedule, Cron, jiff::tz::TimeZone), Vec<Invalid>> {
        let mut errors = Vec::new();
        if !valid_name(&s.name) {
            errors.push(Invalid::new(
                "name",
                "invalid",
                "a schedule name has 1-64 letters, digits, '_', '-', '.' or ':'",
            ));
        }
        let cron = Cron::parse(&s.cron)
            .map_err(|e| errors.push(Invalid::new("cron", "invalid", e.to_string())))
            .ok();
        let tz = parse_timezone(&s.timezone)
            .map_err(|e| errors.push(Invalid::new("timezone", "unknown", e)))
            .ok();
        let kind = self.inner.registry.get(&s.kind);
        if kind.is_none() {
            let known: Vec<&str> = self.inner.registry.kinds().collect();
            errors.push(Invalid::new(
                "kind",
                "unknown_kind",
                format!(
                    "no handler for kind {:?}; known kinds: {}",
                    s.kind,
                    known.join(", ")
                ),
            ));
        }
        let queue = s
            .queue
            .clone()
            .or_else(|| kind.map(|k| k.policy.queue.clone()))
            .unwrap_or_else(|| "default".into());
        if !valid_name(&queue) {
            errors.push(Invalid::new(
                "queue",
                "invalid",
                "a queue name has 1-64 letters, digits, '_', '-', '.' or ':'",
            ));
        }
        let args = s.args.to_string();
        if args.len() > crate::MAX_ARGS_BYTES {
            errors.push(Invalid::new(
                "args",
                "too_large",
                "arguments are at most 64 KiB of JSON",
            ));
        }
        match (cron, tz) {
            (Some(cron), Some(tz)) if errors.is_empty() => Ok((
                NewSchedule {
                    name: s.name.clone(),
                    cron: s.cron.trim().to_string(),
                    timezone: s.timezone.clone(),
                    kind: s.kind.clone(),
                    args,
                    queue,
                },
                cron,
                tz,
            )),
            _ => Err(errors),
        }
    }

    /// Creates a schedule, or updates its definition (a changed expression or zone restarts it
    /// from now; the paused flag is kept).
    pub async fn define_schedule(&self, s: &ScheduleSpec) -> Result<(), ScheduleError> {
        let (row, cron, tz) = self.check_schedule(s).map_err(ScheduleError::Invalid)?;
        let now = Timestamp::now().0;
        store::upsert_schedule(&self.inner.db, &row, next_after(&cron, &tz, now), now).await?;
        Ok(())
    }

    /// The next `n` fire times of a stored schedule, from its next tick on.
    pub fn upcoming(&self, s: &ScheduleRow, n: usize) -> Vec<Timestamp> {
        let (Ok(cron), Ok(tz)) = (Cron::parse(&s.cron), parse_timezone(&s.timezone)) else {
            return Vec::new();
        };
        if s.next_run_at >= NEVER {
            return Vec::new();
        }
        let mut out = vec![Timestamp(s.next_run_at)];
        out.extend(
            cron.upcoming(to_jiff(s.next_run_at), &tz, n.saturating_sub(1))
                .into_iter()
                .map(|t| Timestamp(t.as_microsecond())),
        );
        out.truncate(n);
        out
    }

    /// Pauses or resumes a schedule; a resumed schedule fires at its next tick from now.
    /// False when there is no such schedule.
    pub async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        let now = Timestamp::now().0;
        let Some(s) = store::schedule(&self.inner.db, name).await? else {
            return Ok(false);
        };
        let next = match (Cron::parse(&s.cron), parse_timezone(&s.timezone)) {
            (Ok(c), Ok(tz)) => next_after(&c, &tz, now),
            _ => NEVER,
        };
        store::set_schedule_paused(&self.inner.db, name, paused, next, now).await
    }

    fn tick_job(&self, s: &ScheduleRow, tick: i64) -> NewJob {
        let default = KindPolicy::default();
        let p = self
            .inner
            .registry
            .get(&s.kind)
            .map_or(&default, |k| &k.policy);
        NewJob {
            id: uuid::Uuid::now_v7(),
            kind: s.kind.clone(),
            queue: s.queue.clone(),
            args: s.args.clone(),
            priority: p.priority,
            run_at: tick,
            max_attempts: p.max_attempts,
            timeout_ms: i64::try_from(p.timeout.as_millis()).unwrap_or(i64::MAX),
            unique: Some(UniqueKey {
                key: format!("schedule:{}:{tick}", s.name),
                until: tick.saturating_add(86_400_000_000),
            }),
            rate_key: None,
            tags: serde_json::json!(["schedule", s.name]).to_string(),
            shop_id: None,
        }
    }

    /// Fires due schedules until `stop` fires.
    pub async fn run_scheduler(self, stop: CancellationToken) {
        tracing::info!("scheduler started");
        loop {
            let now = Timestamp::now().0;
            match store::due_schedules(&self.inner.db, now).await {
                Ok(due) => {
                    for s in due {
                        self.fire(&s, now).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading due schedules failed"),
            }
            let next = store::next_tick(&self.inner.db).await.ok().flatten();
            let now = Timestamp::now().0;
            let wait = next.map_or(1_000_000, |t| (t - now).clamp(0, 1_000_000));
            tokio::select! {
                () = tokio::time::sleep(Duration::from_micros(u64::try_from(wait).unwrap_or(0))) => {}
                () = stop.cancelled() => break,
            }
        }
        tracing::info!("scheduler stopped");
    }

    async fn fire(&self, s: &ScheduleRow, now: i64) {
        let next = match (Cron::parse(&s.cron), parse_timezone(&s.timezone)) {
            (Ok(c), Ok(tz)) => next_after(&c, &tz, now.max(s.next_run_at)),
            (Err(e), _) => {
                tracing::error!(schedule = %s.name, error = %e, "stored cron expression no longer parses; schedule parked");
                NEVER
            }
            (_, Err(e)) => {
                tracing::error!(schedule = %s.name, error = %e, "stored time zone is unknown; schedule parked");
                NEVER
            }
        };
        let tick = s.next_run_at;
        let job = self.tick_job(s, tick);
        match store::fire_schedule(&self.inner.db, &s.name, tick, next, &job, now).await {
            Ok(Some(id)) => {
                metrics::counter!("shopkeep_jobs_enqueued_total", "kind" => s.kind.clone())
                    .increment(1);
                tracing::debug!(schedule = %s.name, job = %id, "schedule fired");
                self.wake_queues([s.queue.as_str()]);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(schedule = %s.name, error = %e, "firing a schedule failed; retrying")
            }
        }
    }
}
