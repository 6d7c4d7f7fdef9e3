//! The customer's pages: my orders (tabs, pages, live status), new order, order detail, cancel.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use shopkeep_domain::accounts::Scope;
use shopkeep_domain::orders::{Action, Status};
use shopkeep_store::ShopScope;
use shopkeep_store::orders::{self as store, Filter};
use uuid::Uuid;

use super::i18n::Tr;
use super::{Ctx, Flash, Layout, WebError, WebResult, WebUser, redirect, render};
use crate::api::orders::{
    OrderIn, OrderOut, decide, load_page, page, page_params, parse_id, place, visible,
};
use crate::crypto::random_token;
use crate::{ApiError, AppState};

/// An order as a table row shows it.
#[derive(Debug, Clone)]
pub struct OrderView {
    /// Id.
    pub id: Uuid,
    /// The last 8 hex digits, for people.
    pub short: String,
    /// `PENDING` ...
    pub status: String,
    /// `pending` ..., for the badge's class.
    pub status_class: String,
    /// The first line's name.
    pub item: String,
    /// Lines beyond the first.
    pub more: usize,
    /// The first line's quantity.
    pub quantity: i32,
    /// For people.
    pub created: String,
    /// RFC 3339.
    pub created_iso: String,
    /// The customer's username.
    pub customer: String,
    /// Still pending.
    pub pending: bool,
}

impl OrderView {
    fn new(o: &OrderOut, first: Option<(&str, i32)>, lines: usize) -> Self {
        let simple = o.id.simple().to_string();
        Self {
            id: o.id,
            short: simple[simple.len() - 8..].to_string(),
            status: o.status.clone(),
            status_class: o.status.to_ascii_lowercase(),
            item: first.map(|f| f.0.to_string()).unwrap_or_default(),
            more: lines.saturating_sub(1),
            quantity: first.map_or(0, |f| f.1),
            created: o.created_at.to_display(),
            created_iso: o.created_at.to_rfc3339(),
            customer: o.customer_username.clone().unwrap_or_default(),
            pending: o.status == Status::Pending.as_str(),
        }
    }
}

/// Table rows for orders, with their first line (one query for all).
pub(crate) async fn views(
    state: &AppState,
    scope: ShopScope,
    orders: &[OrderOut],
) -> Result<Vec<OrderView>, ApiError> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let mut lines: HashMap<Uuid, (String, i32, usize)> = HashMap::new();
    for (id, item) in store::items_for(&state.db, scope, &ids).await? {
        lines
            .entry(id)
            .and_modify(|e| e.2 += 1)
            .or_insert((item.item_name, item.quantity, 1));
    }
    Ok(orders
        .iter()
        .map(|o| {
            let l = lines.get(&o.id);
            OrderView::new(o, l.map(|l| (l.0.as_str(), l.1)), l.map_or(0, |l| l.2))
        })
        .collect())
}

/// One status tab.
#[derive(Debug, Clone)]
pub struct Tab {
    pub(crate) key: &'static str,
    pub(crate) label: String,
    pub(crate) count: i64,
    pub(crate) current: bool,
    pub(crate) href: String,
}

/// The tabs All / Pending / Approved / Rejected / Cancelled with counts.
pub(crate) fn tabs(
    tr: Tr,
    counts: &std::collections::BTreeMap<String, i64>,
    current: &str,
    base: &str,
) -> Vec<Tab> {
    let mut keys = vec![("all", tr.t("orders.all"))];
    keys.extend(
        Status::ALL
            .iter()
            .map(|s| (s.filter_name(), tr.status(s.as_str()))),
    );
    keys.into_iter()
        .map(|(key, label)| Tab {
            key,
            label: label.to_string(),
            count: counts.get(key).copied().unwrap_or(0),
            current: key == current,
            href: format!("{base}?status={key}"),
        })
        .collect()
}

