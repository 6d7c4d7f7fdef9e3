//! Webhooks API: outbound endpoints (CRUD, secret, rotation, test send, recovery), the delivery
//! log with attempts and resend, inbound receipts with replay, and the shop's integrations
//! (the provider accounts inbound webhooks are matched to). All of it needs `webhooks:admin`,
//! except the platform-wide receipt list and replay, which need `platform:admin`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shopkeep_domain::Timestamp;
use shopkeep_domain::accounts::Scope;
use shopkeep_domain::webhooks::{
    ip_allowed, literal_ip, parse_custom_headers, parse_endpoint_url, parse_filters, shopify,
    standard,
};
use shopkeep_store::ShopScope;
use shopkeep_store::webhooks::{
    self as store, DeliveryFilter, EndpointFields, ReceiptFilter, Resend,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Checks;
use crate::auth::Principal;
use crate::crypto::random_bytes;
use crate::extract::{ApiJson, ApiQuery};
use crate::webhooks::{QUEUE, deliver_job, endpoint_aad, integration_aad, process_job};
use crate::{ApiError, AppState, FieldError, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(endpoint_secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(test_send))
        .routes(routes!(recover))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(resend))
        .routes(routes!(list_receipts))
        .routes(routes!(get_receipt))
        .routes(routes!(replay))
        .routes(routes!(platform_receipts))
        .routes(routes!(platform_replay))
        .routes(routes!(list_integrations))
        .routes(routes!(put_integration, delete_integration))
}

fn admin(p: &Principal) -> Result<ShopScope, ApiError> {
    p.require(Scope::WebhooksAdmin)?;
    Ok(p.scope)
}

fn now() -> i64 {
    Timestamp::now().0
}

fn new_secret() -> String {
    standard::WebhookSecret::from_bytes(&random_bytes(32)).expose()
}

/// An outbound endpoint as shown (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointOut {
    /// Id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The owner's note.
    pub description: String,
    /// Event type filters (`order.created`, `order.*`, `*`); empty means every event.
    pub event_types: Vec<String>,
    /// Deliveries go out only while enabled.
    pub enabled: bool,
    /// Extra headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    /// At most this many deliveries per second (none: no limit).
    pub rate_per_second: Option<i32>,
    /// Since when every delivery has failed (RFC 3339), if they have.
    #[schema(value_type = Option<String>)]
    pub failing_since: Option<Timestamp>,
    /// Why shopkeep disabled the endpoint.
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs.
    #[schema(value_type = Option<String>)]
    pub previous_secret_until: Option<Timestamp>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
}

fn endpoint_out(e: &store::Endpoint) -> EndpointOut {
    EndpointOut {
        id: e.id,
        url: e.url.clone(),
        description: e.description.clone(),
        event_types: serde_json::from_str(&e.event_types).unwrap_or_default(),
        enabled: e.enabled == 1,
        headers: serde_json::from_str(&e.headers).unwrap_or_default(),
        rate_per_second: e.rate_per_second,
        failing_since: e.failing_since.map(Timestamp),
        disabled_reason: e.disabled_reason.clone(),
        previous_secret_until: e.previous_until.filter(|u| *u > now()).map(Timestamp),
        created_at: Timestamp(e.created_at),
        updated_at: Timestamp(e.updated_at),
    }
}

/// An endpoint to create, or the whole new state of one (PUT).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// `https://` or `http://` URL, at most 2048 characters.
    pub url: String,
    /// At most 500 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Event type filters; empty or absent means every event.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Extra headers (at most 20; not `webhook-*` or framing headers).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// 1-10,000 deliveries per second; absent means no limit.
    #[serde(default)]
    pub rate_per_second: Option<i32>,
    /// A `whsec_` secret of your own (create only); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

