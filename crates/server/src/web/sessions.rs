//! Web UI sessions: the cookie carries a random token; the record lives server-side, in the
//! database by default or in Valkey/Redis when configured. Only the token's SHA-256 hash is
//! stored, so a leaked table or keyspace cannot be replayed as cookies.
//!
//! A session ends after [`IDLE_US`] without a request (sliding) or [`ABSOLUTE_US`] after it was
//! created, whichever comes first. Signing in replaces the session (new token, new CSRF token),
//! so a token planted before login is worthless after it.

use std::fmt;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::FromRedisValue;
use serde::{Deserialize, Serialize};
use shopkeep_store::Db;
use shopkeep_store::sessions as store;
pub use shopkeep_store::sessions::{ABSOLUTE_US, IDLE_US};
use uuid::Uuid;

use crate::crypto::{random_token, sha256};
use crate::redis_conn::RedisConn;

/// Random bytes in a cookie token and in a CSRF token.
const TOKEN_BYTES: usize = 32;
/// A live web session: the stored record (its expiry rules live with it in the store).
pub use shopkeep_store::sessions::SessionRow as Session;

/// A new session and its cookie token.
fn fresh(user: Option<(Uuid, Uuid)>, now: i64) -> (String, Session) {
    let token = random_token(TOKEN_BYTES);
    let session = Session {
        token_hash: sha256(token.as_bytes()),
        user_id: user.map(|(u, _)| u),
        shop_id: user.map(|(_, s)| s),
        csrf: random_token(TOKEN_BYTES),
        flash: None,
        created_at: now,
        last_seen_at: now,
    };
    (token, session)
}

/// The hash a cookie token is stored under, or `None` when it cannot be one of ours.
fn token_hash(token: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    (raw.len() == TOKEN_BYTES).then(|| sha256(token.as_bytes()))
}

/// Where sessions are kept. Cheap to clone.
#[derive(Clone)]
pub struct SessionStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Database(Db),
    Redis(Arc<RedisSessions>),
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Database(db) => write!(f, "SessionStore(database, {})", db.engine().as_str()),
            Backend::Redis(r) => write!(f, "SessionStore(redis, prefix {:?})", r.prefix),
        }
    }
}

impl SessionStore {
    /// Sessions in the `web_sessions` table.
    pub fn database(db: Db) -> Self {
        Self {
            backend: Backend::Database(db),
        }
    }

