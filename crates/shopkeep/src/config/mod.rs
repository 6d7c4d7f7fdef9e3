//! Configuration: defaults < `shopkeep.toml` < `SHOPKEEP_*` environment, validated in one pass.
//!
//! Every bad or unknown key is reported on its own line (the `config` crate stops at the first
//! error, which is why shopkeep reads the layers itself).

mod load;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shopkeep_domain::Secret;
use shopkeep_store::{DbOptions, SqliteSync, redact_url};

pub use load::{ConfigErrors, Sources, load};

/// The roles one process can play; `serve` runs all of them unless `--roles` picks some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Web pages and the public entry point.
    Gateway,
    /// Accounts, tokens, API keys.
    Auth,
    /// Order requests and their workflow.
    Orders,
    /// The JSON API and webhooks receivers.
    Api,
    /// Background job workers.
    Worker,
    /// The cron scheduler.
    Scheduler,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 6] = [
        Role::Gateway,
        Role::Auth,
        Role::Orders,
        Role::Api,
        Role::Worker,
        Role::Scheduler,
    ];

    /// The role's name in `--roles`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Auth => "auth",
            Role::Orders => "orders",
            Role::Api => "api",
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
        }
    }

    /// Parses a comma-separated list (`gateway,api`); `all` means every role.
    pub fn parse_list(s: &str) -> Result<Vec<Role>, String> {
        let mut roles = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                roles.extend(Role::ALL);
                continue;
            }
            match Role::ALL.iter().find(|r| r.as_str() == part) {
                Some(r) => roles.push(*r),
                None => {
                    return Err(format!(
                        "unknown role {part:?}; expected a comma-separated list of all, {}",
                        Role::ALL.map(Role::as_str).join(", ")
                    ));
                }
            }
        }
        if roles.is_empty() {
            return Err("no role given".into());
        }
        roles.sort();
        roles.dedup();
        Ok(roles)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (default; for collectors).
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite file, generated keys and uploads live.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Database URL; `None` means the SQLite file `shopkeep.db` in `data_dir`.
    pub database_url: Option<Secret<String>>,
    /// Pool and engine settings.
    pub database: DatabaseConfig,
    /// HTTP limits and shutdown.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Valkey/Redis URL for shared sessions, rate limits and fan-out; in-process when absent.
    pub redis_url: Option<Secret<String>>,
    /// Prefix of every Redis key shopkeep writes, so deployments can share one Redis.
    pub redis_prefix: String,
    /// A 32-byte secret key (hex); generated into `data_dir/secret.key` when absent.
    pub secret_key: Option<Secret<String>>,
    /// Roles this process plays.
    pub roles: Vec<Role>,
    /// Accounts and tokens.
    pub auth: AuthConfig,
    /// `ADMIN_USERNAME` / `ADMIN_PASSWORD`: a platform admin created at start when missing.
    pub bootstrap_admin: Option<(String, Secret<String>)>,
    /// Background jobs.
    pub jobs: JobsConfig,
    /// Inbound webhook secrets and outbound delivery settings.
    pub webhooks: WebhooksConfig,
}

/// Webhook settings: the providers' secrets (`shopify.*`, `stripe.*`, `printify.*`) and the
/// outbound side (`webhooks.*`).
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    /// `shopify.client_secret`: the app's client secret, which signs Shopify webhooks.
    pub shopify_client_secret: Option<Secret<String>>,
    /// `shopify.previous_client_secret`: still accepted after a rotation.
    pub shopify_previous_client_secret: Option<Secret<String>>,
    /// `stripe.webhook_secret`: the endpoint's `whsec_` signing secret.
    pub stripe_webhook_secret: Option<Secret<String>>,
    /// `stripe.previous_webhook_secret`.
    pub stripe_previous_webhook_secret: Option<Secret<String>>,
    /// `printify.webhook_secret`.
    pub printify_webhook_secret: Option<Secret<String>>,
    /// `printify.previous_webhook_secret`.
    pub printify_previous_webhook_secret: Option<Secret<String>>,
    /// An outbound attempt not answered within this time fails.
    pub delivery_timeout: Duration,
    /// An endpoint whose deliveries all failed for this long is disabled.
    pub disable_after: Duration,
    /// CIDR ranges outbound deliveries may reach although private or loopback.
    pub allow_networks: Vec<ipnet::IpNet>,
    /// How often the outbox is read for new events.
    pub dispatch_interval: Duration,
    /// How long a rotated endpoint secret keeps signing beside the new one.
    pub secret_overlap: Duration,
    /// How long inbound webhooks reuse an integration they looked up (zero: no reuse).
    pub integration_cache_ttl: Duration,
}

