//! Worker processes: one killed with SIGKILL mid-job (the job runs again and its idempotent
//! effect lands once), one killed during a webhook delivery (delivered after the restart), and
//! two sharing one database (no attempt runs twice).
//!
//! The worker processes are this test binary again, running only `worker_process_entry` with
//! `SHOPKEEP_TEST_WORKER` set: a real `shopkeep` application in the `worker` role, with one test
//! handler that records each run and applies an effect keyed by the job id.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use shopkeep::Config;
use shopkeep_jobs::{JobContext, KindPolicy, Registry};
use shopkeep_store::jobs::{self as store, NewJob};
use shopkeep_store::{Db, on_pool};
use tokio_util::sync::CancellationToken;

use crate::both_engines;
use crate::harness::{Engine, TestStorage};

const CHILD_ENV: &str = "SHOPKEEP_TEST_WORKER";
/// Lease of the worker process in milliseconds, when not the 1 s that makes a killed worker's
/// job come back quickly.
const LEASE_ENV: &str = "SHOPKEEP_TEST_WORKER_LEASE_MS";

#[derive(Deserialize)]
struct EffectArgs {
    /// Sleep this long on the first attempt, after the effect (a worker dies here).
    #[serde(default)]
    sleep_first_ms: u64,
    /// Sleep this long on every attempt.
    #[serde(default)]
    sleep_ms: u64,
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(
        "test.effect",
        KindPolicy::default(),
        |ctx: JobContext, a: EffectArgs| async move {
            let id = ctx.id.to_string();
            let pid = i64::from(std::process::id());
            {
                let _w = ctx.db().write_lock().await;
                on_pool!(ctx.db(), pool => {
                    sqlx::query("INSERT INTO test_runs (job_id, attempt, pid) VALUES ($1, $2, $3)")
                        .bind(&id).bind(ctx.attempt).bind(pid).execute(pool).await.map_err(shopkeep_jobs::JobError::retry)?;
                    sqlx::query("INSERT INTO test_effects (job_id) VALUES ($1) ON CONFLICT (job_id) DO NOTHING")
                        .bind(&id).execute(pool).await.map_err(shopkeep_jobs::JobError::retry)?;
                });
            }
            if ctx.attempt == 1 && a.sleep_first_ms > 0 {
                tokio::time::sleep(Duration::from_millis(a.sleep_first_ms)).await;
            }
            tokio::time::sleep(Duration::from_millis(a.sleep_ms)).await;
            Ok(None)
        },
    );
    r
}

fn worker_config(data_dir: PathBuf, url: Option<String>) -> Config {
    let mut c = Config::defaults(data_dir);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.database_url = url.map(Into::into);
    c.database.max_connections = 8;
    c.auth.bcrypt_cost = 4;
    c.roles = vec![shopkeep::config::Role::Worker];
    c.jobs.lease = Duration::from_secs(1);
    c.jobs.poll_interval = Duration::from_millis(50);
    c.jobs.default_concurrency = 8;
    // The webhook receiver of the delivery test listens on loopback.
    c.webhooks.allow_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c
}

/// The worker process. Does nothing unless started by the tests below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var("SHOPKEEP_TEST_WORKER_DB").ok();
    let mut config = worker_config(dir.into(), url);
    if let Some(ms) = std::env::var(LEASE_ENV).ok().and_then(|v| v.parse().ok()) {
        config.jobs.lease = Duration::from_millis(ms);
    }
    let app = shopkeep::Application::build_with(config, registry())
        .await
        .expect("worker builds");
    app.run_until_stopped(CancellationToken::new())
        .await
        .unwrap();
}

/// A worker process, killed (SIGKILL) when dropped.
struct Worker(Child);

impl Worker {
    fn start(storage: &TestStorage, name: &str) -> Worker {
        Self::start_with(storage, name, &[])
    }