fn fields(state: &AppState, b: &EndpointIn) -> Result<EndpointFields, ApiError> {
    let mut c = Checks::default();
    let url = c.check(parse_endpoint_url("url", &b.url));
    if let Some(ip) = url.as_ref().and_then(literal_ip)
        && !ip_allowed(ip, &state.webhooks.opts.allow_networks)
    {
        c.0.push(FieldError::new(
            "body.url",
            "private_address",
            "deliveries to private, loopback or reserved addresses are not allowed",
        ));
    }
    let description = b.description.clone().unwrap_or_default();
    if description.chars().count() > 500 || description.chars().any(char::is_control) {
        c.0.push(FieldError::new(
            "body.description",
            "invalid",
            "at most 500 characters, no control characters",
        ));
    }
    let filters = c
        .check(parse_filters(
            "event_types",
            b.event_types.as_deref().unwrap_or(&[]),
        ))
        .unwrap_or_default();
    let headers = b.headers.clone().unwrap_or_default();
    if let Err(errs) = parse_custom_headers("headers", &headers) {
        c.0.extend(errs.into_iter().map(FieldError::from));
    }
    if let Some(r) = b.rate_per_second
        && !(1..=10_000).contains(&r)
    {
        c.0.push(FieldError::new(
            "body.rate_per_second",
            "out_of_range",
            "1 to 10000 deliveries per second",
        ));
    }
    c.finish()?;
    Ok(EndpointFields {
        url: url.map(|u| u.to_string()).unwrap_or_default(),
        description,
        event_types: serde_json::to_string(&filters).unwrap_or_else(|_| "[]".into()),
        enabled: b.enabled.unwrap_or(true),
        headers: serde_json::to_string(&headers).unwrap_or_else(|_| "{}".into()),
        rate_per_second: b.rate_per_second,
    })
}

/// The shop's outbound endpoints, oldest first.
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, description = "Endpoints", body = Vec<EndpointOut>)))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<EndpointOut>>, ApiError> {
    let scope = admin(&p)?;
    let rows = store::endpoints(&state.db, scope).await?;
    Ok(Json(rows.iter().map(endpoint_out).collect()))
}

/// An endpoint with its signing secret, shown on creation and by `GET .../secret`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreated {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    /// The `whsec_` secret deliveries are signed with.
    pub secret: String,
}

/// Creates an endpoint; its secret is generated unless one is given.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints", tag = "webhooks", security(("bearer" = [])), request_body = EndpointIn,
    responses((status = 201, description = "Created", body = EndpointCreated),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<EndpointIn>,
) -> Result<(StatusCode, Json<EndpointCreated>), ApiError> {
    let scope = admin(&p)?;
    let f = fields(&state, &body)?;
    let secret = match &body.secret {
        Some(s) => standard::WebhookSecret::parse(s)
            .map_err(|_| {
                ApiError::validation(vec![FieldError::new(
                    "body.secret",
                    "invalid",
                    "whsec_ followed by base64 of 24 to 64 bytes",
                )])
            })?
            .expose(),
        None => new_secret(),
    };
    // The sealed secret is bound to the row it belongs to, so the id is chosen here.
    let id = Uuid::now_v7();
    let sealed = state
        .webhooks
        .seal(&secret, &endpoint_aad(scope.shop_id().0, id));
    let e = store::create_endpoint(&state.db, scope, id, &f, &sealed, now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointCreated {
            endpoint: endpoint_out(&e),
            secret,
        }),
    ))
}

async fn found(state: &AppState, scope: ShopScope, id: Uuid) -> Result<store::Endpoint, ApiError> {
    store::endpoint(&state.db, scope, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such endpoint"))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 200, description = "The endpoint", body = EndpointOut),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json")))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<EndpointOut>, ApiError> {
    let scope = admin(&p)?;
    Ok(Json(endpoint_out(&found(&state, scope, id).await?)))
}

/// Replaces an endpoint's settings (its secret stays; rotate it separately). Enabling a
/// disabled endpoint starts its failure count afresh.
#[utoipa::path(put, path = "/api/v1/webhooks/endpoints/{id}", tag = "webhooks", security(("bearer" = [])), request_body = EndpointIn,
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 200, description = "Updated", body = EndpointOut),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<EndpointIn>,
) -> Result<Json<EndpointOut>, ApiError> {
    let scope = admin(&p)?;
    if body.secret.is_some() {
        return Err(ApiError::validation(vec![FieldError::new(
            "body.secret",
            "not_allowed",
            "rotate the secret with POST .../rotate-secret",
        )]));
    }
    let f = fields(&state, &body)?;
    let e = store::update_endpoint(&state.db, scope, id, &f, now())
        .await?
        .ok_or_else(|| ApiError::not_found("no such endpoint"))?;
    Ok(Json(endpoint_out(&e)))
}