    /// Sessions in Valkey/Redis under `{prefix}session:{hex of token hash}`, with a per-user set
    /// `{prefix}session-user:{uuid}` of the user's session hashes. Fails when Redis does not
    /// answer within a few seconds.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        Ok(Self {
            backend: Backend::Redis(Arc::new(RedisSessions::connect(url, prefix).await?)),
        })
    }

    /// A new session with a fresh random token and a fresh CSRF token; `user` is `(user, shop)`
    /// for a signed-in session. Returns the cookie token and the record.
    pub async fn create(
        &self,
        user: Option<(Uuid, Uuid)>,
        now: i64,
    ) -> anyhow::Result<(String, Session)> {
        let (token, session) = fresh(user, now);
        match &self.backend {
            Backend::Database(db) => store::insert(db, &session)
                .await
                .context("storing a new web session")?,
            Backend::Redis(r) => r.put(None, &session, now).await?,
        }
        Ok((token, session))
    }

    /// The live session for a cookie token, or `None` when the token is unknown, malformed,
    /// idle longer than [`IDLE_US`] or older than [`ABSOLUTE_US`] (an expired one is deleted).
    /// When `last_seen_at` is more than 60 s old it is moved to `now`, and the returned record
    /// shows the new value.
    pub async fn load(&self, token: &str, now: i64) -> anyhow::Result<Option<Session>> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        let Some(mut session) = self.get(&hash).await? else {
            return Ok(None);
        };
        if session.expired(now) {
            self.destroy(&session).await?;
            return Ok(None);
        }
        if !session.stale(now) {
            return Ok(Some(session));
        }
        session.last_seen_at = now;
        let still_there = match &self.backend {
            Backend::Database(db) => store::touch(db, &hash, now)
                .await
                .context("refreshing a web session")?,
            Backend::Redis(r) => r.touch(&session, now).await?,
        };
        // Destroyed by a concurrent request (sign-out) between the read and the write.
        Ok(still_there.then_some(session))
    }

    /// True while `s` still exists and has not expired; reads only (no sliding), so a page that
    /// merely stays open does not keep its session alive. Long-lived streams check with it.
    pub async fn alive(&self, s: &Session, now: i64) -> anyhow::Result<bool> {
        let found = self.get(&s.token_hash).await?;
        Ok(found.is_some_and(|f| !f.expired(now) && f.user_id == s.user_id))
    }

    /// The stored record under a token hash, expired or not.
    async fn get(&self, hash: &[u8]) -> anyhow::Result<Option<Session>> {
        match &self.backend {
            Backend::Database(db) => store::get(db, hash).await.context("reading a web session"),
            Backend::Redis(r) => r.get(hash).await,
        }
    }

    /// Signing in: destroys `old` (if any) and creates a new signed-in session with a new token,
    /// a new CSRF token and `created_at = now`. The old session's flash is carried over.
    pub async fn rotate(
        &self,
        old: Option<&Session>,
        user: Uuid,
        shop: Uuid,
        now: i64,
    ) -> anyhow::Result<(String, Session)> {
        let (token, mut session) = fresh(Some((user, shop)), now);
        session.flash = old.and_then(|o| o.flash.clone());
        match &self.backend {
            Backend::Database(db) => {
                store::replace(db, old.map(|o| o.token_hash.as_slice()), &session)
                    .await
                    .context("replacing a web session at sign-in")?
            }
            Backend::Redis(r) => r.put(old, &session, now).await?,
        }
        Ok((token, session))
    }

    /// Sets (or with `None` clears) the session's flash message.
    pub async fn set_flash(&self, s: &Session, flash: Option<&str>) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Database(db) => {
                store::set_flash(db, &s.token_hash, flash)
                    .await
                    .context("setting a web session's flash")?;
            }
            Backend::Redis(r) => {
                let mut updated = s.clone();
                updated.flash = flash.map(str::to_owned);
                r.replace_keeping_ttl(&updated).await?;
            }
        }
        Ok(())
    }

    /// Ends a session (sign-out).
    pub async fn destroy(&self, s: &Session) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Database(db) => {
                store::delete(db, &s.token_hash)
                    .await
                    .context("deleting a web session")?;
            }
            Backend::Redis(r) => r.delete(s).await?,
        }
        Ok(())
    }

    /// Ends every session of a user; returns how many there were.
    pub async fn destroy_user(&self, user: Uuid) -> anyhow::Result<u64> {
        match &self.backend {
            Backend::Database(db) => Ok(store::delete_for_user(db, user)
                .await
                .context("deleting a user's web sessions")?),
            Backend::Redis(r) => r.delete_user(user).await,
        }
    }
}

/// The JSON value of a session key (the hash is in the key name).
#[derive(Serialize, Deserialize)]
struct Stored {
    user_id: Option<Uuid>,
    shop_id: Option<Uuid>,
    csrf: String,
    flash: Option<String>,
    created_at: i64,
    last_seen_at: i64,
}

impl Stored {
    fn json(s: &Session) -> anyhow::Result<String> {
        let stored = Stored {
            user_id: s.user_id,
            shop_id: s.shop_id,
            csrf: s.csrf.clone(),
            flash: s.flash.clone(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
        };
        serde_json::to_string(&stored).context("serialising a web session")
    }
}

struct RedisSessions {
    conn: RedisConn,
    prefix: String,
}

impl RedisSessions {
    async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        Ok(Self {
            conn: RedisConn::connect(url, "session").await?,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, hash: &[u8]) -> String {
        format!("{}session:{}", self.prefix, hex(hash))
    }

    fn user_key(&self, user: Uuid) -> String {
        format!("{}session-user:{user}", self.prefix)
    }

    /// Stores `s` (new), removing `old` in the same transaction.
    async fn put(&self, old: Option<&Session>, s: &Session, now: i64) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(old) = old {
            self.remove_into(&mut pipe, old);
        }
        pipe.cmd("SET")
            .arg(self.key(&s.token_hash))
            .arg(Stored::json(s)?)
            .arg("PX")
            .arg(s.ttl_ms(now))
            .ignore();
        if let Some(user) = s.user_id {
            // The set outlives every member: none lives longer than ABSOLUTE_US from now.
            let set = self.user_key(user);
            pipe.cmd("SADD").arg(&set).arg(hex(&s.token_hash)).ignore();
            pipe.cmd("PEXPIRE")
                .arg(&set)
                .arg(ABSOLUTE_US / 1000)
                .ignore();
        }
        self.run_pipe("store", &pipe).await
    }

