//! Orders: create (idempotent), read, list with status counts, approve, reject, cancel, and the
//! live stream of status changes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shopkeep_domain::accounts::Scope;
use shopkeep_domain::orders::{self as rules, Action, Status};
use shopkeep_domain::{Invalid, Timestamp, UserId, cursor};
use shopkeep_jobs::{Enqueue, builtin};
use shopkeep_store::group::GroupCommit;
use shopkeep_store::orders::{
    self as store, Change, CreateRequest, Created, Filter, FullOrder, ItemRow, NewItem, NewOrder,
    OrderRow, Transition, Written,
};
use shopkeep_store::{Db, Engine, ShopScope, StoreError};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::crypto::sha256;
use crate::extract::{ApiJson, ApiQuery};
use crate::feed::OrderUpdate;
use crate::observe::RequestId;
use crate::{ApiError, AppState, FieldError, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(stream))
        .routes(routes!(get_order))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(cancel))
}

/// One line of a new order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemIn {
    /// 1-255 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub item_name: String,
    /// 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i64,
    /// Catalog product reference.
    pub product_ref: Option<String>,
    /// Catalog variant reference.
    pub variant_ref: Option<String>,
    /// Unit price in minor units (cents); needs `currency`.
    pub unit_price_minor: Option<i64>,
    /// ISO 4217 currency of the price.
    pub currency: Option<String>,
}

/// A new order: one item by `item_name` and `quantity`, or several in `items`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderIn {
    /// The item (single-item form): 1-255 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub item_name: Option<String>,
    /// Its quantity (single-item form), 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: Option<i64>,
    /// Several lines instead (1-100).
    #[schema(min_items = 1, max_items = 100)]
    pub items: Option<Vec<ItemIn>>,
    /// Notes for the shop, at most 1000 characters.
    #[schema(max_length = 1000)]
    pub notes: Option<String>,
}

/// A line of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemOut {
    /// Name.
    pub item_name: String,
    /// Quantity.
    pub quantity: i32,
    /// Catalog product.
    pub product_ref: Option<String>,
    /// Catalog variant.
    pub variant_ref: Option<String>,
    /// Unit price in minor units.
    pub unit_price_minor: Option<i64>,
    /// ISO 4217.
    pub currency: Option<String>,
}

/// A status change in the order's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    /// Before (absent for creation).
    pub from: Option<String>,
    /// After.
    pub to: String,
    /// Who.
    pub actor: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// The request that made it.
    pub request_id: Option<String>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub at: Timestamp,
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderOut {
    /// Id.
    pub id: Uuid,
    /// `PENDING`, `APPROVED`, `REJECTED` or `CANCELLED`.
    pub status: String,
    /// The customer.
    pub customer_id: Option<Uuid>,
    /// Their username.
    pub customer_username: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// `web`, `api`, `shopify`, `instagram`, `whatsapp`.
    pub source: String,
    /// Id in the source system.
    pub external_id: Option<String>,
    /// ISO 4217, when priced.
    pub currency: Option<String>,
    /// Total in minor units, when every line is priced.
    pub total_minor: Option<i64>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
    /// RFC 3339.
    #[schema(value_type = Option<String>)]
    pub decided_at: Option<Timestamp>,
    /// Who decided.
    pub decided_by: Option<Uuid>,
    /// Decision or cancellation reason.
    pub reason: Option<String>,
    /// Lines (in detail views).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemOut>>,
    /// The audit trail, oldest first (in detail views).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventOut>>,
}

/// Maps a stored order (without items and events).
pub fn order_out(o: OrderRow) -> OrderOut {
    OrderOut {
        id: o.id,
        status: o.status,
        customer_id: o.customer_id,
        customer_username: o.customer_username,
        notes: o.notes,
        source: o.source,
        external_id: o.external_id,
        currency: o.currency,
        total_minor: o.total_minor,
        created_at: Timestamp(o.created_at),
        updated_at: Timestamp(o.updated_at),
        decided_at: o.decided_at.map(Timestamp),
        decided_by: o.decided_by,
        reason: o.reason,
        items: None,
        events: None,
    }
}

