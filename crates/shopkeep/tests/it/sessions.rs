//! Web sessions on every store: the database on both engines, and Valkey/Redis.
//!
//! The Redis half needs the server named by `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`)
//! and fails, not skips, without one. Each Redis test has its own random key prefix, so tests
//! run in parallel on a shared server.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shopkeep_domain::ShopId;
use shopkeep_domain::Timestamp;
use shopkeep_domain::accounts::Role;
use shopkeep_server::web::sessions::{ABSOLUTE_US, IDLE_US, Session, SessionStore};
use shopkeep_store::sessions::{self as store, SessionRow};
use shopkeep_store::{Db, accounts};
use uuid::Uuid;

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, TestStorage};

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;

/// A store to test, two signed-in identities `(user, shop)` it may hold sessions for, and a way
/// to look at what it keeps.
struct Fixture {
    store: SessionStore,
    alice: (Uuid, Uuid),
    bob: (Uuid, Uuid),
    backend: Backend,
}

enum Backend {
    Database { db: Db, _storage: TestStorage },
    Redis { raw: RawRedis, prefix: String },
}

/// A migrated database on `engine`.
async fn database(engine: Engine) -> (TestStorage, Db) {
    let storage = TestStorage::new(engine).await;
    let config = storage.config();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let db = Db::connect(&config.db_options()).await.unwrap();
    db.migrate().await.unwrap();
    (storage, db)
}

async fn user(db: &Db, name: &str, shop: ShopId) -> (Uuid, Uuid) {
    let new = accounts::NewUser {
        username: name.into(),
        username_folded: name.into(),
        password_hash: "not-a-hash".into(),
        email: None,
        is_admin: false,
        locale: "en".into(),
        currency: "USD".into(),
        timezone: "UTC".into(),
    };
    let row = accounts::create_user(db, &new, Some((shop, Role::Customer)))
        .await
        .unwrap();
    (row.id, shop.0)
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

impl Fixture {
    async fn database(engine: Engine) -> Fixture {
        let (storage, db) = database(engine).await;
        let shop = ShopId(accounts::ensure_default_shop(&db).await.unwrap().id);
        Fixture {
            store: SessionStore::database(db.clone()),
            alice: user(&db, "alice", shop).await,
            bob: user(&db, "bob", shop).await,
            backend: Backend::Database {
                db,
                _storage: storage,
            },
        }
    }

    async fn redis() -> Fixture {
        let url = redis_url();
        let prefix = format!("shopkeep-test:sessions:{}:", Uuid::now_v7().simple());
        let store = SessionStore::redis(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("these tests need a Redis at TEST_REDIS_URL: {e:#}"));
        Fixture {
            store,
            alice: (Uuid::now_v7(), Uuid::now_v7()),
            bob: (Uuid::now_v7(), Uuid::now_v7()),
            backend: Backend::Redis {
                raw: RawRedis::new(&url),
                prefix,
            },
        }
    }

    /// Whether the store still holds a record for this session (expired or not).
    async fn holds(&self, s: &Session) -> bool {
        self.stored_last_seen(s).await.is_some()
    }

    /// `last_seen_at` as stored, without going through `load`.
    async fn stored_last_seen(&self, s: &Session) -> Option<i64> {
        match &self.backend {
            Backend::Database { db, .. } => store::get(db, &s.token_hash)
                .await
                .unwrap()
                .map(|r| r.last_seen_at),
            Backend::Redis { raw, prefix } => {
                let key = format!("{prefix}session:{}", hex::encode(&s.token_hash));
                raw.get(&key).map(|json| {
                    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                    v["last_seen_at"].as_i64().unwrap()
                })
            }
        }
    }
}

/// Defines `mod <name>` running `cases::<name>` on SQLite, PostgreSQL and Redis.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::harness::Engine;

            async fn database(engine: Engine) {
                super::cases::$name(&super::Fixture::database(engine).await).await
            }
            crate::both_engines!(database);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::cases::$name(&super::Fixture::redis().await).await
            }
        }
    )*};
}

on_every_store!(
    a_new_session_loads_with_its_token,
    an_unknown_or_malformed_token_loads_nothing,
    a_request_after_a_minute_slides_last_seen_at,
    a_session_idle_for_an_hour_ends_and_is_deleted,
    a_session_ends_a_day_after_creation_however_active,
    signing_in_rotates_the_token_and_keeps_the_flash,
    a_flash_is_set_and_cleared,
    destroying_a_session_signs_it_out,
    destroying_a_user_ends_all_their_sessions,
);

