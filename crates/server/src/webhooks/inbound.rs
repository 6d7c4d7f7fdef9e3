//! Inbound webhooks: `POST /webhooks/{shopify,stripe,printify}` and
//! `POST /webhooks/standard/{shop_id}`.
//!
//! Each request is verified over its raw body bytes before anything is stored; a missing or bad
//! signature is a 401 that stores nothing (and is counted and logged). A verified request is
//! stored as a receipt, de-duplicated on the provider's event id, with its processing job in the
//! same transaction; the answer follows the commit.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Serialize;
use shopkeep_domain::webhooks::payload::{shopify_resource_id, text_field};
use shopkeep_domain::webhooks::{SignatureError, printify, shopify, standard, stripe};
use shopkeep_domain::{ShopId, Timestamp};
use shopkeep_store::webhooks::{Integration, NewReceipt, Stored};
use shopkeep_store::{ShopScope, StoreError, accounts};
use uuid::Uuid;

use super::{QUEUE, WebhookService, integration_aad, process_job, topics};
use crate::{ApiError, AppState};

/// The inbound routes (not in the OpenAPI document: providers call them, not API clients).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/shopify", post(shopify_hook))
        .route("/webhooks/shopify/{*topic}", post(shopify_hook))
        .route("/webhooks/stripe", post(stripe_hook))
        .route("/webhooks/printify", post(printify_hook))
        .route("/webhooks/standard/{shop}", post(standard_hook))
}

/// The answer to a stored or repeated webhook.
#[derive(Debug, Serialize)]
pub struct Ack {
    /// The receipt (the first one, for a duplicate).
    pub receipt_id: Uuid,
    /// `queued`, `duplicate`, `unhandled` or `orphaned`.
    pub status: &'static str,
}

fn rejected(provider: &'static str, e: &SignatureError) -> ApiError {
    ::metrics::counter!("shopkeep_webhook_receipts_total", "provider" => provider, "topic" => "", "result" => "rejected")
        .increment(1);
    tracing::warn!(provider, reason = e.code(), "inbound webhook refused: {e}");
    ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The headers kept with a receipt: the provider's own and a few general ones.
fn kept_headers(h: &HeaderMap, prefixes: &[&str]) -> String {
    let mut out = serde_json::Map::new();
    for (name, value) in h {
        let n = name.as_str();
        let keep =
            prefixes.iter().any(|p| n.starts_with(p)) || matches!(n, "content-type" | "user-agent");
        if keep && let Ok(v) = value.to_str() {
            out.insert(n.to_string(), serde_json::Value::String(v.to_string()));
        }
    }
    serde_json::Value::Object(out).to_string()
}

fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(not_json)
}

fn not_json(e: serde_json::Error) -> ApiError {
    ApiError::bad_request("malformed_json", format!("the body is not JSON: {e}"))
}

/// The event's `id` and `type`, which Stripe and Printify events carry at the top.
fn id_and_type(v: &serde_json::Value) -> Result<(String, String), ApiError> {
    let id = text_field(v, &["id"])
        .ok_or_else(|| ApiError::bad_request("missing_field", "the event has no id"))?;
    let kind = text_field(v, &["type"])
        .ok_or_else(|| ApiError::bad_request("missing_field", "the event has no type"))?;
    Ok((id, kind))
}

/// An integration's own webhook secrets in plain text, current first.
fn integration_secrets(svc: &WebhookService, i: &Integration) -> Result<Vec<String>, ApiError> {
    let aad = integration_aad(i.shop_id, &i.provider);
    [&i.secret, &i.previous_secret]
        .into_iter()
        .flatten()
        .map(|s| svc.open(s, &aad).map_err(ApiError::internal))
        .collect()
}

/// What a verified webhook says about itself.
struct Parsed {
    provider: &'static str,
    event_id: String,
    topic: String,
    shop: Option<Uuid>,
    shop_ref: Option<String>,
    resource_id: Option<String>,
    headers: String,
}