/// Maps a stored line.
pub fn item_out(i: ItemRow) -> ItemOut {
    ItemOut {
        item_name: i.item_name,
        quantity: i.quantity,
        product_ref: i.product_ref,
        variant_ref: i.variant_ref,
        unit_price_minor: i.unit_price_minor,
        currency: i.currency,
    }
}

fn field(i: Invalid, prefix: &str) -> FieldError {
    FieldError::new(format!("body.{prefix}{}", i.field), i.code, i.message)
}

/// Validates a new order into store form, naming every bad field.
fn validate(body: &OrderIn) -> Result<(Vec<NewItem>, Option<String>), ApiError> {
    let mut errors = Vec::new();
    let notes = match body
        .notes
        .as_deref()
        .map(|n| rules::parse_text("notes", n, 1000))
    {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            errors.push(field(e, ""));
            None
        }
        None => None,
    };
    let raw: Vec<(String, ItemIn)> = match (&body.items, &body.item_name, body.quantity) {
        (Some(items), None, None) => items
            .iter()
            .enumerate()
            .map(|(i, it)| (format!("items[{i}]."), it.clone()))
            .collect(),
        (None, name, qty) => {
            if name.is_none() {
                errors.push(FieldError::new(
                    "body.item_name",
                    "required",
                    "give the item a name",
                ));
            }
            if qty.is_none() {
                errors.push(FieldError::new(
                    "body.quantity",
                    "required",
                    "give a quantity from 1 to 100",
                ));
            }
            match (name, qty) {
                (Some(n), Some(q)) => vec![(
                    String::new(),
                    ItemIn {
                        item_name: n.clone(),
                        quantity: q,
                        product_ref: None,
                        variant_ref: None,
                        unit_price_minor: None,
                        currency: None,
                    },
                )],
                _ => Vec::new(),
            }
        }
        (Some(_), _, _) => {
            errors.push(FieldError::new(
                "body.items",
                "conflict",
                "send either items or item_name and quantity, not both",
            ));
            Vec::new()
        }
    };
    if body
        .items
        .as_ref()
        .is_some_and(|i| i.is_empty() || i.len() > 100)
    {
        errors.push(FieldError::new(
            "body.items",
            "length",
            "an order has 1 to 100 lines",
        ));
    }
    let mut items = Vec::new();
    for (prefix, it) in raw {
        let name = rules::parse_item_name("item_name", &it.item_name)
            .map_err(|e| errors.push(field(e, &prefix)))
            .ok();
        let qty = rules::parse_quantity("quantity", it.quantity)
            .map_err(|e| errors.push(field(e, &prefix)))
            .ok();
        let price_ok = match (it.unit_price_minor, &it.currency) {
            (Some(p), Some(c))
                if p >= 0 && shopkeep_domain::accounts::parse_currency("currency", c).is_ok() =>
            {
                true
            }
            (None, None) => true,
            (Some(p), _) if p < 0 => {
                errors.push(FieldError::new(
                    format!("body.{prefix}unit_price_minor"),
                    "out_of_range",
                    "a price is not negative",
                ));
                false
            }
            _ => {
                errors.push(FieldError::new(
                    format!("body.{prefix}currency"),
                    "invalid",
                    "a priced line needs an ISO 4217 currency",
                ));
                false
            }
        };
        for (name_of, value) in [
            ("product_ref", &it.product_ref),
            ("variant_ref", &it.variant_ref),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > 255 || v.chars().any(char::is_control))
            {
                errors.push(FieldError::new(
                    format!("body.{prefix}{name_of}"),
                    "invalid",
                    "1-255 characters",
                ));
            }
        }
        if let (Some(item_name), Some(quantity), true) = (name, qty, price_ok) {
            items.push(NewItem {
                item_name,
                quantity,
                product_ref: it.product_ref,
                variant_ref: it.variant_ref,
                unit_price_minor: it.unit_price_minor,
                currency: it.currency,
            });
        }
    }
    let currencies: std::collections::BTreeSet<&String> =
        items.iter().filter_map(|i| i.currency.as_ref()).collect();
    if currencies.len() > 1 {
        errors.push(FieldError::new(
            "body.items",
            "mixed_currencies",
            "all priced lines use one currency",
        ));
    }
    if errors.is_empty() {
        Ok((items, notes))
    } else {
        Err(ApiError::validation(errors))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_string()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key is 1-255 visible ASCII characters",
        )
        .with_errors(vec![FieldError::new(
            "header.idempotency-key",
            "invalid",
            "1-255 visible ASCII characters",
        )])),
    }
}