/// Deletes an endpoint; its pending deliveries are skipped.
#[utoipa::path(delete, path = "/api/v1/webhooks/endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let scope = admin(&p)?;
    if store::delete_endpoint(&state.db, scope, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such endpoint"))
    }
}

/// The endpoint's current signing secret.
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints/{id}/secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 200, description = "The endpoint with its secret", body = EndpointCreated),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json")))]
pub async fn endpoint_secret(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<EndpointCreated>, ApiError> {
    let scope = admin(&p)?;
    let e = found(&state, scope, id).await?;
    let secret = state
        .webhooks
        .open(&e.secret, &endpoint_aad(scope.shop_id().0, e.id))
        .map_err(ApiError::internal)?;
    Ok(Json(EndpointCreated {
        endpoint: endpoint_out(&e),
        secret,
    }))
}

/// Replaces the signing secret. The old one keeps signing beside the new one for
/// `webhooks.secret_overlap` (24 h by default), so receivers can switch without losing a message.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 200, description = "The endpoint with its new secret", body = EndpointCreated),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<EndpointCreated>, ApiError> {
    let scope = admin(&p)?;
    found(&state, scope, id).await?;
    let secret = new_secret();
    let sealed = state
        .webhooks
        .seal(&secret, &endpoint_aad(scope.shop_id().0, id));
    let overlap = i64::try_from(state.webhooks.opts.secret_overlap.as_micros()).unwrap_or(0);
    store::rotate_secret(&state.db, scope, id, &sealed, now() + overlap, now()).await?;
    let e = found(&state, scope, id).await?;
    Ok(Json(EndpointCreated {
        endpoint: endpoint_out(&e),
        secret,
    }))
}

/// A queued delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// The delivery (for a test send) or how many deliveries were queued.
    pub delivery_id: Option<Uuid>,
    /// Deliveries queued.
    pub queued: u64,
}

/// Sends a `webhook.test` message to this endpoint only.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 202, description = "Queued", body = Queued),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json")))]
pub async fn test_send(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let scope = admin(&p)?;
    found(&state, scope, id).await?;
    let at = now();
    let payload = serde_json::json!({
        "type": "webhook.test",
        "shop_id": scope.shop_id().0,
        "endpoint_id": id,
        "at": Timestamp(at).to_rfc3339(),
    })
    .to_string();
    let resource = id.to_string();
    let d = store::send_direct(
        &state.db,
        scope,
        &store::DirectMessage {
            endpoint_id: id,
            event_type: "webhook.test",
            resource_id: &resource,
            payload: &payload,
        },
        at,
        &deliver_job,
    )
    .await?;
    state.jobs.wake_queues([QUEUE]);
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            delivery_id: Some(d),
            queued: 1,
        }),
    ))
}

/// Which failed deliveries to send again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// Every failed or skipped delivery created at or after this time (RFC 3339).
    pub since: String,
}

/// Sends every failed or skipped delivery of this endpoint since a time again, from the start of
/// the retry schedule.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{id}/recover", tag = "webhooks", security(("bearer" = [])), request_body = RecoverIn,
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 202, description = "Queued", body = Queued),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
pub async fn recover(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<RecoverIn>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let scope = admin(&p)?;
    let since = Timestamp::parse_rfc3339(&body.since).ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "body.since",
            "invalid",
            "an RFC 3339 time such as 2026-12-01T00:00:00Z",
        )])
    })?;
    found(&state, scope, id).await?;
    let n = store::resend(
        &state.db,
        scope,
        Resend::FailedSince {
            endpoint: id,
            since: since.0,
        },
        now(),
        &deliver_job,
    )
    .await?;
    state.jobs.wake_queues([QUEUE]);
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            delivery_id: None,
            queued: n,
        }),
    ))
}

/// A delivery as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// Id.
    pub id: Uuid,
    /// The message, as sent in `webhook-id` (`msg_<hex>`).
    pub message_id: String,
    /// Endpoint.
    pub endpoint_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// The resource the event is about.
    pub resource_id: String,
    /// `pending`, `delivered`, `failed`, `skipped`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due.
    #[schema(value_type = Option<String>)]
    pub next_attempt_at: Option<Timestamp>,
    /// The last HTTP status.
    pub last_status: Option<i32>,
    /// The last error.
    pub last_error: Option<String>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
}

