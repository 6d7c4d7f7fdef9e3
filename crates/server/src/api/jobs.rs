//! The operator's job API: enqueue, list, inspect, cancel, retry, discard, pause queues,
//! throughput, and cron schedules. Jobs serve every shop, so all of it needs `platform:admin`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shopkeep_domain::accounts::Scope;
use shopkeep_domain::{Invalid, Timestamp};
use shopkeep_jobs::{Enqueue, EnqueueError, ScheduleError, ScheduleSpec};
use shopkeep_store::jobs::{
    self as store, AttemptRow, CancelOutcome, JobFilter, JobRow, ScheduleRow,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiQuery};
use crate::{ApiError, AppState, FieldError, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, enqueue))
        .routes(routes!(enqueue_batch))
        .routes(routes!(get_job))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(discard))
        .routes(routes!(queues))
        .routes(routes!(pause_queue))
        .routes(routes!(resume_queue))
        .routes(routes!(stats))
        .routes(routes!(list_schedules, define_schedule))
        .routes(routes!(delete_schedule))
        .routes(routes!(pause_schedule))
        .routes(routes!(resume_schedule))
}

/// The job states.
pub const STATES: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "dead",
    "cancelled",
    "discarded",
];

fn json_or_string(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_string()))
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobOut {
    /// Id.
    pub id: Uuid,
    /// Handler name.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// `queued`, `running`, `succeeded`, `dead`, `cancelled`, `discarded`.
    pub state: String,
    /// JSON arguments.
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// 0 runs first, 9 last.
    pub priority: i32,
    /// Due time (the next retry's time while a failed job waits).
    #[schema(value_type = String)]
    pub run_at: Timestamp,
    /// Attempts made so far (the running one included).
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-attempt limit in milliseconds.
    pub timeout_ms: i64,
    /// Duplicate-collapsing key.
    pub unique_key: Option<String>,
    /// Rate-limit key.
    pub rate_key: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// The shop it works for.
    pub shop_id: Option<Uuid>,
    /// The worker running it (or that ran it last).
    pub worker: Option<String>,
    /// Lease end while running.
    #[schema(value_type = Option<String>)]
    pub lease_until: Option<Timestamp>,
    /// An operator asked a running job to stop.
    pub cancel_requested: bool,
    /// 0-100, as reported by the handler.
    pub progress: i32,
    /// The handler's JSON result.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// Enqueued.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// Last attempt started.
    #[schema(value_type = Option<String>)]
    pub started_at: Option<Timestamp>,
    /// Finished (succeeded, dead, cancelled or discarded).
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<Timestamp>,
    /// Deleted after.
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Timestamp>,
}

/// Maps a stored job.
pub fn job_out(j: &JobRow) -> JobOut {
    JobOut {
        id: j.id,
        kind: j.kind.clone(),
        queue: j.queue.clone(),
        state: j.state.clone(),
        args: json_or_string(&j.args),
        priority: j.priority,
        run_at: Timestamp(j.run_at),
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        timeout_ms: j.timeout_ms,
        unique_key: j.unique_key.clone(),
        rate_key: j.rate_key.clone(),
        tags: serde_json::from_str(&j.tags).unwrap_or_default(),
        shop_id: j.shop_id,
        worker: j.lease_owner.clone(),
        lease_until: j.lease_until.map(Timestamp),
        cancel_requested: j.cancel_requested != 0,
        progress: j.progress,
        result: j.result.as_deref().map(json_or_string),
        last_error: j.last_error.clone(),
        created_at: Timestamp(j.created_at),
        started_at: j.started_at.map(Timestamp),
        finished_at: j.finished_at.map(Timestamp),
        expires_at: j.expires_at.map(Timestamp),
    }
}

/// A failed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    /// Number, from 1.
    pub attempt: i32,
    /// Worker that ran it.
    pub worker: Option<String>,
    /// Start.
    #[schema(value_type = String)]
    pub started_at: Timestamp,
    /// End.
    #[schema(value_type = String)]
    pub finished_at: Timestamp,
    /// `failed`, `timeout`, `panicked`, `lost`, `cancelled`.
    pub outcome: String,
    /// Error.
    pub error: String,
}

/// Maps a stored attempt.
pub fn attempt_out(a: &AttemptRow) -> AttemptOut {
    AttemptOut {
        attempt: a.attempt,
        worker: a.worker.clone(),
        started_at: Timestamp(a.started_at),
        finished_at: Timestamp(a.finished_at),
        outcome: a.outcome.clone(),
        error: a.error.clone(),
    }
}

