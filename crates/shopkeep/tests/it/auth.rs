//! Accounts, tokens, limits, shops, API keys and the audit log, on both engines.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, problem, spawn_app, spawn_with, spawn_with_admin};

both_engines!(
    registration_creates_a_customer_and_names_every_bad_field,
    a_password_login_issues_an_eddsa_jwt_that_the_jwks_verifies,
    bad_token_requests_answer_rfc6749_errors_without_saying_which_part_was_wrong,
    refresh_rotates_and_reusing_a_rotated_token_ends_the_whole_login,
    logout_revokes_the_access_token_and_its_refresh_family,
    a_token_revoked_on_one_instance_is_refused_by_another_within_a_second,
    failed_logins_are_limited_per_username_and_per_ip_and_successes_do_not_count,
    me_shows_the_caller_and_preferences_can_be_changed,
    a_missing_scope_is_named_in_the_403,
    api_keys_are_shown_once_scoped_and_revocable,
    the_bootstrap_admin_is_created_once_and_never_reset,
    platform_admins_create_shops_and_members_switch_between_them,
    role_changes_follow_the_owner_rules_and_are_audited,
    the_audit_log_pages_with_cursors_and_refuses_forged_ones,
    rotated_signing_keys_keep_verifying_old_tokens,
    passwords_around_the_bcrypt_limit_register_and_log_in,
);

async fn registration_creates_a_customer_and_names_every_bad_field(engine: Engine) {
    let app = spawn_app(engine).await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({ "username": "Alice1", "password": PASSWORD, "email": "alice@example.com", "locale": "de-DE" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["username"], "Alice1");
    assert_eq!(user["locale"], "de-DE");
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());

    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({ "username": "ALICE1", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let body = problem(res, 409).await;
    assert_eq!(body["code"], "username_taken");

    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({ "username": "a!", "password": "password", "email": "nope", "currency": "euro" }))
        .send()
        .await
        .unwrap();
    let body = problem(res, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "body.username",
        "body.password",
        "body.email",
        "body.currency",
    ] {
        assert!(fields.contains(&f), "{f} missing in {body}");
    }
    let weak = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "body.password")
        .unwrap();
    assert_eq!(weak["code"], "too_weak");

    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({ "username": "bobby1", "password": PASSWORD, "admin": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 422).await["errors"][0]["field"], "body.admin");
}

fn jwt_parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

