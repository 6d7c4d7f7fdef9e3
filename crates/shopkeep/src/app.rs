//! The application: built from a [`Config`], bound to its port, run until a shutdown signal.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use shopkeep_domain::Secret;
use shopkeep_server::web::sessions::SessionStore;
use shopkeep_server::web::{WebOptions, WebService};
use shopkeep_server::{AppState, BuildInfo, HttpOptions};
use shopkeep_store::Db;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use shopkeep_server::auth::keys::KeyRing;
use shopkeep_server::auth::password::PasswordHasher;
use shopkeep_server::auth::revocation::RevocationList;
use shopkeep_server::auth::{AuthOptions, AuthService};
use shopkeep_server::crypto::Sealer;
use shopkeep_server::feed::OrderFeed;
use shopkeep_server::ratelimit::FailureLimiter;
use shopkeep_server::webhooks::WebhookService;
use shopkeep_store::accounts;

use crate::config::{Config, Role};
use crate::{admin, keys};
use shopkeep_jobs::{Jobs, Registry, builtin};

/// Version and commit of this build.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("BUILD_GIT_COMMIT"),
};

/// A bound, ready-to-run shopkeep.
pub struct Application {
    listener: TcpListener,
    router: Router,
    db: Db,
    shutdown_timeout: Duration,
    roles: String,
    background: CancellationToken,
    jobs: Jobs,
    job_tasks: Vec<tokio::task::JoinHandle<()>>,
    jobs_stop: CancellationToken,
    webhooks: Arc<WebhookService>,
}