/// The status filter of a page: `all` or a status's filter name.
fn status_param(s: Option<&str>) -> &'static str {
    match s {
        Some(s) => match s.parse::<Status>() {
            Ok(st) => st.filter_name(),
            Err(()) => "all",
        },
        None => "all",
    }
}

#[derive(Template)]
#[template(path = "web/orders.html")]
struct OrdersPage {
    l: Layout,
    tabs: Vec<Tab>,
    orders: Vec<OrderView>,
    status: &'static str,
    next_cursor: Option<String>,
    paged: bool,
}

/// Query of the orders page.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
}

/// `GET /orders`: the customer's orders, 20 per page, newest first, with status tabs.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ListQuery>,
) -> WebResult {
    let u = ctx.user()?;
    let status = status_param(q.status.as_deref());
    let Ok((filter_status, limit, before)) =
        page_params(Some(status), Some(20), q.cursor.as_deref())
    else {
        // A stale or hand-made cursor: the first page.
        return Ok(redirect(&ctx, &format!("/orders?status={status}")));
    };
    let filter = Filter {
        customer: Some(u.id()),
        status: filter_status,
        ..Filter::default()
    };
    let scope = u.principal.scope;
    let p = load_page(&state, scope, &filter, before, limit).await?;
    let orders = views(&state, scope, &p.items).await?;
    let l = ctx.layout(&state, ctx.tr.t("orders.title"), "orders").await;
    render(
        StatusCode::OK,
        &OrdersPage {
            tabs: tabs(ctx.tr, &p.counts, status, "/orders"),
            l,
            orders,
            status,
            next_cursor: p.next_cursor,
            paged: before.is_some(),
        },
    )
}

/// The new-order form as typed, with an error per field.
#[derive(Debug, Default)]
pub struct NewOrderForm {
    key: String,
    item_name: String,
    quantity: String,
    notes: String,
    item_name_error: String,
    quantity_error: String,
    notes_error: String,
    error: String,
}

impl NewOrderForm {
    fn empty() -> Self {
        Self {
            key: random_token(18),
            quantity: "1".into(),
            ..Self::default()
        }
    }
}

#[derive(Template)]
#[template(path = "web/new_order.html")]
struct NewOrderPage {
    l: Layout,
    form: NewOrderForm,
    placed: Option<Flash>,
    focus: bool,
}

#[derive(Template)]
#[template(path = "web/new_form.html")]
struct NewOrderFragment {
    l: Layout,
    form: NewOrderForm,
    placed: Option<Flash>,
    focus: bool,
}

/// `GET /orders/new`.
pub async fn new_page(State(state): State<AppState>, Extension(ctx): Extension<Ctx>) -> WebResult {
    ctx.user()?;
    let l = ctx.layout(&state, ctx.tr.t("new.title"), "new").await;
    render(
        StatusCode::OK,
        &NewOrderPage {
            l,
            form: NewOrderForm::empty(),
            placed: None,
            focus: true,
        },
    )
}

/// The new-order form's fields.
#[derive(Debug, Deserialize)]
pub struct NewOrderFields {
    #[serde(default)]
    item_name: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    idempotency_key: String,
}

