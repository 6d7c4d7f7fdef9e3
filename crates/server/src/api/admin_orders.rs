//! The shop's orders for admins: search, CSV export and statistics.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shopkeep_domain::accounts::{Scope, fold};
use shopkeep_domain::time::MICROS_PER_DAY;
use shopkeep_domain::{Timestamp, export};
use shopkeep_store::ShopScope;
use shopkeep_store::orders::{self as store, Filter, ItemRow, OrderRow};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::orders::{OrderPage, load_page, page_params};
use crate::auth::Principal;
use crate::extract::ApiQuery;
use crate::{ApiError, AppState, FieldError, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(export))
        .routes(routes!(stats))
}

/// Filters for the shop's orders.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AdminFilterIn {
    /// `all` (default), `pending`, `approved`, `rejected`, `cancelled`.
    pub status: Option<String>,
    /// Customer username, case-insensitive.
    pub username: Option<String>,
    /// `partial` (default: the username contains the text) or `exact`.
    #[serde(rename = "match")]
    pub match_: Option<String>,
    /// Created at or after: RFC 3339 time or `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Created before: RFC 3339 time or `YYYY-MM-DD` (UTC, the whole day included).
    pub to: Option<String>,
    /// 1-100, default 20 (lists only).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (lists only).
    pub cursor: Option<String>,
}

/// A date (`YYYY-MM-DD`, as a whole UTC day) or an RFC 3339 time, in microseconds.
fn parse_time(s: &str, end_of_day: bool) -> Option<i64> {
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Some(t.0);
    }
    let d = Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z"))?;
    Some(if end_of_day {
        d.0 + MICROS_PER_DAY
    } else {
        d.0
    })
}

pub(crate) fn filter_of(q: &AdminFilterIn) -> Result<Filter, ApiError> {
    let mut errors = Vec::new();
    let mut f = Filter::default();
    if let Some(u) = q
        .username
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        if u.len() > 20 {
            errors.push(FieldError::new(
                "query.username",
                "too_long",
                "usernames have at most 20 characters",
            ));
        }
        match q.match_.as_deref() {
            None | Some("partial") => f.username_contains = Some(fold(u)),
            Some("exact") => f.username_exact = Some(fold(u)),
            Some(_) => errors.push(FieldError::new(
                "query.match",
                "invalid",
                "partial or exact",
            )),
        }
    }
    for (name, value, end, slot) in [
        ("query.from", &q.from, false, &mut f.from),
        ("query.to", &q.to, true, &mut f.to),
    ] {
        if let Some(v) = value {
            match parse_time(v, end) {
                Some(t) => *slot = Some(t),
                None => errors.push(FieldError::new(
                    name,
                    "invalid",
                    "an RFC 3339 time or YYYY-MM-DD",
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(f)
    } else {
        Err(
            ApiError::bad_request("invalid_query", "some query parameters are invalid")
                .with_errors(errors),
        )
    }
}

/// The shop's orders with customer usernames, filtered, newest first (`orders:admin`).
#[utoipa::path(get, path = "/api/v1/admin/orders", operation_id = "list_shop_orders", tag = "orders", security(("bearer" = [])), params(AdminFilterIn),
    responses((status = 200, description = "A page", body = OrderPage), (status = 400, description = "Bad filter or cursor", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AdminFilterIn>,
) -> Result<Json<OrderPage>, ApiError> {
    p.require(Scope::OrdersAdmin)?;
    let (status, limit, before) = page_params(q.status.as_deref(), q.limit, q.cursor.as_deref())?;
    let mut filter = filter_of(&q)?;
    filter.status = status;
    Ok(Json(
        load_page(&state, p.scope, &filter, before, limit).await?,
    ))
}

/// Columns of the export, in order.
pub const CSV_HEADER: [&str; 16] = [
    "id",
    "created_at",
    "updated_at",
    "status",
    "customer_id",
    "customer_username",
    "source",
    "external_id",
    "items",
    "item_count",
    "notes",
    "currency",
    "total_minor",
    "decided_at",
    "decided_by",
    "reason",
];

/// Appends one order as a record of [`CSV_HEADER`]'s columns.
fn csv_row(out: &mut export::Records, o: &OrderRow, items: &[&ItemRow], lines: &mut String) {
    use std::fmt::Write as _;
    let id = |v: Option<Uuid>| v.map(|v| v.to_string()).unwrap_or_default();
    let time = |v: Option<i64>| v.map(|x| Timestamp(x).to_rfc3339()).unwrap_or_default();
    lines.clear();
    for (n, i) in items.iter().enumerate() {
        let sep = if n == 0 { "" } else { "; " };
        let _ = write!(lines, "{sep}{} x {}", i.quantity, i.item_name);
    }
    let count: i64 = items.iter().map(|i| i64::from(i.quantity)).sum();
    out.push([
        id(Some(o.id)).as_str(),
        &time(Some(o.created_at)),
        &time(Some(o.updated_at)),
        &o.status,
        &id(o.customer_id),
        o.customer_username.as_deref().unwrap_or(""),
        &o.source,
        o.external_id.as_deref().unwrap_or(""),
        lines,
        &count.to_string(),
        o.notes.as_deref().unwrap_or(""),
        o.currency.as_deref().unwrap_or(""),
        &o.total_minor.map(|x| x.to_string()).unwrap_or_default(),
        &time(o.decided_at),
        &id(o.decided_by),
        o.reason.as_deref().unwrap_or(""),
    ]);
}

/// Rows fetched per database round trip while exporting; memory stays flat at any size.
const EXPORT_PAGE: i64 = 1000;

/// RFC 4180 CSV of every order matching the filters, streamed in constant memory, with a dated
/// file name (`orders:admin`).
#[utoipa::path(get, path = "/api/v1/admin/orders/export.csv", tag = "orders", security(("bearer" = [])), params(AdminFilterIn),
    responses((status = 200, description = "text/csv with a header row", content_type = "text/csv", body = String)))]
pub async fn export(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AdminFilterIn>,
) -> Result<Response, ApiError> {
    p.require(Scope::OrdersAdmin)?;
    if q.limit.is_some() || q.cursor.is_some() {
        return Err(
            ApiError::bad_request("invalid_query", "the export has no pages").with_errors(vec![
                FieldError::new(
                    "query.limit",
                    "not_allowed",
                    "export everything that matches; no limit or cursor",
                ),
            ]),
        );
    }
    let (status, _, _) = page_params(q.status.as_deref(), None, None)?;
    let mut filter = filter_of(&q)?;
    filter.status = status;
    let scope = p.scope;
    let db = state.db.clone();
    let header_row = export::record(&CSV_HEADER.map(str::to_string));
    // State: (cursor, finished). The header goes out first, then one chunk per page.
    let pages = futures_util::stream::unfold((None::<Uuid>, false), move |(before, done)| {
        let (db, filter) = (db.clone(), filter.clone());
        async move {
            if done {
                return None;
            }
            let rows = match store::list(&db, scope, &filter, before, EXPORT_PAGE).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "export failed part-way; the file is truncated");
                    return Some((Err(std::io::Error::other("export failed")), (before, true)));
                }
            };
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let items = match store::items_for(&db, scope, &ids).await {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!(error = %e, "export failed part-way; the file is truncated");
                    return Some((Err(std::io::Error::other("export failed")), (before, true)));
                }
            };
            let mut by_order: BTreeMap<Uuid, Vec<&ItemRow>> = BTreeMap::new();
            for (id, item) in &items {
                by_order.entry(*id).or_default().push(item);
            }
            let mut chunk = export::Records::default();
            let mut scratch = String::new();
            for o in &rows {
                let lines = by_order.get(&o.id).map_or(&[][..], Vec::as_slice);
                csv_row(&mut chunk, o, lines, &mut scratch);
            }
            let last = rows.last().map(|r| r.id);
            let finished = i64::try_from(rows.len()).unwrap_or(0) < EXPORT_PAGE;
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk.into_bytes())),
                (last, finished),
            ))
        }
    });
    let body = futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(axum::body::Bytes::from(header_row))
    })
    .chain_pages(pages);
    // Fused: a compressing layer reads the body through a reader that polls again after the
    // end, and a finished `unfold` panics when polled.
    let body = futures_util::StreamExt::fuse(body);
    let filename = format!("orders-{}.csv", &Timestamp::now().to_rfc3339()[..10]);
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Chains two streams (a local name keeps the call site readable).
trait ChainPages: futures_util::Stream + Sized {
    fn chain_pages<S: futures_util::Stream<Item = Self::Item>>(
        self,
        next: S,
    ) -> futures_util::stream::Chain<Self, S> {
        futures_util::StreamExt::chain(self, next)
    }
}

