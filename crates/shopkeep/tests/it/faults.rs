//! Faults against the real `shopkeep` executable: a SIGKILL during a burst of order creates,
//! a PostgreSQL restart, a Redis outage and a full disk under SQLite. Each test that stops a
//! database starts its own instance on a free port (PostgreSQL with `initdb`/`pg_ctl`, Redis
//! with `redis-server`) and leaves the shared ones alone. A missing tool fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, TestStorage};
use crate::process::{Server, assert_no_panic, shopkeep};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Registers `username` and signs in; returns the access token.
async fn customer(c: &Client, server: &Server, username: &str) -> String {
    let res = c
        .post(server.url("/api/v1/auth/register"))
        .json(&json!({ "username": username, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "register {username}");
    sign_in(c, server, username).await.unwrap()
}

/// The password grant: the access token, or the status of the refusal.
async fn sign_in(c: &Client, server: &Server, username: &str) -> Result<String, StatusCode> {
    let res = c
        .post(server.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    if res.status() != 200 {
        return Err(res.status());
    }
    let v: Value = res.json().await.unwrap();
    Ok(v["access_token"].as_str().unwrap().to_string())
}

fn order_body(i: usize) -> Value {
    json!({ "item_name": format!("fault order {i:04}"), "quantity": 1 + i % 7 })
}

/// `POST /api/v1/orders` with an idempotency key.
async fn create(
    c: &Client,
    base: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    c.post(format!("{base}/api/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

/// Every order the customer can list, by id, following `next_cursor`.
async fn all_orders(c: &Client, server: &Server, token: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url("/api/v1/orders?status=all&limit=100");
        if let Some(cur) = &cursor {
            url.push_str(&format!("&cursor={cur}"));
        }
        let page: Value = c
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for o in page["items"].as_array().unwrap() {
            let id = o["id"].as_str().unwrap().to_string();
            assert!(out.insert(id, o.clone()).is_none(), "listed twice: {o}");
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => return out,
        }
    }
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status(), status, "{:?}", res.headers());
    let ct = res.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("application/problem+json"), "{ct}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    body
}

fn assert_healthy(server: &mut Server) {
    assert!(server.running(), "the server exited");
    let out = server.output();
    assert_no_panic(&out);
}

both_engines!(a_server_killed_during_1000_creates_keeps_every_acknowledged_order_once);

/// 1,000 concurrent creates with idempotency keys; SIGKILL once 300 are acknowledged; restart
/// and retry what got no answer with the same key and body.
async fn a_server_killed_during_1000_creates_keeps_every_acknowledged_order_once(engine: Engine) {
    const N: usize = 1000;
    const KILL_AFTER: usize = 300;
    let storage = TestStorage::new(engine).await;
    let c = client();
    let mut server = Server::start(&storage);
    let token = customer(&c, &server, "burst").await;

    let acked = Arc::new(AtomicUsize::new(0));
    let base = server.url("");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (c, base, token, acked) = (c.clone(), base.clone(), token.clone(), acked.clone());
        tasks.spawn(async move {
            let res = create(&c, &base, &token, &format!("burst-{i:04}"), &order_body(i)).await;
            let outcome = match res {
                Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                    Ok(v) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        Ok(v["id"].as_str().unwrap().to_string())
                    }
                    // The body was cut off: no acknowledgement.
                    Err(_) => Err(None),
                },
                Ok(r) => Err(Some(r.status().as_u16())),
                Err(_) => Err(None),
            };
            (i, outcome)
        });
    }
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(start.elapsed() < Duration::from_secs(60), "creates stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill9();

    let mut acknowledged: BTreeMap<usize, String> = BTreeMap::new();
    let mut unanswered = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (i, Ok(id)) => {
                acknowledged.insert(i, id);
            }
            (i, Err(None)) => unanswered.push(i),
            (i, Err(Some(status))) => panic!("create {i} answered {status} before the kill"),
        }
    }
    assert!(acknowledged.len() >= KILL_AFTER, "{}", acknowledged.len());
    assert!(
        !unanswered.is_empty(),
        "the kill came after every create was answered; nothing was tested"
    );

    let mut server = Server::start(&storage);
    let base = server.url("");
    let mut replayed = 0;
    for &i in &unanswered {
        let res = create(&c, &base, &token, &format!("burst-{i:04}"), &order_body(i))
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "retry of {i}");
        if res.headers().get("idempotent-replayed").is_some() {
            replayed += 1;
        }
        let v: Value = res.json().await.unwrap();
        acknowledged.insert(i, v["id"].as_str().unwrap().to_string());
    }
    // A client that did get its answer and retries anyway gets the same order back.
    for (&i, id) in acknowledged.iter().take(50) {
        let res = create(&c, &base, &token, &format!("burst-{i:04}"), &order_body(i))
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["idempotent-replayed"], "true");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["id"].as_str().unwrap(), id, "replay of {i}");
    }

    let stored = all_orders(&c, &server, &token).await;
    assert_eq!(stored.len(), N, "exactly one order per key");
    let ids: BTreeSet<&String> = acknowledged.values().collect();
    assert_eq!(ids.len(), N, "every key has its own order");
    for (i, id) in &acknowledged {
        assert!(
            stored.contains_key(id),
            "order {i} ({id}) was acknowledged but is gone"
        );
        let o: Value = c
            .get(server.url(&format!("/api/v1/orders/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(o["items"][0]["item_name"], format!("fault order {i:04}"));
    }
    eprintln!(
        "{engine:?}: {} acknowledged before the kill, {} retried ({replayed} had committed)",
        N - unanswered.len(),
        unanswered.len()
    );
    assert_healthy(&mut server);
}

/// One request's outcome during a fault.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    took: Duration,
    /// HTTP status, or 0 for a transport error.
    status: u16,
    problem_json: bool,
}

/// Closed-loop load (order creates and lists, `workers` at a time) until stopped; every
/// outcome kept.
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    fn start(c: &Client, base: &str, token: &str, workers: usize) -> Load {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let (c, base, token) = (c.clone(), base.to_string(), token.to_string());
            let (samples, stop) = (samples.clone(), stop.clone());
            tasks.spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let t = Instant::now();
                    let res = if n.is_multiple_of(2) {
                        let body = json!({ "item_name": format!("load {w}-{n}"), "quantity": 1 });
                        create(&c, &base, &token, &format!("load-{w}-{n}"), &body).await
                    } else {
                        c.get(format!("{base}/api/v1/orders?limit=5"))
                            .bearer_auth(&token)
                            .send()
                            .await
                    };
                    let (status, problem_json) = match &res {
                        Ok(r) => (
                            r.status().as_u16(),
                            r.headers()
                                .get(reqwest::header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v.starts_with("application/problem+json")),
                        ),
                        Err(_) => (0, false),
                    };
                    if let Ok(r) = res {
                        let _ = r.bytes().await;
                    }
                    samples.lock().unwrap().push(Sample {
                        at: t,
                        took: t.elapsed(),
                        status,
                        problem_json,
                    });
                    if status != 200 && status != 201 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
        Load {
            samples,
            stop,
            tasks,
        }
    }

    fn since(&self, t: Instant) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= t)
            .cloned()
            .collect()
    }

    /// Waits until a request started after `t` succeeds; panics after `within`.
    async fn wait_for_success(&self, t: Instant, within: Duration) -> Instant {
        loop {
            if let Some(s) = self
                .since(t)
                .iter()
                .find(|s| s.status == 200 || s.status == 201)
            {
                return s.at;
            }
            assert!(
                t.elapsed() < within,
                "no request succeeded within {within:?}: {:?}",
                self.since(t).last()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        while self.tasks.join_next().await.is_some() {}
        Arc::try_unwrap(self.samples).unwrap().into_inner().unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL server of our own, in a temporary directory, on a free port.
struct PgInstance {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PgInstance {
    fn bin_dir() -> PathBuf {
        if let Ok(b) = std::env::var("TEST_PG_BIN") {
            return b.into();
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql (or set TEST_PG_BIN)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort();
        found
            .pop()
            .expect("initdb under /usr/lib/postgresql/*/bin (or set TEST_PG_BIN)")
    }

    /// `initdb` runs as the `postgres` user when the tests run as root (the server refuses root).
    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn create() -> PgInstance {
        let dir = tempfile::Builder::new()
            .prefix("shopkeep-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path()));
        }
        let pg = PgInstance {
            bin: Self::bin_dir(),
            port: free_port(),
            dir,
        };
        run(pg
            .as_owner("initdb")
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(pg.data()));
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        run(self
            .as_owner("pg_ctl")
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("-D")
            .arg(self.data())
            .arg("start"));
    }

    /// Fast shutdown: open connections are terminated, as on a restart for an upgrade.
    fn stop(&self) {
        run(self
            .as_owner("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("stop"));
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Longest a request may take while a dependency is down: the 1 s pool wait configured below
/// plus scheduling on a busy machine.
const FAIL_FAST: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_is_503_while_down_and_heals_without_a_restart() {
    let pg = PgInstance::create();
    pg.start();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    let mut server = Server::spawn(
        shopkeep(dir.path()),
        &[
            ("SHOPKEEP_DATABASE_URL", url.as_str()),
            ("SHOPKEEP_DATABASE__ACQUIRE_TIMEOUT", "1s"),
            // More connections than the load has requests in flight: a wait for one is a fault.
            ("SHOPKEEP_DATABASE__MAX_CONNECTIONS", "16"),
            ("SHOPKEEP_LOG__LEVEL", "info,sqlx=warn"),
        ],
    );
    let c = client();
    let token = customer(&c, &server, "steady").await;
    let load = Load::start(&c, &server.url(""), &token, 6);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopping = Instant::now();
    pg.stop();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A request of our own while it is down: the problem says what is wrong and when to retry.
    let t = Instant::now();
    let res = c
        .get(server.url("/api/v1/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "unavailable").await;
    assert!(t.elapsed() < FAIL_FAST, "{:?}", t.elapsed());
    let ready = c.get(server.url("/readyz")).send().await.unwrap();
    assert_problem(ready, 503, "not_ready").await;
    let up_again = Instant::now();
    pg.start();
    let healed = load
        .wait_for_success(up_again, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let steady = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = load.finish().await;

    // Answered before the stop began (one still in flight then may already see the shutdown).
    let before: Vec<&Sample> = all.iter().filter(|s| s.at + s.took < stopping).collect();
    assert!(
        !before.is_empty() && before.iter().all(|s| s.status == 200 || s.status == 201),
        "before the stop: {before:?}"
    );
    let outage: Vec<&Sample> = all
        .iter()
        .filter(|s| s.at >= down && s.at + s.took < up_again)
        .collect();
    assert!(
        outage.len() > 10,
        "few requests during the outage: {outage:?}"
    );
    for s in &outage {
        assert!(
            s.status == 503 && s.problem_json,
            "while down, every answer is a 503 problem: {s:?}"
        );
        assert!(s.took < FAIL_FAST, "slow failure while down: {s:?}");
    }
    // Across the stop and the start: answers only, each a success or a 503, never a 500.
    for s in &all {
        assert!(
            matches!(s.status, 200 | 201 | 503),
            "unexpected answer: {s:?}"
        );
    }
    let after: Vec<&Sample> = all.iter().filter(|s| s.at >= steady).collect();
    assert!(
        !after.is_empty() && after.iter().all(|s| s.status == 200 || s.status == 201),
        "after recovery: {after:?}"
    );
    eprintln!(
        "postgres restart: {} requests while down, recovered {:?} after the start",
        outage.len(),
        healed.duration_since(up_again)
    );
    assert!(
        c.get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_healthy(&mut server);
}

/// A Redis server of our own on a free port, persisting to an append-only file so that what it
/// held survives its restart.
struct RedisInstance {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl RedisInstance {
    fn start_new() -> RedisInstance {
        let mut r = RedisInstance {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
        };
        r.start();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: Redis flushes its append-only file and exits.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            run(Command::new("kill").args(["-TERM", &c.id().to_string()]));
            c.wait().unwrap();
        }
    }
}

impl Drop for RedisInstance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A web session through the sign-in form: the session cookie's value.
async fn web_sign_in(c: &Client, server: &Server, username: &str) -> String {
    const COOKIE: &str = "shopkeep_session";
    let cookie_of = |res: &reqwest::Response| {
        res.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{COOKIE}=")))
            .map(|v| v.split(';').next().unwrap().to_string())
    };
    let page = c.get(server.url("/login")).send().await.unwrap();
    let anonymous = cookie_of(&page).expect("the sign-in page starts a session");
    let html = page.text().await.unwrap();
    let csrf = crate::web::attr(&html, "name=\"csrf\"", "value").expect("a CSRF field");
    let res = c
        .post(server.url("/login"))
        .header(reqwest::header::COOKIE, format!("{COOKIE}={anonymous}"))
        .form(&[
            ("csrf", csrf),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let signed_in = cookie_of(&res);
    assert_eq!(status, 303, "web sign-in: {}", res.text().await.unwrap());
    format!("{COOKIE}={}", signed_in.expect("a signed-in session"))
}

async fn web_page(c: &Client, server: &Server, cookie: &str) -> (u16, Duration) {
    let t = Instant::now();
    let res = c
        .get(server.url("/orders"))
        .header(reqwest::header::COOKIE, cookie)
        .header(reqwest::header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_sign_in_and_web_sessions_closed_and_the_api_keeps_working() {
    let mut redis = RedisInstance::start_new();
    let storage = TestStorage::new(Engine::Sqlite).await;
    let url = redis.url();
    let mut server = Server::start_with(
        &storage,
        &[
            ("SHOPKEEP_REDIS_URL", url.as_str()),
            ("SHOPKEEP_LOG__LEVEL", "info"),
        ],
    );
    // The client must not carry cookies of its own: the test sends them.
    let c = client();
    let token = customer(&c, &server, "outage").await;
    let cookie = web_sign_in(&c, &server, "outage").await;
    assert_eq!(web_page(&c, &server, &cookie).await.0, 200);
    let load = Load::start(&c, &server.url(""), &token, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;

    redis.stop();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Sign-in limits fail closed: no unlimited guessing while the counts are out of reach.
    let t = Instant::now();
    let res = c
        .post(server.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "outage"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_problem(res, 503, "unavailable").await;
    assert!(t.elapsed() < FAIL_FAST, "{:?}", t.elapsed());
    // Web sessions live in Redis: a page cannot tell who is signed in, so it refuses (503)
    // rather than treat the visitor as signed out.
    let (status, took) = web_page(&c, &server, &cookie).await;
    assert_eq!(status, 503);
    assert!(took < FAIL_FAST, "{took:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let up_again = Instant::now();
    redis.start();
    // Sign-in works again once Redis answers, without restarting shopkeep.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match sign_in(&c, &server, "outage").await {
            Ok(_) => break,
            Err(s) => assert!(
                s == 503 && Instant::now() < deadline,
                "sign-in after Redis returned: {s}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healed = up_again.elapsed();
    // The session survived in Redis's append-only file.
    assert_eq!(web_page(&c, &server, &cookie).await.0, 200);
    let all = load.finish().await;

    // Bearer tokens do not need Redis: orders were created and listed throughout, promptly.
    let outage: Vec<&Sample> = all
        .iter()
        .filter(|s| s.at >= down && s.at + s.took < up_again)
        .collect();
    assert!(outage.len() > 10, "{outage:?}");
    for s in &all {
        assert!(
            matches!(s.status, 200 | 201),
            "API during the outage: {s:?}"
        );
        assert!(s.took < FAIL_FAST, "slow while Redis was down: {s:?}");
    }
    eprintln!(
        "redis outage: {} API requests served while down; sign-in back {healed:?} after the start",
        outage.len()
    );
    assert_healthy(&mut server);
}

/// A tmpfs of `size` mounted on `dir` (needs root), unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    fn resize(&self, size: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_writes_clearly_and_is_intact_when_space_returns() {
    let storage = TestStorage::new(Engine::Sqlite).await;
    let data = storage.dir.path().join("data");
    let disk = SmallDisk::mount(&data, "8m");
    let mut server = Server::start_with(
        &storage,
        &[("SHOPKEEP_LOG__LEVEL", "info,shopkeep_store=debug")],
    );
    let c = client();
    let token = customer(&c, &server, "filler").await;
    let base = server.url("");
    let notes = "n".repeat(1000);

    // Fill the disk with orders until a write is refused.
    let mut acked = Vec::new();
    let refusal = loop {
        let i = acked.len();
        let body = json!({ "item_name": format!("fill {i}"), "quantity": 1, "notes": notes });
        let res = create(&c, &base, &token, &format!("fill-{i}"), &body)
            .await
            .unwrap();
        if res.status() != 201 {
            break res;
        }
        let v: Value = res.json().await.unwrap();
        acked.push(v["id"].as_str().unwrap().to_string());
        assert!(acked.len() < 20_000, "8 MiB never filled up");
    };
    assert!(acked.len() > 100, "full after {} orders", acked.len());
    assert!(refusal.headers().contains_key("retry-after"));
    let problem = assert_problem(refusal, 507, "storage_full").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("no space"),
        "{problem}"
    );
    // Still full: refused the same way, quickly, and reads go on. A checkpoint can give SQLite
    // back room (the WAL is cut to its size limit), so a write may be taken in between; it is
    // then acknowledged and must be kept like any other (checked below).
    let (mut refused, mut tries) = (0, 0);
    while refused < 5 {
        tries += 1;
        assert!(tries <= 2_000, "the disk never filled up again");
        let body = json!({ "item_name": format!("full {tries}"), "quantity": 1, "notes": notes });
        let t = Instant::now();
        let res = create(&c, &base, &token, &format!("full-{tries}"), &body)
            .await
            .unwrap();
        if res.status() == 201 {
            let v: Value = res.json().await.unwrap();
            acked.push(v["id"].as_str().unwrap().to_string());
            continue;
        }
        assert_problem(res, 507, "storage_full").await;
        assert!(t.elapsed() < FAIL_FAST);
        refused += 1;
    }
    let list = c
        .get(server.url("/api/v1/orders?limit=5"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);

    // Space returns: writes succeed again without a restart. A write that waited for SQLite's
    // write lock meanwhile may get a 503 (retry) for a moment, never a 500.
    disk.resize("64m");
    for i in 0..5 {
        let body = json!({ "item_name": format!("more {i}"), "quantity": 1, "notes": notes });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut retries = 0;
        let res = loop {
            let res = create(&c, &base, &token, &format!("more-{i}"), &body)
                .await
                .unwrap();
            if res.status() != 503 || Instant::now() > deadline {
                break res;
            }
            retries += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if res.status() != 201 {
            let status = res.status();
            let body = res.text().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let out = server.output();
            let tail: Vec<&str> = out.lines().rev().take(12).collect();
            panic!(
                "after space returned ({retries} retries): {status} {body}\n{}",
                tail.join("\n")
            );
        }
        if retries > 0 {
            eprintln!("create {i} after space returned: {retries} retries");
        }
        let v: Value = res.json().await.unwrap();
        acked.push(v["id"].as_str().unwrap().to_string());
    }
    let stored = all_orders(&c, &server, &token).await;
    for id in &acked {
        assert!(stored.contains_key(id), "acknowledged order {id} is gone");
    }
    assert_eq!(stored.len(), acked.len(), "no refused write left a row");
    let out = server.output();
    eprintln!(
        "full disk: {} orders acknowledged; {} connections closed inside a failed transaction",
        acked.len(),
        out.matches("left inside a transaction").count()
    );
    assert_healthy(&mut server);
    assert!(server.terminate().success());

    // The file itself: SQLite's own check after the server closed it.
    let db = shopkeep_store::Db::connect(&storage.config().db_options())
        .await
        .unwrap();
    let check: String = shopkeep_store::on_pool!(&db, pool => {
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(pool).await.unwrap()
    });
    assert_eq!(check, "ok");
    // What the file holds, read after every connection closed: each acknowledged order was
    // committed, none only inside a transaction that a close rolled back.
    let committed: i64 = shopkeep_store::on_pool!(&db, pool => {
        sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(pool).await.unwrap()
    });
    assert_eq!(
        committed,
        acked.len() as i64,
        "acknowledged orders in the file"
    );
    db.close().await;
    drop(disk);
}
