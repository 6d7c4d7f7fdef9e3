//! `spawn_app()` and the helpers every integration test shares.
//!
//! Storage tests run twice through [`both_engines!`]: on a temporary SQLite file and on a fresh
//! PostgreSQL database (dropped afterwards). The PostgreSQL half needs `TEST_POSTGRES_URL`
//! (an admin URL such as `postgres://postgres@127.0.0.1:5432/test`); without it that half says so
//! and returns. `scripts/test` always sets it, so CI fails when PostgreSQL is unreachable.

use std::net::SocketAddr;

use shopkeep::{Application, Config};
use shopkeep_store::Db;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

/// A password that passes the strength policy.
pub const PASSWORD: &str = "plum-Orchard-47-lantern";

/// The environment variable that enables the PostgreSQL half of the suite.
pub const PG_ENV: &str = "TEST_POSTGRES_URL";

/// The engine a test case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Defines `mod <name> { fn sqlite(); fn postgres(); }` running `async fn <name>(Engine)` on each.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::harness::postgres_enabled() {
                    super::$name($crate::harness::Engine::Postgres).await
                }
            }
        }
    )*};
}

/// True when `TEST_POSTGRES_URL` is set; otherwise prints why the PostgreSQL case is skipped.
pub fn postgres_enabled() -> bool {
    let on = std::env::var(PG_ENV).is_ok_and(|v| !v.is_empty());
    if !on {
        eprintln!("postgres case not run: {PG_ENV} is not set (scripts/test sets it)");
    }
    on
}

/// A throwaway PostgreSQL database, dropped (with its connections) when this value drops.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl PgDatabase {
    /// Creates `shopkeep_t_<uuid>` on the server named by `TEST_POSTGRES_URL`. Panics when the
    /// server is unreachable: a configured PostgreSQL that does not answer fails the suite.
    pub async fn create() -> PgDatabase {
        let admin_url = std::env::var(PG_ENV).expect("TEST_POSTGRES_URL is set");
        let name = format!("shopkeep_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is unreachable: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = with_database(&admin_url, &name);
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async context (possibly while unwinding): use a private runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The admin URL with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Storage for one test: a temp dir (data directory) and, for PostgreSQL, its database.
pub struct TestStorage {
    pub engine: Engine,
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDatabase>,
}

impl TestStorage {
    /// Fresh storage on `engine`.
    pub async fn new(engine: Engine) -> TestStorage {
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = match engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(PgDatabase::create().await),
        };
        TestStorage { engine, dir, pg }
    }

    /// A configuration pointing at this storage, listening on a free port.
    pub fn config(&self) -> Config {
        let mut c = Config::defaults(self.dir.path().join("data"));
        c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.database_url = self.pg.as_ref().map(|p| p.url.clone().into());
        c.database.max_connections = 5;
        // Fast hashes keep the suite quick; production uses cost 12.
        c.auth.bcrypt_cost = 4;
        c.auth.hash_concurrency = 2;
        // Idle workers look for due jobs often, so retries and delays show up quickly.
        c.jobs.poll_interval = std::time::Duration::from_millis(100);
        c.jobs.shutdown_grace = std::time::Duration::from_secs(2);
        c
    }

    /// The database URL the binary would use (`SHOPKEEP_DATABASE_URL`), if not the default file.
    pub fn database_url(&self) -> Option<String> {
        self.pg.as_ref().map(|p| p.url.clone())
    }
}

/// A running application.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: Db,
    pub storage: TestStorage,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// `http://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the app gracefully, waits until it has stopped, and hands back its storage.
    pub async fn stop(mut self) -> TestStorage {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.expect("app task").expect("app stops cleanly");
        }
        self.into_storage()
    }

    /// Stops the app and hands back its storage, to start another app on it.
    pub fn into_storage(mut self) -> TestStorage {
        self.shutdown.cancel();
        let placeholder = TestStorage {
            engine: self.storage.engine,
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        };
        std::mem::replace(&mut self.storage, placeholder)
    }

    /// The app's token key ring, opened with its secret key (as `shopkeep keys rotate` does).
    pub async fn key_ring(&self) -> shopkeep_server::auth::keys::KeyRing {
        let config = self.storage.config();
        let secret = shopkeep::keys::secret_key(&config).unwrap();
        let sealer = shopkeep_server::crypto::Sealer::new(&secret).unwrap();
        shopkeep_server::auth::keys::KeyRing::load(
            self.db.clone(),
            sealer,
            config.auth.access_token_ttl,
        )
        .await
        .unwrap()
    }

    /// The engine this app runs on.
    pub fn engine(&self) -> Engine {
        self.storage.engine
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// A request builder with a bearer token.
    pub fn as_user(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Registers a customer; panics unless 201.
    pub async fn register(&self, username: &str, password: &str) -> serde_json::Value {
        let res = self
            .client
            .post(self.url("/api/v1/auth/register"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "register {username}");
        res.json().await.unwrap()
    }

    /// The token endpoint with a form.
    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/token"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Password grant; panics unless 200; returns the token response.
    pub async fn login(&self, username: &str, password: &str) -> serde_json::Value {
        let res = self
            .token(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .await;
        assert_eq!(res.status(), 200, "login {username}");
        res.json().await.unwrap()
    }

    /// Registers and logs in; returns the access token.
    pub async fn customer(&self, username: &str) -> String {
        self.register(username, PASSWORD).await;
        self.login(username, PASSWORD).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the real application on `engine` with default test configuration.
pub async fn spawn_app(engine: Engine) -> TestApp {
    let storage = TestStorage::new(engine).await;
    let config = storage.config();
    spawn_with(storage, config).await
}

/// Starts the app with a platform admin `root` (owner of the default shop); returns its token.
pub async fn spawn_with_admin(engine: Engine) -> (TestApp, String) {
    let storage = TestStorage::new(engine).await;
    let mut config = storage.config();
    config.bootstrap_admin = Some(("root".into(), PASSWORD.to_string().into()));
    let app = spawn_with(storage, config).await;
    let token = app.login("root", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    (app, token)
}

/// Starts the real application with a configuration the test adjusted.
pub async fn spawn_with(storage: TestStorage, config: Config) -> TestApp {
    spawn_with_jobs(storage, config, shopkeep_jobs::Registry::new()).await
}

/// Starts the real application with extra job handlers.
pub async fn spawn_with_jobs(
    storage: TestStorage,
    config: Config,
    registry: shopkeep_jobs::Registry,
) -> TestApp {
    let app = Application::build_with(config, registry)
        .await
        .expect("application builds");
    let addr = app.local_addr();
    let db = app.db().clone();
    let shutdown = CancellationToken::new();
    let task = Some(tokio::spawn(app.run_until_stopped(shutdown.clone())));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        addr,
        client,
        db,
        storage,
        shutdown,
        task,
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(ctype, "application/problem+json");
    let header_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:shopkeep:problem:"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        header_id.as_deref(),
        "request_id matches the header"
    );
    body
}

#[test]
fn the_admin_url_gets_the_test_database_name() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