mod cases {
    use super::*;

    const T0: i64 = 1_800_000_000 * SECOND;

    fn is_token(s: &str) -> bool {
        URL_SAFE_NO_PAD.decode(s).is_ok_and(|b| b.len() == 32) && s.len() == 43
    }

    pub async fn a_new_session_loads_with_its_token(f: &Fixture) {
        let (token, created) = f.store.create(Some(f.alice), T0).await.unwrap();
        assert!(is_token(&token), "{token}");
        assert!(is_token(&created.csrf), "{}", created.csrf);
        assert_eq!(created.user_id, Some(f.alice.0));
        assert_eq!(created.shop_id, Some(f.alice.1));
        assert_eq!((created.created_at, created.last_seen_at), (T0, T0));
        assert_eq!(created.flash, None);
        let loaded = f.store.load(&token, T0 + SECOND).await.unwrap().unwrap();
        assert_eq!(loaded.token_hash, created.token_hash);
        assert_eq!(loaded.token_hash.len(), 32);
        assert_eq!(loaded.user_id, Some(f.alice.0));
        assert_eq!(loaded.shop_id, Some(f.alice.1));
        assert_eq!(loaded.csrf, created.csrf);
        assert_eq!((loaded.created_at, loaded.last_seen_at), (T0, T0));

        let (visitor_token, visitor) = f.store.create(None, T0).await.unwrap();
        assert_ne!(visitor_token, token);
        assert_ne!(visitor.csrf, created.csrf);
        let loaded = f.store.load(&visitor_token, T0).await.unwrap().unwrap();
        assert_eq!((loaded.user_id, loaded.shop_id), (None, None));
        assert_eq!(loaded.csrf, visitor.csrf);
    }

    pub async fn an_unknown_or_malformed_token_loads_nothing(f: &Fixture) {
        let (token, _) = f.store.create(Some(f.alice), T0).await.unwrap();
        let unknown = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let longer = format!("{token}A");
        let shorter = &token[..42];
        let padded = format!("{token}=");
        let bad_char = format!("{}!", &token[..42]);
        for t in [
            unknown.as_str(),
            "",
            "x",
            "not a token at all",
            &longer,
            shorter,
            &padded,
            &bad_char,
        ] {
            assert!(f.store.load(t, T0).await.unwrap().is_none(), "{t:?}");
        }
        assert!(f.store.load(&token, T0).await.unwrap().is_some());
    }

    pub async fn a_request_after_a_minute_slides_last_seen_at(f: &Fixture) {
        let (token, s) = f.store.create(Some(f.alice), T0).await.unwrap();
        let early = f
            .store
            .load(&token, T0 + 30 * SECOND)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(early.last_seen_at, T0, "within a minute nothing is written");
        assert_eq!(f.stored_last_seen(&s).await, Some(T0));

        let later = f
            .store
            .load(&token, T0 + 61 * SECOND)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(later.last_seen_at, T0 + 61 * SECOND);
        assert_eq!(f.stored_last_seen(&s).await, Some(T0 + 61 * SECOND));
        assert_eq!(
            later.created_at, T0,
            "sliding does not move the creation time"
        );
        assert_eq!(later.csrf, s.csrf);

        // The idle hour now counts from the last request.
        let at = T0 + 61 * SECOND + IDLE_US;
        assert!(f.store.load(&token, at).await.unwrap().is_some());
    }

    pub async fn a_session_idle_for_an_hour_ends_and_is_deleted(f: &Fixture) {
        let (kept_token, _) = f.store.create(Some(f.bob), T0).await.unwrap();
        assert!(
            f.store
                .load(&kept_token, T0 + IDLE_US)
                .await
                .unwrap()
                .is_some(),
            "exactly an hour idle is still live"
        );

        let (token, s) = f.store.create(Some(f.alice), T0).await.unwrap();
        assert!(
            f.store
                .load(&token, T0 + IDLE_US + 1)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !f.holds(&s).await,
            "an expired session is deleted when seen"
        );
        assert!(f.store.load(&token, T0).await.unwrap().is_none());
    }

