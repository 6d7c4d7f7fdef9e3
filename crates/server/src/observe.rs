//! The outermost middleware: request id, tracing span, metrics, and problem rendering.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tracing::Instrument;

use crate::problem::{self, PendingProblem};

/// The header carrying the request id, in and out.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, in request extensions for handlers that need it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Accepts a caller's id when it is short and made of safe characters; otherwise makes one.
fn request_id_from(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            (1..=128).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Routes whose requests are logged at debug level: probes would drown the log otherwise.
fn is_probe(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// The method as a metrics label; made-up methods share one label so they cannot add series.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Wraps every request: see the module doc.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id_from(&req);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);

    let res = next.run(req).instrument(span.clone()).await;
    let mut res = into_problem_if_error(res, &request_id).await;
    // A body refused as too large is left unread on the connection, which the server then
    // closes: say so, or a client may send its next request on a connection about to go away.
    if res.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID.clone(), v);
    }

    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("http_requests_total", "method" => method_label(&method), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    let _g = span.enter();
    let ms = elapsed.as_secs_f64() * 1000.0;
    if is_probe(&route) {
        tracing::debug!(status, latency_ms = ms, "request finished");
    } else if status >= 500 {
        tracing::warn!(status, latency_ms = ms, "request finished");
    } else {
        tracing::info!(status, latency_ms = ms, "request finished");
    }
    res
}

/// Renders a pending problem, or rewrites a plain error response (framework rejection, timeout,
/// body limit) as a problem. HTML error pages are left alone for the web UI.
async fn into_problem_if_error(mut res: Response, request_id: &str) -> Response {
    let status = res.status();
    if let Some(p) = res.extensions_mut().remove::<PendingProblem>() {
        return keep_headers(res, problem::render(status, p, request_id));
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Only bodies nobody shaped on purpose are rewritten: empty ones and framework text.
    // A handler's own JSON (an RFC 6749 token error) or HTML page is left alone.
    if !(ctype.is_empty() || ctype.starts_with("text/plain")) {
        return res;
    }
    let (parts, body) = res.into_parts();
    // Framework rejections explain client mistakes in a short text body: keep that as the detail.
    // Server errors never show their body.
    let text = if status.is_client_error() {
        match http_body_util::Limited::new(body, 4096).collect().await {
            Ok(c) => String::from_utf8_lossy(&c.to_bytes()).trim().to_string(),
            Err(_) => String::new(),
        }
    } else {
        String::new()
    };
    let detail = if text.is_empty() {
        default_detail(status)
    } else {
        text
    };
    let pending = PendingProblem {
        code: problem::code_for(status).to_string(),
        detail,
        errors: Vec::new(),
    };
    let mut rendered = keep_headers(
        Response::from_parts(parts, Body::empty()),
        problem::render(status, pending, request_id),
    );
    // A timeout or overload is worth retrying; say when, as every other 503 does.
    if matches!(status.as_u16(), 408 | 503 | 504)
        && !rendered.headers().contains_key(header::RETRY_AFTER)
    {
        rendered
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    rendered
}

fn default_detail(status: axum::http::StatusCode) -> String {
    match status.as_u16() {
        408 | 503 | 504 => "the request took too long; retry shortly".into(),
        413 => "the request body is larger than this server accepts".into(),
        s if s >= 500 => "an internal error occurred".into(),
        _ => problem::title_for(status),
    }
}

/// Carries the original response's headers (Allow, Retry-After, WWW-Authenticate...) onto the
/// rendered problem, except the ones describing the old body.
fn keep_headers(original: Response, mut rendered: Response) -> Response {
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rendered
}
