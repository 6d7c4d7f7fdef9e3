//! Reading the layers and validating every key, collecting all problems before giving up.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use shopkeep_domain::Secret;
use shopkeep_store::SqliteSync;

use super::values::{Raw, distance};
use super::{Config, LogFormat, PasswordHash, Role};

/// Where configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config` or `SHOPKEEP_CONFIG`: must exist when given.
    pub file: Option<PathBuf>,
    /// `shopkeep.toml` in the working directory, read when present and no file was named.
    pub default_file: Option<PathBuf>,
    /// The process environment (only `SHOPKEEP_*` names are read).
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The real process: `--config` if given, else `./shopkeep.toml`, and the environment.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Sources {
            file,
            default_file: Some(PathBuf::from("shopkeep.toml")),
            env: std::env::vars().collect(),
        }
    }
}

/// Every configuration problem found, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// `default=10,maintenance=1` as queue -> concurrency.
fn parse_queues(s: &str) -> Option<std::collections::BTreeMap<String, usize>> {
    let mut out = std::collections::BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (q, n) = part.split_once('=')?;
        let (q, n) = (q.trim(), n.trim().parse::<usize>().ok()?);
        let ok = !q.is_empty()
            && q.len() <= 64
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !ok || n > 1000 {
            return None;
        }
        out.insert(q.to_string(), n);
    }
    Some(out)
}

/// Every key shopkeep reads, for the unknown-key check and its "did you mean" hint.
const KNOWN: &[&str] = &[
    "data_dir",
    "listen",
    "database_url",
    "redis_url",
    "redis_prefix",
    "secret_key",
    "roles",
    "database.max_connections",
    "database.acquire_timeout",
    "database.statement_timeout",
    "database.busy_timeout",
    "database.sqlite_synchronous",
    "database.migrate_on_start",
    "http.request_timeout",
    "http.body_limit",
    "http.shutdown_timeout",
    "http.compression",
    "http.secure_cookies",
    "log.format",
    "log.level",
    "auth.password_hash",
    "auth.bcrypt_cost",
    "auth.hash_concurrency",
    "auth.access_token_ttl",
    "auth.refresh_token_ttl",
    "auth.issuer",
    "auth.audience",
    "auth.login_max_failures",
    "auth.login_failure_window",
    "auth.trusted_proxies",
    "jobs.queues",
    "jobs.default_concurrency",
    "jobs.poll_interval",
    "jobs.lease",
    "jobs.keep_finished",
    "jobs.shutdown_grace",
    "jobs.claim_batch",
    "shopify.client_secret",
    "shopify.previous_client_secret",
    "stripe.webhook_secret",
    "stripe.previous_webhook_secret",
    "printify.webhook_secret",
    "printify.previous_webhook_secret",
    "webhooks.delivery_timeout",
    "webhooks.disable_after",
    "webhooks.allow_networks",
    "webhooks.dispatch_interval",
    "webhooks.secret_overlap",
    "webhooks.integration_cache_ttl",
];

/// Environment names that start with the prefix but are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["SHOPKEEP_CONFIG"];

/// The value for an error line; secret values are never repeated back.
fn shown(key: &str, raw: &Raw) -> String {
    let secretish = ["secret", "password", "token", "key", "url"]
        .iter()
        .any(|w| key.contains(w));
    match raw.string() {
        Some(s) if secretish && s.contains("://") => {
            format!("{:?}", shopkeep_store::redact_url(&s))
        }
        _ if secretish => "[redacted]".to_string(),
        _ => raw.shown(),
    }
}

struct Taker {
    values: BTreeMap<String, (Raw, String)>,
    errors: Vec<String>,
}

impl Taker {
    /// Moves `key` into `slot` when present and valid; records one line when invalid.
    fn take<T>(
        &mut self,
        key: &str,
        expected: &str,
        slot: &mut T,
        parse: impl FnOnce(&Raw) -> Option<T>,
    ) {
        if let Some((raw, origin)) = self.values.remove(key) {
            match parse(&raw) {
                Some(v) => *slot = v,
                None => self.errors.push(format!(
                    "{key} = {} (from {origin}): expected {expected}",
                    shown(key, &raw)
                )),
            }
        }
    }
}

fn flatten(
    prefix: &str,
    table: toml::Table,
    origin: &str,
    out: &mut BTreeMap<String, (Raw, String)>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, origin, out),
            other => {
                out.insert(key, (Raw::Toml(other), origin.to_string()));
            }
        }
    }
}

