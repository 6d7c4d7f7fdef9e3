//! Webhooks end to end on both engines: signed inbound webhooks from Shopify, Stripe, Printify
//! and Standard Webhooks senders (verified, stored, de-duplicated, processed, replayed), and
//! signed outbound deliveries to a receiver running inside the test (retry schedule driven by
//! the test's own clock, secret rotation, auto-disable and recovery, SSRF refusal), plus the
//! API's validation and tenancy.
//!
//! Every signature here is computed with the hmac/sha2 crates directly, never with shopkeep's
//! own signing code.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use shopkeep::Config;
use shopkeep::config::Role;
use shopkeep_domain::{Secret, ShopId};
use shopkeep_server::webhooks::WebhookService;
use shopkeep_server::webhooks::outbound::{self, Outcome, Record};
use shopkeep_store::{ShopScope, on_pool};
use uuid::Uuid;

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, TestApp, TestStorage, problem, spawn_with};

const SHOPIFY_SECRET: &str = "shpss_current_0123456789";
const SHOPIFY_PREVIOUS: &str = "shpss_previous_9876543210";
const STRIPE_SECRET: &str = "whsec_stripe_endpoint_secret";
const PRINTIFY_GLOBAL: &str = "pfy_global_secret_abc";
const SHOP_DOMAIN: &str = "acme.myshopify.com";

/// Waits up to 10 s for `$body` (an `Option`) to be `Some`, polling every 50 ms.
macro_rules! eventually {
    ($what:expr, $body:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = $body {
                break v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

// ---------------------------------------------------------------------------------------------
// Independent signing.

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn shopify_sig(secret: &str, body: &str) -> String {
    B64.encode(hmac256(secret.as_bytes(), body.as_bytes()))
}

fn stripe_v1(secret: &str, t: i64, body: &str) -> String {
    hex::encode(hmac256(secret.as_bytes(), format!("{t}.{body}").as_bytes()))
}

fn printify_sig(secret: &str, body: &str) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac256(secret.as_bytes(), body.as_bytes()))
    )
}

fn whsec_key(secret: &str) -> Vec<u8> {
    B64.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret")
}

