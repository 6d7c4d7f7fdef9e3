//! Closed-loop load on one endpoint: C connections each send the next request as soon as the
//! previous one is answered, for a fixed time, with users and orders made beforehand.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Api;
use crate::journey::Admin;
use crate::report::Report;
use crate::stats::Step;

/// The password of every user the tool registers unless told otherwise.
pub const DEFAULT_PASSWORD: &str = "plum-Orchard-47-lantern";

/// The endpoint under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `GET /healthz` (no credential).
    Healthz,
    /// `GET /api/v1/me` as the users, round robin.
    Me,
    /// `POST /api/v1/orders` with an Idempotency-Key, as the users.
    Create,
    /// `GET /api/v1/orders` (first page), as the users.
    List,
    /// `GET /api/v1/admin/orders?username=...` as the admin.
    Search,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        Ok(match s {
            "healthz" => Target::Healthz,
            "me" => Target::Me,
            "create" => Target::Create,
            "list" => Target::List,
            "search" => Target::Search,
            _ => {
                return Err(format!(
                    "{s:?}: expected healthz, me, create, list or search"
                ));
            }
        })
    }
}

impl Target {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Healthz => "healthz",
            Target::Me => "me",
            Target::Create => "create",
            Target::List => "list",
            Target::Search => "search",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// `http://host:port` of the server.
    pub base_url: String,
    /// The endpoint.
    pub target: Target,
    /// Concurrent connections (tasks), also the concurrency of the preparation.
    pub connections: u64,
    /// Length of the measured run.
    pub duration: Duration,
    /// Unreported run just before the measured one.
    pub warmup: Duration,
    /// Users registered and signed in beforehand (not for healthz).
    pub users: u64,
    /// Orders placed beforehand, round robin over the users.
    pub seed: u64,
    /// The admin (for search).
    pub admin_username: String,
    /// The admin's password.
    pub admin_password: String,
    /// The users' password.
    pub password: String,
    /// Usernames are `{prefix}{index:05}`.
    pub prefix: String,
    /// The search text; default the first user's username (that user's orders).
    pub search: Option<String>,
    /// Limit for one request.
    pub timeout: Duration,
}