/// Places an order (status PENDING). With `Idempotency-Key`, a retry with the same body returns
/// the first order; the same key with another body is refused.
#[utoipa::path(post, path = "/api/v1/orders", operation_id = "create_order", tag = "orders", security(("bearer" = [])), request_body = OrderIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body, same order")),
    responses(
        (status = 201, description = "Created (or replayed: header Idempotent-Replayed: true)", body = OrderOut),
        (status = 422, description = "Invalid fields, or the key was used with another body", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OrderIn>,
) -> Result<Response, ApiError> {
    p.require(Scope::OrdersWrite)?;
    let key = idempotency_key(&headers)?;
    // The JSON API; the web pages create with source `web`.
    let (out, replayed) = place(&state, &p, &rid.0, &body, key.as_deref(), "api").await?;
    let location = format!("/api/v1/orders/{}", out.id);
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

/// Creates orders through one writer task with group commit: every order placed while the
/// previous batch commits goes into the next transaction, so one fsync serves them all.
pub type OrderWriter = GroupCommit<CreateRequest, Result<Written, StoreError>>;

/// Starts the order writer on SQLite. PostgreSQL gets none: it runs transactions side by side,
/// and a single writer would make every create wait behind a batch stuck on an outage.
pub fn start_writer(db: Db) -> Option<OrderWriter> {
    (db.engine() == Engine::Sqlite).then(|| {
        GroupCommit::start(db, |db, batch| {
            Box::pin(async move { store::create_many(&db, batch).await })
        })
    })
}

/// Validates and stores a new order from `source` (`api` or `web`), honouring an idempotency
/// key; gives the order and whether it was a replay of an earlier request.
pub(crate) async fn place(
    state: &AppState,
    p: &Principal,
    request_id: &str,
    body: &OrderIn,
    key: Option<&str>,
    source: &'static str,
) -> Result<(OrderOut, bool), ApiError> {
    let (items, notes) = validate(body)?;
    let lines: Vec<rules::Line> = items
        .iter()
        .map(|i| rules::Line {
            quantity: i64::from(i.quantity),
            unit_price_minor: i.unit_price_minor,
        })
        .collect();
    let new = NewOrder {
        customer: p.user,
        notes,
        source,
        external_id: None,
        currency: items.iter().find_map(|i| i.currency.clone()),
        total_minor: rules::total_minor(&lines),
        items,
        customer_username: p.username.clone(),
        actor_username: p.username.clone(),
    };
    let hash = sha256(&serde_json::to_vec(body).unwrap_or_default());
    let request = CreateRequest {
        scope: p.scope,
        order: new,
        idempotency: key.map(|k| {
            (
                p.user.unwrap_or(UserId(Uuid::nil())),
                k.to_string(),
                hash.to_vec(),
            )
        }),
        actor: p.user,
        request_id: request_id.to_string(),
    };
    let written = match &state.orders {
        Some(writer) => writer.write(request).await??,
        None => store::create_one(&state.db, request).await?,
    };
    let hash = key.map(|_| hash.as_slice());
    match store::resolve(&state.db, p.scope, written, hash).await? {
        Created::New(full) => {
            publish(state, p, &full.order).await;
            Ok((full_out(*full), false))
        }
        Created::Replayed(o) => Ok((detail(state, p, *o).await?, true)),
        Created::KeyReused => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )
        .with_errors(vec![FieldError::new(
            "header.idempotency-key",
            "reused",
            "used before with another body",
        )])),
    }
}