/// A job with every failed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: JobOut,
    /// Failed attempts, first first.
    pub attempts: Vec<AttemptOut>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// Newest first.
    pub items: Vec<JobOut>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Filters for the job list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// `queued`, `running`, `succeeded`, `dead`, `cancelled`, `discarded`.
    pub state: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Queue.
    pub queue: Option<String>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn admin(p: &Principal) -> Result<(), ApiError> {
    p.require(Scope::PlatformAdmin)
}

/// Lists jobs, newest first, by state, kind and queue.
#[utoipa::path(get, path = "/api/v1/jobs", operation_id = "list_jobs", tag = "jobs", security(("bearer" = [])), params(JobQuery),
    responses((status = 200, description = "A page", body = JobPage),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs platform:admin", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<JobPage>, ApiError> {
    admin(&p)?;
    let mut errors = Vec::new();
    super::check_one_of("query.state", q.state.as_ref(), &STATES, &mut errors);
    let (limit, before) = super::list_params(q.limit, q.cursor.as_deref(), errors)?;
    let mut rows = store::list(
        &state.db,
        &JobFilter {
            state: q.state,
            kind: q.kind,
            queue: q.queue,
            before,
            limit: limit + 1,
        },
    )
    .await?;
    let next_cursor = super::next_cursor(&mut rows, limit, |r| r.id);
    Ok(Json(JobPage {
        next_cursor,
        items: rows.iter().map(job_out).collect(),
    }))
}

/// A job to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueIn {
    /// A registered kind.
    pub kind: String,
    /// JSON arguments (default `{}`).
    #[schema(value_type = Option<Object>)]
    pub args: Option<serde_json::Value>,
    /// Queue; the kind's by default.
    pub queue: Option<String>,
    /// 0 (first) to 9 (last); the kind's by default.
    pub priority: Option<i32>,
    /// Not before this RFC 3339 time.
    pub run_at: Option<String>,
    /// Not before this many seconds from now (0 to 31,536,000).
    pub delay_seconds: Option<f64>,
    /// 1-100; the kind's by default.
    pub max_attempts: Option<i32>,
    /// Per-attempt limit in seconds (0.01 to 86,400); the kind's by default.
    pub timeout_seconds: Option<f64>,
    /// Enqueues with the same key inside the window collapse into the first job.
    pub unique_key: Option<String>,
    /// The unique key's window in seconds (default 300).
    pub unique_for_seconds: Option<u64>,
    /// Key of the kind's rate limit.
    pub rate_key: Option<String>,
    /// Labels (at most 10).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The shop the job works for.
    pub shop_id: Option<Uuid>,
}

/// What an enqueue did.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnqueuedOut {
    /// The job (the existing one for a duplicate).
    pub id: Uuid,
    /// True when a job with the same unique key already existed in its window.
    pub duplicate: bool,
}

fn seconds(
    v: f64,
    field: &'static str,
    max: f64,
    errors: &mut Vec<Invalid>,
) -> Option<std::time::Duration> {
    if v.is_finite() && (0.0..=max).contains(&v) {
        Some(std::time::Duration::from_secs_f64(v))
    } else {
        errors.push(Invalid::new(
            field,
            "out_of_range",
            format!("{field} is 0 to {max}"),
        ));
        None
    }
}

fn to_enqueue(j: EnqueueIn) -> (Enqueue, Vec<Invalid>) {
    let mut errors = Vec::new();
    let mut e = Enqueue::new(&j.kind, j.args.unwrap_or_else(|| serde_json::json!({})));
    e.queue = j.queue;
    e.priority = j.priority;
    e.max_attempts = j.max_attempts;
    e.unique_key = j.unique_key;
    e.rate_key = j.rate_key;
    e.tags = j.tags;
    e.shop_id = j.shop_id;
    if let Some(t) = &j.run_at {
        match Timestamp::parse_rfc3339(t) {
            Some(t) => e.run_at = Some(t),
            None => errors.push(Invalid::new(
                "run_at",
                "invalid",
                "an RFC 3339 time such as 2026-11-22T09:00:00Z",
            )),
        }
    }
    if j.run_at.is_some() && j.delay_seconds.is_some() {
        errors.push(Invalid::new(
            "delay_seconds",
            "conflict",
            "give run_at or delay_seconds, not both",
        ));
    }
    if let Some(d) = j.delay_seconds {
        e.delay = seconds(d, "delay_seconds", 31_536_000.0, &mut errors);
    }
    if let Some(t) = j.timeout_seconds {
        e.timeout = seconds(t, "timeout_seconds", 86_400.0, &mut errors);
    }
    if let Some(u) = j.unique_for_seconds {
        if (1..=31_536_000).contains(&u) {
            e.unique_for = Some(std::time::Duration::from_secs(u));
        } else {
            errors.push(Invalid::new(
                "unique_for_seconds",
                "out_of_range",
                "unique_for_seconds is 1 to 31536000",
            ));
        }
    }
    (e, errors)
}