/// `POST /orders`: places the order with the API's rules (source `web`). With HTMX the form is
/// answered in place: the errors next to their fields, or a cleared form with the success
/// message; without it, a redirect to the new order.
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(fields): Form<NewOrderFields>,
) -> WebResult {
    let u = ctx.user()?;
    let tr = ctx.tr;
    let mut form = NewOrderForm {
        key: fields.idempotency_key.chars().take(64).collect(),
        item_name: fields.item_name.chars().take(300).collect(),
        quantity: fields.quantity.chars().take(12).collect(),
        notes: fields.notes.chars().take(1100).collect(),
        ..NewOrderForm::default()
    };
    // Text that is not a whole number goes in as 0, which the order rules refuse with the other
    // fields' errors; its message then says what was wrong.
    let not_whole =
        !fields.quantity.trim().is_empty() && fields.quantity.trim().parse::<i64>().is_err();
    let quantity = match fields.quantity.trim().parse::<i64>() {
        Ok(q) => Some(q),
        Err(_) if not_whole => Some(0),
        Err(_) => None,
    };
    let body = OrderIn {
        item_name: Some(fields.item_name.clone()),
        quantity,
        items: None,
        notes: Some(fields.notes.clone()).filter(|n| !n.trim().is_empty()),
    };
    let key = Some(form.key.as_str()).filter(|k| {
        (16..=64).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    match place(&state, &u.principal, &ctx.request_id, &body, key, "web").await {
        Ok((order, _replayed)) => {
            let flash = Flash {
                link: Some((
                    format!("/orders/{}", order.id),
                    tr.t("new.view").to_string(),
                )),
                ..Flash::success(tr.t("new.placed"))
            };
            if !ctx.htmx {
                ctx.flash(&state, &flash).await;
                return Ok(redirect(&ctx, &format!("/orders/{}", order.id)));
            }
            render(
                StatusCode::CREATED,
                &NewOrderFragment {
                    l: ctx.layout_with(tr.t("new.title"), "new", None),
                    form: NewOrderForm::empty(),
                    placed: Some(flash),
                    focus: true,
                },
            )
        }
        Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
            for fe in e.field_errors() {
                let text =
                    tr.field_error(&fe.field.replace("items[0].", ""), &fe.code, &fe.message);
                match fe.field.as_str() {
                    "body.item_name" | "body.items[0].item_name" => form.item_name_error = text,
                    "body.quantity" | "body.items[0].quantity" if not_whole => {
                        form.quantity_error = tr.t("new.quantity_whole").to_string();
                    }
                    "body.quantity" | "body.items[0].quantity" => form.quantity_error = text,
                    "body.notes" => form.notes_error = text,
                    // A reused key means this form was already sent with other values: a new key.
                    "header.idempotency-key" => {
                        form.key = random_token(18);
                        form.error = tr.t("new.resent").to_string();
                    }
                    _ => form.item_name_error = text,
                }
            }
            if !ctx.htmx {
                let l = ctx.layout_with(tr.t("new.title"), "new", None);
                return render(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &NewOrderPage {
                        l,
                        form,
                        placed: None,
                        focus: false,
                    },
                );
            }
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &NewOrderFragment {
                    l: ctx.layout_with(tr.t("new.title"), "new", None),
                    form,
                    placed: None,
                    focus: false,
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// A status change in the timeline.
#[derive(Debug)]
pub struct EventView {
    at: String,
    at_iso: String,
    to: String,
    to_class: String,
    actor: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "web/order_detail.html")]
struct DetailPage {
    l: Layout,
    o: OrderView,
    items: Vec<(String, i32)>,
    total: Option<String>,
    notes: String,
    events: Vec<EventView>,
    own: bool,
    from_dashboard: bool,
}

/// `GET /orders/{id}`: the order with its lines and its audit trail as a timeline (its customer,
/// or any shop admin).
pub async fn detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> WebResult {
    let u = ctx.user()?;
    let id = parse_id(&id)?;
    let order = visible(&state, &u.principal, id).await?;
    let own = order.customer_id == Some(u.id().0);
    let full = crate::api::orders::detail(&state, &u.principal, order).await?;
    let items: Vec<(String, i32)> = full
        .items
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|i| (i.item_name.clone(), i.quantity))
        .collect();
    let first = items.first().map(|(n, q)| (n.as_str(), *q));
    let o = OrderView::new(&full, first, items.len());
    let total = match (full.total_minor, &full.currency) {
        (Some(t), Some(c)) => Some(format!("{}.{:02} {c}", t / 100, (t % 100).abs())),
        _ => None,
    };
    let events = full
        .events
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| EventView {
            at: e.at.to_display(),
            at_iso: e.at.to_rfc3339(),
            to: e.to.clone(),
            to_class: e.to.to_ascii_lowercase(),
            actor: e.actor.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
        })
        .collect();
    let title = format!("{} {}", ctx.tr.t("detail.title"), o.short);
    let l = ctx.layout(&state, &title, "orders").await;
    render(
        StatusCode::OK,
        &DetailPage {
            l,
            notes: full.notes.clone().unwrap_or_default(),
            o,
            items,
            total,
            events,
            own,
            from_dashboard: !own && u.shop_admin,
        },
    )
}

#[derive(Template)]
#[template(path = "web/order_cells.html")]
struct Cells<'a> {
    l: CellsCtx<'a>,
    o: OrderView,
}

#[derive(Template)]
#[template(path = "web/admin_cells.html")]
struct AdminCells<'a> {
    l: CellsCtx<'a>,
    o: OrderView,
}

