//! The operator pages: server-rendered HTML for platform admins.
//! - `/admin/jobs` (queues, throughput and failure chart, dead set, schedules, filtered lists) and
//!   `/admin/jobs/{id}` (a job with every attempt);
//! - `/admin/webhooks` and its detail pages (see [`webhooks`]).
//!
//! Read-only: actions go through the JSON API, so the pages carry no forms to forge.
//!
//! Sign-in is HTTP Basic with a platform admin's username and password, under the same failure
//! limits as the token endpoint. A verified header is remembered for five minutes while the
//! account's password hash and admin flag are unchanged.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde::Deserialize;
use shopkeep_domain::{Timestamp, accounts};
use shopkeep_store::accounts as users;
use shopkeep_store::jobs::{self as store, JobFilter};
use uuid::Uuid;

use crate::api::auth::ClientIp;
use crate::api::jobs::{STATES, queue_list, series};
use crate::{ApiError, AppState};

mod webhooks;

/// Routes of the operator pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/jobs", get(dashboard))
        .route("/admin/jobs/{id}", get(job_page))
        .route("/admin/assets/jobs.css", get(stylesheet))
        .merge(webhooks::router())
}

const CSS: &str = include_str!("operator.css");
const REMEMBER: Duration = Duration::from_secs(300);

/// Verified Basic headers: SHA-256 of the header -> (folded username, password hash, until).
type Remembered = Mutex<HashMap<Vec<u8>, (String, String, Instant)>>;

fn remembered() -> &'static Remembered {
    static CACHE: OnceLock<Remembered> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn challenge(detail: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"shopkeep operator\", charset=\"UTF-8\""),
    );
    r
}

/// Checks the Basic credentials of a platform admin.
pub(crate) async fn operator(
    state: &AppState,
    headers: &HeaderMap,
    ip: ClientIp,
) -> Result<String, Response> {
    let Some(raw) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(challenge(
            "sign in with a platform admin's username and password",
        ));
    };
    let decoded = raw
        .strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some((username, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(challenge("malformed Basic credentials"));
    };
    let folded = accounts::fold(username);
    let fingerprint = crate::crypto::sha256(raw.as_bytes());
    let user = users::find_user(&state.db, &folded)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let cached = {
        let mut cache = remembered().lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, v| v.2 > Instant::now());
        cache.get(&fingerprint).cloned()
    };
    if let (Some((who, hash, _)), Some(u)) = (&cached, &user)
        && *who == folded
        && *hash == u.password_hash
    {
        return if u.is_admin {
            Ok(u.username.clone())
        } else {
            Err(forbidden())
        };
    }
    let keys = [
        format!("u:{folded}"),
        ip.0.map_or_else(|| "ip:unknown".into(), |i| format!("ip:{i}")),
    ];
    for key in &keys {
        match state.auth.limiter.check(key).await {
            Ok(None) => {}
            Ok(Some(wait)) => {
                let secs = wait.as_secs().max(1);
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!("too many failed sign-in attempts; try again in {secs} seconds"),
                )
                .retry_after(secs)
                .into_response());
            }
            Err(_) => {
                return Err(ApiError::unavailable(
                    "sign-in is temporarily unavailable; retry shortly",
                )
                .into_response());
            }
        }
    }
    let verified = state
        .auth
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await
        .map_err(|e| ApiError::internal(e).into_response())?;
    let Some(u) = user.filter(|_| verified.ok) else {
        for key in &keys {
            let _ = state.auth.limiter.record_failure(key).await;
        }
        return Err(challenge("invalid username or password"));
    };
    remembered()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            fingerprint,
            (folded, u.password_hash.clone(), Instant::now() + REMEMBER),
        );
    if u.is_admin {
        Ok(u.username)
    } else {
        Err(forbidden())
    }
}

fn forbidden() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "the operator pages need a platform admin",
    )
    .into_response()
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn when(t: Option<i64>) -> String {
    t.map_or_else(|| "—".into(), |t| esc(&Timestamp(t).to_rfc3339()))
}

pub(crate) fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>{} · shopkeep jobs</title><link rel=\"stylesheet\" href=\"/admin/assets/jobs.css\"></head>\
         <body><header><a href=\"/admin/jobs\">shopkeep jobs</a> · <a href=\"/admin/webhooks\">webhooks</a></header><main>{body}</main></body></html>",
        esc(title)
    );
    let mut r = Html(html).into_response();
    crate::web::page_headers(
        r.headers_mut(),
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    r
}