fn field_errors(prefix: &str, errors: Vec<Invalid>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|i| {
            let field = match i.field {
                "timeout" => "timeout_seconds",
                f => f,
            };
            FieldError::new(format!("{prefix}{field}"), i.code, i.message)
        })
        .collect()
}

fn enqueue_error(e: EnqueueError, prefix: &str) -> ApiError {
    match e {
        EnqueueError::Invalid(errors) => ApiError::validation(field_errors(prefix, errors)),
        EnqueueError::Store(e) => e.into(),
    }
}

/// Enqueues one job.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])), request_body = EnqueueIn,
    responses((status = 201, description = "Enqueued", body = EnqueuedOut),
        (status = 200, description = "A job with the same unique key exists; its id", body = EnqueuedOut),
        (status = 403, description = "Needs platform:admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid job", body = Problem, content_type = "application/problem+json")))]
pub async fn enqueue(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<EnqueueIn>,
) -> Result<(StatusCode, Json<EnqueuedOut>), ApiError> {
    admin(&p)?;
    let (e, mut errors) = to_enqueue(body);
    if let Err(es) = state.jobs.prepare(&e, Timestamp::now()) {
        errors.extend(es);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(field_errors("body.", errors)));
    }
    let out = state
        .jobs
        .enqueue(e)
        .await
        .map_err(|e| enqueue_error(e, "body."))?;
    let duplicate = matches!(out, store::Enqueued::Duplicate(_));
    Ok((
        if duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(EnqueuedOut {
            id: out.id(),
            duplicate,
        }),
    ))
}

/// Several jobs, enqueued together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// 1-1000 jobs.
    pub jobs: Vec<EnqueueIn>,
}

/// What a batch enqueue did, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    /// One entry per job.
    pub items: Vec<EnqueuedOut>,
}

/// Enqueues up to 1,000 jobs in one transaction: all of them or, on any error, none.
#[utoipa::path(post, path = "/api/v1/jobs/batch", tag = "jobs", security(("bearer" = [])), request_body = BatchIn,
    responses((status = 201, description = "Enqueued", body = BatchOut),
        (status = 403, description = "Needs platform:admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid jobs, each error named `body.jobs[i].field`", body = Problem, content_type = "application/problem+json")))]
