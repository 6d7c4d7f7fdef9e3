//! The web pages customers and shop admins use: server-rendered (askama) with HTMX for partial
//! updates and live order status over Server-Sent Events.
//!
//! Every page route runs through [`session_layer`]: it loads the server-side session named by
//! the cookie (or starts an anonymous one that carries the CSRF token), refuses a state-changing
//! request whose CSRF token or origin does not check out, resolves the signed-in user into the
//! same [`Principal`] the JSON API uses, renders failures as friendly pages and adds the security
//! headers. The handlers reuse the API's validation and storage functions, so a rule holds the
//! same on both surfaces.

pub mod account;
pub mod assets;
pub mod dashboard;
pub mod i18n;
pub mod orders;
pub mod sessions;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use shopkeep_domain::accounts::{Scope, scopes_for};
use shopkeep_domain::{ShopId, Timestamp, UserId};
use shopkeep_store::{ShopScope, accounts as store};

use crate::auth::{Credential, Principal};
use crate::observe::RequestId;
use crate::{ApiError, AppState};
use i18n::Tr;
use sessions::{Session, SessionStore};

/// Web settings.
#[derive(Debug, Clone, Default)]
pub struct WebOptions {
    /// Mark the session cookie `Secure` and name it with the `__Host-` prefix. Turn on when
    /// shopkeep is reached over HTTPS (directly or through a proxy).
    pub secure_cookies: bool,
}

/// Sessions and settings of the web pages.
pub struct WebService {
    /// Where sessions live: the database, or Redis/Valkey when configured.
    pub sessions: SessionStore,
    /// Settings.
    pub opts: WebOptions,
}

impl WebService {
    /// The session cookie's name: with the `__Host-` prefix when the cookie is `Secure`.
    pub fn cookie_name(secure: bool) -> &'static str {
        if secure {
            "__Host-shopkeep_session"
        } else {
            "shopkeep_session"
        }
    }

    /// `Set-Cookie` for a session token.
    fn cookie(&self, token: &str, secure: bool) -> HeaderValue {
        let max_age = sessions::ABSOLUTE_US / 1_000_000;
        HeaderValue::from_str(&format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            Self::cookie_name(secure),
            if secure { "; Secure" } else { "" }
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that removes the session cookie.
    fn clear_cookie(&self, secure: bool) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            Self::cookie_name(secure),
            if secure { "; Secure" } else { "" }
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The CSRF token's form field.
pub const CSRF_FIELD: &str = "csrf";
/// The CSRF token's header (HTMX sends it on every request).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Content-Security-Policy of every page: scripts and styles only from shopkeep itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page routes (behind [`session_layer`]) and the assets.
pub fn router(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(home))
        .route("/login", get(account::login_page).post(account::login))
        .route(
            "/register",
            get(account::register_page).post(account::register),
        )
        .route("/register/check", post(account::register_check))
        .route("/logout", post(account::logout))
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/new", get(orders::new_page))
        .route("/orders/events", get(orders::events))
        .route("/orders/{id}", get(orders::detail))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/orders", get(dashboard::table))
        .route("/dashboard/orders/{id}/approve", post(dashboard::approve))
        .route("/dashboard/orders/{id}/reject", post(dashboard::reject))
        .route("/dashboard/export.csv", get(dashboard::export))
        .route_layer(from_fn_with_state(state.clone(), session_layer));
    pages.route("/assets/{file}", get(assets::serve))
}

/// The signed-in user of a page.
#[derive(Debug, Clone)]
pub struct WebUser {
    /// The same caller the JSON API sees.
    pub principal: Principal,
    /// Username.
    pub username: String,
    /// May decide orders (`orders:admin`).
    pub shop_admin: bool,
}

impl WebUser {
    /// The user id.
    pub fn id(&self) -> UserId {
        self.principal.user.unwrap_or(UserId(uuid::Uuid::nil()))
    }
}

/// What the session layer hands every page handler.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The session (signed in or anonymous).
    pub session: Session,
    /// The signed-in user.
    pub user: Option<WebUser>,
    /// The request came from HTMX (answer with a fragment).
    pub htmx: bool,
    /// Texts.
    pub tr: Tr,
    /// The request id, shown on error pages.
    pub request_id: String,
    /// The client address as the auth settings resolve it.
    pub ip: Option<std::net::IpAddr>,
    /// The cookie is `Secure` (configured, or a trusted proxy saw HTTPS).
    pub secure: bool,
}

