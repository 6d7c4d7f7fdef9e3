//! The operator's webhook pages: `/admin/webhooks` (every shop's endpoints with their state,
//! failed deliveries, inbound receipts filtered by provider and status),
//! `/admin/webhooks/receipts/{id}` (a receipt with its headers and body) and
//! `/admin/webhooks/deliveries/{shop}/{id}` (a delivery with its payload and every attempt).
//! Replays, resends and endpoint changes go through the JSON API.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use shopkeep_domain::ShopId;
use shopkeep_store::webhooks::{self as store, ReceiptFilter};
use shopkeep_store::{ShopScope, StoreError};
use uuid::Uuid;

use super::{esc, operator, page, when};
use crate::api::auth::ClientIp;
use crate::{ApiError, AppState};

/// Routes of the webhook pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", get(overview))
        .route("/admin/webhooks/receipts/{id}", get(receipt_page))
        .route("/admin/webhooks/deliveries/{shop}/{id}", get(delivery_page))
}

fn failed(e: StoreError) -> Response {
    ApiError::from(e).into_response()
}

fn pretty(s: &str) -> String {
    serde_json::from_str::<serde_json::Value>(s)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| s.to_string())
}

const STATUSES: [&str; 5] = ["queued", "processed", "failed", "unhandled", "orphaned"];

#[derive(Debug, Deserialize)]
struct OverviewQuery {
    status: Option<String>,
    provider: Option<String>,
}