impl WebhooksConfig {
    /// Options for [`shopkeep_server::webhooks::WebhookService::new`].
    pub fn options(&self) -> shopkeep_server::webhooks::WebhookOptions {
        let pair = |a: &Option<Secret<String>>, b: &Option<Secret<String>>| {
            [a, b].into_iter().flatten().cloned().collect::<Vec<_>>()
        };
        shopkeep_server::webhooks::WebhookOptions {
            shopify_secrets: pair(
                &self.shopify_client_secret,
                &self.shopify_previous_client_secret,
            ),
            stripe_secrets: pair(
                &self.stripe_webhook_secret,
                &self.stripe_previous_webhook_secret,
            ),
            printify_secrets: pair(
                &self.printify_webhook_secret,
                &self.printify_previous_webhook_secret,
            ),
            delivery_timeout: self.delivery_timeout,
            disable_after: self.disable_after,
            allow_networks: self.allow_networks.clone(),
            dispatch_interval: self.dispatch_interval,
            secret_overlap: self.secret_overlap,
            integration_cache_ttl: self.integration_cache_ttl,
        }
    }
}

/// Background job settings (the `worker` role).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Concurrency per queue (`default=10,maintenance=1`); 0 leaves a queue to other instances.
    /// Starts as [`JobsConfig::BUILT_IN_QUEUES`]; a configured list replaces only the queues it
    /// names.
    pub queues: std::collections::BTreeMap<String, usize>,
    /// Concurrency of a queue not listed.
    pub default_concurrency: usize,
    /// How often idle workers look for due jobs nobody told them about.
    pub poll_interval: Duration,
    /// A worker that stops renewing a job's lease for this long loses the job to another.
    pub lease: Duration,
    /// Finished jobs and their results are kept this long.
    pub keep_finished: Duration,
    /// On shutdown, running jobs may finish for this long before they are released.
    pub shutdown_grace: Duration,
    /// Most jobs one claim takes.
    pub claim_batch: usize,
}

impl JobsConfig {
    /// Queues that run at other than `default_concurrency` unless `jobs.queues` names them.
    /// A webhook delivery spends its time waiting on the receiver (up to the 15 s timeout), so
    /// many run at once: at 10, a few slow receivers would hold up every shop's deliveries.
    pub const BUILT_IN_QUEUES: &[(&str, usize)] = &[(shopkeep_server::webhooks::QUEUE, 256)];

    /// Options for [`shopkeep_jobs::Jobs::new`].
    pub fn options(&self) -> shopkeep_jobs::JobsOptions {
        shopkeep_jobs::JobsOptions {
            concurrency: self.queues.clone(),
            default_concurrency: self.default_concurrency,
            poll_interval: self.poll_interval,
            lease: self.lease,
            keep_finished: self.keep_finished,
            claim_batch: self.claim_batch,
            shutdown_grace: self.shutdown_grace,
            ..shopkeep_jobs::JobsOptions::default()
        }
    }
}

/// Password hashing algorithm for new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordHash {
    /// bcrypt (default).
    Bcrypt,
    /// argon2id.
    Argon2id,
}

/// Accounts and tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Algorithm for new password hashes; logins re-hash when it changes.
    pub password_hash: PasswordHash,
    /// bcrypt work factor.
    pub bcrypt_cost: u32,
    /// Password hashes computed at once (each takes a core for ~0.3 s).
    pub hash_concurrency: usize,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_token_ttl: Duration,
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim.
    pub audience: String,
    /// Failed sign-ins allowed per username and per IP inside the window.
    pub login_max_failures: u32,
    /// The failure window.
    pub login_failure_window: Duration,
    /// Proxies whose X-Forwarded-For is believed (IPs or CIDR ranges).
    pub trusted_proxies: Vec<String>,
}

/// Database settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Maximum pooled connections.
    pub max_connections: u32,
    /// Wait for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
    /// PostgreSQL statement timeout.
    pub statement_timeout: Duration,
    /// SQLite lock wait.
    pub busy_timeout: Duration,
    /// SQLite commit durability (`full` or `normal`).
    pub sqlite_synchronous: SqliteSync,
    /// Apply pending migrations at start.
    pub migrate_on_start: bool,
}

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Per-request time limit (503 beyond).
    pub request_timeout: Duration,
    /// Largest request body in bytes (413 beyond).
    pub body_limit: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_timeout: Duration,
    /// gzip responses for clients that accept it.
    pub compression: bool,
    /// Session cookie `Secure` with the `__Host-` prefix (serve over HTTPS).
    pub secure_cookies: bool,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `json` or `pretty`.
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `shopkeep=debug,sqlx=warn`.
    pub level: String,
}