impl EndpointOptions {
    /// Defaults: 64 connections, 10 s after a 2 s warm-up, 20 users, no seed orders.
    pub fn new(base_url: &str, target: Target, admin_username: &str, admin_password: &str) -> Self {
        EndpointOptions {
            base_url: base_url.to_string(),
            target,
            connections: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            users: 20,
            seed: 0,
            admin_username: admin_username.to_string(),
            admin_password: admin_password.to_string(),
            password: DEFAULT_PASSWORD.to_string(),
            prefix: format!("e{}", crate::run_tag()),
            search: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Tokens and the search path the load loop uses.
struct Fixture {
    tokens: Vec<String>,
    admin: Option<String>,
    search_path: String,
}

/// Prepares users and orders, then runs the load; every step, preparation included, is reported.
pub async fn run(opts: &EndpointOptions) -> anyhow::Result<Report> {
    let api = Api::new(&opts.base_url, opts.timeout)?;
    let setup = Setup {
        register: Arc::new(Step::setup("setup register")),
        login: Arc::new(Step::setup("setup login")),
        seed: Arc::new(Step::setup("setup seed")),
        admin_login: Arc::new(Step::setup("admin login")),
    };
    let fixture = Arc::new(prepare(&api, opts, &setup).await);
    let all = [
        &setup.register,
        &setup.login,
        &setup.seed,
        &setup.admin_login,
    ];
    if opts.target != Target::Healthz && fixture.tokens.is_empty() {
        let why: Vec<String> = all.iter().flat_map(|s| s.report().error_samples).collect();
        anyhow::bail!("no user could sign in: {why:?}");
    }
    if opts.target == Target::Search && fixture.admin.is_none() {
        let why = setup.admin_login.report().error_samples;
        anyhow::bail!("the admin could not sign in: {why:?}");
    }
    if !opts.warmup.is_zero() {
        let warm = Arc::new(Step::new("warm-up"));
        load(&api, opts, &fixture, warm, opts.warmup).await?;
    }
    let step = Arc::new(Step::new(opts.target.name()));
    let start = Instant::now();
    load(&api, opts, &fixture, step.clone(), opts.duration).await?;
    let wall_s = start.elapsed().as_secs_f64();
    let mut steps: Vec<_> = all
        .iter()
        .map(|s| s.report())
        .filter(|r| r.count > 0)
        .collect();
    steps.push(step.report());
    Ok(Report {
        scenario: format!("endpoint {}", opts.target.name()),
        base_url: api.base().to_string(),
        users: fixture.tokens.len() as u64,
        orders_per_user: None,
        connections: Some(opts.connections),
        wall_s,
        journeys_completed: None,
        journeys_per_s: None,
        steps,
    })
}

/// The preparation steps.
struct Setup {
    register: Arc<Step>,
    login: Arc<Step>,
    seed: Arc<Step>,
    admin_login: Arc<Step>,
}

/// Registers and signs in the users, signs in the admin, places the seed orders, each with at
/// most `connections` requests in flight.
async fn prepare(api: &Api, opts: &EndpointOptions, s: &Setup) -> Fixture {
    let users = if opts.target == Target::Healthz {
        0
    } else {
        opts.users
    };
    let names: Vec<String> = (0..users)
        .map(|i| format!("{}{i:05}", opts.prefix))
        .collect();
    let permits = Arc::new(Semaphore::new(opts.connections.max(1) as usize));
    let mut set = JoinSet::new();
    for name in names.clone() {
        let (api, pw, permits) = (api.clone(), opts.password.clone(), permits.clone());
        let (reg, login) = (s.register.clone(), s.login.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            api.register(&reg, &name, &pw).await?;
            api.login(&login, &name, &pw).await.map(|t| t.access)
        });
    }
    let mut tokens = Vec::new();
    while let Some(t) = set.join_next().await {
        tokens.extend(t.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let admin = if opts.target == Target::Search {
        Admin::new(&opts.admin_username, &opts.admin_password)
            .token(api, &s.admin_login)
            .await
    } else {
        None
    };
    let mut set = JoinSet::new();
    for i in 0..if tokens.is_empty() { 0 } else { opts.seed } {
        let (api, permits, step) = (api.clone(), permits.clone(), s.seed.clone());
        let token = tokens[i as usize % tokens.len()].clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            api.create_order(&step, &token).await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    let search = opts
        .search
        .clone()
        .or_else(|| names.first().cloned())
        .unwrap_or_default();
    Fixture {
        tokens,
        admin,
        search_path: format!("/api/v1/admin/orders?username={search}"),
    }
}

/// `connections` tasks, each sending requests back to back until `duration` has passed; users
/// are taken round robin from one shared counter.
async fn load(
    api: &Api,
    opts: &EndpointOptions,
    f: &Arc<Fixture>,
    step: Arc<Step>,
    duration: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + duration;
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..opts.connections.max(1) {
        let (api, f, step, next, target) = (
            api.clone(),
            f.clone(),
            step.clone(),
            next.clone(),
            opts.target,
        );
        set.spawn(async move {
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                one(&api, &f, &step, target, i).await;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r?;
    }
    Ok(())
}

/// One request of the scenario, as user `i` (modulo the number of users).
async fn one(api: &Api, f: &Fixture, step: &Step, target: Target, i: usize) {
    let user = || f.tokens[i % f.tokens.len()].as_str();
    match target {
        Target::Healthz => {
            let req = api.request(Method::GET, "/healthz", None);
            api.call(step, req, StatusCode::OK, |_| Ok(())).await;
        }
        Target::Me => {
            let req = api.request(Method::GET, "/api/v1/me", Some(user()));
            api.call(step, req, StatusCode::OK, |_| Ok(())).await;
        }
        Target::Create => {
            api.create_order(step, user()).await;
        }
        Target::List => {
            api.list_orders(step, user(), &[]).await;
        }
        Target::Search => {
            let admin = f.admin.as_deref();
            let req = api.request(Method::GET, &f.search_path, admin);
            api.call(step, req, StatusCode::OK, |b| {
                let v: serde_json::Value =
                    serde_json::from_slice(b).map_err(|e| format!("search body: {e}"))?;
                v["items"].as_array().map(|_| ()).ok_or("no items".into())
            })
            .await;
        }
    }
}