impl Application {
    /// Prepares the data directory and keys, connects and migrates the database, binds the port.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with(config, Registry::new()).await
    }

    /// Like [`Application::build`], with job handlers besides shopkeep's own (an embedding
    /// program's, or a test's).
    pub async fn build_with(config: Config, mut registry: Registry) -> anyhow::Result<Application> {
        // Before anything is written, so the start's own writes (migrations, the signing key,
        // the built-in schedules) are counted too.
        shopkeep_server::metrics::recorder();
        prepare_data_dir(&config)?;
        let secret_key = keys::secret_key(&config)?;
        let db = Db::connect(&config.db_options()).await?;
        if config.database.migrate_on_start {
            let before = db.migrate().await?;
            if !before.pending.is_empty() {
                tracing::info!(
                    applied = before.pending.len(),
                    engine = db.engine().as_str(),
                    "migrations applied"
                );
            }
        } else {
            let status = db.migration_status().await?;
            if let Some(problem) = status.problem() {
                // Pending migrations only make /readyz answer 503 until an operator migrates;
                // a newer or half-applied schema must not be served at all.
                if !status.unknown.is_empty() || !status.failed.is_empty() {
                    anyhow::bail!(problem);
                }
                tracing::warn!(%problem, "serving with a schema that is not current");
            }
        }
        let background = CancellationToken::new();
        let auth = Arc::new(auth_service(&config, &db, &secret_key, &background).await?);
        accounts::ensure_default_shop(&db)
            .await
            .context("creating the default shop")?;
        if let Some((username, password)) = &config.bootstrap_admin {
            match admin::create_admin(&db, &auth.hasher, username, password.expose()).await? {
                admin::Created::Created => tracing::info!(username, "bootstrap admin created"),
                admin::Created::Exists => {
                    tracing::info!(username, "bootstrap admin exists; left unchanged")
                }
            }
        }
        let feed = match &config.redis_url {
            Some(url) => {
                OrderFeed::redis(url.expose(), &config.redis_prefix, background.clone()).await?
            }
            None => OrderFeed::local(background.clone()),
        };
        let webhooks = Arc::new(WebhookService::new(
            config.webhooks.options(),
            Sealer::new(&secret_key)?,
        )?);
        shopkeep_server::webhooks::register(&mut registry, webhooks.clone());
        builtin::register(&mut registry);
        let jobs = Jobs::new(db.clone(), registry, config.jobs.options());
        jobs.define_builtin_schedules()
            .await
            .map_err(|e| anyhow::anyhow!("storing the built-in schedules: {e:?}"))?;
        let runs_workers = config.roles.contains(&Role::Worker);
        let jobs_stop = CancellationToken::new();
        let mut job_tasks = Vec::new();
        if runs_workers {
            job_tasks.push(tokio::spawn(jobs.clone().run_workers(jobs_stop.clone())));
        }
        if runs_workers {
            job_tasks.push(tokio::spawn(shopkeep_server::webhooks::run_dispatcher(
                db.clone(),
                jobs.clone(),
                config.webhooks.dispatch_interval,
                jobs_stop.clone(),
            )));
        }
        if config.roles.contains(&Role::Scheduler) {
            job_tasks.push(tokio::spawn(jobs.clone().run_scheduler(jobs_stop.clone())));
        }
        let state = AppState {
            db: db.clone(),
            build: BUILD,
            auth,
            feed,
            jobs: jobs.clone(),
            jobs_local: runs_workers,
            webhooks: webhooks.clone(),
            receipts: shopkeep_server::webhooks::receipts::start(db.clone()),
            orders: shopkeep_server::api::orders::start_writer(db.clone()),
            web: Arc::new(WebService {
                sessions: match &config.redis_url {
                    Some(url) => {
                        SessionStore::redis(url.expose(), &format!("{}web:", config.redis_prefix))
                            .await
                            .context("connecting the session store to redis")?
                    }
                    None => SessionStore::database(db.clone()),
                },
                opts: WebOptions {
                    secure_cookies: config.http.secure_cookies,
                },
            }),
        };
        let http = HttpOptions {
            request_timeout: config.http.request_timeout,
            body_limit: config.http.body_limit,
            compression: config.http.compression,
        };
        let router = shopkeep_server::router(state, &http);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let roles = config
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Application {
            listener,
            router,
            db,
            shutdown_timeout: config.http.shutdown_timeout,
            roles,
            background,
            jobs,
            job_tasks,
            jobs_stop,
            webhooks,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The database pool, for tests and admin commands.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The job system, for tests and embedding programs.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The webhook service (secrets, sealing, the outbound client), for tests.
    pub fn webhooks(&self) -> &Arc<WebhookService> {
        &self.webhooks
    }

    /// Serves until `shutdown` fires, then stops accepting, lets in-flight requests finish up to
    /// the shutdown deadline, and closes the pool.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(addr = %addr, engine = self.db.engine().as_str(), roles = %self.roles, version = BUILD.version, commit = BUILD.commit, "listening");
        let graceful = shutdown.clone();
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut server = tokio::spawn(async move {
            axum::serve(self.listener, service)
                .with_graceful_shutdown(graceful.cancelled_owned())
                .await
        });
        tokio::select! {
            res = &mut server => {
                res.context("the server task failed")?.context("the server stopped")?;
            }
            () = shutdown.cancelled() => {
                tracing::info!(deadline_s = self.shutdown_timeout.as_secs_f64(), "shutting down: finishing in-flight requests");
                // Background tasks stop and open event streams end, so draining waits only for
                // real requests.
                self.background.cancel();
                match tokio::time::timeout(self.shutdown_timeout, &mut server).await {
                    Ok(res) => res.context("the server task failed")?.context("the server stopped")?,
                    Err(_) => {
                        tracing::warn!("shutdown deadline passed; dropping the remaining connections");
                        server.abort();
                    }
                }
            }
        }
        self.background.cancel();
        // Workers stop claiming, let running jobs finish (up to jobs.shutdown_grace) and release
        // the rest; the pool closes after them.
        self.jobs_stop.cancel();
        for t in self.job_tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a job task failed");
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), self.db.close())
            .await
            .is_err()
        {
            tracing::warn!("database pool did not close within 5 s");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds the authentication services and starts the revocation poller.
pub async fn auth_service(
    config: &Config,
    db: &Db,
    secret_key: &Secret<Vec<u8>>,
    background: &CancellationToken,
) -> anyhow::Result<AuthService> {
    let a = &config.auth;
    let keys =
        Arc::new(KeyRing::load(db.clone(), Sealer::new(secret_key)?, a.access_token_ttl).await?);
    tokio::spawn(
        keys.clone()
            .run(shopkeep_server::auth::KEY_RELOAD_EVERY, background.clone()),
    );
    let hasher = PasswordHasher::new(admin::hash_policy(config), a.hash_concurrency).await?;
    let limiter = match &config.redis_url {
        Some(url) => {
            FailureLimiter::redis(
                url.expose(),
                &format!("{}login:", config.redis_prefix),
                a.login_max_failures,
                a.login_failure_window,
            )
            .await?
        }
        None => FailureLimiter::memory(a.login_max_failures, a.login_failure_window),
    };
    let revoked = Arc::new(RevocationList::default());
    tokio::spawn(revoked.clone().run(db.clone(), background.clone()));
    let trusted_proxies = a
        .trusted_proxies
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    Ok(AuthService {
        db: db.clone(),
        opts: AuthOptions {
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            access_ttl: a.access_token_ttl,
            refresh_ttl: a.refresh_token_ttl,
            trusted_proxies,
        },
        keys,
        hasher,
        limiter,
        revoked,
        verified: Default::default(),
    })
}

fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("the data directory {} is not writable", dir.display()))?;
    Ok(())
}

/// Where the web pages keep their sessions: Redis/Valkey under `{redis_prefix}web:` when
/// `redis_url` is set, else the database.
pub async fn session_store(config: &Config, db: &Db) -> anyhow::Result<SessionStore> {
    match &config.redis_url {
        Some(url) => SessionStore::redis(url.expose(), &format!("{}web:", config.redis_prefix))
            .await
            .context("connecting the session store to redis"),
        None => Ok(SessionStore::database(db.clone())),
    }
}