/// What a row needs of the page: texts and the CSRF token.
struct CellsCtx<'a> {
    tr: Tr,
    csrf: &'a str,
}

/// The table a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowKind {
    /// My orders.
    Customer,
    /// The dashboard's orders.
    Admin,
}

/// A row's cells as HTML (also what the live stream sends).
pub(crate) fn cells_html(
    tr: Tr,
    csrf: &str,
    o: OrderView,
    kind: RowKind,
) -> Result<String, askama::Error> {
    let l = CellsCtx { tr, csrf };
    match kind {
        RowKind::Customer => Cells { l, o }.render(),
        RowKind::Admin => AdminCells { l, o }.render(),
    }
}

/// The cells of `order` as the answer to an action taken in its row.
pub(crate) async fn cells_response(
    state: &AppState,
    ctx: &Ctx,
    u: &WebUser,
    order: &OrderOut,
    status: StatusCode,
    kind: RowKind,
) -> WebResult {
    let o = views(state, u.principal.scope, std::slice::from_ref(order))
        .await?
        .remove(0);
    match cells_html(ctx.tr, &ctx.session.csrf, o, kind) {
        Ok(html) => Ok((status, axum::response::Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "rendering a row failed");
            Err(WebError::Status(StatusCode::INTERNAL_SERVER_ERROR, None))
        }
    }
}

