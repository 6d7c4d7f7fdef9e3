//! Outbound deliveries: the SSRF-guarded HTTP client and one delivery attempt.
//!
//! An attempt signs the message per Standard Webhooks (with the previous secret too while a
//! rotation overlaps), posts it with a 15 s limit and no redirects, and records the outcome. A
//! 2xx is delivered; anything else (a 3xx included) fails and enqueues the next attempt at the
//! time [`next_retry`] gives, until the schedule is exhausted. A delivery job leaves the record
//! to its own completion ([`deliver`]); [`Record::Now`] stores it before [`attempt`] returns.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;
use shopkeep_domain::webhooks::{ip_allowed, literal_ip, next_retry, standard};
use shopkeep_domain::{ShopId, Timestamp};
use shopkeep_jobs::{JobContext, JobError, JobResult};
use shopkeep_store::group::GroupCommit;
use shopkeep_store::jobs::Along;
use shopkeep_store::webhooks::{self as store, AttemptRecord, AttemptWrite, Next};
use shopkeep_store::{Db, ShopScope, jobs as store_jobs};
use uuid::Uuid;

use super::{WebhookService, deliver_job, endpoint_aad};

/// Reads what attempts need, many at once: concurrent attempts share one query.
pub type ContextReader = GroupCommit<(ShopScope, Uuid), Option<store::AttemptContext>>;

/// Starts the context reader for `db`.
pub fn start_context_reader(db: Db) -> ContextReader {
    GroupCommit::start(db, |db, asked| {
        Box::pin(async move { store::attempt_contexts(&db, &asked).await })
    })
}

/// The first bytes of a response body kept in the delivery log.
pub const KEEP_BODY: usize = 4096;

/// Resolves names with the system resolver and drops every address the SSRF rule forbids.
struct GuardedResolver {
    allow: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| ip_allowed(a.ip(), &allow))
                .collect();
            if kept.is_empty() {
                let msg = if addrs.is_empty() {
                    format!("{host} has no address")
                } else {
                    format!("{host} resolves only to private or reserved addresses; refused")
                };
                return Err(msg.into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client that posts deliveries. It never follows redirects, uses no proxy, and connects
/// only to addresses that pass the SSRF rule after DNS resolution.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    allow: Arc<Vec<IpNet>>,
}

/// What an endpoint answered, or why nothing was sent or received.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status and the first [`KEEP_BODY`] bytes of the body.
    Status(u16, String),
    /// The address was refused by the SSRF rule.
    Refused(String),
    /// Connection, TLS or timeout error.
    Error(String),
}

impl Client {
    /// A client with the given time limit; `allow` lists networks exempt from the SSRF rule.
    pub fn new(timeout: Duration, allow: Vec<IpNet>) -> anyhow::Result<Self> {
        let allow = Arc::new(allow);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("shopkeep-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow: allow.clone(),
            }))
            .build()?;
        Ok(Client { http, allow })
    }

    /// Posts `body` to `url` with `headers`.
    pub async fn post(&self, url: &str, headers: &[(String, String)], body: String) -> Answer {
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Answer::Error(format!("bad URL: {e}")),
        };
        // An address literal never reaches the resolver, so it is checked here.
        if let Some(ip) = literal_ip(&parsed)
            && !ip_allowed(ip, &self.allow)
        {
            return Answer::Refused(format!("{ip} is a private or reserved address; refused"));
        }
        let mut req = self
            .http
            .post(parsed)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.body(body).send().await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut kept: Vec<u8> = Vec::new();
                while kept.len() < KEEP_BODY {
                    match resp.chunk().await {
                        Ok(Some(c)) => {
                            kept.extend_from_slice(&c[..c.len().min(KEEP_BODY - kept.len())])
                        }
                        _ => break,
                    }
                }
                Answer::Status(status, storable(&String::from_utf8_lossy(&kept)))
            }
            Err(e) => {
                let text = storable(&error_chain(&e));
                if text.contains("refused") && text.contains("private or reserved") {
                    Answer::Refused(text)
                } else if e.is_timeout() {
                    Answer::Error(format!("timed out: {text}"))
                } else {
                    Answer::Error(text)
                }
            }
        }
    }
}