impl Ctx {
    /// The signed-in user, or a redirect to the sign-in page.
    pub fn user(&self) -> Result<&WebUser, WebError> {
        self.user.as_ref().ok_or(WebError::SignIn)
    }

    /// A shop admin, or the 403 page.
    pub fn admin(&self) -> Result<&WebUser, WebError> {
        let u = self.user()?;
        if u.shop_admin {
            Ok(u)
        } else {
            Err(WebError::Status(StatusCode::FORBIDDEN, None))
        }
    }

    /// The frame of a page; shows (and clears) the session's flash message.
    pub async fn layout(&self, state: &AppState, title: &str, nav: &'static str) -> Layout {
        let flash = self.session.flash.as_deref().map(Flash::decode);
        if flash.is_some()
            && let Err(e) = state.web.sessions.set_flash(&self.session, None).await
        {
            tracing::warn!(error = %e, "clearing a flash message failed");
        }
        self.layout_with(title, nav, flash)
    }

    /// The frame of a page with a given flash (none stored).
    pub fn layout_with(&self, title: &str, nav: &'static str, flash: Option<Flash>) -> Layout {
        Layout {
            tr: self.tr,
            title: title.to_string(),
            csrf: self.session.csrf.clone(),
            user: self.user.as_ref().map(|u| NavUser {
                username: u.username.clone(),
                shop_admin: u.shop_admin,
            }),
            flash,
            nav,
        }
    }

    /// Stores a flash message for the next page.
    pub async fn flash(&self, state: &AppState, f: &Flash) {
        if let Err(e) = state
            .web
            .sessions
            .set_flash(&self.session, Some(&f.encode()))
            .await
        {
            tracing::warn!(error = %e, "storing a flash message failed");
        }
    }
}

/// The navigation's view of the user.
#[derive(Debug, Clone)]
pub struct NavUser {
    /// Username.
    pub username: String,
    /// Shows the dashboard link.
    pub shop_admin: bool,
}

/// A one-time message shown on the next page.
#[derive(Debug, Clone)]
pub struct Flash {
    /// `success`, `info` or `error`.
    pub kind: &'static str,
    /// The text.
    pub text: String,
    /// An optional link: (href, label).
    pub link: Option<(String, String)>,
}

impl Flash {
    /// A success message.
    pub fn success(text: impl Into<String>) -> Self {
        Self {
            kind: "success",
            text: text.into(),
            link: None,
        }
    }

    /// An informational message.
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            kind: "info",
            text: text.into(),
            link: None,
        }
    }

    /// An error message.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            kind: "error",
            text: text.into(),
            link: None,
        }
    }

    fn encode(&self) -> String {
        serde_json::json!({ "kind": self.kind, "text": self.text, "link": self.link }).to_string()
    }

    fn decode(s: &str) -> Self {
        let v: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
        let kind = match v["kind"].as_str() {
            Some("success") => "success",
            Some("error") => "error",
            _ => "info",
        };
        let link = match (v["link"][0].as_str(), v["link"][1].as_str()) {
            (Some(h), Some(l)) if h.starts_with('/') => Some((h.to_string(), l.to_string())),
            _ => None,
        };
        Self {
            kind,
            text: v["text"].as_str().unwrap_or_default().to_string(),
            link,
        }
    }
}

/// What every page template gets: texts, title, CSRF token, the user, the flash.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Texts.
    pub tr: Tr,
    /// The page title.
    pub title: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// The signed-in user.
    pub user: Option<NavUser>,
    /// A one-time message.
    pub flash: Option<Flash>,
    /// The current navigation entry.
    pub nav: &'static str,
}

impl Layout {
    /// The URL of an embedded asset.
    pub fn asset(&self, name: &str) -> String {
        assets::url(name)
    }
}

/// A failure a page handler returns; the session layer renders it as a page.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in: to the sign-in page.
    SignIn,
    /// A status with an optional detail sentence.
    Status(StatusCode, Option<String>),
    /// The CSRF or origin check failed.
    Csrf,
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        if status.is_server_error() {
            tracing::error!(error = ?e, "page failed");
            return WebError::Status(status, None);
        }
        WebError::Status(status, Some(e.detail().to_string()))
    }
}