pub async fn enqueue_batch(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<BatchIn>,
) -> Result<(StatusCode, Json<BatchOut>), ApiError> {
    admin(&p)?;
    if body.jobs.is_empty() || body.jobs.len() > 1000 {
        return Err(ApiError::validation(vec![FieldError::new(
            "body.jobs",
            "out_of_range",
            "1 to 1000 jobs",
        )]));
    }
    let mut errors = Vec::new();
    let mut jobs = Vec::with_capacity(body.jobs.len());
    let now = Timestamp::now();
    for (i, j) in body.jobs.into_iter().enumerate() {
        let prefix = format!("body.jobs[{i}].");
        let (e, mut errs) = to_enqueue(j);
        if let Err(es) = state.jobs.prepare(&e, now) {
            errs.extend(es);
        }
        errors.extend(field_errors(&prefix, errs));
        jobs.push(e);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let out = state
        .jobs
        .enqueue_many(jobs)
        .await
        .map_err(|e| enqueue_error(e, "body."))?;
    Ok((
        StatusCode::CREATED,
        Json(BatchOut {
            items: out
                .into_iter()
                .map(|e| EnqueuedOut {
                    id: e.id(),
                    duplicate: matches!(e, store::Enqueued::Duplicate(_)),
                })
                .collect(),
        }),
    ))
}

async fn detail(state: &AppState, id: Uuid) -> Result<JobDetail, ApiError> {
    // A failure writes its attempt and the job's new state in one transaction, but these are two
    // reads: the job is read again after its attempts, and the pair is kept only when the job did
    // not move in between (a few tries; a job that keeps moving shows its latest row).
    let mut tries = 0;
    loop {
        let job = store::get(&state.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        let attempts = store::attempts(&state.db, id).await?;
        let again = store::get(&state.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        tries += 1;
        let settled = again.state == job.state && again.attempt == job.attempt;
        if settled || tries == 5 {
            return Ok(JobDetail {
                job: job_out(&again),
                attempts: attempts.iter().map(attempt_out).collect(),
            });
        }
    }
}

/// A job: state, attempts with their errors, progress and result.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = JobDetail),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json")))]
pub async fn get_job(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    admin(&p)?;
    Ok(Json(detail(&state, id).await?))
}

/// Cancels a job: a waiting one at once; a running one is told to stop (its handler's token
/// fires within a second) and ends `cancelled`.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, description = "Cancelled", body = JobDetail),
        (status = 202, description = "Running; asked to stop", body = JobDetail),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<JobDetail>), ApiError> {
    admin(&p)?;
    let status = match state.jobs.cancel(id).await? {
        CancelOutcome::Cancelled => StatusCode::OK,
        CancelOutcome::Requested => StatusCode::ACCEPTED,
        CancelOutcome::Finished => {
            return Err(ApiError::conflict(
                "job_finished",
                "the job has already finished",
            ));
        }
        CancelOutcome::NotFound => return Err(ApiError::not_found("no such job")),
    };
    Ok((status, Json(detail(&state, id).await?)))
}

/// Runs a dead, cancelled or discarded job again now (one more attempt is allowed).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, description = "Queued again", body = JobDetail),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not dead, cancelled or discarded", body = Problem, content_type = "application/problem+json")))]
pub async fn retry(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    admin(&p)?;
    if !state.jobs.retry(id).await? {
        let d = detail(&state, id).await?;
        return Err(ApiError::conflict(
            "not_retryable",
            format!("a {} job cannot be retried", d.job.state),
        ));
    }
    Ok(Json(detail(&state, id).await?))
}

/// Gives up on a waiting or dead job; it will not run again.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/discard", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, description = "Discarded", body = JobDetail),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Running or finished", body = Problem, content_type = "application/problem+json")))]
pub async fn discard(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    admin(&p)?;
    if !state.jobs.discard(id).await? {
        let d = detail(&state, id).await?;
        return Err(ApiError::conflict(
            "not_discardable",
            format!("a {} job cannot be discarded", d.job.state),
        ));
    }
    Ok(Json(detail(&state, id).await?))
}

/// A queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueOut {
    /// Name.
    pub name: String,
    /// Paused on every instance.
    pub paused: bool,
    /// Concurrent jobs on this instance (0 when it runs no worker).
    pub concurrency: usize,
    /// Waiting (due or scheduled).
    pub queued: i64,
    /// Due now.
    pub ready: i64,
    /// Age of the oldest due job, seconds.
    pub lag_seconds: f64,
    /// Running.
    pub running: i64,
    /// Out of attempts.
    pub dead: i64,
}

/// Queue depths and state.
pub async fn queue_list(state: &AppState) -> Result<Vec<QueueOut>, ApiError> {
    let now = Timestamp::now().0;
    let depths = store::depths(&state.db).await?;
    let ready = store::ready(&state.db, now).await?;
    let paused = store::paused_queues(&state.db).await?;
    let mine = state.jobs.queues();
    let mut names: Vec<String> = mine.iter().map(|(q, _)| q.clone()).collect();
    names.extend(depths.iter().map(|d| d.0.clone()));
    names.extend(paused.iter().cloned());
    names.sort();
    names.dedup();
    let count = |q: &str, s: &str| {
        depths
            .iter()
            .find(|d| d.0 == q && d.1 == s)
            .map_or(0, |d| d.2)
    };
    Ok(names
        .into_iter()
        .map(|q| {
            let r = ready.iter().find(|r| r.0 == q);
            QueueOut {
                paused: paused.contains(&q),
                concurrency: if state.jobs_local {
                    mine.iter().find(|m| m.0 == q).map_or(0, |m| m.1)
                } else {
                    0
                },
                queued: count(&q, "queued"),
                ready: r.map_or(0, |r| r.1),
                lag_seconds: r.map_or(0.0, |r| (now - r.2).max(0) as f64 / 1e6),
                running: count(&q, "running"),
                dead: count(&q, "dead"),
                name: q,
            }
        })
        .collect())
}

/// Every queue with its depths.
#[utoipa::path(get, path = "/api/v1/jobs/queues", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, description = "Queues", body = Vec<QueueOut>)))]
pub async fn queues(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<QueueOut>>, ApiError> {
    admin(&p)?;
    Ok(Json(queue_list(&state).await?))
}

fn check_queue(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(vec![FieldError::new(
            "path.name",
            "invalid",
            "a queue name has 1-64 letters, digits, '_', '-', '.' or ':'",
        )]))
    }
}

