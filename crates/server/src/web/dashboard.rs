//! The shop admin's dashboard: cards, the orders-per-day chart, and the orders table with
//! search, status filter, pages, approve/reject in place and the CSV export.

use std::fmt::Write as _;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use shopkeep_domain::orders::Action;

use super::i18n::Tr;
use super::orders::{OrderView, RowKind, Tab, cells_response, tabs, views};
use super::{Ctx, Flash, Layout, WebError, WebResult, WebUser, redirect, render};
use crate::AppState;
use crate::api::admin_orders::{AdminFilterIn, StatsOut, compute_stats, filter_of};
use crate::api::orders::{decide, load_page, order_out, page_params, parse_id, visible};
use crate::extract::ApiQuery;

/// The four cards.
#[derive(Debug)]
pub struct Cards {
    total: i64,
    pending: i64,
    approval_rate: String,
    median: String,
}

/// One bar of the chart.
#[derive(Debug)]
pub struct Bar {
    x: String,
    y: String,
    w: String,
    h: String,
    label: String,
    count: i64,
}

/// The orders-per-day chart, drawn on the server as SVG.
#[derive(Debug)]
pub struct Chart {
    width: u32,
    height: u32,
    bars: Vec<Bar>,
    first: String,
    last: String,
    peak: String,
}

fn chart(tr: Tr, s: &StatsOut) -> Chart {
    let (width, height) = (600_u32, 140_u32);
    let days = &s.orders_per_day;
    let peak = days.iter().map(|d| d.count).max().unwrap_or(0);
    let slot = f64::from(width) / days.len().max(1) as f64;
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let h = if peak == 0 {
                0.0
            } else {
                d.count as f64 / peak as f64 * f64::from(height - 4)
            };
            Bar {
                x: format!("{:.1}", i as f64 * slot + 1.0),
                y: format!("{:.1}", f64::from(height) - h),
                w: format!("{:.1}", (slot - 2.0).max(1.0)),
                h: format!("{h:.1}"),
                label: d.date.clone(),
                count: d.count,
            }
        })
        .collect();
    Chart {
        width,
        height,
        bars,
        first: days.first().map(|d| d.date.clone()).unwrap_or_default(),
        last: days.last().map(|d| d.date.clone()).unwrap_or_default(),
        peak: tr.f("dash.chart_peak", &[("peak", &peak)]),
    }
}

/// A duration for people: `42 s`, `7 min`, `3 h`, `2 d`.
fn duration(tr: Tr, seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    if s < 90 {
        tr.f("duration.seconds", &[("n", &s)])
    } else if s < 90 * 60 {
        tr.f("duration.minutes", &[("n", &((s + 30) / 60))])
    } else if s < 36 * 3600 {
        tr.f("duration.hours", &[("n", &((s + 1800) / 3600))])
    } else {
        tr.f("duration.days", &[("n", &((s + 43_200) / 86_400))])
    }
}

fn cards(tr: Tr, s: &StatsOut) -> Cards {
    Cards {
        total: s.total,
        pending: s.by_status.get("pending").copied().unwrap_or(0),
        approval_rate: s.approval_rate.map_or_else(
            || tr.t("dash.none").to_string(),
            |r| format!("{:.0} %", r * 100.0),
        ),
        median: s
            .median_time_to_decision_seconds
            .map_or_else(|| tr.t("dash.none").to_string(), |m| duration(tr, m)),
    }
}