    fn start_with(storage: &TestStorage, name: &str, env: &[(&str, &str)]) -> Worker {
        let log = std::fs::File::create(storage.dir.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "jobs_process::worker_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, storage.dir.path().join("data"))
        .env(
            "SHOPKEEP_TEST_WORKER_DB",
            storage.database_url().unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        if storage.database_url().is_none() {
            cmd.env_remove("SHOPKEEP_TEST_WORKER_DB");
        }
        cmd.envs(env.iter().copied());
        Worker(cmd.spawn().expect("start worker process"))
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn prepare(storage: &TestStorage) -> Db {
    std::fs::create_dir_all(storage.dir.path().join("data")).unwrap();
    let db = Db::connect(&storage.config().db_options()).await.unwrap();
    db.migrate().await.unwrap();
    on_pool!(&db, pool => {
        sqlx::query("CREATE TABLE test_runs (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, pid BIGINT NOT NULL)")
            .execute(pool).await.unwrap();
        sqlx::query("CREATE TABLE test_effects (job_id TEXT PRIMARY KEY NOT NULL)").execute(pool).await.unwrap();
    });
    db
}

fn effect_job(args: serde_json::Value) -> NewJob {
    NewJob {
        id: uuid::Uuid::now_v7(),
        kind: "test.effect".into(),
        queue: "default".into(),
        args: args.to_string(),
        priority: 5,
        run_at: shopkeep_domain::Timestamp::now().0,
        max_attempts: 5,
        timeout_ms: 120_000,
        unique: None,
        rate_key: None,
        tags: "[]".into(),
        shop_id: None,
    }
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    on_pool!(db, pool => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap())
}

async fn wait_until(
    db: &Db,
    sql: &'static str,
    want: i64,
    within: Duration,
    storage: &TestStorage,
) {
    let start = Instant::now();
    loop {
        if count(db, sql).await == want {
            return;
        }
        if start.elapsed() > within {
            let logs: Vec<String> = std::fs::read_dir(storage.dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            panic!(
                "{sql} is {} after {within:?}, want {want}\n{}",
                count(db, sql).await,
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_engines!(
    a_killed_worker_s_job_runs_again_and_its_effect_lands_once,
    a_delivery_cut_off_by_a_killed_worker_is_delivered_after_the_restart,
    two_worker_processes_never_run_the_same_attempt,
    workers_killed_again_and_again_during_10000_jobs_lose_none_and_apply_each_effect_once
);

async fn a_killed_worker_s_job_runs_again_and_its_effect_lands_once(engine: Engine) {
    let storage = TestStorage::new(engine).await;
    let db = prepare(&storage).await;
    let now = shopkeep_domain::Timestamp::now().0;
    let id = store::enqueue(
        &db,
        &[effect_job(serde_json::json!({ "sleep_first_ms": 60000 }))],
        now,
    )
    .await
    .unwrap()[0]
        .id();

    let mut first = Worker::start(&storage, "first");
    wait_until(
        &db,
        "SELECT count(*) FROM test_runs",
        1,
        Duration::from_secs(20),
        &storage,
    )
    .await;
    first.kill(); // SIGKILL mid-job: no chance to release or record anything.

    let _second = Worker::start(&storage, "second");
    wait_until(
        &db,
        "SELECT count(*) FROM jobs WHERE state = 'succeeded'",
        1,
        Duration::from_secs(20),
        &storage,
    )
    .await;
    let job = store::get(&db, id).await.unwrap().unwrap();
    assert_eq!(job.attempt, 2, "the second attempt completed it");
    assert_eq!(
        count(&db, "SELECT count(*) FROM test_effects").await,
        1,
        "the effect landed once"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM test_runs").await, 2);
    let attempts = store::attempts(&db, id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].attempt, attempts[0].outcome.as_str()),
        (1, "lost")
    );
    db.close().await;
}

async fn two_worker_processes_never_run_the_same_attempt(engine: Engine) {
    let storage = TestStorage::new(engine).await;
    let db = prepare(&storage).await;
    // Leases long enough that a busy machine cannot make a live worker lose one: every attempt
    // here must be the first.
    let lease = [(LEASE_ENV, "10000")];
    let _a = Worker::start_with(&storage, "a", &lease);
    let _b = Worker::start_with(&storage, "b", &lease);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let jobs: Vec<NewJob> = (0..600)
        .map(|_| effect_job(serde_json::json!({ "sleep_ms": 10 })))
        .collect();
    store::enqueue(&db, &jobs, shopkeep_domain::Timestamp::now().0)
        .await
        .unwrap();
    wait_until(
        &db,
        "SELECT count(*) FROM jobs WHERE state = 'succeeded'",
        600,
        Duration::from_secs(40),
        &storage,
    )
    .await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM test_runs").await,
        600,
        "each job ran once"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM (SELECT job_id, attempt FROM test_runs GROUP BY job_id, attempt HAVING count(*) > 1) d").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM jobs WHERE attempt <> 1").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT pid) FROM test_runs").await,
        2,
        "both processes worked"
    );
    db.close().await;
}

async fn workers_killed_again_and_again_during_10000_jobs_lose_none_and_apply_each_effect_once(
    engine: Engine,
) {
    const JOBS: i64 = 10_000;
    let storage = TestStorage::new(engine).await;
    let db = prepare(&storage).await;
    let now = shopkeep_domain::Timestamp::now().0;
    for _ in 0..JOBS / 1000 {
        let batch: Vec<NewJob> = (0..1000)
            .map(|_| effect_job(serde_json::json!({ "sleep_ms": 1 })))
            .collect();
        store::enqueue(&db, &batch, now).await.unwrap();
    }
    let mut workers = [Worker::start(&storage, "w0"), Worker::start(&storage, "w1")];
    // Each kill lands while work is in hand: after a further share of the jobs has run.
    let mut kills = 0;
    for round in 1..=4_i64 {
        let start = Instant::now();
        while count(&db, "SELECT count(*) FROM test_runs").await < round * JOBS / 6 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round} stalled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let victim = (round % 2) as usize;
        workers[victim].kill();
        kills += 1;
        workers[victim] = Worker::start(&storage, &format!("w{victim}-{round}"));
    }
    wait_until(
        &db,
        "SELECT count(*) FROM jobs WHERE state = 'succeeded'",
        JOBS,
        Duration::from_secs(120),
        &storage,
    )
    .await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM jobs WHERE state <> 'succeeded'").await,
        0,
        "every job ended in a final state"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM test_effects").await,
        JOBS,
        "each effect applied exactly once"
    );
    let runs = count(&db, "SELECT count(*) FROM test_runs").await;
    let lost = count(
        &db,
        "SELECT count(*) FROM job_attempts WHERE outcome = 'lost'",
    )
    .await;
    assert!(runs >= JOBS, "{runs}");
    assert!(lost > 0, "the kills cut no job off; nothing was tested");
    eprintln!("{engine:?}: {kills} kills, {runs} runs for {JOBS} jobs, {lost} attempts lost");
    db.close().await;
}

/// A receiver that holds its first request open (the worker dies while waiting) and answers
/// 200 to the rest; it records each request's `webhook-id`.
async fn stalling_receiver() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let s = s.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let first = {
                    let mut seen = s.lock().unwrap();
                    seen.push(id);
                    seen.len() == 1
                };
                if first {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

async fn a_delivery_cut_off_by_a_killed_worker_is_delivered_after_the_restart(engine: Engine) {
    use shopkeep_server::webhooks::{WebhookService, deliver_job, endpoint_aad};
    use shopkeep_store::webhooks::{self as hooks, DirectMessage, EndpointFields};

    let storage = TestStorage::new(engine).await;
    let db = prepare(&storage).await;
    let config = worker_config(storage.dir.path().join("data"), storage.database_url());
    // The key the worker processes will load from the data directory seals the endpoint secret.
    let key = shopkeep::keys::secret_key(&config).unwrap();
    let svc = WebhookService::new(
        config.webhooks.options(),
        shopkeep_server::crypto::Sealer::new(&key).unwrap(),
    )
    .unwrap();
    let shop = shopkeep_store::accounts::ensure_default_shop(&db)
        .await
        .unwrap();
    let scope = shopkeep_store::ShopScope::verified(shopkeep_domain::ShopId(shop.id));
    let (addr, seen) = stalling_receiver().await;
    let now = shopkeep_domain::Timestamp::now().0;
    let endpoint = uuid::Uuid::now_v7();
    let secret = shopkeep_domain::webhooks::standard::WebhookSecret::from_bytes(&[7; 32]).expose();
    hooks::create_endpoint(
        &db,
        scope,
        endpoint,
        &EndpointFields {
            url: format!("http://{addr}/hook"),
            description: String::new(),
            event_types: "[]".into(),
            enabled: true,
            headers: "{}".into(),
            rate_per_second: None,
        },
        &svc.seal(&secret, &endpoint_aad(shop.id, endpoint)),
        now,
    )
    .await
    .unwrap();
    let delivery = hooks::send_direct(
        &db,
        scope,
        &DirectMessage {
            endpoint_id: endpoint,
            event_type: "webhook.test",
            resource_id: "r1",
            payload: "{\"type\":\"webhook.test\"}",
        },
        now,
        &deliver_job,
    )
    .await
    .unwrap();

    let mut first = Worker::start(&storage, "first");
    let start = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first attempt never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill(); // SIGKILL while the receiver holds the request open.

    let _second = Worker::start(&storage, "second");
    wait_until(
        &db,
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'",
        1,
        Duration::from_secs(20),
        &storage,
    )
    .await;
    let d = hooks::delivery(&db, scope, delivery)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, "delivered");
    let attempts = hooks::attempts(&db, scope, delivery).await.unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "the cut-off attempt left no record; the retry did"
    );
    assert_eq!(attempts[0].status_code, Some(200));
    let ids = seen.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "sent again after the crash: {ids:?}");
    assert_eq!(
        ids[0], ids[1],
        "both tries carry the same webhook-id, so receivers de-duplicate"
    );
    db.close().await;
}