fn delivery_out(d: &store::Delivery) -> DeliveryOut {
    DeliveryOut {
        id: d.id,
        message_id: format!("msg_{}", d.message_id.simple()),
        endpoint_id: d.endpoint_id,
        event_type: d.event_type.clone(),
        resource_id: d.resource_id.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at.map(Timestamp),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        created_at: Timestamp(d.created_at),
        updated_at: Timestamp(d.updated_at),
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// Items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Filters of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Endpoint.
    pub endpoint_id: Option<Uuid>,
    /// `pending`, `delivered`, `failed`, `skipped`.
    pub status: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Cuts rows fetched with `limit + 1` into a page.
fn page_of<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    id: impl Fn(&R) -> Uuid,
    out: impl Fn(&R) -> T,
) -> Page<T> {
    let next_cursor = super::next_cursor(&mut rows, limit, id);
    Page {
        items: rows.iter().map(out).collect(),
        next_cursor,
    }
}

/// The delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/deliveries", tag = "webhooks", security(("bearer" = [])), params(DeliveryQuery),
    responses((status = 200, description = "A page", body = Page<DeliveryOut>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json")))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<Page<DeliveryOut>>, ApiError> {
    let scope = admin(&p)?;
    let mut errors = Vec::new();
    super::check_one_of(
        "query.status",
        q.status.as_ref(),
        &["pending", "delivered", "failed", "skipped"],
        &mut errors,
    );
    let (limit, before) = super::list_params(q.limit, q.cursor.as_deref(), errors)?;
    let rows = store::deliveries(
        &state.db,
        scope,
        &DeliveryFilter {
            endpoint: q.endpoint_id,
            status: q.status,
            event_type: q.event_type,
            before,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(Json(page_of(rows, limit, |r| r.id, delivery_out)))
}

/// One attempt as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    /// From 1.
    pub attempt: i32,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub started_at: Timestamp,
    /// Milliseconds the endpoint took.
    pub latency_ms: f64,
    /// The HTTP status, when one came back.
    pub status_code: Option<i32>,
    /// What went wrong without a status (timeout, refused address, connection).
    pub error: Option<String>,
    /// The first 4 KB of the response body.
    pub response_body: String,
}

/// A delivery with its message and every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// The JSON body that is sent.
    pub payload: serde_json::Value,
    /// Attempts, first first.
    pub attempts_log: Vec<AttemptOut>,
}

/// One delivery with its payload and attempts.
#[utoipa::path(get, path = "/api/v1/webhooks/deliveries/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses((status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 404, description = "No such delivery", body = Problem, content_type = "application/problem+json")))]
pub async fn get_delivery(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let scope = admin(&p)?;
    let d = store::delivery(&state.db, scope, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    let payload = store::message_payload(&state.db, scope, d.message_id)
        .await?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let attempts = store::attempts(&state.db, scope, id).await?;
    Ok(Json(DeliveryDetail {
        delivery: delivery_out(&d),
        payload,
        attempts_log: attempts
            .iter()
            .map(|a| AttemptOut {
                attempt: a.attempt,
                started_at: Timestamp(a.started_at),
                latency_ms: a.latency_us as f64 / 1000.0,
                status_code: a.status_code,
                error: a.error.clone(),
                response_body: a.response_body.clone(),
            })
            .collect(),
    }))
}

/// Sends a delivery again now, from the start of the retry schedule.
#[utoipa::path(post, path = "/api/v1/webhooks/deliveries/{id}/resend", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses((status = 202, description = "Queued", body = Queued),
        (status = 404, description = "No such delivery", body = Problem, content_type = "application/problem+json")))]
pub async fn resend(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let scope = admin(&p)?;
    let n = store::resend(&state.db, scope, Resend::One(id), now(), &deliver_job).await?;
    if n == 0 {
        return Err(ApiError::not_found("no such delivery"));
    }
    state.jobs.wake_queues([QUEUE]);
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            delivery_id: Some(id),
            queued: n,
        }),
    ))
}

