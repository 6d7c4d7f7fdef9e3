//! Background jobs on both engines: results and progress, retries with backoff to the dead set,
//! manual retry and discard, panics, timeouts, cancellation, unique keys, rate limits, paused
//! queues, the order-decision hook inside the decision's transaction, backoff across a restart,
//! schedules with three instances, graceful shutdown, and worker processes killed with SIGKILL.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use shopkeep_jobs::{Backoff, JobContext, JobError, KindPolicy, Rate, Registry};
use shopkeep_store::jobs::Along;
use shopkeep_store::{Db, ShopScope, on_pool};

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, TestApp, TestStorage, problem, spawn_with_jobs};

fn fast(queue: &str) -> KindPolicy {
    KindPolicy {
        queue: queue.into(),
        backoff: Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(80),
        },
        ..KindPolicy::default()
    }
}

#[derive(Deserialize)]
struct SleepArgs {
    ms: u64,
    #[serde(default)]
    cooperative: bool,
}

/// Handlers the tests enqueue.
fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(
        "test.echo",
        fast("default"),
        |ctx: JobContext, args: Value| async move {
            ctx.progress(50).await?;
            Ok(Some(json!({ "echo": args, "attempt": ctx.attempt })))
        },
    );
    r.register("test.fail", fast("default"), |ctx: JobContext, _: Value| async move {
        Err(JobError::retry(format!("boom {}", ctx.attempt)))
    });
    r.register(
        "test.fatal",
        fast("default"),
        |_: JobContext, _: Value| async move { Err(JobError::fatal("bad input")) },
    );
    r.register(
        "test.xss",
        fast("default"),
        |_: JobContext, _: Value| async move { Err(JobError::fatal("<script>alert(1)</script>")) },
    );
    r.register(
        "test.panic",
        fast("default"),
        |ctx: JobContext, _: Value| async move {
            if ctx.attempt == 1 {
                panic!("poison on the first attempt");
            }
            Ok(None)
        },
    );
    r.register(
        "test.sleep",
        fast("default"),
        |ctx: JobContext, a: SleepArgs| async move {
            if a.cooperative {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(a.ms)) => Ok(None),
                    () = ctx.cancel.cancelled() => Err(JobError::retry("stopped on request")),
                }
            } else {
                tokio::time::sleep(Duration::from_millis(a.ms)).await;
                Ok(None)
            }
        },
    );
    r.register(
        "test.rated",
        KindPolicy {
            rate: Some(Rate {
                per_second: 2.0,
                burst: 1,
            }),
            ..fast("default")
        },
        |_: JobContext, _: Value| async move { Ok(None) },
    );
    r.register(
        "test.along_refused",
        fast("default"),
        |ctx: JobContext, _: Value| async move {
            ctx.complete_with(refused_write());
            Ok(Some(json!({ "posted": true })))
        },
    );
    r.register(
        "test.slow_retry",
        KindPolicy {
            backoff: Backoff {
                base: Duration::from_secs(3600),
                max: Duration::from_secs(7200),
            },
            ..fast("default")
        },
        |_: JobContext, _: Value| async move { Err(JobError::retry("upstream down")) },
    );
    r
}

/// A delivery attempt the database refuses for good: its shop does not exist.
fn refused_write() -> Along {
    use shopkeep_store::webhooks::{AttemptRecord, AttemptWrite, Delivery, Next};
    let shop = uuid::Uuid::now_v7();
    let now = shopkeep_domain::Timestamp::now().0;
    Along::WebhookAttempt(Box::new(AttemptWrite {
        scope: ShopScope::verified(shopkeep_domain::ShopId(shop)),
        delivery: Delivery {
            shop_id: shop,
            id: uuid::Uuid::now_v7(),
            message_id: uuid::Uuid::now_v7(),
            endpoint_id: uuid::Uuid::now_v7(),
            event_type: "order.created".into(),
            resource_id: "r1".into(),
            status: "pending".into(),
            attempts: 0,
            retry_base: 0,
            next_attempt_at: Some(now),
            next_job: None,
            last_status: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        },
        attempt: AttemptRecord {
            attempt: 1,
            started_at: now,
            latency_us: 1_000,
            status_code: Some(204),
            error: None,
            response_body: String::new(),
        },
        next: Next::Delivered,
        now,
        disable_after: i64::MAX,
    }))
}