/// Marks the redirect of a request that needs a signed-in user.
#[derive(Debug, Clone, Copy)]
struct SignInFirst;

/// Carried from a failed handler to the session layer, which renders the page.
#[derive(Debug, Clone)]
struct Failure {
    status: StatusCode,
    detail: Option<String>,
    csrf: bool,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, detail, csrf) = match self {
            WebError::SignIn => {
                // The session layer turns this into `HX-Redirect` for HTMX requests, whose
                // XMLHttpRequest would otherwise follow the 303 and swap the sign-in page in.
                let mut r = StatusCode::SEE_OTHER.into_response();
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/login"));
                r.extensions_mut().insert(SignInFirst);
                return r;
            }
            WebError::Status(s, d) => (s, d, false),
            WebError::Csrf => (StatusCode::FORBIDDEN, None, true),
        };
        let mut r = status.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.extensions_mut().insert(Failure {
            status,
            detail,
            csrf,
        });
        r
    }
}

/// The result of a page handler.
pub type WebResult = Result<Response, WebError>;

/// Renders a template as HTML with `status`.
pub fn render<T: Template>(status: StatusCode, t: &T) -> WebResult {
    match t.render() {
        Ok(html) => Ok((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            Err(WebError::Status(StatusCode::INTERNAL_SERVER_ERROR, None))
        }
    }
}

/// A validation message as a sentence: capital first letter, full stop.
pub(crate) fn sentence(s: &str) -> String {
    let mut c = s.chars();
    let mut out: String = match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => return String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A `303 See Other` (or `HX-Redirect` for HTMX) to `to`.
pub fn redirect(ctx: &Ctx, to: &str) -> Response {
    let v = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/"));
    if ctx.htmx {
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut().insert("hx-redirect", v);
        r
    } else {
        let mut r = StatusCode::SEE_OTHER.into_response();
        r.headers_mut().insert(header::LOCATION, v);
        r
    }
}

#[derive(Template)]
#[template(path = "web/error.html")]
struct ErrorPage {
    l: Layout,
    heading: &'static str,
    text: String,
    request_id: String,
}

fn error_page(ctx: &Ctx, f: &Failure) -> Response {
    let tr = ctx.tr;
    let (heading, text) = match (f.status, f.csrf) {
        (_, true) => (tr.t("error.403.title"), tr.t("error.csrf.text").to_string()),
        (StatusCode::FORBIDDEN, _) => (tr.t("error.403.title"), tr.t("error.403.text").into()),
        (StatusCode::NOT_FOUND, _) => (tr.t("error.404.title"), tr.t("error.404.text").into()),
        (StatusCode::SERVICE_UNAVAILABLE, _) => {
            (tr.t("error.503.title"), tr.t("error.503.text").into())
        }
        (s, _) if s.is_server_error() => (tr.t("error.500.title"), tr.t("error.500.text").into()),
        (StatusCode::CONFLICT, _) => (
            tr.t("error.409.title"),
            f.detail.clone().unwrap_or_default(),
        ),
        _ => (tr.t("error.title"), f.detail.clone().unwrap_or_default()),
    };
    let page = ErrorPage {
        l: ctx.layout_with(heading, "", None),
        heading,
        text,
        request_id: ctx.request_id.clone(),
    };
    match page.render() {
        Ok(html) => (f.status, Html(html)).into_response(),
        Err(_) => f.status.into_response(),
    }
}

/// The 404 page for an unknown address asked for by a browser (no session is started).
pub fn not_found_page(request_id: String) -> Response {
    let ctx = bare_ctx(request_id, false);
    let mut r = error_page(
        &ctx,
        &Failure {
            status: StatusCode::NOT_FOUND,
            detail: None,
            csrf: false,
        },
    );
    security_headers(r.headers_mut());
    r
}

/// The headers every page and fragment carries.
fn security_headers(h: &mut HeaderMap) {
    page_headers(h, CSP);
}

/// The headers of an HTML page with its Content-Security-Policy (also the operator pages').
pub(crate) fn page_headers(h: &mut HeaderMap, csp: &'static str) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The session token from the `Cookie` header.
fn cookie_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// True when the request plainly comes from another site: an `Origin` whose host is not ours,
/// or a `Sec-Fetch-Site` other than `same-origin`/`none`.
fn cross_site(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

/// The `csrf` field of a urlencoded form, as sent (tokens are base64url, never escaped).
fn form_token(body: &[u8]) -> Option<&[u8]> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (k == CSRF_FIELD.as_bytes()).then_some(v)
    })
}

fn tokens_match(expected: &str, given: &[u8]) -> bool {
    !expected.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given).is_ok()
}