/// An inbound receipt as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptOut {
    /// Id.
    pub id: Uuid,
    /// `shopify`, `stripe`, `printify`, `standard`.
    pub provider: String,
    /// The provider's event id.
    pub event_id: String,
    /// Topic or event type.
    pub topic: String,
    /// The shop it was matched to.
    pub shop_id: Option<Uuid>,
    /// The provider's name for the shop, as received.
    pub shop_ref: Option<String>,
    /// `queued`, `processed`, `failed`, `unhandled`, `orphaned`.
    pub status: String,
    /// Processing attempts that finished.
    pub attempts: i32,
    /// The last processing error.
    pub last_error: Option<String>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub received_at: Timestamp,
    /// RFC 3339.
    #[schema(value_type = Option<String>)]
    pub processed_at: Option<Timestamp>,
    /// When the body was erased by a privacy request (RFC 3339).
    #[schema(value_type = Option<String>)]
    pub redacted_at: Option<Timestamp>,
    /// The latest processing job.
    pub job_id: Option<Uuid>,
}

fn receipt_out(r: &store::Receipt) -> ReceiptOut {
    ReceiptOut {
        id: r.id,
        provider: r.provider.clone(),
        event_id: r.event_id.clone(),
        topic: r.topic.clone(),
        shop_id: r.shop_id,
        shop_ref: r.shop_ref.clone(),
        status: r.status.clone(),
        attempts: r.attempts,
        last_error: r.last_error.clone(),
        received_at: Timestamp(r.received_at),
        processed_at: r.processed_at.map(Timestamp),
        redacted_at: r.redacted_at.map(Timestamp),
        job_id: r.job_id,
    }
}

/// A receipt with what was received.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptDetail {
    /// The receipt.
    #[serde(flatten)]
    pub receipt: ReceiptOut,
    /// The headers kept.
    pub headers: serde_json::Value,
    /// The body as received (UTF-8, lossy); empty once redacted.
    pub body: String,
}

const PROVIDERS: [&str; 4] = ["shopify", "stripe", "printify", "standard"];
const RECEIPT_STATES: [&str; 5] = ["queued", "processed", "failed", "unhandled", "orphaned"];

/// Filters of the receipt list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReceiptQuery {
    /// Provider.
    pub provider: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Only receipts no shop was found for (platform list only).
    pub orphaned: Option<bool>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