/// Text any engine stores: PostgreSQL `TEXT` cannot hold NUL, so it becomes U+FFFD.
fn storable(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// How one attempt ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The endpoint answered 2xx.
    Delivered {
        /// Attempt number.
        attempt: i32,
        /// Status.
        status: u16,
    },
    /// It failed; the next attempt is due then.
    Retrying {
        /// Attempt number.
        attempt: i32,
        /// Next attempt, microseconds.
        next_at: i64,
        /// What happened.
        error: String,
    },
    /// It failed and the schedule is exhausted.
    Failed {
        /// Attempt number.
        attempt: i32,
        /// What happened.
        error: String,
    },
    /// Not sent: the endpoint is disabled or gone, or the delivery is no longer pending.
    Skipped {
        /// Why.
        why: String,
    },
    /// Not sent yet: the endpoint's rate limit; the attempt moved to `at`.
    Postponed {
        /// Microseconds.
        at: i64,
    },
}

/// The job handler of [`super::DELIVER`]. The attempt is recorded with the job's completion
/// ([`JobContext::complete_with`]): one transaction marks the job succeeded and stores what the
/// attempt did.
pub async fn deliver(svc: &WebhookService, ctx: &JobContext, delivery: Uuid) -> JobResult {
    let shop = ctx
        .shop_id
        .ok_or_else(|| JobError::fatal("a delivery job carries its shop"))?;
    let out = attempt(
        svc,
        ctx.db(),
        ShopScope::verified(ShopId(shop)),
        delivery,
        Timestamp::now().0,
        Record::WithJob(ctx),
    )
    .await?;
    Ok(serde_json::to_value(out).ok())
}

/// Where an attempt's record goes, and which job makes it.
pub enum Record<'a> {
    /// Stored before the attempt returns. `job`, when given, is the job making the attempt, as
    /// for `WithJob`; `None` skips that check.
    Now {
        /// The job making the attempt.
        job: Option<Uuid>,
    },
    /// Left to the completion of the job making the attempt. When the delivery now expects
    /// another job (a resend replaced it), this one skips.
    WithJob(&'a JobContext),
}