async fn publish(state: &AppState, p: &Principal, o: &OrderRow) {
    state
        .feed
        .publish(OrderUpdate {
            shop_id: p.shop().0,
            order_id: o.id,
            customer_id: o.customer_id,
            status: o.status.clone(),
            updated_at: Timestamp(o.updated_at).to_rfc3339(),
        })
        .await;
}

/// Maps an order with its lines and timeline.
fn full_out(f: FullOrder) -> OrderOut {
    let mut out = order_out(f.order);
    out.items = Some(f.items.into_iter().map(item_out).collect());
    out.events = Some(
        f.events
            .into_iter()
            .map(|e| EventOut {
                from: e.from_status,
                to: e.to_status,
                actor: e.actor_username,
                reason: e.reason,
                request_id: e.request_id,
                at: Timestamp(e.created_at),
            })
            .collect(),
    );
    out
}

pub(crate) async fn detail(
    state: &AppState,
    p: &Principal,
    order: OrderRow,
) -> Result<OrderOut, ApiError> {
    let (items, events) = tokio::try_join!(
        store::items(&state.db, p.scope, order.id),
        store::events(&state.db, p.scope, order.id)
    )?;
    Ok(full_out(FullOrder {
        order,
        items,
        events,
    }))
}

/// An order the caller may see: their own, or any in the shop with `orders:admin`. Others are 404.
pub(crate) async fn visible(
    state: &AppState,
    p: &Principal,
    id: Uuid,
) -> Result<OrderRow, ApiError> {
    let o = store::get(&state.db, p.scope, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such order"))?;
    let own = p.user.is_some() && o.customer_id == p.user.map(|u| u.0);
    if own || p.scopes.contains(&Scope::OrdersAdmin) {
        Ok(o)
    } else {
        Err(ApiError::not_found("no such order"))
    }
}

/// One order with its lines and timeline.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, description = "The order", body = OrderOut), (status = 404, description = "No such order (or not yours)", body = Problem, content_type = "application/problem+json")))]
pub async fn get_order(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<OrderOut>, ApiError> {
    p.require(Scope::OrdersRead)?;
    let id = parse_id(&id)?;
    let o = visible(&state, &p, id).await?;
    Ok(Json(detail(&state, &p, o).await?))
}

/// An id from the path; a malformed one is simply not found.
pub fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::not_found("no such order"))
}

/// Filter and page of the caller's own orders.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListIn {
    /// `all` (default), `pending`, `approved`, `rejected`, `cancelled`.
    pub status: Option<String>,
    /// 1-100, default 20.
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    /// Newest first.
    pub items: Vec<OrderOut>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
    /// Orders per status (`all`, `pending`, ...), ignoring the status filter.
    pub counts: BTreeMap<String, i64>,
}

/// Parses status, limit and cursor, naming the bad parameter.
pub fn page_params(
    status: Option<&str>,
    limit: Option<i64>,
    cursor_text: Option<&str>,
) -> Result<(Option<String>, i64, Option<Uuid>), ApiError> {
    let mut errors = Vec::new();
    let status = match status {
        None | Some("all") | Some("") => None,
        Some(s) => match s.parse::<Status>() {
            Ok(st) => Some(st.as_str().to_string()),
            Err(()) => {
                errors.push(FieldError::new(
                    "query.status",
                    "invalid",
                    "all, pending, approved, rejected or cancelled",
                ));
                None
            }
        },
    };
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        errors.push(FieldError::new(
            "query.limit",
            "out_of_range",
            "limit is 1 to 100",
        ));
    }
    let before = cursor_param(cursor_text, &mut errors);
    if errors.is_empty() {
        Ok((status, limit, before))
    } else {
        let code = if errors.iter().any(|e| e.field == "query.cursor") {
            "invalid_cursor"
        } else {
            "invalid_query"
        };
        Err(ApiError::bad_request(code, "some query parameters are invalid").with_errors(errors))
    }
}