async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, Response> {
    let who = operator(&state, &headers, ip).await?;
    let status = q.status.filter(|s| STATUSES.contains(&s.as_str()));
    let provider = q.provider.filter(|p| !p.is_empty() && p.len() <= 32);
    let endpoints = store::all_endpoints(&state.db, 100).await.map_err(failed)?;
    let deliveries = store::failed_deliveries(&state.db, 50)
        .await
        .map_err(failed)?;
    let receipts = store::receipts(
        &state.db,
        &ReceiptFilter {
            orphaned_only: status.as_deref() == Some("orphaned"),
            status: status.clone().filter(|s| s != "orphaned"),
            provider: provider.clone(),
            limit: 50,
            ..ReceiptFilter::default()
        },
    )
    .await
    .map_err(failed)?;

    let mut b = String::new();
    let _ = write!(
        b,
        "<p class=\"who\">Signed in as {} · refreshes every 10 s</p>",
        esc(&who)
    );
    b.push_str("<section><h1>Endpoints</h1>");
    if endpoints.is_empty() {
        b.push_str("<p>No shop has an endpoint.</p>");
    } else {
        b.push_str("<table><thead><tr><th>Shop</th><th>URL</th><th>State</th><th>Changed</th></tr></thead><tbody>");
        for e in &endpoints {
            let state = match (e.enabled == 1, e.failing_since) {
                (false, _) => format!(
                    "<span class=\"bad\">disabled</span> {}",
                    esc(e.disabled_reason.as_deref().unwrap_or(""))
                ),
                (true, Some(since)) => {
                    format!(
                        "<span class=\"bad\">failing</span> since {}",
                        when(Some(since))
                    )
                }
                (true, None) => "enabled".into(),
            };
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{state}</td><td>{}</td></tr>",
                e.shop_id,
                esc(&e.url),
                when(Some(e.updated_at))
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section><section><h2>Failed deliveries</h2>");
    if deliveries.is_empty() {
        b.push_str("<p>None.</p>");
    } else {
        b.push_str("<table><thead><tr><th>Created</th><th>Event</th><th>Shop</th><th>Attempts</th><th>Last answer</th></tr></thead><tbody>");
        for d in &deliveries {
            let answer = match (d.last_status, &d.last_error) {
                (Some(s), _) => s.to_string(),
                (None, Some(e)) => esc(e),
                (None, None) => "—".into(),
            };
            let _ = write!(
                b,
                "<tr><td><a href=\"/admin/webhooks/deliveries/{}/{}\">{}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"err\">{answer}</td></tr>",
                d.shop_id,
                d.id,
                when(Some(d.created_at)),
                esc(&d.event_type),
                d.shop_id,
                d.attempts
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section><section><h2>Inbound receipts</h2><p class=\"tabs\">");
    let current = status.as_deref().unwrap_or("all");
    for s in std::iter::once("all").chain(STATUSES) {
        let href = if s == "all" {
            "/admin/webhooks".to_string()
        } else {
            format!("/admin/webhooks?status={s}")
        };
        let mark = if s == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(b, "<a href=\"{href}\"{mark}>{s}</a>");
    }
    b.push_str("</p>");
    if receipts.is_empty() {
        b.push_str("<p>None.</p>");
    } else {
        b.push_str("<table><thead><tr><th>Received</th><th>Provider</th><th>Topic</th><th>Shop</th><th>Status</th><th>Attempts</th></tr></thead><tbody>");
        for r in &receipts {
            let shop = match (r.shop_id, &r.shop_ref) {
                (Some(s), _) => format!("<code>{s}</code>"),
                (None, Some(account)) => format!("{} (no shop)", esc(account)),
                (None, None) => "—".into(),
            };
            let status = if r.redacted_at.is_some() {
                format!("{} · erased", esc(&r.status))
            } else {
                esc(&r.status)
            };
            let _ = write!(
                b,
                "<tr><td><a href=\"/admin/webhooks/receipts/{}\">{}</a></td><td>{}</td><td>{}</td><td>{shop}</td><td>{status}</td><td>{}</td></tr>",
                r.id,
                when(Some(r.received_at)),
                esc(&r.provider),
                esc(&r.topic),
                r.attempts
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");
    Ok(page("webhooks", &b))
}

async fn receipt_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    operator(&state, &headers, ip).await?;
    let not_found = || ApiError::not_found("no such receipt").into_response();
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let r = store::receipt(&state.db, id)
        .await
        .map_err(failed)?
        .ok_or_else(not_found)?;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} {} <code>{}</code></h1><dl class=\"facts\">",
        esc(&r.provider),
        esc(&r.topic),
        r.id
    );
    let facts: [(&str, String); 9] = [
        ("Status", esc(&r.status)),
        ("Event id", esc(&r.event_id)),
        (
            "Shop",
            r.shop_id.map_or_else(|| "—".into(), |s| s.to_string()),
        ),
        ("Account", esc(r.shop_ref.as_deref().unwrap_or("—"))),
        ("Received", when(Some(r.received_at))),
        ("Processed", when(r.processed_at)),
        ("Attempts", r.attempts.to_string()),
        ("Erased", when(r.redacted_at)),
        ("Last error", esc(r.last_error.as_deref().unwrap_or("—"))),
    ];
    for (k, v) in facts {
        let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
    }
    let _ = write!(
        b,
        "</dl><h2>Headers</h2><pre>{}</pre><h2>Body</h2><pre>{}</pre>",
        esc(&pretty(&r.headers)),
        esc(&pretty(&String::from_utf8_lossy(&r.body)))
    );
    b.push_str("<p>Process it again with <code>POST /api/v1/admin/webhooks/receipts/{id}/replay</code>.</p>");
    Ok(page(&r.topic, &b))
}

async fn delivery_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    Path((shop, id)): Path<(String, String)>,
) -> Result<Response, Response> {
    operator(&state, &headers, ip).await?;
    let not_found = || ApiError::not_found("no such delivery").into_response();
    let (shop, id): (Uuid, Uuid) = match (shop.parse(), id.parse()) {
        (Ok(s), Ok(i)) => (s, i),
        _ => return Err(not_found()),
    };
    let scope = ShopScope::verified(ShopId(shop));
    let d = store::delivery(&state.db, scope, id)
        .await
        .map_err(failed)?
        .ok_or_else(not_found)?;
    let payload = store::message_payload(&state.db, scope, d.message_id)
        .await
        .map_err(failed)?
        .unwrap_or_default();
    let attempts = store::attempts(&state.db, scope, id)
        .await
        .map_err(failed)?;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} <code>msg_{}</code></h1><dl class=\"facts\">",
        esc(&d.event_type),
        d.message_id.simple()
    );
    let facts: [(&str, String); 6] = [
        ("Status", esc(&d.status)),
        ("Shop", d.shop_id.to_string()),
        ("Endpoint", d.endpoint_id.to_string()),
        ("Resource", esc(&d.resource_id)),
        ("Attempts", d.attempts.to_string()),
        ("Next attempt", when(d.next_attempt_at)),
    ];
    for (k, v) in facts {
        let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
    }
    let _ = write!(
        b,
        "</dl><h2>Payload</h2><pre>{}</pre><h2>Attempts</h2>",
        esc(&pretty(&payload))
    );
    if attempts.is_empty() {
        b.push_str("<p>None yet.</p>");
    } else {
        b.push_str("<ol class=\"timeline\">");
        for a in &attempts {
            let answer = a
                .status_code
                .map_or_else(|| esc(a.error.as_deref().unwrap_or("")), |s| s.to_string());
            let _ = write!(
                b,
                "<li><strong>Attempt {} · {answer}</strong> <span>{}</span> <span>{:.1} ms</span><pre class=\"err\">{}</pre></li>",
                a.attempt,
                when(Some(a.started_at)),
                a.latency_us as f64 / 1000.0,
                esc(&a.response_body)
            );
        }
        b.push_str("</ol>");
    }
    b.push_str("<p>Send it again with <code>POST /api/v1/webhooks/deliveries/{id}/resend</code> as a shop admin.</p>");
    Ok(page(&d.event_type, &b))
}
