//! shopkeep's HTTP surface: the axum application, its middleware and error model.

pub mod api;
pub mod auth;
pub mod crypto;
pub mod extract;
pub mod feed;
pub mod health;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod operator;
pub mod problem;
pub mod ratelimit;
pub mod redis_conn;
pub mod web;
pub mod webhooks;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shopkeep_store::Db;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use problem::{ApiError, FieldError, Problem};

/// Version facts shown in `/metrics` and `--version`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// Crate version.
    pub version: &'static str,
    /// Short git commit the binary was built from, or `unknown`.
    pub commit: &'static str,
}

/// Shared state handed to every handler. Cheap to clone; holds nothing another instance needs.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub db: Db,
    /// Build facts.
    pub build: BuildInfo,
    /// Authentication services.
    pub auth: std::sync::Arc<auth::AuthService>,
    /// Live order updates.
    pub feed: feed::OrderFeed,
    /// Background jobs: enqueue and operate.
    pub jobs: shopkeep_jobs::Jobs,
    /// True when this process runs job workers (shown as queue concurrency).
    pub jobs_local: bool,
    /// Webhook secrets, sealing and the outbound client.
    pub webhooks: std::sync::Arc<webhooks::WebhookService>,
    /// Stores inbound webhooks with group commit.
    pub receipts: webhooks::receipts::ReceiptWriter,
    /// Stores new orders with group commit (SQLite only).
    pub orders: Option<api::orders::OrderWriter>,
    /// Web pages: sessions and settings.
    pub web: std::sync::Arc<web::WebService>,
}

/// HTTP limits applied to every route.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// A request not answered within this time gets 503.
    pub request_timeout: Duration,
    /// Largest accepted request body in bytes (413 beyond).
    pub body_limit: usize,
    /// Compress responses (gzip) when the client accepts it.
    pub compression: bool,
}

/// The OpenAPI router with every documented route; split into the axum router and the document.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .merge(api::auth::router())
        .merge(api::me::router())
        .merge(api::shops::router())
        .merge(api::api_keys::router())
        .merge(api::audit::router())
        .merge(api::orders::router())
        .merge(api::admin_orders::router())
        .merge(api::jobs::router())
        .merge(api::webhooks::router())
}

/// The OpenAPI document alone, as served at `/api/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::with_dependency_faults(api_routes().into_openapi())
}

/// Builds the whole application router with its middleware stack.
pub fn router(state: AppState, http: &HttpOptions) -> Router {
    metrics::recorder();
    metrics::describe();
    shopkeep_jobs::describe_metrics();
    webhooks::describe_metrics();
    ::metrics::gauge!("shopkeep_build_info",
        "version" => state.build.version, "commit" => state.build.commit, "engine" => state.db.engine().as_str())
    .set(1.0);

    let (routes, api) = api_routes().split_for_parts();
    let api = openapi::with_dependency_faults(api);
    let pages = web::router(&state);
    let app = routes
        .merge(pages)
        .route("/metrics", get(metrics::render))
        .merge(operator::router())
        .merge(webhooks::inbound::router())
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", api))
        .with_state(state);
    with_middleware(app, http)
}

/// Adds the fallbacks and the middleware stack (outermost last) to a router whose state is set.
///
/// Order, outside in: compression, `observe` (request id, span, metrics, problem rendering),
/// catch-panic, timeout, body limit. Compression sits outside `observe` because `observe`
/// may replace a body, which must happen before it is encoded.
pub fn with_middleware(routes: Router, http: &HttpOptions) -> Router {
    let app = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(detach))
        .layer(DefaultBodyLimit::max(http.body_limit))
        // Also bound bodies read as streams, which DefaultBodyLimit does not see.
        .layer(RequestBodyLimitLayer::new(http.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            http.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(observe::observe));
    if http.compression {
        app.layer(CompressionLayer::new())
    } else {
        app
    }
}

/// Runs the handler in a task of its own. When the client goes away or the timeout answers
/// first, the handler still runs to its end instead of being dropped at an `.await`: a write
/// commits or rolls back whole, and a pooled connection is never put back inside an open
/// transaction (dropping a transaction's `begin` half-way can leave it open in sqlx 0.9.0).
async fn detach(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let task = tokio::spawn(next.run(req).instrument(tracing::Span::current()));
    match task.await {
        Ok(res) => res,
        // The panic goes on to the catch-panic layer, which answers the logged 500.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => {
            ApiError::internal(anyhow::anyhow!("the handler task ended: {e}")).into_response()
        }
    }
}

/// 404: a problem for API clients, the friendly page for a browser asking for HTML.
async fn not_found(
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: axum::http::HeaderMap,
    rid: Option<axum::Extension<observe::RequestId>>,
) -> Response {
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let api_path = ["/api/", "/webhooks/", "/admin/"]
        .iter()
        .any(|p| uri.path().starts_with(p));
    if wants_html && !api_path && method == Method::GET {
        return web::not_found_page(rid.map(|r| r.0.0).unwrap_or_default());
    }
    ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A handler panic becomes a logged 500 problem; the server keeps serving.
fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    ApiError::internal(anyhow::anyhow!("handler panicked: {msg}")).into_response()
}