fn standard_sig(secret: &str, id: &str, ts: &str, body: &str) -> String {
    let signed = format!("{id}.{ts}.{body}");
    format!(
        "v1,{}",
        B64.encode(hmac256(&whsec_key(secret), signed.as_bytes()))
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

// ---------------------------------------------------------------------------------------------
// The app under test, with the webhook service the tests drive directly.

struct Hooks {
    app: TestApp,
    /// Platform admin and owner of the default shop.
    root: String,
    /// The default shop.
    shop: Uuid,
    /// A service equal to the app's: same options, same sealing key.
    svc: Arc<WebhookService>,
}

impl Hooks {
    fn scope(&self) -> ShopScope {
        ShopScope::verified(ShopId(self.shop))
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self.app.as_user(method, &self.root, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
        let res = self.send(method.clone(), path, body).await;
        let got = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.json(Method::GET, path, None, 200).await
    }

    async fn link(&self, provider: &str, body: Value) -> Value {
        self.json(
            Method::PUT,
            &format!("/api/v1/integrations/{provider}"),
            Some(body),
            200,
        )
        .await
    }

    async fn receipts_in_db(&self) -> i64 {
        on_pool!(&self.app.db, pool => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM webhook_receipts").fetch_one(pool).await)
        .unwrap()
    }

    async fn shopify_orders(&self) -> Vec<Value> {
        let page = self
            .json(Method::GET, "/api/v1/admin/orders?limit=100", None, 200)
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["source"] == "shopify")
            .cloned()
            .collect()
    }

    async fn delivery(&self, id: &str) -> Value {
        self.json(
            Method::GET,
            &format!("/api/v1/webhooks/deliveries/{id}"),
            None,
            200,
        )
        .await
    }

    async fn attempt(&self, delivery: Uuid, at: i64) -> Outcome {
        self.attempt_by(delivery, at, None)
            .await
            .expect("attempt runs")
    }

    /// One attempt at `at`, stored before it returns, made by `job` (`None`: any job).
    async fn attempt_by(
        &self,
        delivery: Uuid,
        at: i64,
        job: Option<Uuid>,
    ) -> Result<Outcome, shopkeep_jobs::JobError> {
        outbound::attempt(
            &self.svc,
            &self.app.db,
            self.scope(),
            delivery,
            at,
            Record::Now { job },
        )
        .await
    }
}

fn hooks_config(storage: &TestStorage) -> Config {
    let mut c = storage.config();
    c.bootstrap_admin = Some(("root".into(), PASSWORD.to_string().into()));
    let w = &mut c.webhooks;
    w.shopify_client_secret = Some(Secret::new(SHOPIFY_SECRET.into()));
    w.shopify_previous_client_secret = Some(Secret::new(SHOPIFY_PREVIOUS.into()));
    w.stripe_webhook_secret = Some(Secret::new(STRIPE_SECRET.into()));
    w.printify_webhook_secret = Some(Secret::new(PRINTIFY_GLOBAL.into()));
    w.allow_networks = vec!["127.0.0.0/8".parse().unwrap()];
    w.dispatch_interval = Duration::from_millis(50);
    c
}

/// Starts the app with webhook secrets and `127.0.0.0/8` allowed; `adjust` changes the rest.
async fn start(engine: Engine, adjust: impl FnOnce(&mut Config)) -> Hooks {
    let storage = TestStorage::new(engine).await;
    let mut config = hooks_config(&storage);
    adjust(&mut config);
    let svc_config = config.clone();
    let app = spawn_with(storage, config).await;
    let root = app.login("root", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let key = shopkeep::keys::secret_key(&svc_config).unwrap();
    let svc = Arc::new(
        WebhookService::new(
            svc_config.webhooks.options(),
            shopkeep_server::crypto::Sealer::new(&key).unwrap(),
        )
        .unwrap(),
    );
    let shop: Value = app
        .get_as(&root, "/api/v1/shop")
        .await
        .json()
        .await
        .unwrap();
    let shop = Uuid::parse_str(shop["id"].as_str().unwrap()).unwrap();
    Hooks {
        app,
        root,
        shop,
        svc,
    }
}

/// No worker role: nothing but the test makes delivery attempts.
fn without_workers(c: &mut Config) {
    c.roles = Role::ALL
        .into_iter()
        .filter(|r| *r != Role::Worker)
        .collect();
}

// ---------------------------------------------------------------------------------------------
// Inbound requests.

fn shopify_order_body(id: i64) -> String {
    json!({
        "id": id,
        "email": "buyer@example.com",
        "currency": "usd",
        "total_price": "25.00",
        "line_items": [
            { "title": "Mug", "quantity": 2, "price": "12.50", "product_id": 11, "variant_id": 12 }
        ]
    })
    .to_string()
}

async fn post_shopify(
    app: &TestApp,
    signature: Option<&str>,
    topic: &str,
    domain: &str,
    event_id: &str,
    body: &str,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/webhooks/shopify"))
        .header("content-type", "application/json")
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", domain)
        .header("x-shopify-event-id", event_id)
        .header("x-shopify-api-version", "2025-07");
    if let Some(s) = signature {
        req = req.header("x-shopify-hmac-sha256", s);
    }
    req.body(body.to_string()).send().await.unwrap()
}

async fn shopify_signed(
    app: &TestApp,
    topic: &str,
    domain: &str,
    event_id: &str,
    body: &str,
) -> Value {
    let res = post_shopify(
        app,
        Some(&shopify_sig(SHOPIFY_SECRET, body)),
        topic,
        domain,
        event_id,
        body,
    )
    .await;
    assert_eq!(res.status(), 200, "signed shopify {topic}");
    res.json().await.unwrap()
}

async fn post_stripe(app: &TestApp, header: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn post_printify(app: &TestApp, header: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/printify"))
        .header("content-type", "application/json")
        .header("x-pfy-signature", header)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn post_standard(
    app: &TestApp,
    shop: &str,
    id: &str,
    ts: &str,
    sig: &str,
    body: &str,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/webhooks/standard/{shop}")))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts)
        .header("webhook-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// A receiver for outbound deliveries.

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the delivery has no {name} header: {self:?}"))
    }

    fn payload(&self) -> Value {
        serde_json::from_str(&self.body).expect("the delivery body is JSON")
    }

    /// How many `v1,` signatures in `webhook-signature` verify under `secret`, checked the way
    /// a Standard Webhooks receiver does.
    fn valid_signatures(&self, secret: &str) -> usize {
        let expected = standard_sig(
            secret,
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            &self.body,
        );
        self.header("webhook-signature")
            .split(' ')
            .filter(|s| *s == expected)
            .count()
    }
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

async fn record(
    axum::extract::State(r): axum::extract::State<Receiver>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    let status = r.status.load(Ordering::SeqCst);
    r.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let text = if uri.path().starts_with("/nul") {
        "before\0after".to_string()
    } else {
        format!("receiver answered {status}")
    };
    (axum::http::StatusCode::from_u16(status).unwrap(), text)
}

/// An HTTP server on 127.0.0.1 that records every request and answers `status`.
async fn receiver(status: u16) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let r = Receiver {
        addr: listener.local_addr().unwrap(),
        seen: Arc::default(),
        status: Arc::new(AtomicU16::new(status)),
    };
    let router = axum::Router::new().fallback(record).with_state(r.clone());
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    r
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

fn fields(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_string(),
                e["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1-3: Shopify.

both_engines!(
    a_signed_shopify_order_becomes_an_order_once_however_often_it_is_sent,
    badly_signed_shopify_webhooks_are_refused_and_store_nothing_but_the_previous_secret_works,
    unknown_topics_are_unhandled_unknown_shops_orphaned_and_a_replay_imports_the_orphan,
    linking_and_unlinking_a_shop_applies_to_the_very_next_webhook,
);

/// Inbound webhooks reuse the integration they looked up for a second, so this checks that a
/// change made through the API is not hidden by that reuse.
async fn linking_and_unlinking_a_shop_applies_to_the_very_next_webhook(engine: Engine) {
    let h = start(engine, |_| {}).await;
    let body = shopify_order_body(3003);
    let send =
        |event: &'static str| shopify_signed(&h.app, "orders/create", SHOP_DOMAIN, event, &body);
    assert_eq!(send("evt-before-link").await["status"], "orphaned");
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    assert_eq!(send("evt-linked").await["status"], "queued");
    let res = h
        .send(Method::DELETE, "/api/v1/integrations/shopify", None)
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(send("evt-unlinked").await["status"], "orphaned");
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    assert_eq!(send("evt-relinked").await["status"], "queued");
}

async fn a_signed_shopify_order_becomes_an_order_once_however_often_it_is_sent(engine: Engine) {
    let h = start(engine, |_| {}).await;
    let linked = h
        .link("shopify", json!({ "account": "Acme.myshopify.com" }))
        .await;
    assert_eq!(
        linked["account"], SHOP_DOMAIN,
        "the domain is stored lower case"
    );
    assert_eq!(linked["webhook_path"], "/webhooks/shopify");

    let body = shopify_order_body(820_982_911_946_154_508);
    let ack = shopify_signed(&h.app, "orders/create", SHOP_DOMAIN, "evt-order-1", &body).await;
    assert_eq!(ack["status"], "queued", "{ack}");
    let receipt_id = ack["receipt_id"].as_str().unwrap().to_string();

    let orders = eventually!("the imported order", {
        let o = h.shopify_orders().await;
        (!o.is_empty()).then_some(o)
    });
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["source"], "shopify");
    assert_eq!(orders[0]["external_id"], "820982911946154508");
    assert_eq!(orders[0]["status"], "PENDING");

    let receipt = eventually!("the receipt to read processed", {
        let page = h
            .json(Method::GET, "/api/v1/webhooks/receipts", None, 200)
            .await;
        let r = page["items"][0].clone();
        (r["status"] == "processed").then_some(r)
    });
    assert_eq!(receipt["id"], receipt_id.as_str());
    assert_eq!(receipt["provider"], "shopify");
    assert_eq!(receipt["topic"], "orders/create");
    assert_eq!(receipt["event_id"], "evt-order-1");
    assert_eq!(receipt["shop_id"], h.shop.to_string());
    let detail = h
        .json(
            Method::GET,
            &format!("/api/v1/webhooks/receipts/{receipt_id}"),
            None,
            200,
        )
        .await;
    assert_eq!(detail["body"], body.as_str(), "the raw body is kept");
    assert_eq!(detail["headers"]["x-shopify-topic"], "orders/create");

    // Shopify redelivers the same event: acknowledged as a duplicate of the first receipt.
    let again = shopify_signed(&h.app, "orders/create", SHOP_DOMAIN, "evt-order-1", &body).await;
    assert_eq!(
        again,
        json!({ "status": "duplicate", "receipt_id": receipt_id })
    );
    assert_eq!(h.receipts_in_db().await, 1);
    // Give a (wrongly) queued job time to run before counting orders.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.shopify_orders().await.len(), 1, "no second order");
    let page = h
        .json(Method::GET, "/api/v1/webhooks/receipts", None, 200)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["attempts"], 1, "processed once");
}

async fn badly_signed_shopify_webhooks_are_refused_and_store_nothing_but_the_previous_secret_works(
    engine: Engine,
) {
    let h = start(engine, |_| {}).await;
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    let body = shopify_order_body(1001);
    let good = shopify_sig(SHOPIFY_SECRET, &body);
    let tampered = body.replace("25.00", "0.01");
    let hex_sig = hex::encode(hmac256(SHOPIFY_SECRET.as_bytes(), body.as_bytes()));
    let wrong = shopify_sig("shpss_someone_else", &body);
    let cases: [(&str, Option<&str>, &str, &str); 4] = [
        ("tampered body", Some(&good), &tampered, "bad_signature"),
        ("wrong secret", Some(&wrong), &body, "bad_signature"),
        ("missing header", None, &body, "missing_signature"),
        (
            "hex instead of base64",
            Some(&hex_sig),
            &body,
            "malformed_signature",
        ),
    ];
    for (what, sig, sent, code) in cases {
        let res = post_shopify(&h.app, sig, "orders/create", SHOP_DOMAIN, "evt-bad", sent).await;
        let p = problem(res, 401).await;
        assert_eq!(p["code"], code, "{what}: {p}");
        let text = p.to_string();
        assert!(
            !text.contains(SHOPIFY_SECRET) && !text.contains(&good),
            "{what}: the problem reveals no secret or expected signature"
        );
    }
    assert_eq!(h.receipts_in_db().await, 0, "nothing was stored");

    // After a rotation Shopify may still sign with the previous secret for a while.
    let old = shopify_sig(SHOPIFY_PREVIOUS, &body);
    let res = post_shopify(
        &h.app,
        Some(&old),
        "orders/create",
        SHOP_DOMAIN,
        "evt-old-secret",
        &body,
    )
    .await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(ack["status"], "queued");
    assert_eq!(h.receipts_in_db().await, 1);
}

async fn unknown_topics_are_unhandled_unknown_shops_orphaned_and_a_replay_imports_the_orphan(
    engine: Engine,
) {
    let h = start(engine, |_| {}).await;
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    let product = json!({ "id": 632_910_392, "title": "IPod Nano" }).to_string();
    let ack = shopify_signed(&h.app, "products/update", SHOP_DOMAIN, "evt-p1", &product).await;
    assert_eq!(ack["status"], "unhandled");
    let unhandled_id = ack["receipt_id"].as_str().unwrap().to_string();

    let body = shopify_order_body(2002);
    let ack = shopify_signed(
        &h.app,
        "orders/create",
        "late.myshopify.com",
        "evt-orphan",
        &body,
    )
    .await;
    assert_eq!(ack["status"], "orphaned");
    let orphan_id = ack["receipt_id"].as_str().unwrap().to_string();

    let mine = h
        .json(Method::GET, "/api/v1/webhooks/receipts", None, 200)
        .await;
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "the orphan belongs to no shop: {mine}");
    assert_eq!(items[0]["id"], unhandled_id.as_str());
    assert_eq!(items[0]["status"], "unhandled");
    let orphans = h
        .json(
            Method::GET,
            "/api/v1/admin/webhooks/receipts?orphaned=true",
            None,
            200,
        )
        .await;
    let items = orphans["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{orphans}");
    assert_eq!(items[0]["id"], orphan_id.as_str());
    assert_eq!(items[0]["status"], "orphaned");
    assert_eq!(items[0]["shop_ref"], "late.myshopify.com");
    assert!(items[0]["shop_id"].is_null());

    // Still no shop for it: the replay says so.
    let res = h
        .send(
            Method::POST,
            &format!("/api/v1/admin/webhooks/receipts/{orphan_id}/replay"),
            None,
        )
        .await;
    assert_eq!(problem(res, 409).await["code"], "orphaned");
    // An unhandled topic has nothing to replay.
    let res = h
        .send(
            Method::POST,
            &format!("/api/v1/admin/webhooks/receipts/{unhandled_id}/replay"),
            None,
        )
        .await;
    assert_eq!(problem(res, 409).await["code"], "unhandled_topic");
    assert!(h.shopify_orders().await.is_empty());

    // The shop links the domain the orphan named; the platform admin replays it.
    h.link("shopify", json!({ "account": "late.myshopify.com" }))
        .await;
    let replayed = h
        .json(
            Method::POST,
            &format!("/api/v1/admin/webhooks/receipts/{orphan_id}/replay"),
            None,
            202,
        )
        .await;
    assert_eq!(replayed["shop_id"], h.shop.to_string());
    let orders = eventually!("the replayed order", {
        let o = h.shopify_orders().await;
        (!o.is_empty()).then_some(o)
    });
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["external_id"], "2002");
    eventually!("the orphan to read processed", {
        let r = h
            .json(
                Method::GET,
                &format!("/api/v1/webhooks/receipts/{orphan_id}"),
                None,
                200,
            )
            .await;
        (r["status"] == "processed").then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// 4-6: Stripe, Printify, Standard Webhooks.

both_engines!(
    stripe_events_are_verified_with_their_timestamp_and_de_duplicated_on_their_id,
    a_printify_shop_secret_verifies_only_webhooks_naming_that_shop,
    standard_webhooks_senders_sign_with_the_shops_secret,
);

async fn stripe_events_are_verified_with_their_timestamp_and_de_duplicated_on_their_id(
    engine: Engine,
) {
    let h = start(engine, |_| {}).await;
    let event = |id: &str| {
        json!({
            "id": id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": { "object": { "id": "pi_1", "metadata": { "shop_id": h.shop } } }
        })
        .to_string()
    };
    let body = event("evt_1");
    let t = now_secs();
    let res = post_stripe(
        &h.app,
        &format!("t={t},v1={}", stripe_v1(STRIPE_SECRET, t, &body)),
        &body,
    )
    .await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(
        ack["status"], "unhandled",
        "matched to the shop, no handler"
    );
    let first = ack["receipt_id"].as_str().unwrap().to_string();

    // Several v1 values (Stripe sends one per active secret); one matching is enough.
    let body2 = event("evt_2");
    let header = format!(
        "t={t},v1={},v1={},v0={}",
        stripe_v1("whsec_rolled_away", t, &body2),
        stripe_v1(STRIPE_SECRET, t, &body2),
        stripe_v1("whsec_v0", t, &body2)
    );
    let res = post_stripe(&h.app, &header, &body2).await;
    assert_eq!(res.status(), 200);

    // Correctly signed ten minutes ago: a replayed capture, refused.
    let body3 = event("evt_3");
    let old = t - 600;
    let res = post_stripe(
        &h.app,
        &format!("t={old},v1={}", stripe_v1(STRIPE_SECRET, old, &body3)),
        &body3,
    )
    .await;
    assert_eq!(problem(res, 401).await["code"], "stale_timestamp");
    // The signed timestamp moved: the signature no longer matches.
    let res = post_stripe(
        &h.app,
        &format!("t={},v1={}", t + 1, stripe_v1(STRIPE_SECRET, t, &body3)),
        &body3,
    )
    .await;
    assert_eq!(problem(res, 401).await["code"], "bad_signature");

    // Stripe retries evt_1 with a fresh signature.
    let t2 = now_secs();
    let res = post_stripe(
        &h.app,
        &format!("t={t2},v1={}", stripe_v1(STRIPE_SECRET, t2, &body)),
        &body,
    )
    .await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(ack, json!({ "status": "duplicate", "receipt_id": first }));
    assert_eq!(h.receipts_in_db().await, 2);
    let page = h
        .json(
            Method::GET,
            "/api/v1/webhooks/receipts?provider=stripe",
            None,
            200,
        )
        .await;
    let events: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["evt_2", "evt_1"]);
}

async fn a_printify_shop_secret_verifies_only_webhooks_naming_that_shop(engine: Engine) {
    let h = start(engine, |_| {}).await;
    let linked = h
        .link(
            "printify",
            json!({ "account": "123", "webhook_secret": "pfy_shop_secret_123" }),
        )
        .await;
    assert_eq!(linked["has_secret"], true);
    let body = |id: &str, shop: i64| {
        json!({
            "id": id,
            "type": "order:created",
            "created_at": "2026-12-01 10:00:00+00:00",
            "resource": { "id": "5a96f6", "type": "order", "data": { "shop_id": shop, "status": "pending" } }
        })
        .to_string()
    };
    let b = body("pfy-1", 123);
    let res = post_printify(&h.app, &printify_sig("pfy_shop_secret_123", &b), &b).await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(ack["status"], "unhandled", "matched to the shop: {ack}");
    let r = h
        .json(
            Method::GET,
            "/api/v1/webhooks/receipts?provider=printify",
            None,
            200,
        )
        .await;
    assert_eq!(r["items"][0]["shop_ref"], "123");
    assert_eq!(r["items"][0]["shop_id"], h.shop.to_string());

    // Shop 123's secret cannot vouch for a payload naming another Printify shop.
    let other = body("pfy-2", 456);
    let res = post_printify(&h.app, &printify_sig("pfy_shop_secret_123", &other), &other).await;
    assert_eq!(problem(res, 401).await["code"], "bad_signature");
    // A wrong secret is refused.
    let b3 = body("pfy-3", 123);
    let res = post_printify(&h.app, &printify_sig("pfy_not_the_secret", &b3), &b3).await;
    assert_eq!(problem(res, 401).await["code"], "bad_signature");
    // The server-wide secret still works (an orphan here: shop 456 is not linked).
    let res = post_printify(&h.app, &printify_sig(PRINTIFY_GLOBAL, &other), &other).await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(ack["status"], "orphaned");
    assert_eq!(h.receipts_in_db().await, 2);
}

async fn standard_webhooks_senders_sign_with_the_shops_secret(engine: Engine) {
    let h = start(engine, |_| {}).await;
    let secret = format!("whsec_{}", B64.encode([7u8; 32]));
    let linked = h
        .link(
            "standard",
            json!({ "account": "erp", "webhook_secret": secret }),
        )
        .await;
    let path = format!("/webhooks/standard/{}", h.shop);
    assert_eq!(linked["webhook_path"], path.as_str());

    let shop = h.shop.to_string();
    let body =
        json!({ "type": "stock.changed", "data": { "id": "sku-1", "on_hand": 4 } }).to_string();
    let ts = now_secs().to_string();
    let sig = standard_sig(&secret, "msg_erp_1", &ts, &body);
    let res = post_standard(&h.app, &shop, "msg_erp_1", &ts, &sig, &body).await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(ack["status"], "unhandled");
    let r = h
        .json(
            Method::GET,
            &format!(
                "/api/v1/webhooks/receipts/{}",
                ack["receipt_id"].as_str().unwrap()
            ),
            None,
            200,
        )
        .await;
    assert_eq!(r["topic"], "stock.changed");
    assert_eq!(r["shop_ref"], "erp");

    // The same id again is a redelivery.
    let res = post_standard(&h.app, &shop, "msg_erp_1", &ts, &sig, &body).await;
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");

    // Wrong secret, tampered body, a signature for another message id: 401.
    let wrong = standard_sig(
        &format!("whsec_{}", B64.encode([8u8; 32])),
        "msg_erp_2",
        &ts,
        &body,
    );
    let res = post_standard(&h.app, &shop, "msg_erp_2", &ts, &wrong, &body).await;
    assert_eq!(problem(res, 401).await["code"], "bad_signature");
    let res = post_standard(&h.app, &shop, "msg_erp_2", &ts, &sig, &body).await;
    assert_eq!(problem(res, 401).await["code"], "bad_signature");
    let stale = (now_secs() - 600).to_string();
    let res = post_standard(
        &h.app,
        &shop,
        "msg_erp_3",
        &stale,
        &standard_sig(&secret, "msg_erp_3", &stale, &body),
        &body,
    )
    .await;
    assert_eq!(problem(res, 401).await["code"], "stale_timestamp");
    // A shop without a standard integration (or no shop at all) verifies nothing.
    let nobody = Uuid::now_v7().to_string();
    let res = post_standard(&h.app, &nobody, "msg_erp_4", &ts, &sig, &body).await;
    assert_eq!(problem(res, 401).await["code"], "not_configured");
    assert_eq!(h.receipts_in_db().await, 1);
}

// ---------------------------------------------------------------------------------------------
// 7: outbound end to end.

both_engines!(an_order_reaches_a_receiver_signed_and_only_endpoints_whose_filter_matches);

async fn an_order_reaches_a_receiver_signed_and_only_endpoints_whose_filter_matches(
    engine: Engine,
) {
    let h = start(engine, |_| {}).await;
    let rx = receiver(200).await;
    let all = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/all"), "description": "everything", "headers": { "X-Team": "ops" } })),
            201,
        )
        .await;
    let secret = all["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{all}");
    assert_eq!(whsec_key(&secret).len(), 32);
    assert_eq!(all["enabled"], true);
    let approved = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/approved"), "event_types": ["order.approved"] })),
            201,
        )
        .await;
    let approved_secret = approved["secret"].as_str().unwrap().to_string();
    assert_ne!(secret, approved_secret);
    let listed = h
        .json(Method::GET, "/api/v1/webhooks/endpoints", None, 200)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        listed[0].get("secret").is_none(),
        "the list never shows secrets"
    );

    let customer = h.app.customer("wanda001").await;
    let res = h
        .app
        .as_user(Method::POST, &customer, "/api/v1/orders")
        .header("idempotency-key", "wh-order-0001")
        .json(&json!({ "item_name": "Teapot", "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let order: Value = res.json().await.unwrap();
    let order_id = id_of(&order);

    let got = eventually!("order.created at the receiver", {
        let s = rx.at("/all");
        (!s.is_empty()).then_some(s)
    });
    let seen = &got[0];
    assert_eq!(seen.payload()["type"], "order.created");
    assert_eq!(seen.payload()["order_id"], order_id.as_str());
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header("x-team"), "ops", "custom headers are sent");
    assert!(seen.header("webhook-id").starts_with("msg_"));
    let ts: i64 = seen.header("webhook-timestamp").parse().unwrap();
    assert!((now_secs() - ts).abs() < 60, "a current timestamp");
    assert_eq!(seen.valid_signatures(&secret), 1, "signed: {seen:?}");
    assert_eq!(seen.valid_signatures(&approved_secret), 0);

    let endpoint_id = id_of(&all);
    let delivery = eventually!("the delivery to read delivered", {
        let page = h
            .json(
                Method::GET,
                &format!("/api/v1/webhooks/deliveries?endpoint_id={endpoint_id}"),
                None,
                200,
            )
            .await;
        let d = page["items"][0].clone();
        (d["status"] == "delivered").then_some(d)
    });
    assert_eq!(delivery["event_type"], "order.created");
    assert_eq!(delivery["resource_id"], order_id.as_str());
    assert_eq!(delivery["message_id"], seen.header("webhook-id"));
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["last_status"], 200);
    let detail = h.delivery(&id_of(&delivery)).await;
    assert_eq!(detail["payload"], seen.payload());
    let log = detail["attempts_log"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["status_code"], 200);
    assert_eq!(log[0]["response_body"], "receiver answered 200");
    assert!(log[0]["error"].is_null());

    // Only order.approved goes to the filtered endpoint.
    h.json(
        Method::POST,
        &format!("/api/v1/orders/{order_id}/approve"),
        None,
        200,
    )
    .await;
    let at_approved = eventually!("order.approved at the filtered endpoint", {
        let s = rx.at("/approved");
        (!s.is_empty()).then_some(s)
    });
    eventually!("order.approved at the catch-all endpoint", {
        (rx.at("/all").len() == 2).then_some(())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let at_approved_now = rx.at("/approved");
    assert_eq!(at_approved_now.len(), 1, "{at_approved_now:?}");
    assert_eq!(at_approved[0].payload()["type"], "order.approved");
    assert_eq!(at_approved[0].valid_signatures(&approved_secret), 1);
    let all_types: Vec<String> = rx
        .at("/all")
        .iter()
        .map(|s| s.payload()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all_types, ["order.created", "order.approved"]);
    let page = h
        .json(
            Method::GET,
            &format!(
                "/api/v1/webhooks/deliveries?endpoint_id={}",
                id_of(&approved)
            ),
            None,
            200,
        )
        .await;
    let types: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["order.approved"], "no order.created delivery");
}

// ---------------------------------------------------------------------------------------------
// 8-9: retries, rotation, auto-disable and recovery, on the test's clock.

both_engines!(
    failed_attempts_follow_the_retry_schedule_to_failure_and_a_rotation_signs_twice,
    an_endpoint_failing_for_five_days_is_disabled_and_recovers_its_deliveries,
);

async fn test_send(h: &Hooks, endpoint: &str) -> Uuid {
    let q = h
        .json(
            Method::POST,
            &format!("/api/v1/webhooks/endpoints/{endpoint}/test"),
            None,
            202,
        )
        .await;
    assert_eq!(q["queued"], 1);
    Uuid::parse_str(q["delivery_id"].as_str().unwrap()).unwrap()
}

async fn failed_attempts_follow_the_retry_schedule_to_failure_and_a_rotation_signs_twice(
    engine: Engine,
) {
    let h = start(engine, without_workers).await;
    let rx = receiver(500).await;
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/flaky") })),
            201,
        )
        .await;
    let ep_id = id_of(&ep);
    let secret = ep["secret"].as_str().unwrap().to_string();
    let d = test_send(&h, &ep_id).await;

    let waits_secs: [i64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
    let t0 = now_micros();
    let mut t = t0;
    for (n, wait) in (1..).zip(waits_secs) {
        match h.attempt(d, t).await {
            Outcome::Retrying {
                attempt,
                next_at,
                error,
            } => {
                assert_eq!(attempt, n);
                assert_eq!(next_at, t + wait * 1_000_000, "wait after attempt {n}");
                assert!(error.contains("500"), "{error}");
                t = next_at;
            }
            other => panic!("attempt {n}: {other:?}"),
        }
    }
    match h.attempt(d, t).await {
        Outcome::Failed { attempt, .. } => assert_eq!(attempt, 8),
        other => panic!("attempt 8: {other:?}"),
    }
    assert!(matches!(h.attempt(d, t + 1).await, Outcome::Skipped { .. }));

    let seen = rx.at("/flaky");
    assert_eq!(seen.len(), 8, "one request per attempt");
    let ids: Vec<&str> = seen.iter().map(|s| s.header("webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one message id: {ids:?}");
    let stamps: Vec<i64> = seen
        .iter()
        .map(|s| s.header("webhook-timestamp").parse().unwrap())
        .collect();
    let mut expected = vec![t0 / 1_000_000];
    let mut at = t0;
    for w in waits_secs {
        at += w * 1_000_000;
        expected.push(at / 1_000_000);
    }
    assert_eq!(stamps, expected, "each attempt is signed at its own time");
    assert!(seen.iter().all(|s| s.valid_signatures(&secret) == 1));
    assert_eq!(seen[0].payload()["type"], "webhook.test");

    let detail = h.delivery(&d.to_string()).await;
    assert_eq!(detail["status"], "failed");
    assert_eq!(detail["attempts"], 8);
    assert!(detail["next_attempt_at"].is_null());
    let log = detail["attempts_log"].as_array().unwrap();
    assert_eq!(log.len(), 8);
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert_eq!(a["status_code"], 500);
        assert_eq!(a["response_body"], "receiver answered 500");
    }
    let ep_now = h
        .json(
            Method::GET,
            &format!("/api/v1/webhooks/endpoints/{ep_id}"),
            None,
            200,
        )
        .await;
    assert_eq!(
        ep_now["enabled"], true,
        "28 hours of failures do not disable"
    );
    assert!(ep_now["failing_since"].is_string());

    // Rotation: for the overlap both secrets sign, so receivers on either keep verifying.
    let rotated = h
        .json(
            Method::POST,
            &format!("/api/v1/webhooks/endpoints/{ep_id}/rotate-secret"),
            None,
            200,
        )
        .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_until"].is_string(), "{rotated}");
    let shown = h
        .json(
            Method::GET,
            &format!("/api/v1/webhooks/endpoints/{ep_id}/secret"),
            None,
            200,
        )
        .await;
    assert_eq!(shown["secret"], new_secret.as_str());
    let d2 = test_send(&h, &ep_id).await;
    rx.answer(204);
    let out = h.attempt(d2, now_micros()).await;
    assert!(
        matches!(out, Outcome::Delivered { status: 204, .. }),
        "{out:?}"
    );
    let last = rx.seen().pop().unwrap();
    let sigs: Vec<&str> = last.header("webhook-signature").split(' ').collect();
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    assert!(sigs.iter().all(|s| s.starts_with("v1,")));
    assert_eq!(last.valid_signatures(&new_secret), 1);
    assert_eq!(last.valid_signatures(&secret), 1);
    let ep_now = h
        .json(
            Method::GET,
            &format!("/api/v1/webhooks/endpoints/{ep_id}"),
            None,
            200,
        )
        .await;
    assert!(ep_now["failing_since"].is_null(), "a success ends the run");
}

async fn an_endpoint_failing_for_five_days_is_disabled_and_recovers_its_deliveries(engine: Engine) {
    let h = start(engine, without_workers).await;
    let rx = receiver(503).await;
    let url = rx.url("/down");
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": url })),
            201,
        )
        .await;
    let ep_id = id_of(&ep);
    let ep_path = format!("/api/v1/webhooks/endpoints/{ep_id}");

    let since = (shopkeep_domain::Timestamp(now_micros() - 60_000_000)).to_rfc3339();
    let d = test_send(&h, &ep_id).await;
    let day = 86_400 * 1_000_000_i64;
    let t0 = now_micros();
    // Attempts spread over the days, each failing (the schedule's own times do not matter here:
    // the disable rule counts from the first failure).
    for (i, at) in [t0, t0 + day, t0 + 2 * day, t0 + 4 * day]
        .into_iter()
        .enumerate()
    {
        let out = h.attempt(d, at).await;
        assert!(
            matches!(out, Outcome::Retrying { .. }),
            "attempt {i}: {out:?}"
        );
        assert_eq!(h.get(&ep_path).await["enabled"], true, "after {i}");
    }
    let out = h.attempt(d, t0 + 5 * day + 1_000_000).await;
    assert!(
        matches!(out, Outcome::Retrying { .. } | Outcome::Failed { .. }),
        "{out:?}"
    );
    let e = h.get(&ep_path).await;
    assert_eq!(e["enabled"], false, "{e}");
    let reason = e["disabled_reason"].as_str().expect("a reason");
    assert!(reason.contains("120 hours"), "{reason}");

    let audit = h
        .json(Method::GET, "/api/v1/audit?limit=100", None, 200)
        .await;
    let disabled: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "webhook_endpoint.disabled")
        .collect();
    assert_eq!(disabled.len(), 1, "{audit}");
    assert_eq!(disabled[0]["target"], ep_id.as_str());
    assert_eq!(disabled[0]["detail"]["url"], url.as_str());

    let before = rx.seen().len();
    match h.attempt(d, t0 + 5 * day + 2_000_000).await {
        Outcome::Skipped { why } => assert!(why.contains("disabled"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.seen().len(), before, "nothing sent while disabled");
    assert_eq!(h.delivery(&d.to_string()).await["status"], "skipped");
    // A new event is not delivered to a disabled endpoint at all.
    let res = h
        .send(
            Method::POST,
            &format!("/api/v1/webhooks/endpoints/{ep_id}/test"),
            None,
        )
        .await;
    let d_disabled: Value = res.json().await.unwrap();
    let d_disabled = Uuid::parse_str(d_disabled["delivery_id"].as_str().unwrap()).unwrap();
    assert!(matches!(
        h.attempt(d_disabled, now_micros()).await,
        Outcome::Skipped { .. }
    ));

    // Re-enabled by its owner: the failure run starts afresh; recover queues what was skipped.
    let e = h
        .json(
            Method::PUT,
            &format!("/api/v1/webhooks/endpoints/{ep_id}"),
            Some(json!({ "url": url, "enabled": true })),
            200,
        )
        .await;
    assert_eq!(e["enabled"], true);
    assert!(
        e["disabled_reason"].is_null() && e["failing_since"].is_null(),
        "{e}"
    );
    let q = h
        .json(
            Method::POST,
            &format!("/api/v1/webhooks/endpoints/{ep_id}/recover"),
            Some(json!({ "since": since })),
            202,
        )
        .await;
    assert_eq!(q["queued"], 2, "{q}");
    let detail = h.delivery(&d.to_string()).await;
    assert_eq!(detail["status"], "pending");
    assert!(detail["next_attempt_at"].is_string());
    rx.answer(200);
    let now = now_micros();
    let out = h.attempt(d, now).await;
    assert!(
        matches!(out, Outcome::Delivered { attempt: 6, .. }),
        "{out:?}"
    );
    let detail = h.delivery(&d.to_string()).await;
    assert_eq!(detail["status"], "delivered");
    assert_eq!(detail["attempts_log"].as_array().unwrap().len(), 6);
    // After a recovery the schedule starts again: a failure waits 5 s.
    rx.answer(500);
    match h.attempt(d_disabled, now).await {
        Outcome::Retrying {
            attempt, next_at, ..
        } => {
            assert_eq!(attempt, 1);
            assert_eq!(next_at, now + 5_000_000);
        }
        other => panic!("{other:?}"),
    }
    let res = h
        .send(
            Method::POST,
            &format!("/api/v1/webhooks/endpoints/{ep_id}/recover"),
            Some(json!({ "since": "yesterday" })),
        )
        .await;
    let p = problem(res, 422).await;
    assert_eq!(
        fields(&p),
        [("body.since".to_string(), "invalid".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// 10-11: SSRF, validation, tenancy.

both_engines!(
    private_addresses_are_refused_when_created_and_when_resolved_at_delivery,
    bad_endpoint_bodies_and_cursors_are_named_and_other_shops_data_reads_404,
);

async fn private_addresses_are_refused_when_created_and_when_resolved_at_delivery(engine: Engine) {
    // The default configuration: no network is exempt.
    let h = start(engine, |c| c.webhooks.allow_networks = Vec::new()).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://[::1]:9/x",
        "http://10.0.0.8/x",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let res = h
            .send(
                Method::POST,
                "/api/v1/webhooks/endpoints",
                Some(json!({ "url": url })),
            )
            .await;
        let p = problem(res, 422).await;
        assert_eq!(
            fields(&p),
            [("body.url".to_string(), "private_address".to_string())],
            "{url}"
        );
    }
    let rx = receiver(200).await;
    let url = format!("http://localhost:{}/x", rx.addr.port());
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": url })),
            201,
        )
        .await;
    let d = test_send(&h, &id_of(&ep)).await;
    let attempt = eventually!("the refused attempt", {
        let detail = h.delivery(&d.to_string()).await;
        detail["attempts_log"].as_array().unwrap().first().cloned()
    });
    assert!(attempt["status_code"].is_null(), "{attempt}");
    let error = attempt["error"].as_str().unwrap();
    assert!(error.contains("private or reserved"), "{error}");
    let detail = h.delivery(&d.to_string()).await;
    assert_eq!(detail["status"], "pending", "retried later: {detail}");
    assert!(rx.seen().is_empty(), "nothing reached the receiver");
}

async fn bad_endpoint_bodies_and_cursors_are_named_and_other_shops_data_reads_404(engine: Engine) {
    let h = start(engine, |_| {}).await;
    let post = |body: Value| h.send(Method::POST, "/api/v1/webhooks/endpoints", Some(body));
    let many: serde_json::Map<String, Value> =
        (0..25).map(|i| (format!("x-h{i}"), json!("v"))).collect();
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (
            json!({ "url": "https://example.com/h", "colour": "red" }),
            vec![("body.colour", "")],
        ),
        (
            json!({ "url": "not a url" }),
            vec![("body.url", "invalid_url")],
        ),
        (
            json!({ "url": "ftp://example.com/h" }),
            vec![("body.url", "unsupported_scheme")],
        ),
        (
            json!({ "url": "https://example.com/h", "headers": many }),
            vec![("body.headers", "too_many")],
        ),
        (
            json!({ "url": "https://example.com/h", "headers": { "Webhook-Id": "forged" } }),
            vec![("body.headers", "reserved_header")],
        ),
        (
            json!({ "url": "https://example.com/h", "event_types": ["Order Created"] }),
            vec![("body.event_types", "invalid_filter")],
        ),
        (
            json!({ "url": "https://example.com/h", "rate_per_second": 0 }),
            vec![("body.rate_per_second", "out_of_range")],
        ),
        (
            json!({ "url": "https://example.com/h", "secret": "whsec_short" }),
            vec![("body.secret", "invalid")],
        ),
        (
            json!({
                "url": "https://user:pw@example.com/h",
                "event_types": ["order created"],
                "headers": { "content-type": "text/plain" },
                "description": "x".repeat(501)
            }),
            vec![
                ("body.url", "userinfo"),
                ("body.event_types", "invalid_filter"),
                ("body.headers", "reserved_header"),
                ("body.description", "invalid"),
            ],
        ),
    ];
    for (body, want) in cases {
        let p = problem(post(body.clone()).await, 422).await;
        let got = fields(&p);
        assert_eq!(got.len(), want.len(), "{body}: {p}");
        for (field, code) in want {
            assert!(
                got.iter()
                    .any(|(f, c)| f == field && (code.is_empty() || c == code)),
                "{field} {code} in {got:?}"
            );
        }
    }
    let listed = h
        .json(Method::GET, "/api/v1/webhooks/endpoints", None, 200)
        .await;
    assert!(listed.as_array().unwrap().is_empty(), "nothing was stored");

    for path in [
        "/api/v1/webhooks/deliveries?cursor=not-a-cursor",
        "/api/v1/webhooks/receipts?cursor=not-a-cursor",
        "/api/v1/admin/webhooks/receipts?cursor=not-a-cursor",
    ] {
        let p = problem(h.send(Method::GET, path, None).await, 400).await;
        assert_eq!(
            fields(&p),
            [("query.cursor".to_string(), "invalid".to_string())],
            "{path}"
        );
    }
    let p = problem(
        h.send(Method::GET, "/api/v1/webhooks/deliveries?status=lost", None)
            .await,
        400,
    )
    .await;
    assert_eq!(fields(&p)[0].0, "query.status");

    // Shop one's endpoint, delivery and receipt.
    let rx = receiver(200).await;
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/one") })),
            201,
        )
        .await;
    let ep_id = id_of(&ep);
    let delivery = test_send(&h, &ep_id).await;
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    let ack = shopify_signed(
        &h.app,
        "orders/create",
        SHOP_DOMAIN,
        "evt-t1",
        &shopify_order_body(3003),
    )
    .await;
    let receipt = ack["receipt_id"].as_str().unwrap().to_string();

    // Shop two, administered by the same platform admin.
    let res = h
        .send(
            Method::POST,
            "/api/v1/shops",
            Some(json!({ "slug": "second", "name": "Second shop" })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let second: Value = res.json().await.unwrap();
    let switched: Value = h
        .send(
            Method::POST,
            "/api/v1/auth/switch-shop",
            Some(json!({ "shop_id": second["id"] })),
        )
        .await
        .json()
        .await
        .unwrap();
    let other = switched["access_token"].as_str().unwrap().to_string();
    let as_other = |m: Method, path: String| h.app.as_user(m, &other, &path);
    let not_found = [
        (Method::GET, format!("/api/v1/webhooks/endpoints/{ep_id}")),
        (
            Method::GET,
            format!("/api/v1/webhooks/endpoints/{ep_id}/secret"),
        ),
        (
            Method::POST,
            format!("/api/v1/webhooks/endpoints/{ep_id}/rotate-secret"),
        ),
        (
            Method::POST,
            format!("/api/v1/webhooks/endpoints/{ep_id}/test"),
        ),
        (
            Method::DELETE,
            format!("/api/v1/webhooks/endpoints/{ep_id}"),
        ),
        (
            Method::GET,
            format!("/api/v1/webhooks/deliveries/{delivery}"),
        ),
        (
            Method::POST,
            format!("/api/v1/webhooks/deliveries/{delivery}/resend"),
        ),
        (Method::GET, format!("/api/v1/webhooks/receipts/{receipt}")),
        (
            Method::POST,
            format!("/api/v1/webhooks/receipts/{receipt}/replay"),
        ),
    ];
    for (m, path) in not_found {
        let res = as_other(m.clone(), path.clone()).send().await.unwrap();
        problem(res, 404).await;
    }
    let res = as_other(Method::PUT, format!("/api/v1/webhooks/endpoints/{ep_id}"))
        .json(&json!({ "url": "https://example.com/stolen" }))
        .send()
        .await
        .unwrap();
    problem(res, 404).await;
    let res = as_other(
        Method::POST,
        format!("/api/v1/webhooks/endpoints/{ep_id}/recover"),
    )
    .json(&json!({ "since": "2026-01-01T00:00:00Z" }))
    .send()
    .await
    .unwrap();
    problem(res, 404).await;
    for path in [
        "/api/v1/webhooks/endpoints",
        "/api/v1/webhooks/deliveries",
        "/api/v1/webhooks/receipts",
        "/api/v1/integrations",
    ] {
        let res = as_other(Method::GET, path.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        let items = v.get("items").unwrap_or(&v);
        assert!(items.as_array().unwrap().is_empty(), "{path}: {v}");
    }
    // The account linked by shop one cannot be claimed by shop two.
    let res = as_other(Method::PUT, "/api/v1/integrations/shopify".into())
        .json(&json!({ "account": SHOP_DOMAIN }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 409).await["code"], "account_taken");
    // Shop one's data is untouched.
    let e = h
        .json(
            Method::GET,
            &format!("/api/v1/webhooks/endpoints/{ep_id}"),
            None,
            200,
        )
        .await;
    assert_eq!(e["url"], rx.url("/one"));
    assert_eq!(
        h.json(
            Method::GET,
            &format!("/api/v1/webhooks/endpoints/{ep_id}/secret"),
            None,
            200
        )
        .await["secret"],
        ep["secret"]
    );
}

// ---------------------------------------------------------------------------------------------
// Probes found while writing the tests above.

both_engines!(concurrent_redeliveries_of_one_shopify_event_store_one_receipt_and_one_order);

both_engines!(
    a_bare_address_in_allow_networks_allows_that_address,
    stripe_connect_events_find_their_shop_by_the_account_id_as_stripe_writes_it,
    a_receiver_answering_a_nul_byte_still_gets_its_attempt_logged,
);

async fn concurrent_redeliveries_of_one_shopify_event_store_one_receipt_and_one_order(
    engine: Engine,
) {
    let h = start(engine, |_| {}).await;
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    let body = shopify_order_body(4004);
    let sends =
        (0..6).map(|_| shopify_signed(&h.app, "orders/create", SHOP_DOMAIN, "evt-race", &body));
    let acks = futures_util::future::join_all(sends).await;
    let queued: Vec<&Value> = acks.iter().filter(|a| a["status"] == "queued").collect();
    assert_eq!(queued.len(), 1, "{acks:?}");
    let first = queued[0]["receipt_id"].clone();
    assert!(
        acks.iter()
            .all(|a| a["receipt_id"] == first
                && (a["status"] == "queued" || a["status"] == "duplicate")),
        "{acks:?}"
    );
    assert_eq!(h.receipts_in_db().await, 1);
    let orders = eventually!("the order", {
        let o = h.shopify_orders().await;
        (!o.is_empty()).then_some(o)
    });
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["total_minor"], 2500);
    assert_eq!(orders[0]["currency"], "USD");
    // Replaying the processed receipt re-imports nothing: the order exists.
    let receipt = first.as_str().unwrap();
    h.json(
        Method::POST,
        &format!("/api/v1/webhooks/receipts/{receipt}/replay"),
        None,
        202,
    )
    .await;
    eventually!("the replay to finish", {
        let r = h.get(&format!("/api/v1/webhooks/receipts/{receipt}")).await;
        (r["status"] == "processed" && r["attempts"] == 2).then_some(())
    });
    assert_eq!(h.shopify_orders().await.len(), 1, "no second order");
}

async fn a_receiver_answering_a_nul_byte_still_gets_its_attempt_logged(engine: Engine) {
    let h = start(engine, without_workers).await;
    let rx = receiver(200).await;
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/nul") })),
            201,
        )
        .await;
    let d = test_send(&h, &id_of(&ep)).await;
    let out = h.attempt_by(d, now_micros(), None).await;
    assert_eq!(rx.seen().len(), 1, "the receiver got the message");
    assert!(
        matches!(out, Ok(Outcome::Delivered { status: 200, .. })),
        "a 200 is delivered whatever the body holds: {out:?}"
    );
    let detail = h.delivery(&d.to_string()).await;
    assert_eq!(detail["status"], "delivered");
    let kept = detail["attempts_log"][0]["response_body"].as_str().unwrap();
    assert!(
        kept.starts_with("before") && kept.ends_with("after"),
        "{kept:?}"
    );
}

async fn a_bare_address_in_allow_networks_allows_that_address(engine: Engine) {
    // The config loader accepts a bare address ("a bare address means just that address").
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shopkeep.toml");
    std::fs::write(&file, "[webhooks]\nallow_networks = [\"127.0.0.1\"]\n").unwrap();
    let loaded = shopkeep::config::load(&shopkeep::config::Sources {
        file: Some(file),
        ..Default::default()
    })
    .expect("the loader accepts a bare address");
    let list = loaded.webhooks.allow_networks.clone();
    let one: ipnet::IpNet = "127.0.0.1/32".parse().unwrap();
    assert_eq!(list, [one], "a bare address stands for that one address");
    assert!(
        !loaded.webhooks.options().allow_networks.is_empty(),
        "the delivery client gets the allowed address"
    );
    let h = start(engine, |c| c.webhooks.allow_networks = list.clone()).await;
    let rx = receiver(200).await;
    let res = h
        .send(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/bare") })),
        )
        .await;
    let text = res.status();
    assert_eq!(text, 201, "127.0.0.1 is allowed by the configuration");
    let ep: Value = res.json().await.unwrap();
    let d = test_send(&h, &id_of(&ep)).await;
    eventually!("the delivery", {
        let detail = h.delivery(&d.to_string()).await;
        (detail["status"] == "delivered").then_some(())
    });
    assert_eq!(rx.at("/bare").len(), 1);
}

async fn stripe_connect_events_find_their_shop_by_the_account_id_as_stripe_writes_it(
    engine: Engine,
) {
    let h = start(engine, |_| {}).await;
    // Stripe account ids are mixed case (acct_1032D82eZvKYlo2C).
    let linked = h
        .link("stripe", json!({ "account": "acct_1032D82eZvKYlo2C" }))
        .await;
    let body = json!({
        "id": "evt_connect_1",
        "object": "event",
        "account": "acct_1032D82eZvKYlo2C",
        "type": "payment_intent.succeeded",
        "data": { "object": { "id": "pi_9" } }
    })
    .to_string();
    let t = now_secs();
    let res = post_stripe(
        &h.app,
        &format!("t={t},v1={}", stripe_v1(STRIPE_SECRET, t, &body)),
        &body,
    )
    .await;
    let ack: Value = res.json().await.unwrap();
    assert_eq!(
        ack["status"], "unhandled",
        "matched to the shop that linked {}: {ack}",
        linked["account"]
    );
}

both_engines!(a_resend_of_a_waiting_delivery_leaves_one_job_to_attempt_it);

async fn a_resend_of_a_waiting_delivery_leaves_one_job_to_attempt_it(engine: Engine) {
    let h = start(engine, without_workers).await;
    let rx = receiver(200).await;
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/once") })),
            201,
        )
        .await;
    let d = test_send(&h, &id_of(&ep)).await;
    let next_job = |db: shopkeep_store::Db| async move {
        on_pool!(&db, pool => sqlx::query_scalar::<_, Option<Uuid>>(
            "SELECT next_job FROM webhook_deliveries WHERE id = $1").bind(d).fetch_one(pool).await)
        .unwrap()
        .expect("a waiting delivery names its job")
    };
    let first = next_job(h.app.db.clone()).await;
    h.json(
        Method::POST,
        &format!("/api/v1/webhooks/deliveries/{d}/resend"),
        None,
        202,
    )
    .await;
    let second = next_job(h.app.db.clone()).await;
    assert_ne!(first, second, "the resend's job replaces the waiting one");
    let stale = h.attempt_by(d, now_micros(), Some(first)).await.unwrap();
    assert!(matches!(stale, Outcome::Skipped { .. }), "{stale:?}");
    let fresh = h.attempt_by(d, now_micros(), Some(second)).await.unwrap();
    assert!(matches!(fresh, Outcome::Delivered { .. }), "{fresh:?}");
    assert_eq!(rx.at("/once").len(), 1, "the receiver got the message once");
}

both_engines!(
    shopify_lifecycle_and_privacy_topics_change_what_shopkeep_keeps,
    an_endpoint_rate_limit_postpones_attempts_without_counting_them,
    webhook_metrics_count_receipts_and_deliveries,
);

/// A processed receipt: waits until the receipt `id` reads `processed`.
async fn processed(h: &Hooks, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = h.get(&format!("/api/v1/webhooks/receipts/{id}")).await;
        if r["status"] == "processed" {
            return r;
        }
        assert!(Instant::now() < deadline, "receipt not processed: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shopify_lifecycle_and_privacy_topics_change_what_shopkeep_keeps(engine: Engine) {
    let h = start(engine, |_| {}).await;
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    // Two orders of customer 7 and one of customer 8 arrive.
    let mut ids = Vec::new();
    for (n, customer) in [(501, 7), (502, 7), (503, 8)] {
        let mut body: Value = serde_json::from_str(&shopify_order_body(n)).unwrap();
        body["customer"] = json!({ "id": customer });
        let body = body.to_string();
        let ack = shopify_signed(
            &h.app,
            "orders/create",
            SHOP_DOMAIN,
            &format!("evt-{n}"),
            &body,
        )
        .await;
        ids.push(ack["receipt_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        processed(&h, id).await;
    }
    assert_eq!(h.shopify_orders().await.len(), 3);

    // A data request is answered from what is held, and audited.
    let request = json!({
        "shop_id": 1, "shop_domain": SHOP_DOMAIN, "customer": { "id": 7 },
        "orders_requested": [501, 502, 999]
    })
    .to_string();
    let ack = shopify_signed(
        &h.app,
        "customers/data_request",
        SHOP_DOMAIN,
        "evt-dr",
        &request,
    )
    .await;
    processed(&h, ack["receipt_id"].as_str().unwrap()).await;
    let audit = h.get("/api/v1/audit?limit=100").await;
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["action"] == "shopify.customer_data_requested")
        .cloned()
        .expect("the data request is audited");
    assert_eq!(entry["target"], "7");
    assert_eq!(entry["detail"]["orders_held"], 2, "{entry}");

    // Redacting customer 7 erases the bodies of that customer's order receipts, not others'.
    let redact = json!({
        "shop_id": 1, "shop_domain": SHOP_DOMAIN, "customer": { "id": 7 },
        "orders_to_redact": [501, 502]
    })
    .to_string();
    let ack = shopify_signed(&h.app, "customers/redact", SHOP_DOMAIN, "evt-cr", &redact).await;
    processed(&h, ack["receipt_id"].as_str().unwrap()).await;
    for (id, erased) in [(&ids[0], true), (&ids[1], true), (&ids[2], false)] {
        let r = h.get(&format!("/api/v1/webhooks/receipts/{id}")).await;
        assert_eq!(r["redacted_at"].is_string(), erased, "{r}");
        assert_eq!(r["body"].as_str().unwrap().is_empty(), erased, "{r}");
    }
    // A redacted receipt cannot be replayed.
    let res = h
        .send(
            Method::POST,
            &format!("/api/v1/webhooks/receipts/{}/replay", ids[0]),
            None,
        )
        .await;
    assert_eq!(problem(res, 409).await["code"], "redacted");

    // Uninstalling marks the integration.
    let ack = shopify_signed(
        &h.app,
        "app/uninstalled",
        SHOP_DOMAIN,
        "evt-un",
        &json!({ "id": 1 }).to_string(),
    )
    .await;
    processed(&h, ack["receipt_id"].as_str().unwrap()).await;
    let links = h.get("/api/v1/integrations").await;
    assert!(links[0]["uninstalled_at"].is_string(), "{links}");

    // shop/redact erases every Shopify receipt body of the shop and removes the integration.
    let ack = shopify_signed(
        &h.app,
        "shop/redact",
        SHOP_DOMAIN,
        "evt-sr",
        &json!({ "shop_id": 1, "shop_domain": SHOP_DOMAIN }).to_string(),
    )
    .await;
    let receipt = ack["receipt_id"].as_str().unwrap().to_string();
    processed(&h, &receipt).await;
    let r = h
        .get(&format!("/api/v1/webhooks/receipts/{}", ids[2]))
        .await;
    assert!(r["redacted_at"].is_string(), "{r}");
    assert_eq!(
        r["status"], "processed",
        "erasing keeps how processing went: {r}"
    );
    assert_eq!(h.get("/api/v1/integrations").await, json!([]));
    // Later webhooks from that shop no longer find it.
    let ack = shopify_signed(
        &h.app,
        "orders/create",
        SHOP_DOMAIN,
        "evt-late",
        &shopify_order_body(504),
    )
    .await;
    assert_eq!(ack["status"], "orphaned");
}

async fn an_endpoint_rate_limit_postpones_attempts_without_counting_them(engine: Engine) {
    let h = start(engine, without_workers).await;
    let rx = receiver(200).await;
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/limited"), "rate_per_second": 1 })),
            201,
        )
        .await;
    let first = test_send(&h, &id_of(&ep)).await;
    let second = test_send(&h, &id_of(&ep)).await;
    let t = now_micros();
    assert!(matches!(
        h.attempt(first, t).await,
        Outcome::Delivered { .. }
    ));
    // One per second: the second delivery at the same instant waits about a second.
    match h.attempt(second, t).await {
        Outcome::Postponed { at } => {
            assert!(at > t && at <= t + 1_000_000, "postponed to {at}, now {t}")
        }
        other => panic!("expected a postponement: {other:?}"),
    }
    let d = h.delivery(&second.to_string()).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["attempts"], 0, "a postponement is not an attempt: {d}");
    assert!(d["attempts_log"].as_array().unwrap().is_empty());
    // Once the slot opens it goes out.
    assert!(matches!(
        h.attempt(second, t + 1_000_000).await,
        Outcome::Delivered { .. }
    ));
    assert_eq!(rx.at("/limited").len(), 2);
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn webhook_metrics_count_receipts_and_deliveries(engine: Engine) {
    let h = start(engine, without_workers).await;
    let scrape = || async { h.app.get("/metrics").await.text().await.unwrap() };
    // The recorder is shared by every app in this test process: compare before and after.
    let before = scrape().await;
    let body = shopify_order_body(601);
    let bad = post_shopify(
        &h.app,
        Some("bm90IGl0"),
        "orders/create",
        SHOP_DOMAIN,
        "evt-m1",
        &body,
    )
    .await;
    assert_eq!(bad.status(), 401);
    shopify_signed(&h.app, "products/update", SHOP_DOMAIN, "evt-m2", &body).await;
    let rx = receiver(200).await;
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/m") })),
            201,
        )
        .await;
    let d = test_send(&h, &id_of(&ep)).await;
    assert!(matches!(
        h.attempt(d, now_micros()).await,
        Outcome::Delivered { .. }
    ));
    let after = scrape().await;
    let grew = |m: &str| metric(&after, m) - metric(&before, m);
    assert!(
        grew(r#"shopkeep_webhook_receipts_total{provider="shopify",topic="",result="rejected"}"#)
            >= 1.0,
        "{after}"
    );
    assert!(
        grew(
            r#"shopkeep_webhook_receipts_total{provider="shopify",topic="other",result="orphaned"}"#
        ) >= 1.0,
        "{after}"
    );
    // The test's own service made the attempt; the app's recorder is the process's, so it counts.
    assert!(
        grew(r#"shopkeep_webhook_deliveries_total{outcome="delivered"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains("shopkeep_webhook_delivery_seconds_bucket"),
        "{after}"
    );
    assert!(
        metric(&after, r#"shopkeep_webhook_endpoints{state="enabled"}"#) >= 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_webhook_operation() {
    let doc = shopkeep_server::openapi_document();
    let paths = serde_json::to_value(&doc).unwrap()["paths"].clone();
    for (path, method) in [
        ("/api/v1/webhooks/endpoints", "post"),
        ("/api/v1/webhooks/endpoints/{id}", "put"),
        ("/api/v1/webhooks/endpoints/{id}/secret", "get"),
        ("/api/v1/webhooks/endpoints/{id}/rotate-secret", "post"),
        ("/api/v1/webhooks/endpoints/{id}/test", "post"),
        ("/api/v1/webhooks/endpoints/{id}/recover", "post"),
        ("/api/v1/webhooks/deliveries", "get"),
        ("/api/v1/webhooks/deliveries/{id}/resend", "post"),
        ("/api/v1/webhooks/receipts/{id}/replay", "post"),
        ("/api/v1/admin/webhooks/receipts", "get"),
        ("/api/v1/integrations/{provider}", "put"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is documented"
        );
    }
}

both_engines!(the_operator_pages_show_endpoints_failures_and_receipts_to_platform_admins);

async fn the_operator_pages_show_endpoints_failures_and_receipts_to_platform_admins(
    engine: Engine,
) {
    let h = start(engine, without_workers).await;
    let page = |path: String, user: &'static str| {
        let req = h.app.client.get(h.app.url(&path));
        async move { req.basic_auth(user, Some(PASSWORD)).send().await.unwrap() }
    };
    // An orphaned receipt whose topic tries to inject markup, and a delivery that failed for good.
    let body = shopify_order_body(701);
    let ack = shopify_signed(
        &h.app,
        "<script>x</script>",
        "nobody.myshopify.com",
        "evt-op",
        &body,
    )
    .await;
    let receipt = ack["receipt_id"].as_str().unwrap().to_string();
    let rx = receiver(500).await;
    let ep = h
        .json(
            Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({ "url": rx.url("/down") })),
            201,
        )
        .await;
    let d = test_send(&h, &id_of(&ep)).await;
    let mut t = now_micros();
    loop {
        match h.attempt(d, t).await {
            Outcome::Retrying { next_at, .. } => t = next_at,
            Outcome::Failed { .. } => break,
            other => panic!("{other:?}"),
        }
    }

    let res = h.app.get("/admin/webhooks").await;
    assert_eq!(res.status(), 401);
    h.app.customer("hookpeek").await;
    assert_eq!(
        page("/admin/webhooks".into(), "hookpeek").await.status(),
        403
    );

    let res = page("/admin/webhooks".into(), "root").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = res.text().await.unwrap();
    assert!(html.contains(&rx.url("/down")), "the endpoint is listed");
    assert!(html.contains("failing"), "its failure run shows");
    assert!(
        html.contains(&format!("/admin/webhooks/deliveries/{}/{d}", h.shop)),
        "the failed delivery links to its page"
    );
    assert!(
        html.contains(&format!("/admin/webhooks/receipts/{receipt}")),
        "the receipt is listed"
    );
    assert!(
        html.contains("nobody.myshopify.com (no shop)"),
        "an orphan names its account"
    );
    assert!(!html.contains("<script>x"), "markup in a topic is escaped");
    assert!(html.contains("&lt;script&gt;x"));
    let orphans = page("/admin/webhooks?status=orphaned".into(), "root")
        .await
        .text()
        .await
        .unwrap();
    assert!(orphans.contains(&receipt));
    let processed_only = page("/admin/webhooks?status=processed".into(), "root")
        .await
        .text()
        .await
        .unwrap();
    assert!(!processed_only.contains(&receipt));

    let detail = page(format!("/admin/webhooks/receipts/{receipt}"), "root").await;
    assert_eq!(detail.status(), 200);
    let detail = detail.text().await.unwrap();
    assert!(
        detail.contains("&quot;id&quot;: 701"),
        "the body is shown, escaped: {detail}"
    );
    assert!(detail.contains("x-shopify-topic"), "the headers are shown");

    let delivery = page(format!("/admin/webhooks/deliveries/{}/{d}", h.shop), "root").await;
    assert_eq!(delivery.status(), 200);
    let delivery = delivery.text().await.unwrap();
    assert_eq!(
        delivery.matches("<li><strong>Attempt").count(),
        8,
        "every attempt is shown"
    );
    assert!(delivery.contains("webhook.test"));
    assert_eq!(
        page("/admin/webhooks/receipts/nope".into(), "root")
            .await
            .status(),
        404
    );
    assert_eq!(
        page(
            format!("/admin/webhooks/deliveries/{}/{}", Uuid::now_v7(), d),
            "root"
        )
        .await
        .status(),
        404,
        "a delivery is found only under its own shop"
    );
}

both_engines!(webhooks_arriving_together_are_each_stored_and_answered_after_one_shared_commit);

async fn webhooks_arriving_together_are_each_stored_and_answered_after_one_shared_commit(
    engine: Engine,
) {
    let h = start(engine, without_workers).await;
    h.link("shopify", json!({ "account": SHOP_DOMAIN })).await;
    let body = shopify_order_body(9001);
    // 40 distinct events and 8 copies of one more, all at once: they share transactions.
    let ids: Vec<String> = (0..40)
        .map(|i| format!("evt-burst-{i}"))
        .chain((0..8).map(|_| "evt-burst-copy".to_string()))
        .collect();
    let acks = futures_util::future::join_all(
        ids.iter()
            .map(|id| shopify_signed(&h.app, "orders/create", SHOP_DOMAIN, id, &body)),
    )
    .await;
    assert_eq!(h.receipts_in_db().await, 41);
    let distinct: std::collections::BTreeSet<&str> = acks[..40]
        .iter()
        .map(|a| a["receipt_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        distinct.len(),
        40,
        "each distinct event has its own receipt"
    );
    assert!(
        acks[..40].iter().all(|a| a["status"] == "queued"),
        "{acks:?}"
    );
    let copies = &acks[40..];
    assert_eq!(
        copies.iter().filter(|a| a["status"] == "queued").count(),
        1,
        "{copies:?}"
    );
    assert!(
        copies
            .iter()
            .all(|a| a["receipt_id"] == copies[0]["receipt_id"]),
        "{copies:?}"
    );
    let jobs = on_pool!(&h.app.db, pool => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'webhooks.process'").fetch_one(pool).await)
    .unwrap();
    assert_eq!(jobs, 41, "one processing job per stored receipt");
}

both_engines!(a_receipt_batch_stores_each_event_once_and_queues_only_the_new_ones);

/// The receipt writer's batch: one insert for all of them; a repeat of an event stored before, or
/// earlier in the same batch, is a duplicate of the first receipt and queues no job.
async fn a_receipt_batch_stores_each_event_once_and_queues_only_the_new_ones(engine: Engine) {
    use shopkeep_store::webhooks::{NewReceipt, Stored, insert_receipts};
    let app = crate::harness::spawn_app(engine).await;
    let db = &app.db;
    let receipt = |event: &str| NewReceipt {
        id: Uuid::now_v7(),
        provider: "test-batch".into(),
        event_id: event.into(),
        topic: "orders/create".into(),
        shop_id: None,
        shop_ref: None,
        resource_id: None,
        status: "orphaned".into(),
        headers: "{}".into(),
        body: br#"{"id":1}"#.to_vec(),
        received_at: crate::jobs_store::NOW,
    };
    let job = |r: &NewReceipt| shopkeep_store::jobs::NewJob {
        args: format!(r#"{{"receipt":"{}"}}"#, r.id),
        ..crate::jobs_store::job("test.batch")
    };
    let before = receipt("e1");
    let first_id = before.id;
    let j = job(&before);
    assert!(matches!(
        insert_receipts(db, &[(before, Some(j))]).await.unwrap()[..],
        [Stored::New]
    ));
    let batch: Vec<_> = ["e1", "e2", "e2", "e3"]
        .iter()
        .map(|e| {
            let r = receipt(e);
            let j = job(&r);
            (r, Some(j))
        })
        .collect();
    let e2 = batch[1].0.id;
    let out = insert_receipts(db, &batch).await.unwrap();
    assert_eq!(out.len(), 4);
    assert!(
        matches!(out[0], Stored::Duplicate(id) if id == first_id),
        "{:?}",
        out[0]
    );
    assert!(matches!(out[1], Stored::New), "{:?}", out[1]);
    assert!(
        matches!(out[2], Stored::Duplicate(id) if id == e2),
        "{:?}",
        out[2]
    );
    assert!(matches!(out[3], Stored::New), "{:?}", out[3]);
    let (receipts, jobs): (i64, i64) = on_pool!(db, pool => {
        let r: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_receipts WHERE provider = 'test-batch'")
            .fetch_one(pool).await.unwrap();
        let j: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'test.batch'")
            .fetch_one(pool).await.unwrap();
        (r, j)
    });
    assert_eq!((receipts, jobs), (3, 3));
}