async fn store_receipt(
    state: &AppState,
    p: Parsed,
    body: Bytes,
) -> Result<(StatusCode, Json<Ack>), ApiError> {
    let now = Timestamp::now().0;
    let id = Uuid::now_v7();
    let handled = topics::handles(p.provider, &p.topic);
    let status = match (p.shop, handled) {
        (None, _) => "orphaned",
        (Some(_), false) => "unhandled",
        (Some(_), true) => "queued",
    };
    let job = (status == "queued").then(|| process_job(id, p.shop, now));
    let receipt = NewReceipt {
        id,
        provider: p.provider.into(),
        event_id: p.event_id,
        topic: p.topic.clone(),
        shop_id: p.shop,
        shop_ref: p.shop_ref,
        resource_id: p.resource_id,
        status: status.into(),
        headers: p.headers,
        body: body.to_vec(),
        received_at: now,
    };
    let queued = job.is_some();
    let stored = state.receipts.write((receipt, job)).await?;
    let (receipt_id, result) = match stored {
        Stored::New => {
            if queued {
                state.jobs.wake_queues([QUEUE]);
            }
            (id, status)
        }
        Stored::Duplicate(first) => (first, "duplicate"),
    };
    let topic_label = if handled {
        p.topic
    } else {
        "other".to_string()
    };
    ::metrics::counter!("shopkeep_webhook_receipts_total", "provider" => p.provider, "topic" => topic_label, "result" => result)
        .increment(1);
    Ok((
        StatusCode::OK,
        Json(Ack {
            receipt_id,
            status: result,
        }),
    ))
}

fn secrets(list: &[shopkeep_domain::Secret<String>]) -> Vec<&[u8]> {
    list.iter().map(|s| s.expose().as_bytes()).collect()
}

async fn shopify_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Ack>), ApiError> {
    let svc = state.webhooks.clone();
    shopify::verify(
        &secrets(&svc.opts.shopify_secrets),
        header(&headers, shopify::HMAC_HEADER),
        &body,
    )
    .map_err(|e| rejected("shopify", &e))?;
    let topic = header(&headers, shopify::TOPIC_HEADER)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_header", "X-Shopify-Topic is required"))?
        .to_string();
    let event_id = header(&headers, shopify::EVENT_ID_HEADER)
        .or_else(|| header(&headers, shopify::WEBHOOK_ID_HEADER))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_header",
                "X-Shopify-Event-Id or X-Shopify-Webhook-Id is required",
            )
        })?
        .to_string();
    let domain = header(&headers, shopify::SHOP_HEADER).map(str::to_ascii_lowercase);
    let shop = match &domain {
        Some(d) if shopify::valid_shop_domain(d) => svc
            .integrations
            .by_account(&state.db, "shopify", d)
            .await?
            .map(|i| i.shop_id),
        _ => None,
    };
    let resource_id = shopify_resource_id(&body);
    let parsed = Parsed {
        provider: "shopify",
        event_id,
        topic,
        shop,
        shop_ref: domain,
        resource_id,
        headers: kept_headers(&headers, &["x-shopify-"]),
    };
    store_receipt(&state, parsed, body).await
}