/// `POST /orders/{id}/cancel`: the customer cancels a pending order.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> WebResult {
    let u = ctx.user()?;
    let id = parse_id(&id)?;
    let order = match decide(
        &state,
        &u.principal,
        id,
        Action::Cancel,
        None,
        &ctx.request_id,
    )
    .await
    {
        Ok(o) => o,
        Err(e) if e.status() == StatusCode::CONFLICT && ctx.htmx => {
            // Decided meanwhile: show the row as it is now.
            let current = visible(&state, &u.principal, id).await?;
            let out = crate::api::orders::order_out(current);
            return cells_response(
                &state,
                &ctx,
                u,
                &out,
                StatusCode::CONFLICT,
                RowKind::Customer,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    if !ctx.htmx {
        ctx.flash(&state, &Flash::success(ctx.tr.t("orders.cancelled")))
            .await;
        return Ok(redirect(&ctx, &format!("/orders/{}", order.id)));
    }
    cells_response(&state, &ctx, u, &order, StatusCode::OK, RowKind::Customer).await
}

/// Query of the live stream.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    view: Option<String>,
    status: Option<String>,
}

/// `GET /orders/events`: Server-Sent Events for the pages. On every status change of an order
/// the caller may see, the event `order-<id>` carries its row's new cells; the customer's view
/// also gets `counts` with the updated tabs.
pub async fn events(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, WebError> {
    let u = ctx.user()?.clone();
    let admin_view = q.view.as_deref() == Some("admin") && u.shop_admin;
    let status = status_param(q.status.as_deref());
    let shop = u.principal.shop().0;
    let me = u.id().0;
    let sees_all = u.principal.scopes.contains(&Scope::OrdersAdmin);
    let rx = state.feed.subscribe();
    let st = state.clone();
    let tr = ctx.tr;
    let csrf = ctx.session.csrf.clone();
    let session = ctx.session.clone();
    let events = futures_util::stream::unfold(rx, move |mut rx| {
        let (st, u, csrf, session) = (st.clone(), u.clone(), csrf.clone(), session.clone());
        async move {
            loop {
                match rx.recv().await {
                    Ok(up) if up.shop_id == shop && (sees_all || up.customer_id == Some(me)) => {
                        let own = up.customer_id == Some(me);
                        if !admin_view && !own {
                            continue;
                        }
                        // The rights of the moment, not of the connect: a session that ended
                        // (sign-out, password reset) or a member removed or demoted stops here.
                        let u = still_allowed(&st, &session, &u, admin_view).await?;
                        let batch =
                            live_events(&st, &u, tr, &csrf, up.order_id, admin_view, status)
                                .await
                                .unwrap_or_else(|e| {
                                    tracing::warn!(error = ?e, "rendering a live update failed");
                                    Vec::new()
                                });
                        if batch.is_empty() {
                            continue;
                        }
                        return Some((futures_util::stream::iter(batch), rx));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed updates: the page reloads its rows.
                        let e = Event::default().event("lagged").data("reload");
                        return Some((futures_util::stream::iter(vec![Ok(e)]), rx));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let events = futures_util::StreamExt::flatten(events);
    let events =
        futures_util::StreamExt::take_until(events, state.feed.stopping().cancelled_owned());
    Ok(sse(events))
}

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The user as of now when the session is still live and keeps the rights the stream was
/// opened with; `None` ends the stream.
async fn still_allowed(
    state: &AppState,
    session: &super::sessions::Session,
    was: &WebUser,
    admin_view: bool,
) -> Option<WebUser> {
    let now = shopkeep_domain::Timestamp::now().0;
    match state.web.sessions.alive(session, now).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "checking a live stream's session failed; ending it");
            return None;
        }
    }
    let shop = was.principal.shop().0;
    let u = super::resolve_user(state, was.id().0, shop)
        .await
        .ok()
        .flatten()?;
    let sees_all = u.principal.scopes.contains(&Scope::OrdersAdmin);
    let had_all = was.principal.scopes.contains(&Scope::OrdersAdmin);
    (sees_all == had_all && (!admin_view || u.shop_admin)).then_some(u)
}

/// The events for one changed order: its cells, and for the customer's view the tabs.
async fn live_events(
    state: &AppState,
    u: &WebUser,
    tr: Tr,
    csrf: &str,
    order_id: Uuid,
    admin_view: bool,
    status: &'static str,
) -> Result<Vec<Result<Event, Infallible>>, ApiError> {
    let Some(row) = store::get(&state.db, u.principal.scope, order_id).await? else {
        return Ok(Vec::new());
    };
    let out = crate::api::orders::order_out(row);
    let o = views(state, u.principal.scope, std::slice::from_ref(&out))
        .await?
        .remove(0);
    let mut batch = Vec::new();
    let kind = if admin_view {
        RowKind::Admin
    } else {
        RowKind::Customer
    };
    let cells = cells_html(tr, csrf, o, kind).map_err(|e| ApiError::internal(e.into()))?;
    batch.push(Ok(Event::default()
        .event(format!("order-{order_id}"))
        .data(cells)));
    if !admin_view {
        let filter = Filter {
            customer: Some(u.id()),
            ..Filter::default()
        };
        let counts = store::counts(&state.db, u.principal.scope, &filter).await?;
        let p = page(Vec::new(), 20, counts);
        let html = TabsFragment {
            tabs: tabs(tr, &p.counts, status, "/orders"),
        }
        .render()
        .map_err(|e| ApiError::internal(e.into()))?;
        batch.push(Ok(Event::default().event("counts").data(html)));
    }
    Ok(batch)
}

#[derive(Template)]
#[template(path = "web/tabs.html")]
struct TabsFragment {
    tabs: Vec<Tab>,
}