impl<T: futures_util::Stream> ChainPages for T {}

/// Orders created on one UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Orders created that day.
    pub count: i64,
}

/// Shop order statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsOut {
    /// Every order.
    pub total: i64,
    /// Per status (`pending`, `approved`, `rejected`, `cancelled`).
    pub by_status: BTreeMap<String, i64>,
    /// approved / (approved + rejected); null before any decision.
    pub approval_rate: Option<f64>,
    /// The last 30 UTC days, oldest first, including days with none.
    pub orders_per_day: Vec<DayCount>,
    /// Median time from creation to approval or rejection, in seconds; null before any decision.
    pub median_time_to_decision_seconds: Option<f64>,
}

/// Totals, approval rate, orders per day for 30 days, median time to decision (`orders:admin`).
#[utoipa::path(get, path = "/api/v1/admin/orders/stats", operation_id = "order_stats", tag = "orders", security(("bearer" = [])),
    responses((status = 200, description = "Statistics", body = StatsOut)))]
pub async fn stats(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<StatsOut>, ApiError> {
    p.require(Scope::OrdersAdmin)?;
    Ok(Json(compute_stats(&state, p.scope).await?))
}

/// The statistics of a shop's orders (the API's and the dashboard's).
pub(crate) async fn compute_stats(
    state: &AppState,
    scope: ShopScope,
) -> Result<StatsOut, ApiError> {
    let today = Timestamp::now().0.div_euclid(MICROS_PER_DAY);
    let first_day = today - 29;
    let s = store::stats(&state.db, scope, Timestamp(first_day * MICROS_PER_DAY)).await?;
    let mut by_status: BTreeMap<String, i64> = shopkeep_domain::orders::Status::ALL
        .iter()
        .map(|st| (st.filter_name().to_string(), 0))
        .collect();
    for (status, n) in &s.by_status {
        if let Ok(st) = status.parse::<shopkeep_domain::orders::Status>() {
            by_status.insert(st.filter_name().to_string(), *n);
        }
    }
    let total = by_status.values().sum();
    let (approved, rejected) = (by_status["approved"], by_status["rejected"]);
    let approval_rate =
        (approved + rejected > 0).then(|| approved as f64 / (approved + rejected) as f64);
    let per_day: BTreeMap<i64, i64> = s.per_day.into_iter().collect();
    let orders_per_day = (first_day..=today)
        .map(|d| DayCount {
            date: Timestamp(d * MICROS_PER_DAY).to_rfc3339()[..10].to_string(),
            count: per_day.get(&d).copied().unwrap_or(0),
        })
        .collect();
    Ok(StatsOut {
        total,
        by_status,
        approval_rate,
        orders_per_day,
        median_time_to_decision_seconds: s.median_decision_micros.map(|m| m as f64 / 1e6),
    })
}