/// The signed-in user of a session, or `None` when the account or its membership is gone.
pub(crate) async fn resolve_user(
    state: &AppState,
    user: uuid::Uuid,
    shop: uuid::Uuid,
) -> Result<Option<WebUser>, ApiError> {
    let (row, role) = tokio::try_join!(
        store::get_user(&state.db, UserId(user)),
        store::membership(&state.db, ShopId(shop), UserId(user))
    )?;
    let (Some(row), Some(role)) = (row, role) else {
        return Ok(None);
    };
    let scopes = scopes_for(role, row.is_admin);
    let shop_admin = scopes.contains(&Scope::OrdersAdmin);
    Ok(Some(WebUser {
        principal: Principal {
            user: Some(UserId(user)),
            username: Some(row.username.clone()),
            scope: ShopScope::verified(ShopId(shop)),
            scopes,
            is_admin: row.is_admin,
            credential: Credential::Session,
        },
        username: row.username,
        shop_admin,
    }))
}

/// Loads or starts the session, checks CSRF and origin on state-changing requests, resolves the
/// user, renders failures as pages and adds the security headers.
async fn session_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut res = match session_inner(&state, req, next).await {
        Ok(r) => r,
        Err(r) => r,
    };
    security_headers(res.headers_mut());
    res
}

async fn session_inner(state: &AppState, req: Request, next: Next) -> Result<Response, Response> {
    let now = Timestamp::now().0;
    let web = &state.web;
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let ip = crate::auth::ip::client_ip(&parts, &state.auth.opts.trusted_proxies);
    let htmx = parts.headers.contains_key("hx-request");
    let secure = web.opts.secure_cookies
        || crate::auth::ip::forwarded_https(&parts, &state.auth.opts.trusted_proxies);
    let unavailable = |e: anyhow::Error| {
        tracing::error!(error = %e, "the session store is unavailable");
        let ctx = bare_ctx(request_id.clone(), htmx);
        error_page(
            &ctx,
            &Failure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                detail: None,
                csrf: false,
            },
        )
    };
    let loaded = match cookie_token(&parts.headers, WebService::cookie_name(secure)) {
        Some(t) => web.sessions.load(t, now).await.map_err(&unavailable)?,
        None => None,
    };
    let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let (session, new_token) = match loaded {
        Some(s) => (s, None),
        None if changes => {
            let ctx = bare_ctx(request_id, htmx);
            return Err(csrf_refused(&ctx));
        }
        None => {
            let (t, s) = web.sessions.create(None, now).await.map_err(&unavailable)?;
            (s, Some(t))
        }
    };
    let mut ctx = Ctx {
        session,
        user: None,
        htmx,
        tr: Tr::default(),
        request_id,
        ip,
        secure,
    };
    let body = if changes {
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes().to_vec());
        let bytes = match axum::body::to_bytes(body, 1 << 20).await {
            Ok(b) => b,
            Err(_) => {
                return Err(error_page(
                    &ctx,
                    &Failure {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        detail: None,
                        csrf: false,
                    },
                ));
            }
        };
        let given = header_token.or_else(|| form_token(&bytes).map(<[u8]>::to_vec));
        let ok = given.is_some_and(|g| tokens_match(&ctx.session.csrf, &g))
            && !cross_site(&parts.headers, &parts.uri);
        if !ok {
            tracing::warn!(
                path = parts.uri.path(),
                "web request refused: CSRF or origin check failed"
            );
            return Err(csrf_refused(&ctx));
        }
        Body::from(bytes)
    } else {
        body
    };
    if let (Some(user), Some(shop)) = (ctx.session.user_id, ctx.session.shop_id) {
        match resolve_user(state, user, shop).await {
            Ok(Some(u)) => {
                parts.extensions.insert(u.principal.clone());
                ctx.user = Some(u);
            }
            Ok(None) => {
                // The account or its membership is gone: the session ends.
                if let Err(e) = web.sessions.destroy(&ctx.session).await {
                    tracing::warn!(error = %e, "ending a stale session failed");
                }
                ctx.session.user_id = None;
                ctx.session.shop_id = None;
            }
            Err(e) => {
                let f = WebError::from(e);
                return Err(f.into_response_with(&ctx));
            }
        }
    }
    parts.extensions.insert(ctx.clone());
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if res.extensions_mut().remove::<SignInFirst>().is_some() && ctx.htmx {
        res = redirect(&ctx, "/login");
    }
    if let Some(f) = res.extensions_mut().remove::<Failure>() {
        let headers = std::mem::take(res.headers_mut());
        res = error_page(&ctx, &f);
        for (k, v) in &headers {
            if k == header::RETRY_AFTER || k == header::SET_COOKIE {
                res.headers_mut().append(k, v.clone());
            }
        }
    }
    if let Some(t) = new_token
        && !res.headers().contains_key(header::SET_COOKIE)
    {
        res.headers_mut()
            .append(header::SET_COOKIE, web.cookie(&t, secure));
    }
    Ok(res)
}