/// Decodes a `cursor` query parameter (an id), or records why it is bad.
pub fn cursor_param(text: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Uuid> {
    let c = text?;
    let id = cursor::decode::<Uuid>(c);
    if id.is_none() {
        errors.push(FieldError::new(
            "query.cursor",
            "invalid",
            "not a cursor from this list",
        ));
    }
    id
}

/// Builds a page from rows fetched with `limit + 1`.
pub fn page(mut rows: Vec<OrderRow>, limit: i64, counts: Vec<(String, i64)>) -> OrderPage {
    let next_cursor = super::next_cursor(&mut rows, limit, |r| r.id);
    let mut c: BTreeMap<String, i64> = Status::ALL
        .iter()
        .map(|s| (s.filter_name().to_string(), 0))
        .collect();
    let mut all = 0;
    for (status, n) in counts {
        all += n;
        if let Ok(s) = status.parse::<Status>() {
            c.insert(s.filter_name().to_string(), n);
        }
    }
    c.insert("all".into(), all);
    OrderPage {
        items: rows.into_iter().map(order_out).collect(),
        next_cursor,
        counts: c,
    }
}

/// The caller's own orders, newest first, with counts per status.
#[utoipa::path(get, path = "/api/v1/orders", operation_id = "list_my_orders", tag = "orders", security(("bearer" = [])), params(ListIn),
    responses((status = 200, description = "A page", body = OrderPage), (status = 400, description = "Bad filter or cursor", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListIn>,
) -> Result<Json<OrderPage>, ApiError> {
    p.require(Scope::OrdersRead)?;
    let user = p.user()?;
    let (status, limit, before) = page_params(q.status.as_deref(), q.limit, q.cursor.as_deref())?;
    let filter = Filter {
        customer: Some(user),
        status,
        ..Filter::default()
    };
    Ok(Json(
        load_page(&state, p.scope, &filter, before, limit).await?,
    ))
}

/// A page of orders matching `filter` (newest first, `limit` rows after `before`) with the counts
/// per status; the API's lists and the web pages' tables share it.
pub(crate) async fn load_page(
    state: &AppState,
    scope: ShopScope,
    filter: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<OrderPage, ApiError> {
    let (rows, counts) =
        store::list_with_counts(&state.db, scope, filter, before, limit + 1).await?;
    Ok(page(rows, limit, counts))
}

/// An optional reason.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonIn {
    /// At most 500 characters.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// An optional JSON body: empty means the default.
fn optional_json<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::validation(vec![FieldError::new("body", "invalid", e.to_string())])
        } else {
            ApiError::bad_request("malformed_json", e.to_string())
        }
    })
}

async fn act(
    state: &AppState,
    p: &Principal,
    id: &str,
    action: Action,
    body: &Bytes,
    rid: &str,
) -> Result<Json<OrderOut>, ApiError> {
    let input: ReasonIn = optional_json(body)?;
    let id = parse_id(id)?;
    Ok(Json(
        decide(state, p, id, action, input.reason.as_deref(), rid).await?,
    ))
}