/// Pauses a queue on every instance: running jobs finish, no new ones start.
#[utoipa::path(post, path = "/api/v1/jobs/queues/{name}/pause", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue")),
    responses((status = 200, description = "Queues", body = Vec<QueueOut>)))]
pub async fn pause_queue(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<Vec<QueueOut>>, ApiError> {
    admin(&p)?;
    check_queue(&name)?;
    state.jobs.set_paused(&name, true).await?;
    Ok(Json(queue_list(&state).await?))
}

/// Resumes a paused queue.
#[utoipa::path(post, path = "/api/v1/jobs/queues/{name}/resume", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue")),
    responses((status = 200, description = "Queues", body = Vec<QueueOut>)))]
pub async fn resume_queue(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<Vec<QueueOut>>, ApiError> {
    admin(&p)?;
    check_queue(&name)?;
    state.jobs.set_paused(&name, false).await?;
    Ok(Json(queue_list(&state).await?))
}

/// Finished attempts in one minute.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteOut {
    /// Start of the minute.
    #[schema(value_type = String)]
    pub minute: Timestamp,
    /// Jobs succeeded.
    pub succeeded: i64,
    /// Attempts failed (retried, dead, lost, timed out or cancelled).
    pub failed: i64,
}

/// Throughput window.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Minutes back from now, 1-1440 (default 60).
    pub minutes: Option<i64>,
}

/// Per-minute series, every minute of the window present (zeros included).
pub async fn series(state: &AppState, minutes: i64) -> Result<Vec<MinuteOut>, ApiError> {
    let now = Timestamp::now().0;
    let this = now - now.rem_euclid(store::MICROS_PER_MINUTE);
    let since = this - (minutes - 1) * store::MICROS_PER_MINUTE;
    let rows = store::throughput(&state.db, since).await?;
    Ok((0..minutes)
        .map(|i| {
            let m = since + i * store::MICROS_PER_MINUTE;
            let r = rows.iter().find(|r| r.0 == m);
            MinuteOut {
                minute: Timestamp(m),
                succeeded: r.map_or(0, |r| r.1),
                failed: r.map_or(0, |r| r.2),
            }
        })
        .collect())
}

/// Succeeded and failed attempts per minute.
#[utoipa::path(get, path = "/api/v1/jobs/stats", operation_id = "job_stats", tag = "jobs", security(("bearer" = [])), params(StatsQuery),
    responses((status = 200, description = "Oldest minute first", body = Vec<MinuteOut>)))]
pub async fn stats(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<Vec<MinuteOut>>, ApiError> {
    admin(&p)?;
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=1440).contains(&minutes) {
        return Err(
            ApiError::bad_request("invalid_query", "some query parameters are invalid")
                .with_errors(vec![FieldError::new(
                    "query.minutes",
                    "out_of_range",
                    "minutes is 1 to 1440",
                )]),
        );
    }
    Ok(Json(series(&state, minutes).await?))
}

/// A cron schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleOut {
    /// Unique name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Job kind.
    pub kind: String,
    /// Job arguments.
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// Job queue.
    pub queue: String,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The tick that enqueued last.
    #[schema(value_type = Option<String>)]
    pub last_run_at: Option<Timestamp>,
    /// The job it enqueued.
    pub last_job_id: Option<Uuid>,
    /// The next five fire times (none while paused).
    #[schema(value_type = Vec<String>)]
    pub upcoming: Vec<Timestamp>,
}