fn read_file(path: &Path, out: &mut BTreeMap<String, (Raw, String)>) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        format!("{} is not valid TOML: {}", path.display(), e.message())
    })?;
    flatten("", table, &path.display().to_string(), out);
    Ok(())
}

/// Reads and validates the configuration.
pub fn load(sources: &Sources) -> Result<Config, ConfigErrors> {
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    match (&sources.file, &sources.default_file) {
        (Some(path), _) => {
            if let Err(e) = read_file(path, &mut values) {
                errors.push(e);
            }
        }
        (None, Some(path)) if path.exists() => {
            if let Err(e) = read_file(path, &mut values) {
                errors.push(e);
            }
        }
        _ => {}
    }
    for (name, value) in &sources.env {
        if let Some(rest) = name.strip_prefix("SHOPKEEP_")
            && !ENV_NOT_KEYS.contains(&name.as_str())
        {
            let key = rest.to_ascii_lowercase().replace("__", ".");
            values.insert(
                key,
                (Raw::Env(value.clone()), format!("environment {name}")),
            );
        }
    }

    let mut t = Taker { values, errors };
    let mut data_dir = PathBuf::from("./shopkeep-data");
    t.take("data_dir", "a directory path", &mut data_dir, |r| {
        r.string()
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from)
    });
    let mut c = Config::defaults(data_dir);
    t.take(
        "listen",
        "an address such as 127.0.0.1:8080",
        &mut c.listen,
        |r| r.string()?.trim().parse::<SocketAddr>().ok(),
    );
    t.take(
        "database_url",
        "a URL starting with sqlite:, postgres:// or postgresql://",
        &mut c.database_url,
        |r| {
            let s = r.string()?;
            let s = s.trim();
            if s.is_empty() {
                Some(None)
            } else if s.starts_with("sqlite:")
                || s.starts_with("postgres://")
                || s.starts_with("postgresql://")
            {
                Some(Some(Secret::new(s.to_string())))
            } else {
                None
            }
        },
    );
    t.take(
        "redis_url",
        "a URL starting with redis:// or rediss://",
        &mut c.redis_url,
        |r| {
            let s = r.string()?;
            let s = s.trim();
            if s.is_empty() {
                Some(None)
            } else if s.starts_with("redis://") || s.starts_with("rediss://") {
                Some(Some(Secret::new(s.to_string())))
            } else {
                None
            }
        },
    );
    t.take(
        "secret_key",
        "64 hexadecimal characters (32 bytes)",
        &mut c.secret_key,
        |r| {
            let s = r.string()?;
            let s = s.trim();
            if s.is_empty() {
                return Some(None);
            }
            (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| Some(Secret::new(s.to_string())))
        },
    );
    t.take(
        "roles",
        "a comma-separated list of all, gateway, auth, orders, api, worker, scheduler",
        &mut c.roles,
        |r| Role::parse_list(&r.string()?).ok(),
    );
    let d = &mut c.database;
    t.take(
        "database.max_connections",
        "a whole number from 1 to 1000",
        &mut d.max_connections,
        |r| {
            r.uint()
                .filter(|n| (1..=1000).contains(n))
                .and_then(|n| u32::try_from(n).ok())
        },
    );
    for (key, slot) in [
        ("database.acquire_timeout", &mut d.acquire_timeout),
        ("database.statement_timeout", &mut d.statement_timeout),
        ("database.busy_timeout", &mut d.busy_timeout),
    ] {
        t.take(
            key,
            "a duration such as 500ms, 5s or 2m (more than zero)",
            slot,
            |r| r.duration().filter(|d| !d.is_zero()),
        );
    }
    t.take(
        "database.sqlite_synchronous",
        "full or normal",
        &mut d.sqlite_synchronous,
        |r| match r.string()?.trim().to_ascii_lowercase().as_str() {
            "full" => Some(SqliteSync::Full),
            "normal" => Some(SqliteSync::Normal),
            _ => None,
        },
    );
    t.take(
        "database.migrate_on_start",
        "true or false",
        &mut d.migrate_on_start,
        Raw::bool,
    );
    let h = &mut c.http;
    for (key, slot) in [
        ("http.request_timeout", &mut h.request_timeout),
        ("http.shutdown_timeout", &mut h.shutdown_timeout),
    ] {
        t.take(
            key,
            "a duration such as 500ms, 5s or 2m (more than zero)",
            slot,
            |r| r.duration().filter(|d| !d.is_zero()),
        );
    }
    t.take(
        "http.body_limit",
        "a size from 1KiB to 1GiB, such as 1MiB or 65536",
        &mut h.body_limit,
        |r| {
            r.bytes()
                .filter(|n| (1024..=1 << 30).contains(n))
                .and_then(|n| usize::try_from(n).ok())
        },
    );
    t.take(
        "http.compression",
        "true or false",
        &mut h.compression,
        Raw::bool,
    );
    t.take(
        "http.secure_cookies",
        "true or false",
        &mut h.secure_cookies,
        Raw::bool,
    );
    t.take(
        "log.format",
        "json or pretty",
        &mut c.log.format,
        |r| match r.string()?.trim().to_ascii_lowercase().as_str() {
            "json" => Some(LogFormat::Json),
            "pretty" => Some(LogFormat::Pretty),
            _ => None,
        },
    );
    t.take(
        "log.level",
        "a filter such as info or shopkeep=debug,sqlx=warn",
        &mut c.log.level,
        |r| {
            let s = r.string()?;
            tracing_subscriber::EnvFilter::try_new(&s).ok().map(|_| s)
        },
    );

    t.take(
        "redis_prefix",
        "1-64 characters without spaces",
        &mut c.redis_prefix,
        |r| {
            r.string()
                .filter(|s| (1..=64).contains(&s.len()) && !s.contains(char::is_whitespace))
        },
    );
    let a = &mut c.auth;
    t.take(
        "auth.password_hash",
        "bcrypt or argon2id",
        &mut a.password_hash,
        |r| match r.string()?.trim().to_ascii_lowercase().as_str() {
            "bcrypt" => Some(PasswordHash::Bcrypt),
            "argon2id" => Some(PasswordHash::Argon2id),
            _ => None,
        },
    );
    t.take(
        "auth.bcrypt_cost",
        "a whole number from 4 to 31",
        &mut a.bcrypt_cost,
        |r| {
            r.uint()
                .filter(|n| (4..=31).contains(n))
                .and_then(|n| u32::try_from(n).ok())
        },
    );
    t.take(
        "auth.hash_concurrency",
        "a whole number from 1 to 256",
        &mut a.hash_concurrency,
        |r| {
            r.uint()
                .filter(|n| (1..=256).contains(n))
                .and_then(|n| usize::try_from(n).ok())
        },
    );
    for (key, slot) in [
        ("auth.access_token_ttl", &mut a.access_token_ttl),
        ("auth.refresh_token_ttl", &mut a.refresh_token_ttl),
        ("auth.login_failure_window", &mut a.login_failure_window),
    ] {
        t.take(
            key,
            "a duration such as 15m, 1h or 30d (more than zero)",
            slot,
            |r| r.duration().filter(|d| !d.is_zero()),
        );
    }
    for (key, slot) in [
        ("auth.issuer", &mut a.issuer),
        ("auth.audience", &mut a.audience),
    ] {
        t.take(key, "a non-empty string", slot, |r| {
            r.string().filter(|s| !s.trim().is_empty())
        });
    }
    t.take(
        "auth.login_max_failures",
        "a whole number from 1 to 1000",
        &mut a.login_max_failures,
        |r| {
            r.uint()
                .filter(|n| (1..=1000).contains(n))
                .and_then(|n| u32::try_from(n).ok())
        },
    );
    t.take(
        "auth.trusted_proxies",
        "a list of IP addresses or CIDR ranges",
        &mut a.trusted_proxies,
        |r| {
            let list = r.list()?;
            list.iter()
                .all(|s| s.parse::<shopkeep_server::auth::IpRange>().is_ok())
                .then_some(list)
        },
    );

    let j = &mut c.jobs;
    let mut listed = std::collections::BTreeMap::new();
    t.take(
        "jobs.queues",
        "a list such as default=10,maintenance=1 (queue=concurrency, 0-1000)",
        &mut listed,
        |r| parse_queues(&r.string()?),
    );
    // A listed queue replaces its built-in concurrency; the others keep theirs.
    j.queues.extend(listed);
    t.take(
        "jobs.default_concurrency",
        "a whole number from 0 to 1000",
        &mut j.default_concurrency,
        |r| {
            r.uint()
                .filter(|n| *n <= 1000)
                .and_then(|n| usize::try_from(n).ok())
        },
    );
    t.take(
        "jobs.claim_batch",
        "a whole number from 1 to 1000",
        &mut j.claim_batch,
        |r| {
            r.uint()
                .filter(|n| (1..=1000).contains(n))
                .and_then(|n| usize::try_from(n).ok())
        },
    );
    for (key, slot) in [
        ("jobs.poll_interval", &mut j.poll_interval),
        ("jobs.lease", &mut j.lease),
        ("jobs.keep_finished", &mut j.keep_finished),
        ("jobs.shutdown_grace", &mut j.shutdown_grace),
    ] {
        t.take(
            key,
            "a duration such as 500ms, 5s or 2m (more than zero)",
            slot,
            |r| r.duration().filter(|d| !d.is_zero()),
        );
    }

    let w = &mut c.webhooks;
    for (key, slot) in [
        ("shopify.client_secret", &mut w.shopify_client_secret),
        (
            "shopify.previous_client_secret",
            &mut w.shopify_previous_client_secret,
        ),
        ("stripe.webhook_secret", &mut w.stripe_webhook_secret),
        (
            "stripe.previous_webhook_secret",
            &mut w.stripe_previous_webhook_secret,
        ),
        ("printify.webhook_secret", &mut w.printify_webhook_secret),
        (
            "printify.previous_webhook_secret",
            &mut w.printify_previous_webhook_secret,
        ),
    ] {
        t.take(key, "a non-empty secret (or empty for none)", slot, |r| {
            let s = r.string()?;
            let s = s.trim();
            Some((!s.is_empty()).then(|| Secret::new(s.to_string())))
        });
    }
    for (key, slot) in [
        ("webhooks.delivery_timeout", &mut w.delivery_timeout),
        ("webhooks.disable_after", &mut w.disable_after),
        ("webhooks.dispatch_interval", &mut w.dispatch_interval),
        ("webhooks.secret_overlap", &mut w.secret_overlap),
    ] {
        t.take(
            key,
            "a duration such as 200ms, 15s or 5d (more than zero)",
            slot,
            |r| r.duration().filter(|d| !d.is_zero()),
        );
    }
    t.take(
        "webhooks.integration_cache_ttl",
        "a duration of at most 1h such as 500ms or 1s (0s: look the integration up on every webhook)",
        &mut w.integration_cache_ttl,
        |r| r.duration().filter(|d| d.as_secs() <= 3600),
    );
    t.take(
        "webhooks.allow_networks",
        "a list of CIDR ranges such as 127.0.0.0/8",
        &mut w.allow_networks,
        |r| shopkeep_domain::webhooks::parse_networks("webhooks.allow_networks", &r.list()?).ok(),
    );

    let env_value = |name: &str| {
        sources
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match (env_value("ADMIN_USERNAME"), env_value("ADMIN_PASSWORD")) {
        (Some(u), Some(p)) => {
            if let Err(e) = shopkeep_domain::accounts::Username::parse("ADMIN_USERNAME", &u) {
                t.errors.push(format!("ADMIN_USERNAME = {u:?} (from environment ADMIN_USERNAME): {}", e.message));
            } else if let Err(e) = shopkeep_domain::accounts::NewPassword::parse("ADMIN_PASSWORD", &p, &[&u]) {
                t.errors.push(format!("ADMIN_PASSWORD = [redacted] (from environment ADMIN_PASSWORD): {}", e.message));
            } else {
                c.bootstrap_admin = Some((u, Secret::new(p)));
            }
        }
        (Some(_), None) | (None, Some(_)) => t.errors.push(
            "ADMIN_USERNAME and ADMIN_PASSWORD (from environment): set both to create the first admin, or neither".into(),
        ),
        (None, None) => {}
    }

    for (key, (raw, origin)) in std::mem::take(&mut t.values) {
        let hint = KNOWN
            .iter()
            .map(|k| (distance(k, &key), k))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, k)| format!("; did you mean {k}?"))
            .unwrap_or_default();
        t.errors.push(format!(
            "{key} = {} (from {origin}): unknown key{hint}",
            shown(&key, &raw)
        ));
    }
    if t.errors.is_empty() {
        Ok(c)
    } else {
        Err(ConfigErrors(t.errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Sources::default()
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = load(&env(&[("PATH", "/bin")])).unwrap();
        // What `shopkeep config` prints for the defaults loads back unchanged.
        let dir =
            std::env::temp_dir().join(format!("shopkeep-cfg-defaults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("printed.toml"), c.to_redacted_toml()).unwrap();
        let again = load(&Sources {
            file: Some(dir.join("printed.toml")),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(again.to_redacted_toml(), c.to_redacted_toml());
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./shopkeep-data"));
        assert!(c.database_url.is_none());
        assert_eq!(c.roles, Role::ALL.to_vec());
    }

    #[test]
    fn environment_overrides_the_file_and_nested_keys_use_double_underscores() {
        let dir = std::env::temp_dir().join(format!("shopkeep-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("shopkeep.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[database]\nmax_connections = 4\n",
        )
        .unwrap();
        let mut s = env(&[
            ("SHOPKEEP_LISTEN", "0.0.0.0:9100"),
            ("SHOPKEEP_HTTP__BODY_LIMIT", "2MiB"),
        ]);
        s.file = Some(file);
        let c = load(&s).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9100");
        assert_eq!(c.database.max_connections, 4);
        assert_eq!(c.http.body_limit, 2 << 20);
    }

    #[test]
    fn a_queue_list_replaces_only_the_queues_it_names() {
        let queues = |pairs: &[(&str, &str)]| load(&env(pairs)).unwrap().jobs.queues;
        let built_in = queues(&[]);
        assert_eq!(built_in.get("webhooks"), Some(&256), "{built_in:?}");
        assert_eq!(built_in.len(), 1, "{built_in:?}");
        let listed = queues(&[("SHOPKEEP_JOBS__QUEUES", "default=20,maintenance=1")]);
        assert_eq!(listed.get("default"), Some(&20));
        assert_eq!(listed.get("maintenance"), Some(&1));
        assert_eq!(
            listed.get("webhooks"),
            Some(&256),
            "unnamed queues keep theirs"
        );
        let replaced = queues(&[("SHOPKEEP_JOBS__QUEUES", "webhooks=0")]);
        assert_eq!(
            replaced.get("webhooks"),
            Some(&0),
            "a named queue takes the listed value"
        );
        let options = load(&env(&[("SHOPKEEP_JOBS__QUEUES", "webhooks=8")]))
            .unwrap()
            .jobs
            .options();
        assert_eq!(options.concurrency.get("webhooks"), Some(&8));
    }

    #[test]
    fn every_bad_and_unknown_key_gets_its_own_line() {
        let err = load(&env(&[
            ("SHOPKEEP_LISTEN", "nowhere"),
            ("SHOPKEEP_DATABASE__MAX_CONNECTIONS", "0"),
            ("SHOPKEEP_LISTNE", "x"),
            ("SHOPKEEP_DATABASE_URL", "mysql://x"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        assert!(err.0.iter().any(|l| l.starts_with("listen = \"nowhere\"") && l.contains("expected an address")));
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with("database.max_connections = \"0\""))
        );
        assert!(
            err.0
                .iter()
                .any(|l| l.contains("listne") && l.contains("did you mean listen?"))
        );
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with("database_url = \"mysql://x\"")
                    && l.contains("expected a URL"))
        );
    }

    #[test]
    fn a_bad_secret_is_named_but_not_repeated() {
        let err = load(&env(&[
            ("SHOPKEEP_SECRET_KEY", "hunter2"),
            ("SHOPKEEP_DATABASE_URL", "mysql://u:hunter2@h/db"),
            ("SHOPKEEP_DB_PASSWORD", "hunter2"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with("secret_key = [redacted]"))
        );
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with("database_url = \"mysql://u:***@h/db\""))
        );
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let c = load(&env(&[
            ("SHOPKEEP_DATABASE_URL", "postgres://shop:hunter2@db/shop"),
            ("SHOPKEEP_SECRET_KEY", &"ab".repeat(32)),
        ]))
        .unwrap();
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&"ab".repeat(32)), "{shown}");
        assert!(shown.contains("postgres://shop:***@db/shop"), "{shown}");
        assert!(!format!("{c:?}").contains("hunter2"));
        // What is printed parses back as TOML.
        shown.parse::<toml::Table>().unwrap();
    }
}