    pub async fn a_session_ends_a_day_after_creation_however_active(f: &Fixture) {
        let (token, s) = f.store.create(Some(f.alice), T0).await.unwrap();
        let mut now = T0;
        while now + 50 * MINUTE <= T0 + ABSOLUTE_US {
            now += 50 * MINUTE;
            let live = f.store.load(&token, now).await.unwrap();
            assert_eq!(live.map(|l| l.last_seen_at), Some(now), "active at {now}");
        }
        assert!(
            f.store
                .load(&token, T0 + ABSOLUTE_US)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            f.store
                .load(&token, T0 + ABSOLUTE_US + 1)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!f.holds(&s).await);
    }

    pub async fn signing_in_rotates_the_token_and_keeps_the_flash(f: &Fixture) {
        let (old_token, visitor) = f.store.create(None, T0).await.unwrap();
        f.store
            .set_flash(&visitor, Some("Please sign in to continue"))
            .await
            .unwrap();
        let visitor = f.store.load(&old_token, T0).await.unwrap().unwrap();

        let now = T0 + 5 * SECOND;
        let (token, signed_in) = f
            .store
            .rotate(Some(&visitor), f.alice.0, f.alice.1, now)
            .await
            .unwrap();
        assert_ne!(token, old_token);
        assert_ne!(signed_in.token_hash, visitor.token_hash);
        assert_ne!(signed_in.csrf, visitor.csrf, "a new CSRF token at sign-in");
        assert_eq!(signed_in.user_id, Some(f.alice.0));
        assert_eq!(signed_in.shop_id, Some(f.alice.1));
        assert_eq!((signed_in.created_at, signed_in.last_seen_at), (now, now));
        assert!(f.store.load(&old_token, now).await.unwrap().is_none());
        assert!(!f.holds(&visitor).await);

        let loaded = f.store.load(&token, now).await.unwrap().unwrap();
        assert_eq!(loaded.user_id, Some(f.alice.0));
        assert_eq!(loaded.flash.as_deref(), Some("Please sign in to continue"));
        assert_eq!(loaded.csrf, signed_in.csrf);

        // Without a previous session (a cookie that expired meanwhile).
        let (fresh, s) = f.store.rotate(None, f.bob.0, f.bob.1, now).await.unwrap();
        assert_eq!(s.flash, None);
        let loaded = f.store.load(&fresh, now).await.unwrap().unwrap();
        assert_eq!(loaded.user_id, Some(f.bob.0));

        // A second sign-in on top of a signed-in session replaces it too.
        let (again, _) = f
            .store
            .rotate(Some(&loaded), f.bob.0, f.bob.1, now)
            .await
            .unwrap();
        assert!(f.store.load(&fresh, now).await.unwrap().is_none());
        assert!(f.store.load(&again, now).await.unwrap().is_some());
        assert_eq!(f.store.destroy_user(f.bob.0).await.unwrap(), 1);
    }

    pub async fn a_flash_is_set_and_cleared(f: &Fixture) {
        let (token, s) = f.store.create(Some(f.alice), T0).await.unwrap();
        f.store.set_flash(&s, Some("Order placed")).await.unwrap();
        let loaded = f.store.load(&token, T0).await.unwrap().unwrap();
        assert_eq!(loaded.flash.as_deref(), Some("Order placed"));
        assert_eq!(loaded.csrf, s.csrf);
        f.store.set_flash(&loaded, None).await.unwrap();
        let loaded = f.store.load(&token, T0).await.unwrap().unwrap();
        assert_eq!(loaded.flash, None);

        // A flash for a session that is gone does not bring it back.
        f.store.destroy(&loaded).await.unwrap();
        f.store.set_flash(&loaded, Some("late")).await.unwrap();
        assert!(f.store.load(&token, T0).await.unwrap().is_none());
        assert!(!f.holds(&loaded).await);
    }

    pub async fn destroying_a_session_signs_it_out(f: &Fixture) {
        let (token, s) = f.store.create(Some(f.alice), T0).await.unwrap();
        let (other, _) = f.store.create(Some(f.alice), T0).await.unwrap();
        f.store.destroy(&s).await.unwrap();
        assert!(f.store.load(&token, T0).await.unwrap().is_none());
        assert!(!f.holds(&s).await);
        assert!(
            f.store.load(&other, T0).await.unwrap().is_some(),
            "only that one"
        );
        f.store.destroy(&s).await.unwrap();
        assert_eq!(f.store.destroy_user(f.alice.0).await.unwrap(), 1);
    }