async fn admin_app(engine: Engine) -> (TestApp, String) {
    let storage = TestStorage::new(engine).await;
    start_admin(storage).await
}

async fn start_admin(storage: TestStorage) -> (TestApp, String) {
    let mut config = storage.config();
    config.bootstrap_admin = Some(("root".into(), PASSWORD.to_string().into()));
    let app = spawn_with_jobs(storage, config, registry()).await;
    let token = app.login("root", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    (app, token)
}

async fn enqueue(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.as_user(Method::POST, token, "/api/v1/jobs")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn enqueue_id(app: &TestApp, token: &str, body: Value) -> String {
    let res = enqueue(app, token, body).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

async fn job(app: &TestApp, token: &str, id: &str) -> Value {
    let res = app.get_as(token, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Polls the job until `done` says so (10 s at most).
async fn wait_for(
    app: &TestApp,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let j = job(app, token, id).await;
        if done(&j) {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waiting for {what}: {j:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_state(app: &TestApp, token: &str, id: &str, state: &str) -> Value {
    wait_for(app, token, id, state, |j| j["state"] == state).await
}

async fn post(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.as_user(Method::POST, token, path).send().await.unwrap()
}

both_engines!(
    jobs_run_report_progress_and_keep_results,
    failures_back_off_then_die_keeping_every_error,
    a_panicking_job_does_not_kill_the_worker,
    timeouts_and_cancellation,
    unique_keys_collapse_duplicates,
    bad_jobs_are_refused_naming_every_field,
    decisions_enqueue_the_hook_in_their_transaction,
    rate_limited_jobs_are_rescheduled_not_run,
    paused_queues_hold_their_jobs,
    backoff_survives_a_restart,
    a_schedule_fires_once_per_tick_across_three_instances,
    shutdown_releases_running_jobs_without_counting_the_attempt,
    the_dashboard_shows_queues_charts_and_the_dead_set_to_admins_only,
    a_write_along_the_database_refuses_does_not_hold_the_job_back,
);

async fn jobs_run_report_progress_and_keep_results(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let id = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.echo", "args": { "x": 1 }, "tags": ["t1"] }),
    )
    .await;
    let j = wait_state(&app, &token, &id, "succeeded").await;
    assert_eq!(j["result"], json!({ "echo": { "x": 1 }, "attempt": 1 }));
    assert_eq!(j["progress"], 100);
    assert_eq!(j["attempt"], 1);
    assert_eq!(j["tags"], json!(["t1"]));
    assert_eq!(j["attempts"], json!([]));
    assert!(j["expires_at"].is_string() && j["finished_at"].is_string());

    let list: Value = app
        .get_as(&token, "/api/v1/jobs?state=succeeded&kind=test.echo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let stats: Value = app
        .get_as(&token, "/api/v1/jobs/stats?minutes=5")
        .await
        .json()
        .await
        .unwrap();
    let succeeded: i64 = stats
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["succeeded"].as_i64().unwrap())
        .sum();
    assert!(succeeded >= 1, "{stats}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("shopkeep_jobs_succeeded_total{kind=\"test.echo\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("shopkeep_jobs_wait_seconds_bucket"));

    // Operators only: a customer is refused.
    let customer = app.customer("jobwatcher").await;
    let p = problem(app.get_as(&customer, "/api/v1/jobs").await, 403).await;
    assert!(
        p["detail"].as_str().unwrap().contains("platform:admin"),
        "{p}"
    );
}

async fn a_write_along_the_database_refuses_does_not_hold_the_job_back(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let refused = enqueue_id(&app, &token, json!({ "kind": "test.along_refused" })).await;
    let echo = enqueue_id(&app, &token, json!({ "kind": "test.echo", "args": 1 })).await;
    let j = wait_state(&app, &token, &refused, "succeeded").await;
    assert_eq!(j["result"], json!({ "posted": true }));
    wait_state(&app, &token, &echo, "succeeded").await;
}

async fn failures_back_off_then_die_keeping_every_error(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let id = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.fail", "max_attempts": 3 }),
    )
    .await;
    let j = wait_state(&app, &token, &id, "dead").await;
    assert_eq!(j["attempt"], 3);
    assert_eq!(j["last_error"], "boom 3");
    let attempts = j["attempts"].as_array().unwrap();
    let errors: Vec<&str> = attempts
        .iter()
        .map(|a| a["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["boom 1", "boom 2", "boom 3"]);
    assert!(attempts.iter().all(|a| a["outcome"] == "failed"));
    // Backoff: each attempt starts after the previous one's failure plus a delay.
    for w in attempts.windows(2) {
        assert!(w[1]["started_at"].as_str() > w[0]["finished_at"].as_str());
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("shopkeep_jobs_dead_total{kind=\"test.fail\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("shopkeep_jobs_retried_total{kind=\"test.fail\"} 2"));

    // Manual retry gives one more attempt; it fails again and keeps all four errors.
    let res = post(&app, &token, &format!("/api/v1/jobs/{id}/retry")).await;
    assert_eq!(res.status(), 200);
    let j = wait_for(&app, &token, &id, "dead again", |j| {
        j["state"] == "dead" && j["attempt"] == 4
    })
    .await;
    assert_eq!(j["attempts"].as_array().unwrap().len(), 4);
    let dead: Value = app
        .get_as(&token, "/api/v1/jobs?state=dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dead["items"][0]["id"], id.as_str());
    // Discard: it leaves the dead set and cannot be discarded twice.
    assert_eq!(
        post(&app, &token, &format!("/api/v1/jobs/{id}/discard"))
            .await
            .status(),
        200
    );
    assert_eq!(job(&app, &token, &id).await["state"], "discarded");
    problem(
        post(&app, &token, &format!("/api/v1/jobs/{id}/discard")).await,
        409,
    )
    .await;

    // A fatal error is not retried.
    let id = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.fatal", "max_attempts": 5 }),
    )
    .await;
    let j = wait_state(&app, &token, &id, "dead").await;
    assert_eq!(j["attempt"], 1);
    assert_eq!(j["attempts"][0]["error"], "bad input");
    // A succeeded job cannot be retried.
    let ok = enqueue_id(&app, &token, json!({ "kind": "test.echo" })).await;
    wait_state(&app, &token, &ok, "succeeded").await;
    assert_eq!(
        problem(
            post(&app, &token, &format!("/api/v1/jobs/{ok}/retry")).await,
            409
        )
        .await["code"],
        "not_retryable"
    );
}

async fn a_panicking_job_does_not_kill_the_worker(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let id = enqueue_id(&app, &token, json!({ "kind": "test.panic" })).await;
    let j = wait_state(&app, &token, &id, "succeeded").await;
    assert_eq!(j["attempt"], 2);
    assert_eq!(j["attempts"][0]["outcome"], "panicked");
    assert!(
        j["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("poison on the first attempt")
    );
    let after = enqueue_id(&app, &token, json!({ "kind": "test.echo" })).await;
    wait_state(&app, &token, &after, "succeeded").await;
}

async fn timeouts_and_cancellation(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    // A handler that ignores its token is stopped at its timeout.
    let id = enqueue_id(&app, &token, json!({ "kind": "test.sleep", "args": { "ms": 30000 }, "timeout_seconds": 0.2, "max_attempts": 1 })).await;
    let j = wait_state(&app, &token, &id, "dead").await;
    assert_eq!(j["attempts"][0]["outcome"], "timeout");
    assert!(
        j["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 200 ms")
    );

    // A waiting job is cancelled at once.
    let id = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.echo", "delay_seconds": 3600 }),
    )
    .await;
    let res = post(&app, &token, &format!("/api/v1/jobs/{id}/cancel")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "cancelled");
    assert_eq!(
        problem(
            post(&app, &token, &format!("/api/v1/jobs/{id}/cancel")).await,
            409
        )
        .await["code"],
        "job_finished"
    );
    problem(
        post(
            &app,
            &token,
            &format!("/api/v1/jobs/{}/cancel", uuid::Uuid::now_v7()),
        )
        .await,
        404,
    )
    .await;

    // A running job's token fires; it ends cancelled within a second.
    let id = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.sleep", "args": { "ms": 30000, "cooperative": true } }),
    )
    .await;
    wait_state(&app, &token, &id, "running").await;
    let asked = Instant::now();
    let res = post(&app, &token, &format!("/api/v1/jobs/{id}/cancel")).await;
    assert_eq!(res.status(), 202);
    let j = wait_state(&app, &token, &id, "cancelled").await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "cancelled after {:?}",
        asked.elapsed()
    );
    assert_eq!(j["attempts"][0]["outcome"], "cancelled");
    // Cancelled jobs can be run again.
    assert_eq!(
        post(&app, &token, &format!("/api/v1/jobs/{id}/retry"))
            .await
            .status(),
        200
    );
    let state = job(&app, &token, &id).await["state"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(state == "queued" || state == "running", "{state}");
}

async fn unique_keys_collapse_duplicates(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let body = json!({ "kind": "test.echo", "unique_key": "sync:shop-1", "unique_for_seconds": 60, "delay_seconds": 30 });
    let first = enqueue_id(&app, &token, body.clone()).await;
    let res = enqueue(&app, &token, body.clone()).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again, json!({ "id": first, "duplicate": true }));
    // A batch collapses onto the same job too, and other keys are new.
    let res = app
        .as_user(Method::POST, &token, "/api/v1/jobs/batch")
        .json(&json!({ "jobs": [body, { "kind": "test.echo", "unique_key": "sync:shop-2" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["items"][0], json!({ "id": first, "duplicate": true }));
    assert_eq!(b["items"][1]["duplicate"], false);
}

async fn bad_jobs_are_refused_naming_every_field(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let p = problem(
        enqueue(&app, &token, json!({ "kind": "nope", "priority": 12, "delay_seconds": -1, "max_attempts": 0, "queue": "bad queue!" })).await,
        422,
    )
    .await;
    let mut fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "body.delay_seconds",
            "body.kind",
            "body.max_attempts",
            "body.priority",
            "body.queue"
        ]
    );
    let p = problem(
        app.as_user(Method::POST, &token, "/api/v1/jobs/batch")
            .json(&json!({ "jobs": [{ "kind": "test.echo" }, { "kind": "test.echo", "run_at": "soon" }] }))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "body.jobs[1].run_at");
    // Nothing of a refused batch was stored.
    let all: Value = app
        .get_as(&token, "/api/v1/jobs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"], json!([]));
    // Malformed JSON and unknown fields are 400/422 problems, not panics.
    let res = app
        .as_user(Method::POST, &token, "/api/v1/jobs")
        .header("content-type", "application/json")
        .body("{\"kind\":")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    problem(
        enqueue(
            &app,
            &token,
            json!({ "kind": "test.echo", "colour": "red" }),
        )
        .await,
        422,
    )
    .await;
    let p = problem(
        app.get_as(&token, "/api/v1/jobs?state=sleeping&limit=0")
            .await,
        400,
    )
    .await;
    assert_eq!(p["errors"].as_array().unwrap().len(), 2);
    let p = problem(
        app.as_user(Method::POST, &token, "/api/v1/jobs/schedules")
            .json(&json!({ "name": "x", "cron": "61 * * * *", "timezone": "Mars/Base", "kind": "nope" }))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    let mut fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["body.cron", "body.kind", "body.timezone"]);
}

async fn decisions_enqueue_the_hook_in_their_transaction(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let customer = app.customer("hookbuyer").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = app
            .as_user(Method::POST, &customer, "/api/v1/orders")
            .json(&json!({ "item_name": "Tea", "quantity": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let decide = |id: &str, what: &str, who: &str| {
        app.as_user(Method::POST, who, &format!("/api/v1/orders/{id}/{what}"))
            .json(&json!({ "reason": "out of stock" }))
            .send()
    };
    assert_eq!(
        decide(&ids[0], "approve", &token).await.unwrap().status(),
        200
    );
    assert_eq!(
        decide(&ids[1], "reject", &token).await.unwrap().status(),
        200
    );
    assert_eq!(
        decide(&ids[2], "cancel", &customer).await.unwrap().status(),
        200
    );
    // A refused decision (already decided) enqueues nothing.
    assert_eq!(
        decide(&ids[0], "reject", &token).await.unwrap().status(),
        409
    );

    let start = Instant::now();
    let jobs = loop {
        let list: Value = app
            .get_as(&token, "/api/v1/jobs?kind=orders.decision")
            .await
            .json()
            .await
            .unwrap();
        let items = list["items"].as_array().unwrap().clone();
        if items.len() == 2 && items.iter().all(|j| j["state"] == "succeeded") {
            break items;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{list:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(jobs.iter().all(|j| j["shop_id"].is_string()));
    let notes: Value = app
        .get_as(&customer, "/api/v1/me/notifications")
        .await
        .json()
        .await
        .unwrap();
    let items = notes["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{notes:#}");
    let kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["order.rejected", "order.approved"]);
    assert!(items[0]["body"].as_str().unwrap().contains("out of stock"));
    assert_eq!(items[1]["resource_id"], ids[0].as_str());
    // Another user sees none of them.
    let other = app.customer("hookother").await;
    let theirs: Value = app
        .get_as(&other, "/api/v1/me/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]));
}

async fn rate_limited_jobs_are_rescheduled_not_run(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            enqueue_id(
                &app,
                &token,
                json!({ "kind": "test.rated", "rate_key": "provider:shop-a" }),
            )
            .await,
        );
    }
    let other = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.rated", "rate_key": "provider:shop-b" }),
    )
    .await;
    let mut started = Vec::new();
    for id in &ids {
        let j = wait_state(&app, &token, id, "succeeded").await;
        // Rescheduling for the limit is not an attempt.
        assert_eq!(j["attempt"], 1);
        started.push(
            shopkeep_domain::Timestamp::parse_rfc3339(j["started_at"].as_str().unwrap())
                .unwrap()
                .0,
        );
    }
    started.sort();
    // Two per second with no burst: four runs span at least 1.5 s.
    let span = started[3] - started[0];
    assert!(span >= 1_400_000, "four runs within {span} µs");
    // Another key has its own budget.
    let j = wait_state(&app, &token, &other, "succeeded").await;
    assert_eq!(j["attempt"], 1);
}

async fn paused_queues_hold_their_jobs(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let q: Value = post(&app, &token, "/api/v1/jobs/queues/default/pause")
        .await
        .json()
        .await
        .unwrap();
    let default = q
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["paused"], true);
    let id = enqueue_id(&app, &token, json!({ "kind": "test.echo" })).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(job(&app, &token, &id).await["state"], "queued");
    let q: Value = app
        .get_as(&token, "/api/v1/jobs/queues")
        .await
        .json()
        .await
        .unwrap();
    let default = q
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["queued"], 1);
    assert_eq!(default["ready"], 1);
    assert_eq!(
        post(&app, &token, "/api/v1/jobs/queues/default/resume")
            .await
            .status(),
        200
    );
    wait_state(&app, &token, &id, "succeeded").await;
    problem(
        post(&app, &token, "/api/v1/jobs/queues/bad%20name/pause").await,
        422,
    )
    .await;
}

async fn backoff_survives_a_restart(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let id = enqueue_id(&app, &token, json!({ "kind": "test.slow_retry" })).await;
    let before = wait_for(&app, &token, &id, "first failure", |j| {
        j["attempts"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(before["state"], "queued");
    let due =
        shopkeep_domain::Timestamp::parse_rfc3339(before["run_at"].as_str().unwrap()).unwrap();
    assert!(
        due.0 - shopkeep_domain::Timestamp::now().0 > 1_700_000_000,
        "retry is due in at least ~30 min: {before}"
    );

    let storage = app.stop().await;
    let (app, token) = start_admin(storage).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = job(&app, &token, &id).await;
    assert_eq!(after["state"], "queued");
    assert_eq!(after["run_at"], before["run_at"]);
    assert_eq!(after["attempt"], 1);
    assert_eq!(after["attempts"][0]["error"], "upstream down");
}

async fn a_schedule_fires_once_per_tick_across_three_instances(engine: Engine) {
    let (a, token) = admin_app(engine).await;
    let storage_config = a.storage.config();
    let b = spawn_with_jobs(
        TestStorage::new(Engine::Sqlite).await,
        storage_config.clone(),
        registry(),
    )
    .await;
    let c = spawn_with_jobs(
        TestStorage::new(Engine::Sqlite).await,
        storage_config,
        registry(),
    )
    .await;
    let res = a
        .as_user(Method::POST, &token, "/api/v1/jobs/schedules")
        .json(&json!({ "name": "every-second", "cron": "* * * * * *", "timezone": "Europe/Berlin", "kind": "test.echo", "args": { "from": "cron" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let s: Value = res.json().await.unwrap();
    let upcoming = s["upcoming"].as_array().unwrap();
    assert_eq!(upcoming.len(), 5);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let paused: Value = post(&a, &token, "/api/v1/jobs/schedules/every-second/pause")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["upcoming"], json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ticks: Vec<(i64, i64)> = on_pool!(&a.db, pool => sqlx::query_as(
        "SELECT run_at, count(*) FROM jobs WHERE kind = 'test.echo' GROUP BY run_at ORDER BY run_at")
        .fetch_all(pool).await.unwrap());
    assert!(ticks.len() >= 3, "ticks: {ticks:?}");
    assert!(
        ticks.iter().all(|(_, n)| *n == 1),
        "one job per tick: {ticks:?}"
    );
    assert!(
        ticks.windows(2).all(|w| w[1].0 - w[0].0 == 1_000_000),
        "ticks a second apart: {ticks:?}"
    );
    // No tick fires while paused; resuming lists the next ticks again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let n: i64 = on_pool!(&a.db, pool => sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'test.echo'").fetch_one(pool).await.unwrap());
    assert_eq!(n, i64::try_from(ticks.len()).unwrap());
    let resumed: Value = post(&a, &token, "/api/v1/jobs/schedules/every-second/resume")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["upcoming"].as_array().unwrap().len(), 5);
    let list: Value = a
        .get_as(&token, "/api/v1/jobs/schedules")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["every-second", "shopkeep.retention"]);
    assert_eq!(
        a.as_user(
            Method::DELETE,
            &token,
            "/api/v1/jobs/schedules/every-second"
        )
        .send()
        .await
        .unwrap()
        .status(),
        204
    );
    drop((b, c));
}

async fn shutdown_releases_running_jobs_without_counting_the_attempt(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let id = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.sleep", "args": { "ms": 60000 } }),
    )
    .await;
    wait_state(&app, &token, &id, "running").await;
    let db: Db = app.db.clone();
    let stopping = Instant::now();
    let storage = app.stop().await;
    // The grace (2 s in tests) passed, then the job was given back.
    assert!(stopping.elapsed() >= Duration::from_secs(2));
    drop(db);
    let db = Db::connect(&storage.config().db_options()).await.unwrap();
    let (state, attempt): (String, i32) = on_pool!(&db, pool => sqlx::query_as(
        "SELECT state, attempt FROM jobs WHERE kind = 'test.sleep'").fetch_one(pool).await.unwrap());
    assert_eq!((state.as_str(), attempt), ("queued", 0));
    db.close().await;
}

async fn the_dashboard_shows_queues_charts_and_the_dead_set_to_admins_only(engine: Engine) {
    let (app, token) = admin_app(engine).await;
    let id = enqueue_id(
        &app,
        &token,
        json!({ "kind": "test.xss", "max_attempts": 1 }),
    )
    .await;
    wait_state(&app, &token, &id, "dead").await;
    let ok = enqueue_id(&app, &token, json!({ "kind": "test.echo" })).await;
    wait_state(&app, &token, &ok, "succeeded").await;
    let basic = |path: &str, user: &str, password: &str| {
        app.client
            .get(app.url(path))
            .basic_auth(user, Some(password))
            .send()
    };

    let res = app.get("/admin/jobs").await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    assert_eq!(
        basic("/admin/jobs", "root", "wrong-password-here")
            .await
            .unwrap()
            .status(),
        401
    );
    app.customer("dashpeek").await;
    assert_eq!(
        basic("/admin/jobs", "dashpeek", PASSWORD)
            .await
            .unwrap()
            .status(),
        403
    );

    let res = basic("/admin/jobs", "root", PASSWORD).await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let html = res.text().await.unwrap();
    assert!(html.contains("<svg class=\"chart\""), "throughput chart");
    assert!(
        html.contains(">default</a>") && html.contains(">maintenance</a>"),
        "queue rows"
    );
    assert!(
        html.contains("test.xss") && html.contains(&format!("/admin/jobs/{id}")),
        "dead set lists the job"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"),
        "errors are escaped"
    );
    assert!(html.contains("shopkeep.retention"), "schedules");
    // Remembered credentials are still checked against the account on every request.
    let res = basic(&format!("/admin/jobs/{id}"), "root", PASSWORD)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Attempt 1 · failed") && html.contains("&lt;script&gt;"),
        "{html}"
    );
    let list = basic("/admin/jobs?state=succeeded", "root", PASSWORD)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains(&format!("/admin/jobs/{ok}")));
    assert_eq!(
        basic("/admin/jobs/not-a-job", "root", PASSWORD)
            .await
            .unwrap()
            .status(),
        404
    );
    let css = app.get("/admin/assets/jobs.css").await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}