async fn stripe_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Ack>), ApiError> {
    let svc = state.webhooks.clone();
    let keys: Vec<&str> = svc
        .opts
        .stripe_secrets
        .iter()
        .map(|s| s.expose().as_str())
        .collect();
    stripe::verify(
        &keys,
        header(&headers, stripe::HEADER),
        &body,
        Timestamp::now().0.div_euclid(1_000_000),
        stripe::TOLERANCE_SECS,
    )
    .map_err(|e| rejected("stripe", &e))?;
    let v = json_body(&body)?;
    let (event_id, topic) = id_and_type(&v)?;
    let mut shop = None;
    if let Some(id) = text_field(&v, &["data", "object", "metadata", "shop_id"])
        .and_then(|s| Uuid::parse_str(&s).ok())
    {
        match accounts::get_shop(&state.db, ShopScope::verified(ShopId(id))).await {
            Ok(_) => shop = Some(id),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let account = text_field(&v, &["account"]);
    if shop.is_none()
        && let Some(a) = &account
    {
        shop = svc
            .integrations
            .by_account(&state.db, "stripe", a)
            .await?
            .map(|i| i.shop_id);
    }
    let parsed = Parsed {
        provider: "stripe",
        event_id,
        topic,
        shop,
        shop_ref: account,
        resource_id: text_field(&v, &["data", "object", "id"]),
        headers: kept_headers(&headers, &["stripe-"]),
    };
    store_receipt(&state, parsed, body).await
}

async fn printify_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Ack>), ApiError> {
    let svc = state.webhooks.clone();
    // The payload names the Printify shop, whose own secret (when set) is tried besides the
    // configured ones; nothing is acted on before the signature checks out.
    let payload = serde_json::from_slice::<serde_json::Value>(&body);
    let account = payload
        .as_ref()
        .ok()
        .and_then(|v| text_field(v, &["resource", "data", "shop_id"]));
    let integration = match &account {
        Some(a) => {
            svc.integrations
                .by_account(&state.db, "printify", a)
                .await?
        }
        None => None,
    };
    let owned = match &integration {
        Some(i) => integration_secrets(&svc, i)?,
        None => Vec::new(),
    };
    let mut keys = secrets(&svc.opts.printify_secrets);
    keys.extend(owned.iter().map(|s| s.as_bytes()));
    printify::verify(&keys, header(&headers, printify::HEADER), &body)
        .map_err(|e| rejected("printify", &e))?;
    let v = payload.map_err(not_json)?;
    let (event_id, topic) = id_and_type(&v)?;
    let parsed = Parsed {
        provider: "printify",
        event_id,
        topic,
        shop: integration.map(|i| i.shop_id),
        shop_ref: account,
        resource_id: text_field(&v, &["resource", "id"]),
        headers: kept_headers(&headers, &["x-pfy-"]),
    };
    store_receipt(&state, parsed, body).await
}

async fn standard_hook(
    State(state): State<AppState>,
    Path(shop): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Ack>), ApiError> {
    let svc = state.webhooks.clone();
    let not_configured = || rejected("standard", &SignatureError::NoSecret);
    let shop = Uuid::parse_str(&shop).map_err(|_| not_configured())?;
    let integration = svc
        .integrations
        .by_shop(&state.db, "standard", shop)
        .await?
        .ok_or_else(not_configured)?;
    let parsed_secrets: Vec<standard::WebhookSecret> = integration_secrets(&svc, &integration)?
        .iter()
        .filter_map(|s| standard::WebhookSecret::parse(s).ok())
        .collect();
    let refs: Vec<&standard::WebhookSecret> = parsed_secrets.iter().collect();
    let msg_id = header(&headers, standard::ID_HEADER);
    standard::verify(
        &refs,
        msg_id,
        header(&headers, standard::TIMESTAMP_HEADER),
        header(&headers, standard::SIGNATURE_HEADER),
        &body,
        Timestamp::now().0.div_euclid(1_000_000),
        standard::TOLERANCE_SECS,
    )
    .map_err(|e| rejected("standard", &e))?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let parsed = Parsed {
        provider: "standard",
        event_id: format!("{shop}:{}", msg_id.unwrap_or_default()),
        topic: text_field(&v, &["type"]).unwrap_or_else(|| "unknown".into()),
        shop: Some(shop),
        shop_ref: Some(integration.account),
        resource_id: text_field(&v, &["data", "id"]),
        headers: kept_headers(&headers, &["webhook-"]),
    };
    store_receipt(&state, parsed, body).await
}
