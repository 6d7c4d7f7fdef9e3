//! The customer journey: N virtual users at once, each registering, signing in, placing orders,
//! listing them, and a shop admin approving each of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::client::{Api, Token};
use crate::report::Report;
use crate::stats::{Outcome, Step};

/// What to run.
#[derive(Debug, Clone)]
pub struct JourneyOptions {
    /// `http://host:port` of the server.
    pub base_url: String,
    /// Virtual users, all started at once (or spread over `ramp`).
    pub users: u64,
    /// Orders each user places (at most 20 are checked on the list's first page).
    pub orders: u64,
    /// A shop admin of the default shop, where self-registered customers land.
    pub admin_username: String,
    /// That admin's password.
    pub admin_password: String,
    /// Every virtual user's password (must pass the server's password policy).
    pub password: String,
    /// Usernames are `{prefix}{index:05}`: 4-20 letters and digits in all.
    pub prefix: String,
    /// User `i` starts at `ramp * i / users`; zero starts every user at once.
    pub ramp: Duration,
    /// Limit for one request.
    pub timeout: Duration,
}

impl JourneyOptions {
    /// Defaults: 5 orders per user, no ramp, a 60 s request limit, a fresh username prefix.
    pub fn new(base_url: &str, users: u64, admin_username: &str, admin_password: &str) -> Self {
        JourneyOptions {
            base_url: base_url.to_string(),
            users,
            orders: 5,
            admin_username: admin_username.to_string(),
            admin_password: admin_password.to_string(),
            password: crate::endpoint::DEFAULT_PASSWORD.to_string(),
            prefix: format!("j{}", crate::run_tag()),
            ramp: Duration::ZERO,
            timeout: Duration::from_secs(60),
        }
    }
}

/// The journey's steps, in order.
struct Steps {
    admin_login: Step,
    register: Step,
    login: Step,
    create: Step,
    list: Step,
    approve: Step,
}

/// The admin's token, signed in once and again shortly before it expires. A failed sign-in is
/// not retried: repeating a wrong password would trip the per-IP failure limit, which would then
/// refuse the customers' sign-ins from the same address too.
pub struct Admin {
    username: String,
    password: String,
    state: Mutex<AdminState>,
}

enum AdminState {
    NotYet,
    SignedIn(Token),
    Failed,
}

impl Admin {
    /// An admin not signed in yet.
    pub fn new(username: &str, password: &str) -> Admin {
        Admin {
            username: username.to_string(),
            password: password.to_string(),
            state: Mutex::new(AdminState::NotYet),
        }
    }

    /// A valid access token, signing in (recorded in `step`) when there is none or it is old;
    /// None once a sign-in has failed.
    pub async fn token(&self, api: &Api, step: &Step) -> Option<String> {
        let mut st = self.state.lock().await;
        match &*st {
            AdminState::SignedIn(t) if !t.nearly_expired() => return Some(t.access.clone()),
            AdminState::Failed => return None,
            _ => {}
        }
        match api.login(step, &self.username, &self.password).await {
            Some(t) => {
                let access = t.access.clone();
                *st = AdminState::SignedIn(t);
                Some(access)
            }
            None => {
                *st = AdminState::Failed;
                None
            }
        }
    }
}

/// Runs the journey and reports every step. Errors of the server are in the report; an Err
/// means the run itself could not be set up.
pub async fn run(opts: &JourneyOptions) -> anyhow::Result<Report> {
    let api = Api::new(&opts.base_url, opts.timeout)?;
    let steps = Arc::new(Steps {
        admin_login: Step::new("admin login"),
        register: Step::new("register"),
        login: Step::new("login"),
        create: Step::new("create"),
        list: Step::new("list"),
        approve: Step::new("approve"),
    });
    let admin = Arc::new(Admin::new(&opts.admin_username, &opts.admin_password));
    let start = Instant::now();
    // The admin signs in before the customers arrive, as a shop's admin would be.
    admin.token(&api, &steps.admin_login).await;
    let mut users = JoinSet::new();
    for i in 0..opts.users {
        let (api, steps, admin) = (api.clone(), steps.clone(), admin.clone());
        let username = format!("{}{i:05}", opts.prefix);
        let delay = opts.ramp.mul_f64(i as f64 / opts.users.max(1) as f64);
        let (password, orders) = (opts.password.clone(), opts.orders);
        users.spawn(async move {
            tokio::time::sleep_until((start + delay).into()).await;
            one_user(&api, &steps, &admin, &username, &password, orders).await
        });
    }
    let mut completed = 0;
    while let Some(done) = users.join_next().await {
        if done? {
            completed += 1;
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let s = &steps;
    Ok(Report {
        scenario: "journey".to_string(),
        base_url: api.base().to_string(),
        users: opts.users,
        orders_per_user: Some(opts.orders),
        connections: None,
        wall_s,
        journeys_completed: Some(completed),
        journeys_per_s: Some(if wall_s > 0.0 {
            completed as f64 / wall_s
        } else {
            0.0
        }),
        steps: [
            &s.admin_login,
            &s.register,
            &s.login,
            &s.create,
            &s.list,
            &s.approve,
        ]
        .iter()
        .map(|st| st.report())
        .collect(),
    })
}

/// One virtual user; true when every one of its requests succeeded. A failed step makes the
/// steps that depend on it count as skipped errors, so every step's count stays predictable.
async fn one_user(
    api: &Api,
    s: &Steps,
    admin: &Admin,
    username: &str,
    password: &str,
    orders: u64,
) -> bool {
    let skip = |step: &Step, n: u64, why: &str| {
        for _ in 0..n {
            step.record(Instant::now(), Duration::ZERO, Outcome::Skipped(why.into()));
        }
    };
    let token = match api.register(&s.register, username, password).await {
        Some(()) => api.login(&s.login, username, password).await,
        None => {
            skip(&s.login, 1, "register failed");
            None
        }
    };
    let Some(token) = token else {
        skip(&s.create, orders, "no customer token");
        skip(&s.list, 1, "no customer token");
        skip(&s.approve, orders, "no customer token");
        return false;
    };
    let mut ids = Vec::new();
    for _ in 0..orders {
        if let Some(id) = api.create_order(&s.create, &token.access).await {
            ids.push(id);
        }
    }
    let check: &[String] = if orders <= 20 { &ids } else { &[] };
    let listed = api.list_orders(&s.list, &token.access, check).await;
    let mut ok = listed.is_some() && ids.len() as u64 == orders;
    skip(&s.approve, orders - ids.len() as u64, "create failed");
    for id in &ids {
        match admin.token(api, &s.admin_login).await {
            Some(t) => ok &= api.approve(&s.approve, &t, id).await.is_some(),
            None => {
                skip(&s.approve, 1, "admin not signed in");
                ok = false;
            }
        }
    }
    ok
}