async fn receipt_page(
    state: &AppState,
    shop: Option<ShopScope>,
    q: ReceiptQuery,
) -> Result<Json<Page<ReceiptOut>>, ApiError> {
    let mut errors = Vec::new();
    super::check_one_of(
        "query.provider",
        q.provider.as_ref(),
        &PROVIDERS,
        &mut errors,
    );
    super::check_one_of(
        "query.status",
        q.status.as_ref(),
        &RECEIPT_STATES,
        &mut errors,
    );
    let (limit, before) = super::list_params(q.limit, q.cursor.as_deref(), errors)?;
    let rows = store::receipts(
        &state.db,
        &ReceiptFilter {
            shop,
            orphaned_only: shop.is_none() && q.orphaned.unwrap_or(false),
            provider: q.provider,
            status: q.status,
            topic: q.topic,
            before,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(Json(page_of(rows, limit, |r| r.id, receipt_out)))
}

/// The shop's inbound receipts, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/receipts", tag = "webhooks", security(("bearer" = [])), params(ReceiptQuery),
    responses((status = 200, description = "A page", body = Page<ReceiptOut>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json")))]
pub async fn list_receipts(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ReceiptQuery>,
) -> Result<Json<Page<ReceiptOut>>, ApiError> {
    let scope = admin(&p)?;
    receipt_page(&state, Some(scope), q).await
}

/// Every shop's receipts and the orphaned ones (`platform:admin`).
#[utoipa::path(get, path = "/api/v1/admin/webhooks/receipts", tag = "webhooks", security(("bearer" = [])), params(ReceiptQuery),
    responses((status = 200, description = "A page", body = Page<ReceiptOut>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json")))]
pub async fn platform_receipts(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ReceiptQuery>,
) -> Result<Json<Page<ReceiptOut>>, ApiError> {
    p.require(Scope::PlatformAdmin)?;
    receipt_page(&state, None, q).await
}

/// One receipt with its headers and body.
#[utoipa::path(get, path = "/api/v1/webhooks/receipts/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Receipt id")),
    responses((status = 200, description = "The receipt", body = ReceiptDetail),
        (status = 404, description = "No such receipt", body = Problem, content_type = "application/problem+json")))]
pub async fn get_receipt(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<ReceiptDetail>, ApiError> {
    let scope = admin(&p)?;
    let r = store::receipt(&state.db, id)
        .await?
        .filter(|r| r.shop_id == Some(scope.shop_id().0))
        .ok_or_else(|| ApiError::not_found("no such receipt"))?;
    Ok(Json(ReceiptDetail {
        receipt: receipt_out(&r),
        headers: serde_json::from_str(&r.headers).unwrap_or(serde_json::Value::Null),
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }))
}

async fn requeue(state: &AppState, r: &store::Receipt, shop: Uuid) -> Result<ReceiptOut, ApiError> {
    if !crate::webhooks::topics::handles(&r.provider, &r.topic) {
        return Err(ApiError::conflict(
            "unhandled_topic",
            format!("shopkeep has no handler for {} {}", r.provider, r.topic),
        ));
    }
    if r.redacted_at.is_some() {
        return Err(ApiError::conflict(
            "redacted",
            "the receipt's body was erased",
        ));
    }
    let at = now();
    store::requeue_receipt(
        &state.db,
        r.id,
        Some(shop),
        &process_job(r.id, Some(shop), at),
        at,
    )
    .await?;
    state.jobs.wake_queues([QUEUE]);
    let r = store::receipt(&state.db, r.id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such receipt"))?;
    Ok(receipt_out(&r))
}

/// Processes a receipt again (after a fix, or to re-import).
#[utoipa::path(post, path = "/api/v1/webhooks/receipts/{id}/replay", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Receipt id")),
    responses((status = 202, description = "Queued", body = ReceiptOut),
        (status = 404, description = "No such receipt", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to replay (unhandled topic, redacted)", body = Problem, content_type = "application/problem+json")))]
pub async fn replay(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<ReceiptOut>), ApiError> {
    let scope = admin(&p)?;
    let shop = scope.shop_id().0;
    let r = store::receipt(&state.db, id)
        .await?
        .filter(|r| r.shop_id == Some(shop))
        .ok_or_else(|| ApiError::not_found("no such receipt"))?;
    Ok((StatusCode::ACCEPTED, Json(requeue(&state, &r, shop).await?)))
}

/// Processes any receipt again (`platform:admin`); an orphaned one is matched to its shop
/// first, through the integration that now names its account.
#[utoipa::path(post, path = "/api/v1/admin/webhooks/receipts/{id}/replay", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Receipt id")),
    responses((status = 202, description = "Queued", body = ReceiptOut),
        (status = 404, description = "No such receipt", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to replay, or still no shop", body = Problem, content_type = "application/problem+json")))]
pub async fn platform_replay(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<ReceiptOut>), ApiError> {
    p.require(Scope::PlatformAdmin)?;
    let r = store::receipt(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such receipt"))?;
    let shop = match (r.shop_id, &r.shop_ref) {
        (Some(s), _) => Some(s),
        (None, Some(account)) => store::integration_by_account(&state.db, &r.provider, account)
            .await?
            .map(|i| i.shop_id),
        (None, None) => None,
    };
    let shop = shop.ok_or_else(|| {
        ApiError::conflict(
            "orphaned",
            "no shop has an integration for this receipt's account yet",
        )
    })?;
    Ok((StatusCode::ACCEPTED, Json(requeue(&state, &r, shop).await?)))
}

/// A shop's account at a provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationOut {
    /// `shopify`, `stripe`, `printify`, `standard`.
    pub provider: String,
    /// The provider's name for the account (`acme.myshopify.com`, a Printify shop id).
    pub account: String,
    /// True when a per-shop webhook secret is stored.
    pub has_secret: bool,
    /// When the provider reported that shopkeep was removed.
    #[schema(value_type = Option<String>)]
    pub uninstalled_at: Option<Timestamp>,
    /// The inbound URL for this provider (relative to shopkeep's address).
    pub webhook_path: String,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
}

fn integration_out(i: &store::Integration) -> IntegrationOut {
    IntegrationOut {
        provider: i.provider.clone(),
        account: i.account.clone(),
        has_secret: i.secret.is_some(),
        uninstalled_at: i.uninstalled_at.map(Timestamp),
        webhook_path: if i.provider == "standard" {
            format!("/webhooks/standard/{}", i.shop_id)
        } else {
            format!("/webhooks/{}", i.provider)
        },
        updated_at: Timestamp(i.updated_at),
    }
}

/// The shop's provider accounts.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, description = "Integrations", body = Vec<IntegrationOut>)))]
pub async fn list_integrations(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<IntegrationOut>>, ApiError> {
    let scope = admin(&p)?;
    let rows = store::integrations(&state.db, scope).await?;
    Ok(Json(rows.iter().map(integration_out).collect()))
}

/// A provider account to link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationIn {
    /// Shopify: the `*.myshopify.com` domain; Printify: the shop id; Stripe: the `acct_` id;
    /// standard: a name for the sender.
    pub account: String,
    /// The per-shop webhook secret (Printify, standard: a `whsec_` secret). The previous one
    /// stays valid until the next change. Absent keeps the stored one.
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

/// Links the shop to its account at a provider, so inbound webhooks find the shop.
#[utoipa::path(put, path = "/api/v1/integrations/{provider}", tag = "webhooks", security(("bearer" = [])), request_body = IntegrationIn,
    params(("provider" = String, Path, description = "shopify, stripe, printify or standard")),
    responses((status = 200, description = "Linked", body = IntegrationOut),
        (status = 404, description = "Unknown provider", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account is linked to another shop", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
pub async fn put_integration(
    State(state): State<AppState>,
    p: Principal,
    Path(provider): Path<String>,
    ApiJson(body): ApiJson<IntegrationIn>,
) -> Result<Json<IntegrationOut>, ApiError> {
    let scope = admin(&p)?;
    if !PROVIDERS.contains(&provider.as_str()) {
        return Err(ApiError::not_found(format!("no provider {provider:?}")));
    }
    let mut errors = Vec::new();
    // Shop domains ignore case; other providers' ids are kept exactly as the provider writes them.
    let account = if provider == "shopify" {
        body.account.trim().to_ascii_lowercase()
    } else {
        body.account.trim().to_string()
    };
    let account_ok = match provider.as_str() {
        "shopify" => shopify::valid_shop_domain(&account),
        _ => (1..=255).contains(&account.len()) && !account.chars().any(char::is_control),
    };
    if !account_ok {
        let msg = if provider == "shopify" {
            "the shop's domain, such as acme.myshopify.com"
        } else {
            "1-255 characters"
        };
        errors.push(FieldError::new("body.account", "invalid", msg));
    }
    if let Some(s) = &body.webhook_secret {
        let ok = match provider.as_str() {
            "standard" => standard::WebhookSecret::parse(s).is_ok(),
            "printify" => (8..=512).contains(&s.len()),
            _ => false,
        };
        if !ok {
            let msg = match provider.as_str() {
                "standard" => "whsec_ followed by base64 of 24 to 64 bytes",
                "printify" => "8-512 characters",
                _ => "this provider's secret is configured for the whole server, not per shop",
            };
            errors.push(FieldError::new("body.webhook_secret", "invalid", msg));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let sealed = body.webhook_secret.as_deref().map(|s| {
        state
            .webhooks
            .seal(s, &integration_aad(scope.shop_id().0, &provider))
    });
    let i = store::upsert_integration(
        &state.db,
        scope,
        &provider,
        &account,
        sealed.as_deref(),
        now(),
    )
    .await
    .map_err(|e| match e {
        shopkeep_store::StoreError::Conflict(_) => {
            ApiError::conflict("account_taken", "another shop is linked to this account")
        }
        other => other.into(),
    });
    // Cleared whatever the outcome: a failed upsert may still have committed.
    state.webhooks.integrations.clear();
    Ok(Json(integration_out(&i?)))
}

/// Unlinks the shop from a provider; its webhooks become orphaned.
#[utoipa::path(delete, path = "/api/v1/integrations/{provider}", tag = "webhooks", security(("bearer" = [])),
    params(("provider" = String, Path, description = "Provider")),
    responses((status = 204, description = "Unlinked"),
        (status = 404, description = "Not linked", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_integration(
    State(state): State<AppState>,
    p: Principal,
    Path(provider): Path<String>,
) -> Result<StatusCode, ApiError> {
    let scope = admin(&p)?;
    let deleted = store::delete_integration(&state.db, scope, &provider).await;
    state.webhooks.integrations.clear();
    if deleted? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("not linked to this provider"))
    }
}