/// Throughput and failures per minute as an SVG bar chart.
fn chart(points: &[(i64, i64, i64)]) -> String {
    let (w, h) = (720.0_f64, 160.0_f64);
    let max = points.iter().map(|p| p.1 + p.2).max().unwrap_or(0).max(1) as f64;
    let bw = w / points.len().max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"Jobs succeeded and failed per minute, last {} minutes\">",
        h + 20.0,
        points.len()
    );
    for (i, (minute, ok, failed)) in points.iter().enumerate() {
        let x = i as f64 * bw;
        let okh = *ok as f64 / max * h;
        let fh = *failed as f64 / max * h;
        let label = esc(&Timestamp(*minute).to_rfc3339());
        let _ = write!(
            svg,
            "<g><title>{label}: {ok} succeeded, {failed} failed</title>\
             <rect class=\"ok\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{okh:.1}\"/>\
             <rect class=\"failed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{fh:.1}\"/></g>",
            h - okh - fh,
            (bw - 1.0).max(0.5),
            h - fh,
            (bw - 1.0).max(0.5),
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\">{} min ago</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">now · peak {max} per minute</text></svg>",
        h + 16.0,
        points.len(),
        h + 16.0
    );
    svg
}

/// Dashboard filters.
#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    /// Jobs list state (default `dead`).
    pub state: Option<String>,
    /// Kind filter.
    pub kind: Option<String>,
    /// Queue filter.
    pub queue: Option<String>,
}

async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    Query(q): Query<DashboardQuery>,
) -> Result<Response, Response> {
    let who = operator(&state, &headers, ip).await?;
    let list_state = q
        .state
        .clone()
        .filter(|s| STATES.contains(&s.as_str()))
        .unwrap_or_else(|| "dead".into());
    let queues = queue_list(&state)
        .await
        .map_err(IntoResponse::into_response)?;
    let minutes = series(&state, 60)
        .await
        .map_err(IntoResponse::into_response)?;
    let jobs = store::list(
        &state.db,
        &JobFilter {
            state: Some(list_state.clone()),
            kind: q.kind.clone(),
            queue: q.queue.clone(),
            before: None,
            limit: 50,
        },
    )
    .await
    .map_err(|e| ApiError::from(e).into_response())?;
    let schedules = store::schedules(&state.db)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;

    let mut b = String::new();
    let (ok, failed): (i64, i64) = minutes
        .iter()
        .fold((0, 0), |a, m| (a.0 + m.succeeded, a.1 + m.failed));
    let _ = write!(
        b,
        "<p class=\"who\">Signed in as {} · refreshes every 10 s</p>",
        esc(&who)
    );
    let _ = write!(
        b,
        "<section><h1>Last hour</h1><p><strong>{ok}</strong> succeeded · <strong>{failed}</strong> failed attempts</p>{}</section>",
        chart(
            &minutes
                .iter()
                .map(|m| (m.minute.0, m.succeeded, m.failed))
                .collect::<Vec<_>>()
        )
    );
    b.push_str("<section><h2>Queues</h2><table><thead><tr><th scope=\"col\">Queue</th><th scope=\"col\">State</th><th scope=\"col\">Ready</th><th scope=\"col\">Waiting</th><th scope=\"col\">Running</th><th scope=\"col\">Dead</th><th scope=\"col\">Lag</th><th scope=\"col\">Workers here</th></tr></thead><tbody>");
    for qu in &queues {
        let name = esc(&qu.name);
        let _ = write!(
            b,
            "<tr><td><a href=\"/admin/jobs?state=queued&amp;queue={name}\">{name}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{}</td></tr>",
            if qu.paused {
                "<span class=\"bad\">paused</span>"
            } else {
                "running"
            },
            qu.ready,
            qu.queued,
            qu.running,
            qu.dead,
            qu.lag_seconds,
            qu.concurrency
        );
    }
    b.push_str("</tbody></table></section>");
    let _ = write!(
        b,
        "<section><h2>Jobs: {}</h2><nav class=\"tabs\">",
        esc(&list_state)
    );
    for s in STATES {
        let _ = write!(
            b,
            "<a href=\"/admin/jobs?state={s}\"{}>{s}</a> ",
            if s == list_state {
                " aria-current=\"page\""
            } else {
                ""
            }
        );
    }
    b.push_str("</nav><table><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Kind</th><th scope=\"col\">Queue</th><th scope=\"col\">Attempts</th><th scope=\"col\">Due / finished</th><th scope=\"col\">Last error</th></tr></thead><tbody>");
    if jobs.is_empty() {
        b.push_str("<tr><td colspan=\"6\">None.</td></tr>");
    }
    for j in &jobs {
        let _ = write!(
            b,
            "<tr><td><a href=\"/admin/jobs/{id}\"><code>{short}</code></a></td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
            esc(&j.kind),
            esc(&j.queue),
            j.attempt,
            j.max_attempts,
            when(j.finished_at.or(Some(j.run_at))),
            esc(j.last_error.as_deref().unwrap_or("")),
            id = j.id,
            short = &j.id.simple().to_string()[..12],
        );
    }
    b.push_str("</tbody></table></section><section><h2>Schedules</h2><table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Cron</th><th scope=\"col\">Zone</th><th scope=\"col\">Kind</th><th scope=\"col\">Next</th><th scope=\"col\">Last</th></tr></thead><tbody>");
    for s in &schedules {
        let next = if s.paused != 0 {
            "paused".to_string()
        } else {
            state
                .jobs
                .upcoming(s, 3)
                .iter()
                .map(|t| esc(&t.to_rfc3339()))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{next}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.cron),
            esc(&s.timezone),
            esc(&s.kind),
            when(s.last_run_at)
        );
    }
    b.push_str("</tbody></table></section>");
    Ok(page("Jobs", &b))
}