    async fn get(&self, hash: &[u8]) -> anyhow::Result<Option<Session>> {
        let mut get = redis::cmd("GET");
        get.arg(self.key(hash));
        let Some(json) = self.run::<Option<String>>("load", &get).await? else {
            return Ok(None);
        };
        match serde_json::from_str::<Stored>(&json) {
            Ok(v) => Ok(Some(Session {
                token_hash: hash.to_vec(),
                user_id: v.user_id,
                shop_id: v.shop_id,
                csrf: v.csrf,
                flash: v.flash,
                created_at: v.created_at,
                last_seen_at: v.last_seen_at,
            })),
            Err(e) => {
                // Not a record this version can read: treat it as signed out and drop it.
                tracing::warn!(error = %e, "unreadable web session in redis; deleting it");
                let mut del = redis::cmd("DEL");
                del.arg(self.key(hash));
                self.run::<()>("delete", &del).await?;
                Ok(None)
            }
        }
    }

    /// Writes the refreshed record with a renewed TTL, only if the key still exists.
    async fn touch(&self, s: &Session, now: i64) -> anyhow::Result<bool> {
        let mut set = redis::cmd("SET");
        set.arg(self.key(&s.token_hash))
            .arg(Stored::json(s)?)
            .arg("PX")
            .arg(s.ttl_ms(now))
            .arg("XX");
        Ok(self.run::<Option<String>>("touch", &set).await?.is_some())
    }

    /// Writes the record without changing its TTL, only if the key still exists.
    async fn replace_keeping_ttl(&self, s: &Session) -> anyhow::Result<()> {
        let mut set = redis::cmd("SET");
        set.arg(self.key(&s.token_hash))
            .arg(Stored::json(s)?)
            .arg("XX")
            .arg("KEEPTTL");
        self.run::<Option<String>>("set_flash", &set).await?;
        Ok(())
    }

    async fn delete(&self, s: &Session) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.remove_into(&mut pipe, s);
        self.run_pipe("destroy", &pipe).await
    }

    fn remove_into(&self, pipe: &mut redis::Pipeline, s: &Session) {
        pipe.cmd("DEL").arg(self.key(&s.token_hash)).ignore();
        if let Some(user) = s.user_id {
            pipe.cmd("SREM")
                .arg(self.user_key(user))
                .arg(hex(&s.token_hash))
                .ignore();
        }
    }

    async fn delete_user(&self, user: Uuid) -> anyhow::Result<u64> {
        let set = self.user_key(user);
        let mut members = redis::cmd("SMEMBERS");
        members.arg(&set);
        let hashes: Vec<String> = self.run("destroy_user", &members).await?;
        if hashes.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for h in &hashes {
            pipe.cmd("DEL").arg(format!("{}session:{h}", self.prefix));
        }
        // Only the members read: a session created meanwhile (a new sign-in) stays listed.
        pipe.cmd("SREM").arg(&set).arg(&hashes).ignore();
        let deleted: Vec<u64> = self.run_pipe("destroy_user", &pipe).await?;
        Ok(deleted.iter().sum())
    }

    async fn run<T: FromRedisValue>(&self, op: &str, cmd: &redis::Cmd) -> anyhow::Result<T> {
        self.conn
            .call(op, |mut c| async move { cmd.query_async(&mut c).await })
            .await
            .map_err(|e| anyhow!(e))
    }

    async fn run_pipe<T: FromRedisValue>(
        &self,
        op: &str,
        pipe: &redis::Pipeline,
    ) -> anyhow::Result<T> {
        self.conn
            .call(op, |mut c| async move { pipe.query_async(&mut c).await })
            .await
            .map_err(|e| anyhow!(e))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