impl Config {
    /// The built-in defaults, with `data_dir` as given.
    pub fn defaults(data_dir: PathBuf) -> Self {
        Config {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            database: DatabaseConfig {
                max_connections: 16,
                acquire_timeout: Duration::from_secs(5),
                statement_timeout: Duration::from_secs(30),
                busy_timeout: Duration::from_secs(5),
                sqlite_synchronous: SqliteSync::Full,
                migrate_on_start: true,
            },
            http: HttpConfig {
                request_timeout: Duration::from_secs(30),
                body_limit: 1024 * 1024,
                shutdown_timeout: Duration::from_secs(30),
                compression: true,
                secure_cookies: false,
            },
            log: LogConfig {
                format: LogFormat::Json,
                level: "info".into(),
            },
            redis_url: None,
            redis_prefix: "shopkeep:".into(),
            secret_key: None,
            roles: Role::ALL.to_vec(),
            auth: AuthConfig {
                password_hash: PasswordHash::Bcrypt,
                bcrypt_cost: 12,
                hash_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
                access_token_ttl: Duration::from_secs(15 * 60),
                refresh_token_ttl: Duration::from_secs(30 * 86_400),
                issuer: "shopkeep".into(),
                audience: "shopkeep".into(),
                login_max_failures: 5,
                login_failure_window: Duration::from_secs(60),
                trusted_proxies: Vec::new(),
            },
            bootstrap_admin: None,
            jobs: {
                let d = shopkeep_jobs::JobsOptions::default();
                JobsConfig {
                    queues: JobsConfig::BUILT_IN_QUEUES
                        .iter()
                        .map(|(q, n)| (q.to_string(), *n))
                        .chain(d.concurrency)
                        .collect(),
                    default_concurrency: d.default_concurrency,
                    poll_interval: d.poll_interval,
                    lease: d.lease,
                    keep_finished: d.keep_finished,
                    shutdown_grace: d.shutdown_grace,
                    claim_batch: d.claim_batch,
                }
            },
            webhooks: {
                let d = shopkeep_server::webhooks::WebhookOptions::default();
                WebhooksConfig {
                    shopify_client_secret: None,
                    shopify_previous_client_secret: None,
                    stripe_webhook_secret: None,
                    stripe_previous_webhook_secret: None,
                    printify_webhook_secret: None,
                    printify_previous_webhook_secret: None,
                    delivery_timeout: d.delivery_timeout,
                    disable_after: d.disable_after,
                    allow_networks: Vec::new(),
                    dispatch_interval: d.dispatch_interval,
                    secret_overlap: d.secret_overlap,
                    integration_cache_ttl: d.integration_cache_ttl,
                }
            },
        }
    }