/// The dashboard's filters.
#[derive(Debug, Default, Deserialize)]
pub struct DashQuery {
    status: Option<String>,
    username: Option<String>,
    cursor: Option<String>,
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The table: rows, pages, the export link for the same filters.
struct Table {
    tabs: Vec<Tab>,
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
    paged: bool,
    query: String,
    username: String,
}

/// The filters as the table uses them: a known status or `all`, the username trimmed to 20
/// characters, and the query string that repeats them in links.
fn filters(q: &DashQuery) -> (&str, String, String) {
    let status = match q.status.as_deref() {
        Some(s) if s.parse::<shopkeep_domain::orders::Status>().is_ok() => s,
        _ => "all",
    };
    let username: String = q
        .username
        .as_deref()
        .unwrap_or_default()
        .trim()
        .chars()
        .take(20)
        .collect();
    let mut query = format!("status={status}");
    if !username.is_empty() {
        let _ = write!(query, "&username={}", enc(&username));
    }
    (status, username, query)
}

async fn table_of(
    state: &AppState,
    ctx: &Ctx,
    u: &WebUser,
    q: &DashQuery,
) -> Result<Table, WebError> {
    let (status, username, query) = filters(q);
    let filter_in = AdminFilterIn {
        status: Some(status.to_string()),
        username: Some(username.clone()).filter(|u| !u.is_empty()),
        ..AdminFilterIn::default()
    };
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    let (filter_status, limit, before) = match page_params(Some(status), Some(20), cursor) {
        Ok(p) => p,
        // A stale or hand-made cursor: the first page.
        Err(_) => page_params(Some(status), Some(20), None)?,
    };
    let mut filter = filter_of(&filter_in)?;
    filter.status = filter_status;
    let scope = u.principal.scope;
    let p = load_page(state, scope, &filter, before, limit).await?;
    let orders = views(state, scope, &p.items).await?;
    Ok(Table {
        tabs: tabs(ctx.tr, &p.counts, status, "/dashboard"),
        orders,
        next_cursor: p.next_cursor,
        paged: before.is_some(),
        query,
        username,
    })
}

#[derive(Template)]
#[template(path = "web/dashboard.html")]
struct DashboardPage {
    l: Layout,
    cards: Cards,
    chart: Chart,
    tabs: Vec<Tab>,
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
    paged: bool,
    query: String,
    username: String,
}

/// `GET /dashboard`.
pub async fn page(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DashQuery>,
) -> WebResult {
    let u = ctx.admin()?;
    let (stats, t) = tokio::try_join!(
        async {
            compute_stats(&state, u.principal.scope)
                .await
                .map_err(WebError::from)
        },
        table_of(&state, &ctx, u, &q)
    )?;
    let l = ctx
        .layout(&state, ctx.tr.t("dash.title"), "dashboard")
        .await;
    render(
        StatusCode::OK,
        &DashboardPage {
            cards: cards(ctx.tr, &stats),
            chart: chart(ctx.tr, &stats),
            l,
            tabs: t.tabs,
            orders: t.orders,
            next_cursor: t.next_cursor,
            paged: t.paged,
            query: t.query,
            username: t.username,
        },
    )
}

#[derive(Template)]
#[template(path = "web/admin_table.html")]
struct TableFragment {
    l: Layout,
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
    paged: bool,
    query: String,
}

/// `GET /dashboard/orders`: the table alone, for search, filter and pages without reload.
pub async fn table(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DashQuery>,
) -> WebResult {
    let u = ctx.admin()?;
    if !ctx.htmx {
        // A browser without htmx (or a bookmark) gets the whole page with the same filters.
        return Ok(redirect(&ctx, &format!("/dashboard?{}", filters(&q).2)));
    }
    let t = table_of(&state, &ctx, u, &q).await?;
    render(
        StatusCode::OK,
        &TableFragment {
            l: ctx.layout_with(ctx.tr.t("dash.title"), "dashboard", None),
            orders: t.orders,
            next_cursor: t.next_cursor,
            paged: t.paged,
            query: t.query,
        },
    )
}

async fn act(
    state: AppState,
    ctx: Ctx,
    id: String,
    action: Action,
    reason: Option<String>,
) -> WebResult {
    let u = ctx.admin()?;
    let id = parse_id(&id)?;
    let reason = reason.filter(|r| !r.trim().is_empty());
    match decide(
        &state,
        &u.principal,
        id,
        action,
        reason.as_deref(),
        &ctx.request_id,
    )
    .await
    {
        Ok(order) => {
            if !ctx.htmx {
                let text = match action {
                    Action::Approve => ctx.tr.t("dash.approved"),
                    _ => ctx.tr.t("dash.rejected"),
                };
                ctx.flash(&state, &Flash::success(text)).await;
                return Ok(redirect(&ctx, "/dashboard"));
            }
            cells_response(&state, &ctx, u, &order, StatusCode::OK, RowKind::Admin).await
        }
        Err(e) if e.status() == StatusCode::CONFLICT => {
            // Another admin (or the customer) was first: show the order as it is now.
            if !ctx.htmx {
                ctx.flash(&state, &Flash::error(super::sentence(e.detail())))
                    .await;
                return Ok(redirect(&ctx, "/dashboard"));
            }
            let current = order_out(visible(&state, &u.principal, id).await?);
            cells_response(
                &state,
                &ctx,
                u,
                &current,
                StatusCode::CONFLICT,
                RowKind::Admin,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /dashboard/orders/{id}/approve`.
pub async fn approve(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> WebResult {
    act(state, ctx, id, Action::Approve, None).await
}

/// `POST /dashboard/orders/{id}/reject`: the reason comes from the HTMX prompt (`HX-Prompt`)
/// or the form's `reason` field.
pub async fn reject(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> WebResult {
    let from_prompt = headers
        .get("hx-prompt")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode);
    let from_form = form_field(&body, "reason");
    act(state, ctx, id, Action::Reject, from_prompt.or(from_form)).await
}

/// Decodes `%XX` (htmx sends the prompt's answer URI-encoded when it is not ASCII).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A field of a urlencoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let text = String::from_utf8_lossy(pair).replace('+', " ");
        let (k, v) = text.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

/// `GET /dashboard/export.csv`: the API's export with the dashboard's filters.
pub async fn export(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DashQuery>,
) -> WebResult {
    let u = ctx.admin()?;
    let status = q.status.filter(|s| s != "all");
    let filter = AdminFilterIn {
        status,
        username: q.username.filter(|u| !u.trim().is_empty()),
        ..AdminFilterIn::default()
    };
    let mut r =
        crate::api::admin_orders::export(State(state), u.principal.clone(), ApiQuery(filter))
            .await
            .map_err(WebError::from)?;
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        let tr = Tr::default();
        assert_eq!(duration(tr, 42.0), "42 s");
        assert_eq!(duration(tr, 600.0), "10 min");
        assert_eq!(duration(tr, 3.0 * 3600.0), "3 h");
        assert_eq!(duration(tr, 3.0 * 86_400.0), "3 d");
    }

    #[test]
    fn query_values_and_prompts_are_encoded_both_ways() {
        assert_eq!(enc("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_decode("too%20late%21"), "too late!");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(
            form_field(b"csrf=x&reason=out+of%20stock", "reason").as_deref(),
            Some("out of stock")
        );
    }
}