impl WebError {
    fn into_response_with(self, ctx: &Ctx) -> Response {
        let mut r = self.into_response();
        match r.extensions_mut().remove::<Failure>() {
            Some(f) => error_page(ctx, &f),
            None => r,
        }
    }
}

fn csrf_refused(ctx: &Ctx) -> Response {
    error_page(
        ctx,
        &Failure {
            status: StatusCode::FORBIDDEN,
            detail: None,
            csrf: true,
        },
    )
}

fn bare_ctx(request_id: String, htmx: bool) -> Ctx {
    Ctx {
        session: Session {
            token_hash: Vec::new(),
            user_id: None,
            shop_id: None,
            csrf: String::new(),
            flash: None,
            created_at: 0,
            last_seen_at: 0,
        },
        user: None,
        htmx,
        tr: Tr::default(),
        request_id,
        ip: None,
        secure: false,
    }
}

/// `/`: the dashboard for shop admins, the orders for customers, else the sign-in page.
async fn home(axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    match &ctx.user {
        Some(u) if u.shop_admin => redirect(&ctx, "/dashboard"),
        Some(_) => redirect(&ctx, "/orders"),
        None => redirect(&ctx, "/login"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_field_is_found_in_a_form() {
        assert_eq!(form_token(b"a=1&csrf=abc_-&b=2"), Some(&b"abc_-"[..]));
        assert_eq!(form_token(b"csrf="), Some(&b""[..]));
        assert_eq!(form_token(b"xcsrf=1&csrfx=2"), None);
        assert_eq!(form_token(b""), None);
        assert!(tokens_match("abc", b"abc"));
        assert!(!tokens_match("abc", b"abd"));
        assert!(!tokens_match("", b""));
    }

    #[test]
    fn requests_from_other_sites_are_told_apart() {
        let uri: axum::http::Uri = "/orders".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("shop.example:8080"));
        assert!(
            !cross_site(&h, &uri),
            "no Origin: a same-site form of an older browser"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://shop.example:8080"),
        );
        assert!(!cross_site(&h, &uri));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&h, &uri));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h, &uri));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h, &uri));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h, &uri));
    }

    #[test]
    fn the_session_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; shopkeep_session=tok; b=2"),
        );
        assert_eq!(cookie_token(&h, "shopkeep_session"), Some("tok"));
        assert_eq!(cookie_token(&h, "__Host-shopkeep_session"), None);
    }

    #[test]
    fn flash_messages_survive_the_session_store() {
        let f = Flash {
            kind: "success",
            text: "Order placed.".into(),
            link: Some(("/orders/1".into(), "View order".into())),
        };
        let back = Flash::decode(&f.encode());
        assert_eq!(back.kind, "success");
        assert_eq!(back.text, "Order placed.");
        assert_eq!(back.link, f.link);
        let evil = Flash::decode(r#"{"kind":"x","text":"t","link":["https://evil","l"]}"#);
        assert_eq!(evil.kind, "info");
        assert!(evil.link.is_none(), "only local links");
    }
}