    pub async fn destroying_a_user_ends_all_their_sessions(f: &Fixture) {
        let mut alice = Vec::new();
        for i in 0..3 {
            alice.push(f.store.create(Some(f.alice), T0 + i).await.unwrap().0);
        }
        let (bob, _) = f.store.create(Some(f.bob), T0).await.unwrap();
        let (visitor, _) = f.store.create(None, T0).await.unwrap();
        // A sign-in counts as one of hers as well.
        let (v2, v2s) = f.store.create(None, T0).await.unwrap();
        let (rotated, _) = f
            .store
            .rotate(Some(&v2s), f.alice.0, f.alice.1, T0)
            .await
            .unwrap();
        alice.push(rotated);

        assert_eq!(f.store.destroy_user(f.alice.0).await.unwrap(), 4);
        for t in alice.iter().chain([&v2]) {
            assert!(f.store.load(t, T0).await.unwrap().is_none());
        }
        assert!(f.store.load(&bob, T0).await.unwrap().is_some());
        assert!(f.store.load(&visitor, T0).await.unwrap().is_some());
        assert_eq!(f.store.destroy_user(f.alice.0).await.unwrap(), 0);

        // She signs in again afterwards: a normal session.
        let (back, _) = f.store.create(Some(f.alice), T0).await.unwrap();
        assert!(f.store.load(&back, T0).await.unwrap().is_some());
    }
}