    /// The SQLite file used when no `database_url` is set.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("shopkeep.db")
    }

    /// Options for [`shopkeep_store::Db::connect`].
    pub fn db_options(&self) -> DbOptions {
        DbOptions {
            url: self.database_url.clone(),
            sqlite_path: self.sqlite_path(),
            max_connections: self.database.max_connections,
            acquire_timeout: self.database.acquire_timeout,
            statement_timeout: self.database.statement_timeout,
            busy_timeout: self.database.busy_timeout,
            sqlite_sync: self.database.sqlite_synchronous,
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let d = &self.database;
        let h = &self.http;
        let w = &self.webhooks;
        let redacted = |s: &Option<Secret<String>>| match s {
            Some(_) => "\"[redacted]\"",
            None => "\"\" # not set",
        };
        let url = |u: &Option<Secret<String>>| match u {
            Some(s) => format!("{:?}", redact_url(s.expose())),
            None => "\"\" # not set".into(),
        };
        let db_url = match &self.database_url {
            Some(_) => url(&self.database_url),
            None => format!(
                "\"\" # not set: SQLite file {:?}",
                self.sqlite_path().display().to_string()
            ),
        };
        let secret = match &self.secret_key {
            Some(_) => "\"[redacted]\"",
            None => "\"\" # not set: generated into data_dir/secret.key",
        };
        let sync = match d.sqlite_synchronous {
            SqliteSync::Full => "full",
            SqliteSync::Normal => "normal",
        };
        let format = match self.log.format {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        };
        format!(
            "data_dir = {data_dir:?}\nlisten = \"{listen}\"\ndatabase_url = {db_url}\nredis_url = {redis}\nredis_prefix = {rp:?}\n\
             secret_key = {secret}\nroles = \"{roles}\"\n\n\
             [database]\nmax_connections = {maxc}\nacquire_timeout = \"{acq}\"\nstatement_timeout = \"{st}\"\n\
             busy_timeout = \"{busy}\"\nsqlite_synchronous = \"{sync}\"\nmigrate_on_start = {mig}\n\n\
             [http]\nrequest_timeout = \"{rt}\"\nbody_limit = {bl}\nshutdown_timeout = \"{sd}\"\ncompression = {comp}\nsecure_cookies = {sc}\n\n\
             [log]\nformat = \"{format}\"\nlevel = {level:?}\n\n\
             [auth]\npassword_hash = \"{ph}\"\nbcrypt_cost = {cost}\nhash_concurrency = {hc}\naccess_token_ttl = \"{att}\"\n\
             refresh_token_ttl = \"{rtt}\"\nissuer = {iss:?}\naudience = {aud:?}\nlogin_max_failures = {lmf}\n\
             login_failure_window = \"{lfw}\"\ntrusted_proxies = {tp:?}\n\n\
             [jobs]\nqueues = {jq:?}\ndefault_concurrency = {jdc}\npoll_interval = \"{jpi}\"\nlease = \"{jl}\"\n\
             keep_finished = \"{jkf}\"\nshutdown_grace = \"{jsg}\"\nclaim_batch = {jcb}\n\n\
             [shopify]\nclient_secret = {s1}\nprevious_client_secret = {s2}\n\n\
             [stripe]\nwebhook_secret = {s3}\nprevious_webhook_secret = {s4}\n\n\
             [printify]\nwebhook_secret = {s5}\nprevious_webhook_secret = {s6}\n\n\
             [webhooks]\ndelivery_timeout = \"{wdt}\"\ndisable_after = \"{wda}\"\nallow_networks = {wan:?}\n\
             dispatch_interval = \"{wdi}\"\nsecret_overlap = \"{wso}\"\nintegration_cache_ttl = \"{wict}\"\n",
            data_dir = self.data_dir.display().to_string(),
            listen = self.listen,
            redis = url(&self.redis_url),
            rp = self.redis_prefix,
            roles = self
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
            maxc = d.max_connections,
            acq = values::show_duration(d.acquire_timeout),
            st = values::show_duration(d.statement_timeout),
            busy = values::show_duration(d.busy_timeout),
            mig = d.migrate_on_start,
            rt = values::show_duration(h.request_timeout),
            bl = h.body_limit,
            sd = values::show_duration(h.shutdown_timeout),
            comp = h.compression,
            sc = h.secure_cookies,
            level = self.log.level,
            ph = match self.auth.password_hash {
                PasswordHash::Bcrypt => "bcrypt",
                PasswordHash::Argon2id => "argon2id",
            },
            cost = self.auth.bcrypt_cost,
            hc = self.auth.hash_concurrency,
            att = values::show_duration(self.auth.access_token_ttl),
            rtt = values::show_duration(self.auth.refresh_token_ttl),
            iss = self.auth.issuer,
            aud = self.auth.audience,
            lmf = self.auth.login_max_failures,
            lfw = values::show_duration(self.auth.login_failure_window),
            tp = self.auth.trusted_proxies,
            jq = self
                .jobs
                .queues
                .iter()
                .map(|(q, n)| format!("{q}={n}"))
                .collect::<Vec<_>>()
                .join(","),
            jdc = self.jobs.default_concurrency,
            jpi = values::show_duration(self.jobs.poll_interval),
            jl = values::show_duration(self.jobs.lease),
            jkf = values::show_duration(self.jobs.keep_finished),
            jsg = values::show_duration(self.jobs.shutdown_grace),
            jcb = self.jobs.claim_batch,
            s1 = redacted(&w.shopify_client_secret),
            s2 = redacted(&w.shopify_previous_client_secret),
            s3 = redacted(&w.stripe_webhook_secret),
            s4 = redacted(&w.stripe_previous_webhook_secret),
            s5 = redacted(&w.printify_webhook_secret),
            s6 = redacted(&w.printify_previous_webhook_secret),
            wdt = values::show_duration(w.delivery_timeout),
            wda = values::show_duration(w.disable_after),
            wan = w
                .allow_networks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            wdi = values::show_duration(w.dispatch_interval),
            wso = values::show_duration(w.secret_overlap),
            wict = values::show_duration(w.integration_cache_ttl),
        )
    }
}