/// Applies an approve, reject or cancel by `p` with an optional reason (at most 500 characters);
/// 409 `invalid_transition` when the order is no longer pending.
pub(crate) async fn decide(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    action: Action,
    reason: Option<&str>,
    rid: &str,
) -> Result<OrderOut, ApiError> {
    let user = p.user()?;
    let reason = match reason.map(|r| rules::parse_text("reason", r, 500)) {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(ApiError::validation(vec![field(e, "")])),
        None => None,
    };
    let order = visible(state, p, id).await?;
    if action == Action::Cancel && order.customer_id != Some(user.0) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_the_customer",
            "only the order's customer can cancel it",
        ));
    }
    let (from, to) = action.transition();
    let change = Change {
        from: from.as_str(),
        to: to.as_str(),
        decision: action != Action::Cancel,
        actor: user,
        reason: reason.as_deref(),
        request_id: rid,
        event_type: match action {
            Action::Approve => "order.approved",
            Action::Reject => "order.rejected",
            Action::Cancel => "order.cancelled",
        },
        jobs: &[],
    };
    let decision_job = match action {
        Action::Cancel => None,
        _ => {
            let e = Enqueue::new(
                builtin::ORDER_DECISION,
                builtin::OrderDecision {
                    order_id: id,
                    status: to.as_str().to_string(),
                },
            )
            .shop(p.scope.shop_id().0);
            match state.jobs.prepare(&e, Timestamp::now()) {
                Ok(j) => Some(j),
                Err(errors) => {
                    tracing::error!(
                        ?errors,
                        "the order decision hook job is invalid; not enqueued"
                    );
                    None
                }
            }
        }
    };
    let change = Change {
        jobs: decision_job.as_slice(),
        ..change
    };
    match store::transition(&state.db, p.scope, id, &change).await? {
        Transition::Done(o) => {
            if let Some(j) = &decision_job {
                state.jobs.wake_queues([j.queue.as_str()]);
            }
            publish(state, p, &o).await;
            detail(state, p, *o).await
        }
        Transition::Invalid(current) => Err(ApiError::conflict(
            "invalid_transition",
            format!("cannot {} an order that is {current}", action.as_str()),
        )),
    }
}

/// Approves a pending order (`orders:admin`).
#[utoipa::path(post, path = "/api/v1/orders/{id}/approve", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")), request_body(content = ReasonIn, description = "Optional"),
    responses((status = 200, description = "Approved", body = OrderOut), (status = 409, description = "Not pending (detail names the status)", body = Problem, content_type = "application/problem+json")))]
pub async fn approve(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Json<OrderOut>, ApiError> {
    p.require(Scope::OrdersAdmin)?;
    act(&state, &p, &id, Action::Approve, &body, &rid.0).await
}

/// Rejects a pending order with an optional reason (`orders:admin`).
#[utoipa::path(post, path = "/api/v1/orders/{id}/reject", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")), request_body(content = ReasonIn, description = "Optional"),
    responses((status = 200, description = "Rejected", body = OrderOut), (status = 409, description = "Not pending", body = Problem, content_type = "application/problem+json")))]
pub async fn reject(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Json<OrderOut>, ApiError> {
    p.require(Scope::OrdersAdmin)?;
    act(&state, &p, &id, Action::Reject, &body, &rid.0).await
}

/// Cancels the caller's own pending order.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", operation_id = "cancel_order", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")), request_body(content = ReasonIn, description = "Optional"),
    responses((status = 200, description = "Cancelled", body = OrderOut), (status = 409, description = "Not pending", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Json<OrderOut>, ApiError> {
    p.require(Scope::OrdersWrite)?;
    act(&state, &p, &id, Action::Cancel, &body, &rid.0).await
}

/// Server-Sent Events: `order.status` events with the order id and its new status, for the
/// caller's own orders (every order of the shop with `orders:admin`). Comments keep it alive.
#[utoipa::path(get, path = "/api/v1/orders/stream", tag = "orders", security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of order.status events", content_type = "text/event-stream", body = String)))]
pub async fn stream(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    p.require(Scope::OrdersRead)?;
    let shop = p.shop().0;
    let user = p.user.map(|u| u.0);
    let admin = p.scopes.contains(&Scope::OrdersAdmin);
    let rx = state.feed.subscribe();
    let events = futures_util::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(u)
                    if u.shop_id == shop
                        && (admin || (user.is_some() && u.customer_id == user)) =>
                {
                    let data = serde_json::json!({ "order_id": u.order_id, "status": u.status, "updated_at": u.updated_at });
                    let event = Event::default()
                        .event("order.status")
                        .id(format!("{}:{}", u.order_id, u.status))
                        .data(data.to_string());
                    return Some((Ok(event), rx));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let event = Event::default().event("lagged").data(n.to_string());
                    return Some((Ok(event), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // End the stream at shutdown so graceful shutdown does not wait for idle listeners.
    let events =
        futures_util::StreamExt::take_until(events, state.feed.stopping().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