/// Maps a stored schedule.
pub fn schedule_out(state: &AppState, s: &ScheduleRow) -> ScheduleOut {
    ScheduleOut {
        name: s.name.clone(),
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        kind: s.kind.clone(),
        args: json_or_string(&s.args),
        queue: s.queue.clone(),
        paused: s.paused != 0,
        last_run_at: s.last_run_at.map(Timestamp),
        last_job_id: s.last_job_id,
        upcoming: if s.paused != 0 {
            Vec::new()
        } else {
            state.jobs.upcoming(s, 5)
        },
    }
}

/// Every schedule with its next fire times.
#[utoipa::path(get, path = "/api/v1/jobs/schedules", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, description = "Schedules", body = Vec<ScheduleOut>)))]
pub async fn list_schedules(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<ScheduleOut>>, ApiError> {
    admin(&p)?;
    let rows = store::schedules(&state.db).await?;
    Ok(Json(rows.iter().map(|s| schedule_out(&state, s)).collect()))
}

/// A schedule to create or update.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleIn {
    /// Unique name.
    pub name: String,
    /// 5 fields (`m h dom mon dow`), 6 with seconds first, or `@hourly`, `@daily`, ...
    pub cron: String,
    /// IANA time zone (default `UTC`).
    pub timezone: Option<String>,
    /// A registered job kind.
    pub kind: String,
    /// Its arguments (default `{}`).
    #[schema(value_type = Option<Object>)]
    pub args: Option<serde_json::Value>,
    /// Its queue (the kind's by default).
    pub queue: Option<String>,
}

/// Creates a schedule or replaces its definition (a new expression or zone restarts it from now).
#[utoipa::path(post, path = "/api/v1/jobs/schedules", tag = "jobs", security(("bearer" = [])), request_body = ScheduleIn,
    responses((status = 200, description = "Stored", body = ScheduleOut),
        (status = 422, description = "Invalid cron, zone or kind", body = Problem, content_type = "application/problem+json")))]
pub async fn define_schedule(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<ScheduleIn>,
) -> Result<Json<ScheduleOut>, ApiError> {
    admin(&p)?;
    let spec = ScheduleSpec {
        name: body.name.clone(),
        cron: body.cron,
        timezone: body.timezone.unwrap_or_else(|| "UTC".into()),
        kind: body.kind,
        args: body.args.unwrap_or_else(|| serde_json::json!({})),
        queue: body.queue,
    };
    state
        .jobs
        .define_schedule(&spec)
        .await
        .map_err(|e| match e {
            ScheduleError::Invalid(es) => ApiError::validation(field_errors("body.", es)),
            ScheduleError::Store(e) => e.into(),
        })?;
    let row = store::schedule(&state.db, &body.name)
        .await?
        .ok_or_else(|| ApiError::not_found("no such schedule"))?;
    Ok(Json(schedule_out(&state, &row)))
}

/// Deletes a schedule (jobs it enqueued stay).
#[utoipa::path(delete, path = "/api/v1/jobs/schedules/{name}", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "Schedule")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin(&p)?;
    if store::delete_schedule(&state.db, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such schedule"))
    }
}

async fn pause_or_resume(
    state: &AppState,
    name: &str,
    paused: bool,
) -> Result<Json<ScheduleOut>, ApiError> {
    if !state.jobs.set_schedule_paused(name, paused).await? {
        return Err(ApiError::not_found("no such schedule"));
    }
    let row = store::schedule(&state.db, name)
        .await?
        .ok_or_else(|| ApiError::not_found("no such schedule"))?;
    Ok(Json(schedule_out(state, &row)))
}

/// Pauses a schedule: no tick fires until it is resumed.
#[utoipa::path(post, path = "/api/v1/jobs/schedules/{name}/pause", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "Schedule")),
    responses((status = 200, description = "Paused", body = ScheduleOut),
        (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json")))]
pub async fn pause_schedule(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<ScheduleOut>, ApiError> {
    admin(&p)?;
    pause_or_resume(&state, &name, true).await
}

/// Resumes a schedule from its next tick after now (ticks missed while paused do not fire).
#[utoipa::path(post, path = "/api/v1/jobs/schedules/{name}/resume", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "Schedule")),
    responses((status = 200, description = "Resumed", body = ScheduleOut),
        (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json")))]
pub async fn resume_schedule(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<ScheduleOut>, ApiError> {
    admin(&p)?;
    pause_or_resume(&state, &name, false).await
}