/// Makes one attempt of `delivery` as of `now` (microseconds; the retry schedule and the
/// auto-disable rule count from it, so tests can drive them with their own clock) and records it
/// as `how` says.
pub async fn attempt(
    svc: &WebhookService,
    db: &Db,
    scope: ShopScope,
    delivery: Uuid,
    now: i64,
    how: Record<'_>,
) -> Result<Outcome, JobError> {
    let job = match &how {
        Record::Now { job } => *job,
        Record::WithJob(ctx) => Some(ctx.id),
    };
    let shop = scope.shop_id().0;
    let Some(store::AttemptContext {
        delivery: d,
        endpoint,
        payload,
    }) = svc.context_reader(db).read((scope, delivery)).await?
    else {
        return Ok(Outcome::Skipped {
            why: "the delivery no longer exists".into(),
        });
    };
    if d.status != "pending" {
        return Ok(Outcome::Skipped {
            why: format!("the delivery is {}", d.status),
        });
    }
    if let Some(j) = job
        && d.next_job.is_some_and(|expected| expected != j)
    {
        return Ok(Outcome::Skipped {
            why: "a newer job makes this delivery's next attempt".into(),
        });
    }
    let endpoint = match endpoint {
        Some(e) if e.enabled == 1 => e,
        other => {
            let why = if other.is_some() {
                "the endpoint is disabled"
            } else {
                "the endpoint was deleted"
            };
            store::skip_delivery(db, scope, delivery, why, now).await?;
            ::metrics::counter!("shopkeep_webhook_deliveries_total", "outcome" => "skipped")
                .increment(1);
            return Ok(Outcome::Skipped { why: why.into() });
        }
    };
    if let Some(rate) = endpoint.rate_per_second.filter(|r| *r > 0) {
        let emission = 1_000_000 / i64::from(rate);
        let key = format!("webhook_endpoint:{}", endpoint.id);
        if let Some(at) = store_jobs::rate_acquire(db, &key, emission, i64::from(rate), now).await?
        {
            store::postpone(db, scope, delivery, &deliver_job(shop, delivery, at), now).await?;
            return Ok(Outcome::Postponed { at });
        }
    }
    let aad = endpoint_aad(shop, endpoint.id);
    let mut secrets = vec![svc.open(&endpoint.secret, &aad).map_err(JobError::fatal)?];
    if let (Some(prev), Some(until)) = (&endpoint.previous_secret, endpoint.previous_until)
        && until > now
    {
        secrets.push(svc.open(prev, &aad).map_err(JobError::fatal)?);
    }
    let parsed: Vec<standard::WebhookSecret> = secrets
        .iter()
        .map(|s| standard::WebhookSecret::parse(s))
        .collect::<Result<_, _>>()
        .map_err(|e| JobError::fatal(format!("a stored endpoint secret is unusable: {e}")))?;
    let refs: Vec<&standard::WebhookSecret> = parsed.iter().collect();
    let msg_id = format!("msg_{}", d.message_id.simple());
    let ts = now.div_euclid(1_000_000);
    let mut headers: Vec<(String, String)> =
        serde_json::from_str::<BTreeMap<String, String>>(&endpoint.headers)
            .unwrap_or_default()
            .into_iter()
            .collect();
    headers.push((standard::ID_HEADER.into(), msg_id.clone()));
    headers.push((standard::TIMESTAMP_HEADER.into(), ts.to_string()));
    headers.push((
        standard::SIGNATURE_HEADER.into(),
        standard::signature_header(&refs, &msg_id, ts, payload.as_bytes()),
    ));
    let started = Instant::now();
    let answer = svc.client.post(&endpoint.url, &headers, payload).await;
    let latency = started.elapsed();
    ::metrics::histogram!("shopkeep_webhook_delivery_seconds").record(latency.as_secs_f64());
    let number = d.attempts + 1;
    let (status_code, error, body, ok) = match &answer {
        Answer::Status(s, b) => {
            let ok = (200..300).contains(s);
            let err = (!ok).then(|| format!("the endpoint answered {s}"));
            (Some(i32::from(*s)), err, b.clone(), ok)
        }
        Answer::Refused(e) | Answer::Error(e) => (None, Some(e.clone()), String::new(), false),
    };
    let next = if ok {
        Next::Delivered
    } else {
        match next_retry(number - d.retry_base) {
            Some(wait) => Next::Retry(Box::new(deliver_job(
                shop,
                delivery,
                now + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX / 2),
            ))),
            None => Next::Failed,
        }
    };
    let record = AttemptRecord {
        attempt: number,
        started_at: now,
        latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
        status_code,
        error: error.clone(),
        response_body: body,
    };
    let disable_after = i64::try_from(svc.opts.disable_after.as_micros()).unwrap_or(i64::MAX);
    let write = AttemptWrite {
        scope,
        delivery: d,
        attempt: record,
        next: next.clone(),
        now,
        disable_after,
    };
    match how {
        Record::Now { .. } => {
            store::record_attempts(db, std::slice::from_ref(&write)).await?;
        }
        Record::WithJob(ctx) => ctx.complete_with(Along::WebhookAttempt(Box::new(write))),
    }
    let outcome_label = match (&answer, ok) {
        (_, true) => "delivered",
        (Answer::Refused(_), _) => "refused",
        _ => "failed",
    };
    ::metrics::counter!("shopkeep_webhook_deliveries_total", "outcome" => outcome_label)
        .increment(1);
    let error = error.unwrap_or_default();
    Ok(match next {
        Next::Delivered => Outcome::Delivered {
            attempt: number,
            status: u16::try_from(status_code.unwrap_or(200)).unwrap_or(200),
        },
        Next::Retry(j) => Outcome::Retrying {
            attempt: number,
            next_at: j.run_at,
            error,
        },
        Next::Failed => Outcome::Failed {
            attempt: number,
            error,
        },
    })
}