async fn job_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    operator(&state, &headers, ip).await?;
    let not_found = || ApiError::not_found("no such job").into_response();
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let j = store::get(&state.db, id)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(not_found)?;
    let attempts = store::attempts(&state.db, id)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let pretty = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| s.to_string())
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} <code>{}</code></h1><dl class=\"facts\">",
        esc(&j.kind),
        j.id
    );
    let facts: [(&str, String); 12] = [
        ("State", esc(&j.state)),
        ("Queue", esc(&j.queue)),
        ("Priority", j.priority.to_string()),
        ("Attempts", format!("{} of {}", j.attempt, j.max_attempts)),
        (
            "Progress",
            format!(
                "<progress max=\"100\" value=\"{0}\">{0}%</progress> {0}%",
                j.progress
            ),
        ),
        ("Enqueued", when(Some(j.created_at))),
        ("Due", when(Some(j.run_at))),
        ("Started", when(j.started_at)),
        ("Finished", when(j.finished_at)),
        ("Worker", esc(j.lease_owner.as_deref().unwrap_or("—"))),
        ("Unique key", esc(j.unique_key.as_deref().unwrap_or("—"))),
        ("Timeout", format!("{} ms", j.timeout_ms)),
    ];
    for (k, v) in facts {
        let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
    }
    let _ = write!(
        b,
        "</dl><h2>Arguments</h2><pre>{}</pre>",
        esc(&pretty(&j.args))
    );
    if let Some(r) = &j.result {
        let _ = write!(b, "<h2>Result</h2><pre>{}</pre>", esc(&pretty(r)));
    }
    b.push_str("<h2>Failed attempts</h2>");
    if attempts.is_empty() {
        b.push_str("<p>None.</p>");
    } else {
        b.push_str("<ol class=\"timeline\">");
        for a in &attempts {
            let _ = write!(
                b,
                "<li><strong>Attempt {} · {}</strong> <span>{} → {}</span> <span>{}</span><pre class=\"err\">{}</pre></li>",
                a.attempt,
                esc(&a.outcome),
                when(Some(a.started_at)),
                when(Some(a.finished_at)),
                esc(a.worker.as_deref().unwrap_or("")),
                esc(&a.error)
            );
        }
        b.push_str("</ol>");
    }
    b.push_str("<p>Retry, cancel or discard with <code>POST /api/v1/jobs/{id}/retry|cancel|discard</code>.</p>");
    Ok(page(&j.kind, &b))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}