async fn a_password_login_issues_an_eddsa_jwt_that_the_jwks_verifies(engine: Engine) {
    let app = spawn_app(engine).await;
    app.register("carol22", PASSWORD).await;
    let res = app
        .token(&[
            ("grant_type", "password"),
            ("username", "CAROL22"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let t: Value = res.json().await.unwrap();
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["expires_in"], 900);
    assert!(t["refresh_token"].as_str().unwrap().starts_with("skr_"));
    assert!(t["scope"].as_str().unwrap().contains("orders:write"));
    let access = t["access_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(access);
    assert_eq!(header["alg"], "EdDSA");
    for c in [
        "iss", "aud", "sub", "username", "is_admin", "scopes", "shop", "iat", "nbf", "exp", "jti",
    ] {
        assert!(!claims[c].is_null(), "claim {c} in {claims}");
    }
    assert_eq!(claims["username"], "carol22");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );

    // Another service verifies with the published keys alone.
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid published");
    assert_eq!(key["kty"], "OKP");
    let dk = jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["shopkeep"]);
    v.set_issuer(&["shopkeep"]);
    jsonwebtoken::decode::<Value>(access, &dk, &v).expect("signature verifies");

    let verify: Value = app
        .get_as(access, "/api/v1/auth/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verify["active"], true);
    assert_eq!(verify["username"], "carol22");
    let tampered = format!("{}x", &access[..access.len() - 1]);
    let verify: Value = app
        .get_as(&tampered, "/api/v1/auth/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verify["active"], false);
    let body = problem(app.get_as(&tampered, "/api/v1/me").await, 401).await;
    assert_eq!(body["code"], "invalid_token");
}

async fn bad_token_requests_answer_rfc6749_errors_without_saying_which_part_was_wrong(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    app.register("dave333", PASSWORD).await;
    let wrong_pw = app
        .token(&[
            ("grant_type", "password"),
            ("username", "dave333"),
            ("password", "nope-nope-nope"),
        ])
        .await;
    assert_eq!(wrong_pw.status(), 400);
    let a: Value = wrong_pw.json().await.unwrap();
    let unknown = app
        .token(&[
            ("grant_type", "password"),
            ("username", "nobody99"),
            ("password", "nope-nope-nope"),
        ])
        .await;
    let b: Value = unknown.json().await.unwrap();
    assert_eq!(a, b, "no hint which part was wrong");
    assert_eq!(a["error"], "invalid_grant");
    assert_eq!(a["error_description"], "invalid username or password");

    let r: Value = app
        .token(&[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"], "unsupported_grant_type");
    let r: Value = app
        .token(&[("username", "dave333")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"], "invalid_request");
    let res = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let r: Value = app
        .token(&[
            ("grant_type", "password"),
            ("username", "dave333"),
            ("password", PASSWORD),
            ("scope", "orders:admin"),
        ])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"], "invalid_scope");
    let narrowed = app
        .token(&[
            ("grant_type", "password"),
            ("username", "dave333"),
            ("password", PASSWORD),
            ("scope", "orders:read"),
        ])
        .await;
    assert_eq!(
        narrowed.json::<Value>().await.unwrap()["scope"],
        "orders:read"
    );
}

async fn refresh_rotates_and_reusing_a_rotated_token_ends_the_whole_login(engine: Engine) {
    let app = spawn_app(engine).await;
    app.register("erin4444", PASSWORD).await;
    let first = app.login("erin4444", PASSWORD).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let second: Value = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", r1)])
        .await
        .json()
        .await
        .unwrap();
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(
        app.get_as(second["access_token"].as_str().unwrap(), "/api/v1/me")
            .await
            .status(),
        200
    );

    // r1 again: someone replays a stolen token. Both r1 and the legitimate r2 stop working.
    let replay: Value = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", r1)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replay["error"], "invalid_grant");
    let after: Value = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &r2)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["error"], "invalid_grant", "the family was revoked");
    let junk: Value = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "skr_made_up"),
        ])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(junk["error"], "invalid_grant");
}

async fn logout_revokes_the_access_token_and_its_refresh_family(engine: Engine) {
    let app = spawn_app(engine).await;
    app.register("frank555", PASSWORD).await;
    let t = app.login("frank555", PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    let res = app
        .as_user(Method::POST, access, "/api/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let body = problem(app.get_as(access, "/api/v1/me").await, 401).await;
    assert_eq!(body["code"], "token_revoked");
    let r: Value = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"], "invalid_grant");
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    let res_headers = res.headers().clone();
    problem(res, 401).await;
    assert!(
        res_headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

async fn a_token_revoked_on_one_instance_is_refused_by_another_within_a_second(engine: Engine) {
    let a = spawn_app(engine).await;
    // A second instance on the same database and data directory (same keys).
    let b_config = a.storage.config();
    let b_app = shopkeep::Application::build(b_config).await.unwrap();
    let b_addr = b_app.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(b_app.run_until_stopped(stop.clone()));
    let b = |path: &str| format!("http://{b_addr}{path}");

    let token = a.customer("gina6666").await;
    assert_eq!(
        a.client
            .get(b("/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        a.as_user(Method::POST, &token, "/api/v1/auth/logout")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let started = Instant::now();
    loop {
        let status = a
            .client
            .get(b("/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "instance B still accepted a revoked token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
}

async fn failed_logins_are_limited_per_username_and_per_ip_and_successes_do_not_count(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    app.register("hank7777", PASSWORD).await;
    for _ in 0..10 {
        app.login("hank7777", PASSWORD).await;
    }
    for _ in 0..5 {
        let r = app
            .token(&[
                ("grant_type", "password"),
                ("username", "hank7777"),
                ("password", "wrong-wrong-wrong"),
            ])
            .await;
        assert_eq!(r.status(), 400);
    }
    let res = app
        .token(&[
            ("grant_type", "password"),
            ("username", "hank7777"),
            ("password", PASSWORD),
        ])
        .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body = problem(res, 429).await;
    assert_eq!(body["code"], "too_many_attempts");
    assert!(
        body["detail"].as_str().unwrap().contains("try again in"),
        "{body}"
    );

    // Per IP: the same client has now failed 5 times, so any username is refused from it.
    app.register("ivan8888", PASSWORD).await;
    let res = app
        .token(&[
            ("grant_type", "password"),
            ("username", "ivan8888"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(res.status(), 429);
}

async fn me_shows_the_caller_and_preferences_can_be_changed(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.customer("jane9999").await;
    let me: Value = app.get_as(&token, "/api/v1/me").await.json().await.unwrap();
    assert_eq!(me["username"], "jane9999");
    assert_eq!(me["role"], "customer");
    assert_eq!(me["shop"]["is_default"], true);
    assert!(me["last_login_at"].is_string());
    let res = app
        .as_user(Method::PATCH, &token, "/api/v1/me")
        .json(&json!({ "currency": "EUR", "timezone": "Europe/Berlin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(
        (me["currency"].as_str(), me["timezone"].as_str()),
        (Some("EUR"), Some("Europe/Berlin"))
    );
    let res = app
        .as_user(Method::PATCH, &token, "/api/v1/me")
        .json(&json!({ "currency": "euros", "locale": "xx_YY" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(res, 422).await["errors"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        problem(app.get("/api/v1/me").await, 401).await["code"],
        "unauthorized"
    );
}

async fn a_missing_scope_is_named_in_the_403(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.customer("kate1010").await;
    let body = problem(app.get_as(&token, "/api/v1/shop/members").await, 403).await;
    assert_eq!(body["code"], "missing_scope");
    assert!(
        body["detail"].as_str().unwrap().contains("shop:admin"),
        "{body}"
    );
}

async fn api_keys_are_shown_once_scoped_and_revocable(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let res = app
        .as_user(Method::POST, &admin, "/api/v1/api-keys")
        .json(&json!({ "name": "POS sync", "scopes": ["orders:read", "catalog:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let key: Value = res.json().await.unwrap();
    let secret = key["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("shk_") && secret.len() > 40);
    assert_eq!(app.get_as(&secret, "/api/v1/shop").await.status(), 200);
    assert_eq!(
        problem(app.get_as(&secret, "/api/v1/me").await, 403).await["code"],
        "user_required"
    );
    assert_eq!(
        problem(app.get_as(&secret, "/api/v1/audit").await, 403).await["code"],
        "missing_scope"
    );
    // Use is recorded (asynchronously, off the request path).
    let started = Instant::now();
    let list = loop {
        let list: Value = app
            .get_as(&admin, "/api/v1/api-keys")
            .await
            .json()
            .await
            .unwrap();
        if list[0]["last_used_at"].is_string() || started.elapsed() > Duration::from_secs(3) {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(list[0]["last_used_at"].is_string(), "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains(&secret),
        "the secret is never shown again"
    );

    let res = app
        .as_user(Method::POST, &admin, "/api/v1/api-keys")
        .json(&json!({ "name": "", "scopes": ["nope", "platform:admin"] }))
        .send()
        .await
        .unwrap();
    let body = problem(res, 422).await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 3, "{body}");
    let customer = app.customer("liam1111").await;
    let res = app
        .as_user(Method::POST, &customer, "/api/v1/api-keys")
        .json(&json!({ "name": "x", "scopes": ["orders:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let id = key["id"].as_str().unwrap();
    assert_eq!(
        app.as_user(Method::DELETE, &admin, &format!("/api/v1/api-keys/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        problem(app.get_as(&secret, "/api/v1/shop").await, 401).await["code"],
        "invalid_api_key"
    );
    assert_eq!(
        app.as_user(Method::DELETE, &admin, &format!("/api/v1/api-keys/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

async fn the_bootstrap_admin_is_created_once_and_never_reset(engine: Engine) {
    let (app, token) = spawn_with_admin(engine).await;
    let me: Value = app.get_as(&token, "/api/v1/me").await.json().await.unwrap();
    assert_eq!(me["is_admin"], true);
    assert_eq!(me["role"], "owner");
    assert!(
        me["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "platform:admin")
    );
    let storage = app.into_storage();
    assert_eq!(storage.engine, engine);

    // A restart with another ADMIN_PASSWORD neither duplicates the admin nor resets the password.
    let mut config = storage.config();
    config.bootstrap_admin = Some(("ROOT".into(), "another-Secret-991-pass".to_string().into()));
    let again = spawn_with(storage, config).await;
    again.login("root", PASSWORD).await;
    let bad = again
        .token(&[
            ("grant_type", "password"),
            ("username", "root"),
            ("password", "another-Secret-991-pass"),
        ])
        .await;
    assert_eq!(bad.status(), 400);
    let n: i64 = shopkeep_store::on_pool!(&again.db, pool => sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await).unwrap();
    assert_eq!(n, 1);
}

async fn platform_admins_create_shops_and_members_switch_between_them(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let res = app
        .as_user(Method::POST, &admin, "/api/v1/shops")
        .json(&json!({ "slug": "north-store", "name": "North" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let shop: Value = res.json().await.unwrap();
    let res = app
        .as_user(Method::POST, &admin, "/api/v1/shops")
        .json(&json!({ "slug": "north-store", "name": "Again" }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 409).await["code"], "slug_taken");
    let res = app
        .as_user(Method::POST, &admin, "/api/v1/shops")
        .json(&json!({ "slug": "Bad Slug", "name": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(res, 422).await["errors"].as_array().unwrap().len(),
        2
    );

    let customer = app.customer("mona1212").await;
    let res = app
        .as_user(Method::POST, &customer, "/api/v1/shops")
        .json(&json!({ "slug": "mine", "name": "Mine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(res, 403).await["detail"],
        "this needs the scope platform:admin"
    );

    let shops: Value = app
        .get_as(&admin, "/api/v1/shops")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shops.as_array().unwrap().len(), 2);
    let switched = app
        .as_user(Method::POST, &admin, "/api/v1/auth/switch-shop")
        .json(&json!({ "shop_id": shop["id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    let t: Value = switched.json().await.unwrap();
    let north_token = t["access_token"].as_str().unwrap();
    let here: Value = app
        .get_as(north_token, "/api/v1/shop")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(here["slug"], "north-store");
    // A customer of the default shop cannot switch into North: it looks like no shop at all.
    let res = app
        .as_user(Method::POST, &customer, "/api/v1/auth/switch-shop")
        .json(&json!({ "shop_id": shop["id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 404).await["code"], "not_found");
    // North's members are not the default shop's.
    let members: Value = app
        .get_as(north_token, "/api/v1/shop/members")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members.as_array().unwrap().len(), 1);
    // Closing registration on the default shop stops sign-ups.
    let res = app
        .as_user(Method::PATCH, &admin, "/api/v1/shop")
        .json(&json!({ "registration_open": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({ "username": "late1234", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 403).await["code"], "registration_closed");
}

async fn role_changes_follow_the_owner_rules_and_are_audited(engine: Engine) {
    let (app, owner) = spawn_with_admin(engine).await;
    app.customer("nora1313").await;
    app.customer("otto1414").await;
    let put = |token: &str, user: &str, role: &str| {
        app.as_user(Method::PUT, token, &format!("/api/v1/shop/members/{user}"))
            .json(&json!({ "role": role }))
            .send()
    };
    assert_eq!(
        put(&owner, "nora1313", "admin").await.unwrap().status(),
        200
    );
    let nora = app.login("nora1313", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // An admin manages staff and customers but cannot make admins or owners.
    assert_eq!(put(&nora, "otto1414", "staff").await.unwrap().status(), 200);
    let body = problem(put(&nora, "otto1414", "admin").await.unwrap(), 403).await;
    assert!(body["detail"].as_str().unwrap().contains("shop:owner"));
    // The last owner stays.
    let body = problem(put(&owner, "root", "admin").await.unwrap(), 409).await;
    assert_eq!(body["code"], "last_owner");
    assert_eq!(
        problem(put(&owner, "ghost000", "staff").await.unwrap(), 404).await["code"],
        "not_found"
    );
    assert_eq!(
        problem(put(&owner, "otto1414", "emperor").await.unwrap(), 422).await["errors"][0]["field"],
        "body.role"
    );
    let members: Value = app
        .get_as(&owner, "/api/v1/shop/members")
        .await
        .json()
        .await
        .unwrap();
    let roles: Vec<(String, String)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("otto1414".into(), "staff".into())),
        "{roles:?}"
    );
    let res = app
        .as_user(Method::DELETE, &nora, "/api/v1/shop/members/otto1414")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let audit: Value = app
        .get_as(&owner, "/api/v1/audit?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    for a in ["member.role_changed", "member.removed", "login.succeeded"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

async fn the_audit_log_pages_with_cursors_and_refuses_forged_ones(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    app.register("pete1515", PASSWORD).await;
    let r = app
        .token(&[
            ("grant_type", "password"),
            ("username", "pete1515"),
            ("password", "wrong-wrong-wrong"),
        ])
        .await;
    assert_eq!(r.status(), 400);
    for _ in 0..3 {
        app.login("pete1515", PASSWORD).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=2&cursor={c}"),
            None => "/api/v1/audit?limit=2".into(),
        };
        let page: Value = app.get_as(&admin, &path).await.json().await.unwrap();
        for i in page["items"].as_array().unwrap() {
            seen.push(i["id"].as_str().unwrap().to_string());
            assert!(
                !i.to_string().contains(PASSWORD),
                "no secrets in the audit log"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert!(seen.len() >= 4, "{seen:?}");
    let body = problem(
        app.get_as(&admin, "/api/v1/audit?cursor=not-a-cursor")
            .await,
        400,
    )
    .await;
    assert_eq!(body["code"], "invalid_cursor");
    assert_eq!(
        problem(app.get_as(&admin, "/api/v1/audit?limit=1000").await, 400).await["errors"][0]["field"],
        "query.limit"
    );
}

async fn rotated_signing_keys_keep_verifying_old_tokens(engine: Engine) {
    let app = spawn_app(engine).await;
    let old = app.customer("quin1616").await;
    let ring = app.key_ring().await;
    let new_kid = ring.rotate().await.unwrap();
    // This instance picks up the new key when it next needs it; old tokens still verify.
    assert_eq!(app.get_as(&old, "/api/v1/me").await.status(), 200);
    tokio::time::sleep(shopkeep_server::auth::KEY_RELOAD_EVERY + Duration::from_millis(300)).await;
    let fresh = app.login("quin1616", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get_as(&fresh, "/api/v1/me").await.status(), 200);
    assert_eq!(app.get_as(&old, "/api/v1/me").await.status(), 200);
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&new_kid.as_str()) && kids.len() == 2,
        "{kids:?}"
    );
    let (header, _) = jwt_parts(&fresh);
    assert_eq!(
        header["kid"],
        new_kid.as_str(),
        "new tokens are signed with the new key"
    );
}

both_engines!(
    an_expired_or_foreign_signed_token_is_refused_by_name,
    failed_logins_are_shared_by_instances_through_redis,
);

async fn an_expired_or_foreign_signed_token_is_refused_by_name(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.customer("ruth1717").await;
    let (header, mut claims) = jwt_parts(&token);
    let ring = app.key_ring().await;
    let (kid, key) = ring.signing_key();
    assert_eq!(header["kid"], kid.as_str());
    let sign = |claims: &Value| {
        let h = jsonwebtoken::Header {
            kid: Some(kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA)
        };
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    };
    let now = claims["iat"].as_i64().unwrap();
    claims["iat"] = json!(now - 3600);
    claims["nbf"] = json!(now - 3600);
    claims["exp"] = json!(now - 60);
    assert_eq!(
        problem(app.get_as(&sign(&claims), "/api/v1/me").await, 401).await["code"],
        "token_expired"
    );
    claims["exp"] = json!(now + 600);
    claims["aud"] = json!("someone-else");
    assert_eq!(
        problem(app.get_as(&sign(&claims), "/api/v1/me").await, 401).await["code"],
        "invalid_token"
    );
    // An HS256 token (alg confusion) is refused.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert_eq!(
        problem(app.get_as(&hs, "/api/v1/me").await, 401).await["code"],
        "invalid_token"
    );
}

async fn failed_logins_are_shared_by_instances_through_redis(engine: Engine) {
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let storage = crate::harness::TestStorage::new(engine).await;
    let mut config = storage.config();
    config.redis_url = Some(redis.into());
    // The Redis server is shared with other tests: keep this test's counters apart.
    config.redis_prefix = format!("shopkeep-test-{}:", uuid::Uuid::now_v7().simple());
    let b_config = config.clone();
    let a = spawn_with(storage, config).await;
    // Usernames are unique per test database but Redis is shared: use a fresh name.
    let name = format!("r{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    a.register(&name, PASSWORD).await;
    let b_app = shopkeep::Application::build(b_config).await.unwrap();
    let b_addr = b_app.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(b_app.run_until_stopped(stop.clone()));
    let wrong = [
        ("grant_type", "password"),
        ("username", name.as_str()),
        ("password", "wrong-wrong-wrong"),
    ];
    for _ in 0..3 {
        assert_eq!(a.token(&wrong).await.status(), 400);
    }
    for _ in 0..2 {
        let r = a
            .client
            .post(format!("http://{b_addr}/api/v1/auth/token"))
            .form(&wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let right = [
        ("grant_type", "password"),
        ("username", name.as_str()),
        ("password", PASSWORD),
    ];
    assert_eq!(
        a.token(&right).await.status(),
        429,
        "five failures across two instances block the sixth"
    );
    stop.cancel();
}

/// 71 bytes is the longest password bcrypt takes; 72 once answered 500. Every length up to the
/// 128-character limit registers and logs in, with the password and not one a byte shorter.
async fn passwords_around_the_bcrypt_limit_register_and_log_in(engine: Engine) {
    let app = spawn_app(engine).await;
    // 128 characters without a pattern a strength check would refuse.
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x: u32 = 12_345;
    let long: String = (0..128)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(alphabet[(x >> 16) as usize % alphabet.len()])
        })
        .collect();
    for (i, len) in [71, 72, 73, 128].into_iter().enumerate() {
        let username = format!("long{i}");
        let password = long[..len].to_string();
        app.register(&username, &password).await;
        let res = app
            .token(&[
                ("grant_type", "password"),
                ("username", &username),
                ("password", &password),
            ])
            .await;
        assert_eq!(res.status(), 200, "{len} bytes");
        let res = app
            .token(&[
                ("grant_type", "password"),
                ("username", &username),
                ("password", &password[..len - 1]),
            ])
            .await;
        assert_eq!(res.status(), 400, "{len} bytes, one short");
    }
}