// ---- Redis only ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_session_keys_expire_when_the_session_would() {
    let f = Fixture::redis().await;
    let Backend::Redis { raw, prefix } = &f.backend else {
        unreachable!()
    };
    let key = |s: &Session| format!("{prefix}session:{}", hex::encode(&s.token_hash));
    let now = Timestamp::now().0;
    let idle_ms = IDLE_US / 1000;

    let (_, fresh) = f.store.create(Some(f.alice), now).await.unwrap();
    let ttl = raw.int(&["PTTL", &key(&fresh)]);
    assert!(ttl > 0 && ttl <= idle_ms, "{ttl}");
    let set = format!("{prefix}session-user:{}", f.alice.0);
    let set_ttl = raw.int(&["PTTL", &set]);
    assert!(set_ttl >= ttl && set_ttl <= ABSOLUTE_US / 1000, "{set_ttl}");

    // A request more than a minute after the last renews the whole idle hour (the key is made
    // to look older by shortening its TTL).
    let (token, s) = f.store.create(None, now).await.unwrap();
    assert_eq!(raw.int(&["PEXPIRE", &key(&s), "5000"]), 1);
    f.store
        .load(&token, now + 30 * SECOND)
        .await
        .unwrap()
        .unwrap();
    assert!(
        raw.int(&["PTTL", &key(&s)]) <= 5000,
        "no write within a minute"
    );
    f.store
        .load(&token, now + 61 * SECOND)
        .await
        .unwrap()
        .unwrap();
    let ttl = raw.int(&["PTTL", &key(&s)]);
    assert!(ttl > idle_ms - 60_000 && ttl <= idle_ms, "{ttl}");

    // Near the end of the day the absolute limit is what is left.
    let start = now - ABSOLUTE_US + 20 * MINUTE;
    let (token, s) = f.store.create(Some(f.bob), start).await.unwrap();
    let mut t = start;
    while t + 50 * MINUTE < now {
        t += 50 * MINUTE;
        f.store.load(&token, t).await.unwrap().unwrap();
    }
    f.store.load(&token, now).await.unwrap().unwrap();
    let ttl = raw.int(&["PTTL", &key(&s)]);
    assert!(ttl > 0 && ttl <= 20 * MINUTE / 1000, "{ttl}");

    // A flash keeps the TTL as it was.
    f.store.set_flash(&s, Some("hi")).await.unwrap();
    let after = raw.int(&["PTTL", &key(&s)]);
    assert!(after > 0 && after <= ttl, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_an_error_not_a_panic() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let err = SessionStore::redis(&format!("redis://127.0.0.1:{port}"), "x:")
        .await
        .expect_err("no Redis there");
    assert!(
        format!("{err:#}").contains("cannot connect to redis"),
        "{err:#}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_an_error_within_seconds_and_then_recovers() {
    let target = RawRedis::new(&redis_url()).addr;
    let proxy = Blackhole::start(&target);
    let prefix = format!("shopkeep-test:sessions:{}:", Uuid::now_v7().simple());
    let store = SessionStore::redis(&format!("redis://{}", proxy.addr), &prefix)
        .await
        .unwrap_or_else(|e| panic!("these tests need a Redis at TEST_REDIS_URL: {e:#}"));
    let now = Timestamp::now().0;
    let (token, s) = store.create(None, now).await.unwrap();

    proxy.pause(true);
    let started = std::time::Instant::now();
    assert!(store.load(&token, now).await.is_err());
    assert!(store.destroy(&s).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    proxy.pause(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.load(&token, now).await {
            Ok(found) => {
                assert!(found.is_some());
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "no recovery: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.destroy(&s).await.unwrap();
}

/// A TCP proxy to Redis that can stop forwarding requests (they vanish; nothing answers).
struct Blackhole {
    addr: std::net::SocketAddr,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Blackhole {
    fn start(target: &str) -> Blackhole {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = paused.clone();
        let target = target.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let pipe = |mut from: std::net::TcpStream,
                            mut to: std::net::TcpStream,
                            flag: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match std::io::Read::read(&mut from, &mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if flag.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
                                continue;
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Some(flag.clone()),
                );
                pipe(server, client, None);
            }
        });
        Blackhole { addr, paused }
    }

    fn pause(&self, on: bool) {
        self.paused.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

// ---- database only ---------------------------------------------------------------------------

both_engines!(
    retention_prunes_idle_and_day_old_sessions,
    the_retention_job_removes_expired_web_sessions,
    a_password_reset_deletes_the_users_web_sessions,
);

fn row(hash: u8, created_at: i64, last_seen_at: i64) -> SessionRow {
    SessionRow {
        token_hash: vec![hash; 32],
        user_id: None,
        shop_id: None,
        csrf: "c".into(),
        flash: None,
        created_at,
        last_seen_at,
    }
}

async fn retention_prunes_idle_and_day_old_sessions(engine: Engine) {
    let (_storage, db) = database(engine).await;
    let now = Timestamp::now().0;
    let fresh = row(1, now - MINUTE, now);
    let idle_edge = row(2, now - IDLE_US, now - IDLE_US);
    let idle = row(3, now - IDLE_US - 1, now - IDLE_US - 1);
    let day_edge = row(4, now - ABSOLUTE_US, now);
    let day_old = row(5, now - ABSOLUTE_US - 1, now);
    for r in [&fresh, &idle_edge, &idle, &day_edge, &day_old] {
        store::insert(&db, r).await.unwrap();
    }
    assert_eq!(store::prune(&db, now).await.unwrap(), 2);
    for (r, kept) in [
        (&fresh, true),
        (&idle_edge, true),
        (&idle, false),
        (&day_edge, true),
        (&day_old, false),
    ] {
        assert_eq!(
            store::get(&db, &r.token_hash).await.unwrap().as_ref(),
            kept.then_some(r),
            "session {}",
            r.token_hash[0]
        );
    }
    assert_eq!(store::prune(&db, now).await.unwrap(), 0);
}

async fn the_retention_job_removes_expired_web_sessions(engine: Engine) {
    let (app, token) = crate::harness::spawn_with_admin(engine).await;
    let now = Timestamp::now().0;
    let idle = row(1, now - 2 * IDLE_US, now - 2 * IDLE_US);
    let day_old = row(2, now - 2 * ABSOLUTE_US, now);
    let live = row(3, now, now);
    for r in [&idle, &day_old, &live] {
        store::insert(&app.db, r).await.unwrap();
    }
    let res = app
        .as_user(reqwest::Method::POST, &token, "/api/v1/jobs")
        .json(&serde_json::json!({ "kind": "shopkeep.retention" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = std::time::Instant::now();
    let job = loop {
        let j: serde_json::Value = app
            .get_as(&token, &format!("/api/v1/jobs/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if j["state"] == "succeeded" {
            break j;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The hourly schedule may have run first and removed them itself, so only the shape is fixed.
    assert!(job["result"]["sessions_removed"].is_u64(), "{job}");
    assert!(
        store::get(&app.db, &idle.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store::get(&app.db, &day_old.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store::get(&app.db, &live.token_hash)
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_password_reset_deletes_the_users_web_sessions(engine: Engine) {
    let (_storage, db) = database(engine).await;
    let hasher = shopkeep_server::auth::password::PasswordHasher::new(
        shopkeep_server::auth::password::HashPolicy::Bcrypt { cost: 4 },
        1,
    )
    .await
    .unwrap();
    shopkeep::admin::create_admin(&db, &hasher, "boss1", PASSWORD)
        .await
        .unwrap();
    let boss = accounts::find_user(&db, "boss1").await.unwrap().unwrap();
    let shop = accounts::ensure_default_shop(&db).await.unwrap().id;
    let other = user(&db, "other1", ShopId(shop)).await;
    let sessions = SessionStore::database(db.clone());
    let now = Timestamp::now().0;
    let (a, _) = sessions.create(Some((boss.id, shop)), now).await.unwrap();
    let (b, _) = sessions.create(Some((boss.id, shop)), now).await.unwrap();
    let (c, _) = sessions.create(Some(other), now).await.unwrap();

    let ended = shopkeep::admin::reset_password(&db, &hasher, "boss1", "Fresh-lemon-8830-kite")
        .await
        .unwrap();
    assert_eq!(ended.web_sessions_deleted, 2);
    assert!(sessions.load(&a, now).await.unwrap().is_none());
    assert!(sessions.load(&b, now).await.unwrap().is_none());
    assert!(sessions.load(&c, now).await.unwrap().is_some());
}

// ---- a minimal RESP client, to look at keys the store wrote --------------------------------

/// Just enough of the Redis protocol to read a key, its TTL and a few counts.
struct RawRedis {
    addr: String,
    password: Option<(Option<String>, String)>,
    db: Option<String>,
}

#[derive(Debug)]
enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<String>),
}

impl RawRedis {
    fn new(url: &str) -> RawRedis {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, addr) = authority
            .rsplit_once('@')
            .map_or((None, authority), |(u, a)| (Some(u), a));
        let password = userinfo.map(|u| match u.split_once(':') {
            Some((user, pw)) => ((!user.is_empty()).then(|| user.to_owned()), pw.to_owned()),
            None => (None, u.to_owned()),
        });
        let db = path.split('?').next().filter(|d| !d.is_empty());
        RawRedis {
            addr: addr.to_owned(),
            password,
            db: db.map(str::to_owned),
        }
    }

    fn send(&self, args: &[&str]) -> Reply {
        let stream = std::net::TcpStream::connect(&self.addr)
            .unwrap_or_else(|e| panic!("redis at {} is unreachable: {e}", self.addr));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut call = |args: &[&str]| {
            let mut out = format!("*{}\r\n", args.len());
            for a in args {
                out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            writer.write_all(out.as_bytes()).unwrap();
            read_reply(&mut reader)
        };
        if let Some((user, pw)) = &self.password {
            let reply = match user {
                Some(u) => call(&["AUTH", u, pw]),
                None => call(&["AUTH", pw]),
            };
            assert!(
                matches!(&reply, Reply::Simple(ok) if ok == "OK"),
                "AUTH: {reply:?}"
            );
        }
        if let Some(db) = &self.db {
            let reply = call(&["SELECT", db]);
            assert!(
                matches!(&reply, Reply::Simple(ok) if ok == "OK"),
                "SELECT: {reply:?}"
            );
        }
        call(args)
    }

    fn int(&self, args: &[&str]) -> i64 {
        match self.send(args) {
            Reply::Int(n) => n,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        match self.send(&["GET", key]) {
            Reply::Bulk(v) => v,
            other => panic!("GET: {other:?}"),
        }
    }
}

fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => Reply::Simple(rest.to_owned()),
        ":" => Reply::Int(rest.parse().unwrap()),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return Reply::Bulk(None);
            }
            let mut buf = vec![0u8; usize::try_from(n).unwrap() + 2];
            std::io::Read::read_exact(reader, &mut buf).unwrap();
            buf.truncate(buf.len() - 2);
            Reply::Bulk(Some(String::from_utf8(buf).unwrap()))
        }
        _ => panic!("redis answered {line:?}"),
    }
}
