//! The web pages end to end on both engines, as a browser meets them: the session cookie and the
//! CSRF token, sign-in and sign-out, registration, orders, the dashboard, live updates, escaping,
//! the assets and the error pages.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_engines;
use crate::harness::{
    Engine, PASSWORD, TestApp, TestStorage, problem, spawn_app, spawn_with, spawn_with_admin,
};

both_engines!(
    the_login_page_starts_an_anonymous_session_with_strict_headers,
    state_changing_requests_need_the_sessions_csrf_token_and_our_origin,
    signing_in_replaces_the_session_and_repeated_failures_are_limited,
    signing_out_ends_the_session_and_says_so,
    registration_checks_fields_while_typing_and_on_submit,
    customers_place_list_and_cancel_orders_on_the_pages,
    order_texts_are_escaped_on_every_page,
    the_dashboard_shows_and_decides_orders_for_shop_admins_only,
    two_admins_approving_at_once_on_the_pages_exactly_one_wins,
    role_changes_and_removal_from_the_shop_apply_to_open_sessions,
    live_updates_reach_only_the_customer_whose_order_changed,
    assets_are_hashed_cached_for_a_year_and_sent_gzipped,
    unknown_pages_answer_in_the_format_asked_for,
    a_garbage_session_cookie_is_treated_as_anonymous,
    an_htmx_request_without_a_session_is_sent_to_sign_in_in_a_way_htmx_follows,
    with_redis_every_instance_sees_the_same_sessions,
    secure_cookies_use_the_host_prefix,
    the_csv_export_is_whole_when_compressed,
);

/// The session cookie's name without `http.secure_cookies`.
const COOKIE: &str = "shopkeep_session";

/// How long a test waits for a live update that should come.
const LIVE_WAIT: Duration = Duration::from_secs(5);

/// A response read whole.
struct Page {
    status: u16,
    headers: HeaderMap,
    bytes: Vec<u8>,
    body: String,
}

impl Page {
    async fn read(res: reqwest::Response) -> Page {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("response body").to_vec();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Page {
            status,
            headers,
            bytes,
            body,
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn location(&self) -> &str {
        self.header("location")
    }

    fn is_html(&self) -> bool {
        self.header("content-type").starts_with("text/html")
    }

    /// A whole HTML page with `status` that contains `text`.
    fn assert_page(&self, status: u16, text: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.is_html(), "{}", self.header("content-type"));
        assert!(self.body.starts_with("<!doctype html>"), "{}", self.body);
        assert!(self.body.contains(text), "{text:?} in {}", self.body);
    }

    /// An HTML fragment (no document around it) with `status` that contains `text`.
    fn assert_fragment(&self, status: u16, text: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.is_html(), "{}", self.header("content-type"));
        assert!(!self.body.contains("<html"), "a fragment: {}", self.body);
        assert!(self.body.contains(text), "{text:?} in {}", self.body);
    }

    fn session_cookies(&self) -> Vec<&str> {
        session_cookies(&self.headers)
    }
}

/// The `Set-Cookie` lines for the session cookie.
fn session_cookies(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|c| c.starts_with(&format!("{COOKIE}=")))
        .collect()
}

/// A browser: keeps the session cookie and the CSRF token of the last page that carried one,
/// and sends forms the way a browser without JavaScript does or the way htmx does.
struct Browser<'a> {
    app: &'a TestApp,
    cookie: Mutex<Option<String>>,
    csrf: Mutex<Option<String>>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookie: Mutex::new(None),
            csrf: Mutex::new(None),
        }
    }

    /// A browser that presents `cookie` as its session.
    fn with_cookie(app: &'a TestApp, cookie: &str) -> Self {
        let b = Self::new(app);
        *b.cookie.lock().unwrap() = Some(cookie.to_string());
        b
    }

    fn cookie(&self) -> Option<String> {
        self.cookie.lock().unwrap().clone()
    }

    fn csrf(&self) -> String {
        self.csrf
            .lock()
            .unwrap()
            .clone()
            .expect("a page with a CSRF token was loaded")
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.app.client.request(method, self.app.url(path));
        match self.cookie() {
            Some(c) => rb.header(header::COOKIE, format!("{COOKIE}={c}")),
            None => rb,
        }
    }

    /// A POST as htmx sends it: `HX-Request` and the token in `X-CSRF-Token`.
    fn htmx_request(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
            .header("hx-request", "true")
            .header("x-csrf-token", self.csrf())
    }

    /// Takes the session cookie a response sets (an empty value removes it).
    fn keep(&self, headers: &HeaderMap) {
        if let Some(line) = session_cookies(headers).last() {
            let value = line[COOKIE.len() + 1..]
                .split(';')
                .next()
                .unwrap_or_default();
            *self.cookie.lock().unwrap() = Some(value.to_string()).filter(|v| !v.is_empty());
        }
    }

    async fn send(&self, rb: RequestBuilder) -> Page {
        let res = rb.send().await.expect("request");
        self.keep(res.headers());
        let page = Page::read(res).await;
        if let Some(token) = attr(&page.body, "name=\"csrf\"", "value") {
            *self.csrf.lock().unwrap() = Some(token.to_string());
        }
        page
    }

    /// A GET whose body is read as it streams (Server-Sent Events).
    async fn open(&self, path: &str) -> reqwest::Response {
        let res = self
            .request(Method::GET, path)
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .expect("request");
        self.keep(res.headers());
        res
    }

    async fn get(&self, path: &str) -> Page {
        self.send(
            self.request(Method::GET, path)
                .header(header::ACCEPT, "text/html"),
        )
        .await
    }

    async fn get_htmx(&self, path: &str) -> Page {
        self.send(self.request(Method::GET, path).header("hx-request", "true"))
            .await
    }

    /// Posts a form with the token in its `csrf` field.
    async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf();
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.send(self.request(Method::POST, path).form(&form))
            .await
    }

    /// Posts a form as htmx does.
    async fn htmx(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(self.htmx_request(path).form(fields)).await
    }
}

/// Signs `username` in through the sign-in form and loads a page, so the browser holds the
/// signed-in session and its CSRF token.
async fn sign_in<'a>(app: &'a TestApp, username: &str) -> Browser<'a> {
    let b = Browser::new(app);
    assert_eq!(b.get("/login").await.status, 200);
    let res = b
        .submit("/login", &[("username", username), ("password", PASSWORD)])
        .await;
    assert_eq!(
        (res.status, res.location()),
        (303, "/"),
        "sign in {username}: {}",
        res.body
    );
    b.get("/orders").await.assert_page(200, username);
    b
}

/// Registers a customer and signs them in on the web.
async fn customer<'a>(app: &'a TestApp, username: &str) -> Browser<'a> {
    app.register(username, PASSWORD).await;
    sign_in(app, username).await
}

/// Places an order of one `item` through the new-order form (htmx); returns its id.
async fn place(b: &Browser<'_>, item: &str, notes: &str) -> String {
    let key = Uuid::now_v7().simple().to_string();
    let res = b
        .htmx(
            "/orders",
            &[
                ("item_name", item),
                ("quantity", "1"),
                ("notes", notes),
                ("idempotency_key", &key),
            ],
        )
        .await;
    res.assert_fragment(201, "Order placed.");
    order_link(&res.body).expect("a link to the new order")
}

/// A number the test database answers.
async fn count(app: &TestApp, sql: &'static str) -> i64 {
    let n: i64 =
        shopkeep_store::on_pool!(&app.db, pool => sqlx::query_scalar(sql).fetch_one(pool).await)
            .unwrap();
    n
}

async fn orders_stored(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM orders").await
}

async fn signed_in_sessions(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM web_sessions WHERE user_id IS NOT NULL",
    )
    .await
}

/// The attribute `name` of the first tag that contains `marker` (such as `name="csrf"`).
pub fn attr<'h>(html: &'h str, marker: &str, name: &str) -> Option<&'h str> {
    let at = html.find(marker)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!(" {name}=\"");
    let value = tag.find(&key)? + key.len();
    let len = tag[value..].find('"')?;
    Some(&tag[value..value + len])
}

/// The text of the element with `id`, up to its first child tag, trimmed.
fn text_of<'h>(html: &'h str, id: &str) -> Option<&'h str> {
    let at = html.find(&format!(" id=\"{id}\""))?;
    let open_end = at + html[at..].find('>')? + 1;
    let close = open_end + html[open_end..].find('<')?;
    Some(html[open_end..close].trim())
}

/// The first order the page links to (`href="/orders/<uuid>"`).
fn order_link(html: &str) -> Option<String> {
    html.match_indices("href=\"/orders/").find_map(|(i, m)| {
        let rest = &html[i + m.len()..];
        Uuid::parse_str(&rest[..rest.find('"')?])
            .ok()
            .map(|u| u.to_string())
    })
}

/// The table row of an order.
fn row<'h>(html: &'h str, id: &str) -> Option<&'h str> {
    let start = html.find(&format!("<tr id=\"order-{id}\""))?;
    let len = html[start..].find("</tr>")?;
    Some(&html[start..start + len])
}

/// The count on a status tab.
fn tab_count(html: &str, key: &str) -> Option<i64> {
    let at = html.find(&format!("class=\"tab\" data-status=\"{key}\""))?;
    let marker = "<span class=\"count\">";
    let start = at + html[at..].find(marker)? + marker.len();
    html[start..start + html[start..].find('<')?].parse().ok()
}

/// The value shown on a dashboard card.
fn card<'h>(html: &'h str, name: &str) -> Option<&'h str> {
    let at = html.find(&format!("data-card=\"{name}\""))?;
    let marker = "<p class=\"value\">";
    let start = at + html[at..].find(marker)? + marker.len();
    Some(&html[start..start + html[start..].find('<')?])
}

/// Asserts that `raw` appears on the page only HTML-escaped.
fn assert_escaped(html: &str, raw: &str, page: &str) {
    assert!(
        !html.contains(raw),
        "{page} shows {raw:?} unescaped: {html}"
    );
    let escape = |table: &[(char, &str)]| {
        raw.chars().fold(String::new(), |mut out, c| {
            match table.iter().find(|(from, _)| *from == c) {
                Some((_, to)) => out.push_str(to),
                None => out.push(c),
            }
            out
        })
    };
    let numeric = escape(&[
        ('&', "&#38;"),
        ('<', "&#60;"),
        ('>', "&#62;"),
        ('"', "&#34;"),
    ]);
    let named = escape(&[
        ('&', "&amp;"),
        ('<', "&lt;"),
        ('>', "&gt;"),
        ('"', "&quot;"),
    ]);
    assert!(
        html.contains(&numeric) || html.contains(&named),
        "{page} shows {raw:?} escaped: {html}"
    );
}

/// Server-Sent Events read frame by frame.
struct Events {
    res: reqwest::Response,
    buf: String,
    /// Every frame read so far.
    seen: Vec<String>,
}

impl Events {
    async fn open(b: &Browser<'_>, path: &str) -> Events {
        let res = b.open(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Events {
            res,
            buf: String::new(),
            seen: Vec::new(),
        }
    }

    /// The next frame `want` accepts, or `None` when none came within `within`.
    async fn next(&mut self, want: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame = self.buf[..end].to_string();
                self.buf.drain(..end + 2);
                self.seen.push(frame.clone());
                if want(&frame) {
                    return Some(frame);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn the_login_page_starts_an_anonymous_session_with_strict_headers(engine: Engine) {
    let app = spawn_app(engine).await;
    let b = Browser::new(&app);
    let page = b.get("/login").await;
    page.assert_page(200, "<html lang=\"en\">");
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");

    let cookies = page.session_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let token = b.cookie().expect("a session cookie");
    assert!(
        cookies[0].starts_with(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax")),
        "{}",
        cookies[0]
    );
    assert!(!cookies[0].contains("Secure"), "plain HTTP: {}", cookies[0]);
    assert!(
        token.len() >= 43
            && token
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{token}"
    );

    let csp = page.header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("'unsafe-inline'"), "{csp}");
    assert!(!csp.contains("'unsafe-eval'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("referrer-policy"), "same-origin");
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("cache-control"), "no-store");
    // No inline script: every script element loads a file.
    for (i, _) in page.body.match_indices("<script") {
        assert!(
            page.body[i..].starts_with("<script src=\"/assets/"),
            "{}",
            &page.body[i..]
        );
    }
    let csrf = b.csrf();
    assert!(csrf.len() >= 43, "{csrf}");
    assert!(
        page.body
            .contains(&format!(r#"hx-headers='{{"X-CSRF-Token": "{csrf}"}}'"#)),
        "htmx sends the token: {}",
        page.body
    );

    // The next visit keeps the session and its token.
    let again = b.get("/login").await;
    assert_eq!(again.status, 200);
    assert!(again.session_cookies().is_empty(), "{:?}", again.headers);
    assert_eq!(b.csrf(), csrf);
    assert_eq!(count(&app, "SELECT count(*) FROM web_sessions").await, 1);
    assert_eq!(signed_in_sessions(&app).await, 0);
}

async fn state_changing_requests_need_the_sessions_csrf_token_and_our_origin(engine: Engine) {
    let app = spawn_app(engine).await;
    app.register("carl0001", PASSWORD).await;
    let creds = [("username", "carl0001"), ("password", PASSWORD)];
    let refused = |p: &Page, what: &str| {
        assert_eq!(p.status, 403, "{what}: {}", p.body);
        p.assert_page(403, "Request refused");
        assert!(p.session_cookies().is_empty(), "{what}: {:?}", p.headers);
    };
    let b = Browser::new(&app);
    b.get("/login").await;
    let csrf = b.csrf();
    let with_token = [("csrf", csrf.as_str()), creds[0], creds[1]];

    let p = b.send(b.request(Method::POST, "/login").form(&creds)).await;
    refused(&p, "no token");
    let wrong = "A".repeat(43);
    let p = b
        .send(b.request(Method::POST, "/login").form(&[
            ("csrf", wrong.as_str()),
            creds[0],
            creds[1],
        ]))
        .await;
    refused(&p, "a wrong token");
    let p = b
        .send(
            b.request(Method::POST, "/login")
                .header("x-csrf-token", &wrong)
                .form(&creds),
        )
        .await;
    refused(&p, "a wrong token in the header");
    let p = b
        .send(
            b.request(Method::POST, "/login")
                .header(header::ORIGIN, "https://evil.example")
                .form(&with_token),
        )
        .await;
    refused(&p, "another site's Origin");
    let p = b
        .send(
            b.request(Method::POST, "/login")
                .header("sec-fetch-site", "cross-site")
                .form(&with_token),
        )
        .await;
    refused(&p, "Sec-Fetch-Site: cross-site");
    // The token belongs to its session: without the cookie, or with another session's, it is void.
    let stranger = Browser::new(&app);
    let p = stranger
        .send(stranger.request(Method::POST, "/login").form(&with_token))
        .await;
    refused(&p, "no session cookie");
    stranger.get("/login").await;
    let p = stranger
        .send(stranger.request(Method::POST, "/login").form(&with_token))
        .await;
    refused(&p, "another session's token");
    assert_eq!(signed_in_sessions(&app).await, 0);
    assert_eq!(
        b.get("/orders").await.location(),
        "/login",
        "still anonymous"
    );

    // The header htmx sends works like the field, and our own origin passes.
    let p = b
        .send(
            b.request(Method::POST, "/login")
                .header("x-csrf-token", &csrf)
                .header(header::ORIGIN, format!("http://{}", app.addr))
                .header("sec-fetch-site", "same-origin")
                .form(&creds),
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/"), "{}", p.body);
    assert_eq!(signed_in_sessions(&app).await, 1);
    let by_field = sign_in(&app, "carl0001").await;
    assert_eq!(signed_in_sessions(&app).await, 2);

    // Signed in, an order without the token, with a stale one or from another site is refused.
    b.get("/orders/new").await.assert_page(200, "new-order");
    assert_ne!(b.csrf(), csrf, "signing in issued a new token");
    let order = [("item_name", "Forged"), ("quantity", "1")];
    let p = b
        .send(b.request(Method::POST, "/orders").form(&order))
        .await;
    refused(&p, "an order without a token");
    let p = b
        .send(
            b.request(Method::POST, "/orders")
                .header("hx-request", "true")
                .form(&order),
        )
        .await;
    refused(&p, "an htmx order without a token");
    let p = b
        .send(b.request(Method::POST, "/orders").form(&[
            ("csrf", csrf.as_str()),
            order[0],
            order[1],
        ]))
        .await;
    refused(&p, "an order with the pre-login token");
    let p = b
        .send(
            b.htmx_request("/orders")
                .header(header::ORIGIN, "https://evil.example")
                .form(&order),
        )
        .await;
    refused(&p, "an order from another site");
    let p = b
        .send(b.request(Method::POST, "/orders").form(&[
            ("csrf", by_field.csrf().as_str()),
            order[0],
            order[1],
        ]))
        .await;
    refused(&p, "an order with another session's token");
    assert_eq!(orders_stored(&app).await, 0, "no order was created");

    let p = b.submit("/orders", &order).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(orders_stored(&app).await, 1);
}

async fn signing_in_replaces_the_session_and_repeated_failures_are_limited(engine: Engine) {
    let storage = TestStorage::new(engine).await;
    let mut config = storage.config();
    config.bootstrap_admin = Some(("root".into(), PASSWORD.to_string().into()));
    config.auth.login_max_failures = 3;
    let app = spawn_with(storage, config).await;
    app.register("dora0001", PASSWORD).await;

    let b = Browser::new(&app);
    b.get("/login").await;
    let before = b.cookie().unwrap();
    let before_csrf = b.csrf();
    let p = b
        .submit(
            "/login",
            &[("username", "dora0001"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/"), "{}", p.body);
    assert_eq!(p.session_cookies().len(), 1, "{:?}", p.headers);
    let after = b.cookie().unwrap();
    assert_ne!(after, before, "a new session at sign-in");
    let home = b.get("/").await;
    assert_eq!((home.status, home.location()), (303, "/orders"));
    let orders = b.get("/orders").await;
    orders.assert_page(200, "dora0001");
    assert_ne!(b.csrf(), before_csrf, "a new CSRF token at sign-in");
    assert_eq!(
        b.get("/login").await.location(),
        "/",
        "signed in: no sign-in form"
    );

    // The cookie from before signing in grants nothing now.
    let old = Browser::with_cookie(&app, &before);
    let p = old.get("/orders").await;
    assert_eq!((p.status, p.location()), (303, "/login"));
    let fresh = old.cookie().unwrap();
    assert!(fresh != before && fresh != after, "a new anonymous session");
    let stale = Browser::with_cookie(&app, &before);
    let p = stale
        .send(
            stale
                .request(Method::POST, "/logout")
                .form(&[("csrf", before_csrf.as_str())]),
        )
        .await;
    p.assert_page(403, "Request refused");
    b.get("/orders").await.assert_page(200, "dora0001");

    // A shop admin starts on the dashboard.
    let admin = sign_in(&app, "root").await;
    let home = admin.get("/").await;
    assert_eq!((home.status, home.location()), (303, "/dashboard"));

    // A wrong password and an unknown user read the same.
    let anon = Browser::new(&app);
    anon.get("/login").await;
    let wrong = anon
        .submit(
            "/login",
            &[("username", "dora0001"), ("password", "wrong-Password-1")],
        )
        .await;
    wrong.assert_page(401, "Invalid username or password.");
    assert_eq!(
        attr(&wrong.body, "id=\"username\"", "value"),
        Some("dora0001")
    );
    assert!(wrong.session_cookies().is_empty());
    let unknown = anon
        .submit(
            "/login",
            &[("username", "nobody99"), ("password", "wrong-Password-1")],
        )
        .await;
    unknown.assert_page(401, "Invalid username or password.");
    assert_eq!(
        text_of(&wrong.body, "login-error"),
        text_of(&unknown.body, "login-error")
    );
    let third = anon
        .submit(
            "/login",
            &[("username", "dora0001"), ("password", "wrong-Password-2")],
        )
        .await;
    assert_eq!(third.status, 401);

    // auth.login_max_failures = 3: now even the right password waits.
    let limited = anon
        .submit(
            "/login",
            &[("username", "dora0001"), ("password", PASSWORD)],
        )
        .await;
    limited.assert_page(429, "Too many failed sign-in attempts.");
    let retry: u64 = limited
        .header("retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        limited
            .body
            .contains(&format!("Try again in {retry} seconds")),
        "{}",
        limited.body
    );
    assert!(limited.session_cookies().is_empty());
    assert_eq!(anon.get("/orders").await.location(), "/login");
    // The limit is the token endpoint's: the API refuses the same client too.
    let api = app
        .token(&[
            ("grant_type", "password"),
            ("username", "dora0001"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(api.status(), 429);
    assert_eq!(signed_in_sessions(&app).await, 2);
}

async fn signing_out_ends_the_session_and_says_so(engine: Engine) {
    let app = spawn_app(engine).await;
    let b = customer(&app, "emil0001").await;
    b.get("/orders")
        .await
        .assert_page(200, "action=\"/logout\"");
    let signed_in = b.cookie().unwrap();

    let p = b.send(b.request(Method::POST, "/logout")).await;
    p.assert_page(403, "Request refused");
    b.get("/orders").await.assert_page(200, "emil0001");

    let p = b.submit("/logout", &[]).await;
    assert_eq!((p.status, p.location()), (303, "/login"), "{}", p.body);
    let anonymous = b.cookie().expect("a new anonymous session");
    assert_ne!(anonymous, signed_in);
    let old = Browser::with_cookie(&app, &signed_in);
    let p = old.get("/orders").await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/login"),
        "the old cookie is dead"
    );
    assert_eq!(signed_in_sessions(&app).await, 0);

    b.get("/login")
        .await
        .assert_page(200, "You have signed out.");
    let again = b.get("/login").await;
    assert_eq!(again.status, 200);
    assert!(
        !again.body.contains("You have signed out."),
        "shown once: {}",
        again.body
    );
    assert_eq!(b.get("/orders").await.location(), "/login");
}

async fn registration_checks_fields_while_typing_and_on_submit(engine: Engine) {
    let app = spawn_app(engine).await;
    let users = || count(&app, "SELECT count(*) FROM users");
    let b = Browser::new(&app);
    b.get("/register")
        .await
        .assert_page(200, "id=\"username-error\"");
    let before = users().await;

    // While typing: out-of-band fragments for the field errors and the strength meter.
    let p = b
        .htmx(
            "/register/check",
            &[("username", "ab"), ("password", ""), ("email", "")],
        )
        .await;
    p.assert_fragment(200, "hx-swap-oob=\"true\"");
    assert!(
        p.body
            .contains(r#"<small id="username-error" class="field-error" data-for="username" hx-swap-oob="true">"#),
        "{}",
        p.body
    );
    assert_eq!(
        text_of(&p.body, "username-error"),
        Some("A username has 4 to 20 characters.")
    );
    assert_eq!(
        text_of(&p.body, "password-error"),
        Some(""),
        "an empty password is not wrong yet"
    );
    assert_eq!(text_of(&p.body, "email-error"), Some(""));
    assert!(
        p.body
            .contains(r#"id="password-meter" class="strength" hx-swap-oob="true""#)
    );
    assert_eq!(
        attr(&p.body, " id=\"password-strength\"", "value"),
        Some("0")
    );

    let weak = b
        .htmx(
            "/register/check",
            &[("username", "fern0001"), ("password", "password")],
        )
        .await;
    assert_eq!(text_of(&weak.body, "username-error"), Some(""));
    assert!(!text_of(&weak.body, "password-error").unwrap().is_empty());
    assert_eq!(
        attr(&weak.body, " id=\"password-strength\"", "value"),
        Some("0")
    );
    let strong = b
        .htmx(
            "/register/check",
            &[("username", "fern0001"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(text_of(&strong.body, "password-error"), Some(""));
    let score: u8 = attr(&strong.body, " id=\"password-strength\"", "value")
        .unwrap()
        .parse()
        .unwrap();
    assert!(score >= 3, "{}", strong.body);
    assert_eq!(users().await, before, "checking stores nothing");

    // Submitted with bad fields: 422, each message next to its field, nothing stored.
    let p = b
        .submit(
            "/register",
            &[
                ("username", "ab"),
                ("password", "short"),
                ("email", "not-an-email"),
            ],
        )
        .await;
    p.assert_page(422, "Please correct the fields marked below.");
    assert_eq!(
        text_of(&p.body, "username-error"),
        Some("A username has 4 to 20 characters.")
    );
    assert_eq!(
        text_of(&p.body, "password-error"),
        Some("A password has at least 8 characters.")
    );
    assert!(
        !text_of(&p.body, "email-error").unwrap().is_empty(),
        "{}",
        p.body
    );
    assert_eq!(p.body.matches("aria-invalid=\"true\"").count(), 3);
    assert_eq!(attr(&p.body, "id=\"username\"", "value"), Some("ab"));
    assert!(
        !p.body.contains("value=\"short\""),
        "the password is not sent back"
    );
    assert_eq!(users().await, before);

    // Valid: to the sign-in page, which says so.
    let p = b
        .submit(
            "/register",
            &[
                ("username", "Fern0001"),
                ("password", PASSWORD),
                ("email", "fern@example.com"),
            ],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/login"), "{}", p.body);
    b.get("/login").await.assert_page(200, "Account created");
    assert_eq!(users().await, before + 1);
    app.login("fern0001", PASSWORD).await;

    // The same name in other letters is taken: said next to the username field.
    let p = b
        .submit(
            "/register",
            &[("username", "FERN0001"), ("password", PASSWORD)],
        )
        .await;
    p.assert_page(409, "Please correct the fields marked below.");
    let taken = text_of(&p.body, "username-error").unwrap();
    assert!(taken.starts_with("This username is taken."), "{taken}");
    assert_eq!(text_of(&p.body, "password-error"), Some(""));
    assert_eq!(users().await, before + 1);
}

async fn customers_place_list_and_cancel_orders_on_the_pages(engine: Engine) {
    let app = spawn_app(engine).await;
    let b = customer(&app, "gina0001").await;
    let form = b.get("/orders/new").await;
    form.assert_page(200, "id=\"new-order\"");
    let key = attr(&form.body, "name=\"idempotency_key\"", "value")
        .unwrap()
        .to_string();
    assert!(key.len() >= 16, "{key}");

    // With htmx: the form comes back cleared, with the message and a link to the order.
    let fields = [
        ("item_name", "Green tea"),
        ("quantity", "2"),
        ("notes", "gift wrap"),
        ("idempotency_key", key.as_str()),
    ];
    let p = b.htmx("/orders", &fields).await;
    p.assert_fragment(201, "Order placed.");
    let id = order_link(&p.body).expect("a link to the order");
    assert!(p.body.contains(&format!("href=\"/orders/{id}\"")));
    let next_key = attr(&p.body, "name=\"idempotency_key\"", "value").unwrap();
    assert_ne!(next_key, key, "the next order gets a new key");
    assert_eq!(attr(&p.body, "name=\"item_name\"", "value"), Some(""));

    // The same submission again (a double click, a retry) is the same order.
    let again = b.htmx("/orders", &fields).await;
    again.assert_fragment(201, "Order placed.");
    assert_eq!(order_link(&again.body).as_deref(), Some(id.as_str()));
    assert_eq!(orders_stored(&app).await, 1);

    // Without htmx: to the new order, which shows the message.
    let key2 = Uuid::now_v7().simple().to_string();
    let p = b
        .submit(
            "/orders",
            &[
                ("item_name", "Black tea"),
                ("quantity", "1"),
                ("idempotency_key", &key2),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let id2 = p
        .location()
        .strip_prefix("/orders/")
        .and_then(|s| Uuid::parse_str(s).ok())
        .expect("to the order")
        .to_string();
    let detail = b.get(&format!("/orders/{id2}")).await;
    detail.assert_page(200, "Order placed.");
    assert!(detail.body.contains("Black tea"));
    assert!(detail.body.contains("data-status=\"PENDING\""));

    // Bad fields: the message next to the field, the typed value kept, nothing stored.
    for (item, quantity, field) in [
        ("", "1", "item_name"),
        ("Tea", "0", "quantity"),
        ("Tea", "101", "quantity"),
        ("Tea", "abc", "quantity"),
    ] {
        let key = Uuid::now_v7().simple().to_string();
        let p = b
            .htmx(
                "/orders",
                &[
                    ("item_name", item),
                    ("quantity", quantity),
                    ("idempotency_key", &key),
                ],
            )
            .await;
        p.assert_fragment(422, "id=\"new-order\"");
        let other = if field == "quantity" {
            "item_name"
        } else {
            "quantity"
        };
        let message = text_of(&p.body, &format!("{field}-error")).unwrap();
        assert!(!message.is_empty(), "{item:?} x {quantity:?}: {}", p.body);
        assert_eq!(
            text_of(&p.body, &format!("{other}-error")),
            Some(""),
            "{item:?} x {quantity:?}"
        );
        assert_eq!(
            attr(&p.body, &format!("name=\"{field}\""), "aria-invalid"),
            Some("true")
        );
        assert_eq!(attr(&p.body, "name=\"quantity\"", "value"), Some(quantity));
        if quantity == "abc" {
            assert_eq!(message, "Give a whole number from 1 to 100.");
        }
    }
    let p = b
        .submit("/orders", &[("item_name", " "), ("quantity", "1")])
        .await;
    p.assert_page(422, "id=\"new-order\"");
    assert!(!text_of(&p.body, "item_name-error").unwrap().is_empty());
    assert_eq!(orders_stored(&app).await, 2);

    // The list: tabs with counts, and the row.
    let list = b.get("/orders").await;
    list.assert_page(200, "id=\"tabs\"");
    assert_eq!(tab_count(&list.body, "all"), Some(2));
    assert_eq!(tab_count(&list.body, "pending"), Some(2));
    assert_eq!(tab_count(&list.body, "approved"), Some(0));
    let r = row(&list.body, &id).expect("the order's row");
    assert!(
        r.contains("Green tea") && r.contains("data-status=\"PENDING\""),
        "{r}"
    );
    assert!(
        r.contains(&format!("action=\"/orders/{id}/cancel\"")),
        "{r}"
    );
    let approved = b.get("/orders?status=approved").await;
    assert!(row(&approved.body, &id).is_none());
    assert_eq!(
        tab_count(&approved.body, "all"),
        Some(2),
        "counts ignore the tab"
    );
    assert!(approved.body.contains(
        "data-status=\"approved\" href=\"/orders?status=approved\" aria-current=\"page\""
    ));

    // Another customer: the order does not exist.
    let other = customer(&app, "hugo0002").await;
    other
        .get(&format!("/orders/{id}"))
        .await
        .assert_page(404, "Page not found");
    assert!(row(&other.get("/orders").await.body, &id).is_none());
    let p = other.htmx(&format!("/orders/{id}/cancel"), &[]).await;
    assert_eq!(p.status, 404, "{}", p.body);
    assert!(p.body.contains("Page not found"));

    // Cancelling in place, then once more.
    let p = b.htmx(&format!("/orders/{id}/cancel"), &[]).await;
    p.assert_fragment(200, "data-status=\"CANCELLED\"");
    assert!(
        !p.body.contains("/cancel\""),
        "no cancel button left: {}",
        p.body
    );
    let list = b.get("/orders").await;
    let r = row(&list.body, &id).unwrap();
    assert!(r.contains("data-status=\"CANCELLED\""), "{r}");
    assert_eq!(tab_count(&list.body, "cancelled"), Some(1));
    assert_eq!(tab_count(&list.body, "pending"), Some(1));
    let p = b.htmx(&format!("/orders/{id}/cancel"), &[]).await;
    p.assert_fragment(409, "data-status=\"CANCELLED\"");
    let p = b.submit(&format!("/orders/{id}/cancel"), &[]).await;
    p.assert_page(409, "Already changed");

    // Without htmx: back to the order with a message.
    let p = b.submit(&format!("/orders/{id2}/cancel"), &[]).await;
    assert_eq!(
        (p.status, p.location()),
        (303, format!("/orders/{id2}").as_str())
    );
    let detail = b.get(&format!("/orders/{id2}")).await;
    detail.assert_page(200, "Order cancelled.");
    assert!(detail.body.contains("data-status=\"CANCELLED\""));
}

async fn order_texts_are_escaped_on_every_page(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let c = customer(&app, "ivan0001").await;
    let item = "<script>alert(1)</script>";
    let notes = "<img src=x onerror=alert(1)>";

    let p = c
        .htmx(
            "/orders",
            &[("item_name", item), ("quantity", "0"), ("notes", notes)],
        )
        .await;
    assert_eq!(p.status, 422);
    assert_escaped(&p.body, item, "the form with errors");
    assert_escaped(&p.body, notes, "the form with errors");

    let id = place(&c, item, notes).await;
    let detail = format!("/orders/{id}");
    let list = c.get("/orders").await;
    assert_eq!(list.status, 200);
    assert_escaped(&list.body, item, "/orders");
    let own = c.get(&detail).await;
    assert_eq!(own.status, 200);
    assert_escaped(&own.body, item, "the order");
    assert_escaped(&own.body, notes, "the order");

    let admin = sign_in(&app, "root").await;
    let dash = admin.get("/dashboard").await;
    assert_eq!(dash.status, 200);
    assert_escaped(&dash.body, item, "/dashboard");
    let table = admin.get_htmx("/dashboard/orders?username=ivan").await;
    assert_eq!(table.status, 200);
    assert_escaped(&table.body, item, "the dashboard's table");
    let seen = admin.get(&detail).await;
    assert_eq!(seen.status, 200);
    assert_escaped(&seen.body, item, "the order for the admin");
    assert_escaped(&seen.body, notes, "the order for the admin");

    // What people type into the search and sign-in forms comes back escaped too.
    let search = admin.get("/dashboard?username=%22%3E%3Cb%3Ex").await;
    assert_eq!(search.status, 200);
    assert_escaped(&search.body, "\"><b>x", "the search field");
    let anon = Browser::new(&app);
    anon.get("/login").await;
    let p = anon
        .submit("/login", &[("username", item), ("password", "x")])
        .await;
    assert_eq!(p.status, 401);
    assert_escaped(&p.body, item, "the sign-in form");
}

async fn the_dashboard_shows_and_decides_orders_for_shop_admins_only(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let alice = customer(&app, "Alice001").await;
    let bruno = customer(&app, "bruno002").await;
    let a1 = place(&alice, "Teapot", "").await;
    let b1 = place(&bruno, "Kettle", "").await;
    let b2 = place(&bruno, "Whisk", "").await;

    // Customers are refused.
    for path in ["/dashboard", "/dashboard/orders", "/dashboard/export.csv"] {
        alice.get(path).await.assert_page(403, "Request refused");
    }
    alice
        .get_htmx("/dashboard/orders?username=bruno")
        .await
        .assert_page(403, "Request refused");
    for action in ["approve", "reject"] {
        let p = alice
            .htmx(&format!("/dashboard/orders/{a1}/{action}"), &[])
            .await;
        p.assert_page(403, "Request refused");
    }
    assert!(
        alice
            .get(&format!("/orders/{a1}"))
            .await
            .body
            .contains("data-status=\"PENDING\"")
    );

    // The admin's dashboard: cards, chart, rows.
    let admin = sign_in(&app, "root").await;
    let d = admin.get("/dashboard").await;
    d.assert_page(200, "<svg id=\"orders-chart\"");
    for name in ["total", "pending", "approval-rate", "median-decision"] {
        assert!(card(&d.body, name).is_some(), "card {name}: {}", d.body);
    }
    assert_eq!(card(&d.body, "total"), Some("3"));
    assert_eq!(card(&d.body, "pending"), Some("3"));
    assert!(d.body.contains("<rect class=\"bar\""), "{}", d.body);
    let r = row(&d.body, &a1).expect("Alice's order");
    assert!(r.contains("Alice001") && r.contains("Teapot"), "{r}");
    assert!(
        r.contains(&format!("action=\"/dashboard/orders/{a1}/approve\"")),
        "{r}"
    );
    assert!(row(&d.body, &b1).is_some() && row(&d.body, &b2).is_some());

    // Search by a part of the username, in any case.
    let t = admin.get_htmx("/dashboard/orders?username=LICE").await;
    t.assert_fragment(200, "id=\"admin-table\"");
    assert!(row(&t.body, &a1).is_some(), "{}", t.body);
    assert!(row(&t.body, &b1).is_none() && row(&t.body, &b2).is_none());
    let t = admin
        .get_htmx("/dashboard/orders?username=RUNO&status=pending")
        .await;
    assert!(row(&t.body, &b1).is_some() && row(&t.body, &b2).is_some());
    assert!(row(&t.body, &a1).is_none());
    admin
        .get_htmx("/dashboard/orders?username=zzzz")
        .await
        .assert_fragment(200, "No orders match.");
    let p = admin.get("/dashboard/orders?username=LICE").await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/dashboard?status=all&username=LICE")
    );

    // Approve in place; a second approval finds it decided.
    let approve = format!("/dashboard/orders/{a1}/approve");
    let p = admin.htmx(&approve, &[]).await;
    p.assert_fragment(200, "data-status=\"APPROVED\"");
    assert!(
        !p.body.contains("/approve\""),
        "no buttons left: {}",
        p.body
    );
    let p = admin.htmx(&approve, &[]).await;
    p.assert_fragment(409, "data-status=\"APPROVED\"");

    // Reject with the prompt's answer as the reason, shown on the order's timeline.
    let p = admin
        .send(
            admin
                .htmx_request(&format!("/dashboard/orders/{b1}/reject"))
                .header("hx-prompt", "out%20of%20stock"),
        )
        .await;
    p.assert_fragment(200, "data-status=\"REJECTED\"");
    for who in [&admin, &bruno] {
        let detail = who.get(&format!("/orders/{b1}")).await;
        detail.assert_page(200, "<blockquote>out of stock</blockquote>");
        assert!(detail.body.contains("data-status=\"REJECTED\""));
    }
    // Without htmx: the reason from the form, back to the dashboard with a message.
    let p = admin
        .submit(
            &format!("/dashboard/orders/{b2}/reject"),
            &[("reason", "too late")],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/dashboard"), "{}", p.body);
    let d = admin.get("/dashboard").await;
    d.assert_page(200, "Order rejected.");
    assert_eq!(card(&d.body, "pending"), Some("0"));
    assert_eq!(card(&d.body, "approval-rate"), Some("33 %"));
    bruno
        .get(&format!("/orders/{b2}"))
        .await
        .assert_page(200, "<blockquote>too late</blockquote>");

    // The export.
    let csv = admin.get("/dashboard/export.csv").await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(
        csv.header("content-type").starts_with("text/csv"),
        "{:?}",
        csv.headers
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("id,created_at,updated_at,status,customer_id,customer_username"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 4, "{}", csv.body);
    for id in [&a1, &b1, &b2] {
        assert!(csv.body.contains(id.as_str()), "{id} in {}", csv.body);
    }
    let csv = admin.get("/dashboard/export.csv?username=lice").await;
    assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
    assert!(csv.body.contains(&a1));
    let csv = admin.get("/dashboard/export.csv?status=rejected").await;
    assert_eq!(csv.body.lines().count(), 3, "{}", csv.body);
    assert!(!csv.body.contains(&a1));
}

async fn two_admins_approving_at_once_on_the_pages_exactly_one_wins(engine: Engine) {
    let (app, root) = spawn_with_admin(engine).await;
    app.register("jack0001", PASSWORD).await;
    let res = app
        .as_user(Method::PUT, &root, "/api/v1/shop/members/jack0001")
        .json(&json!({ "role": "admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let a = sign_in(&app, "root").await;
    let b = sign_in(&app, "jack0001").await;
    b.get("/dashboard").await.assert_page(200, "orders-chart");
    let c = customer(&app, "kate0001").await;
    for i in 0..6 {
        let id = place(&c, &format!("item {i}"), "").await;
        let path = format!("/dashboard/orders/{id}/approve");
        let (x, y) = tokio::join!(a.htmx(&path, &[]), b.htmx(&path, &[]));
        let mut statuses = [x.status, y.status];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "order {i}: {} / {}", x.body, y.body);
        for p in [&x, &y] {
            assert!(p.body.contains("data-status=\"APPROVED\""), "{}", p.body);
        }
        let read: Value = app
            .get_as(&root, &format!("/api/v1/orders/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            read["events"].as_array().unwrap().len(),
            2,
            "one decision recorded: {read}"
        );
    }
}

async fn role_changes_and_removal_from_the_shop_apply_to_open_sessions(engine: Engine) {
    let (app, root) = spawn_with_admin(engine).await;
    let b = customer(&app, "lars0001").await;
    b.get("/dashboard")
        .await
        .assert_page(403, "Request refused");
    let member = |method: Method| {
        app.as_user(method, &root, "/api/v1/shop/members/lars0001")
            .json(&json!({ "role": "admin" }))
            .send()
    };
    assert_eq!(member(Method::PUT).await.unwrap().status(), 200);
    // The next page already knows: no new sign-in needed.
    b.get("/dashboard").await.assert_page(200, "orders-chart");
    assert_eq!(b.get("/").await.location(), "/dashboard");

    let removed = member(Method::DELETE).await.unwrap();
    assert!(removed.status().is_success(), "{}", removed.status());
    let p = b.get("/orders").await;
    assert_eq!((p.status, p.location()), (303, "/login"), "signed out");
    assert_eq!(signed_in_sessions(&app).await, 0, "the session was ended");
}

async fn live_updates_reach_only_the_customer_whose_order_changed(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let lena = customer(&app, "lena0001").await;
    let max = customer(&app, "max00002").await;
    let admin = sign_in(&app, "root").await;
    let hers = place(&lena, "Lamp", "").await;
    let his = place(&max, "Desk", "").await;
    let mut lenas = Events::open(&lena, "/orders/events?view=customer&status=all").await;
    let mut maxs = Events::open(&max, "/orders/events?view=customer&status=all").await;
    let mut admins = Events::open(&admin, "/orders/events?view=admin").await;

    admin
        .htmx(&format!("/dashboard/orders/{hers}/approve"), &[])
        .await
        .assert_fragment(200, "data-status=\"APPROVED\"");
    let name = format!("event: order-{hers}\n");
    let frame = lenas
        .next(|f| f.starts_with(&name), LIVE_WAIT)
        .await
        .expect("the customer hears about her order");
    assert!(frame.contains("data-status=\"APPROVED\""), "{frame}");
    assert!(
        frame.contains("Lamp") && !frame.contains("/cancel"),
        "{frame}"
    );
    let counts = lenas
        .next(|f| f.starts_with("event: counts\n"), LIVE_WAIT)
        .await
        .expect("and about her new counts");
    assert_eq!(tab_count(&counts, "approved"), Some(1), "{counts}");
    assert_eq!(tab_count(&counts, "pending"), Some(0), "{counts}");
    let frame = admins
        .next(|f| f.starts_with(&name), LIVE_WAIT)
        .await
        .expect("the admin's table hears about it");
    assert!(
        frame.contains("class=\"customer\"") && frame.contains("lena0001"),
        "{frame}"
    );

    // The other customer's stream skips it: the first update it gets is his own.
    admin
        .htmx(&format!("/dashboard/orders/{his}/approve"), &[])
        .await
        .assert_fragment(200, "data-status=\"APPROVED\"");
    let frame = maxs
        .next(|f| f.starts_with("event: "), LIVE_WAIT)
        .await
        .expect("his own update");
    assert!(
        frame.starts_with(&format!("event: order-{his}\n")),
        "{frame}"
    );
    assert!(
        !maxs.seen.iter().any(|f| f.contains(&hers)),
        "{:?}",
        maxs.seen
    );
}

async fn assets_are_hashed_cached_for_a_year_and_sent_gzipped(engine: Engine) {
    let app = spawn_app(engine).await;
    let html = Browser::new(&app).get("/login").await.body;
    let urls: Vec<&str> = html
        .match_indices("\"/assets/")
        .map(|(i, _)| {
            let rest = &html[i + 1..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    let hashed = |stem: &str, ext: &str| {
        urls.iter().any(|u| {
            u.strip_prefix(&format!("/assets/{stem}."))
                .and_then(|r| r.strip_suffix(&format!(".{ext}")))
                .is_some_and(|h| h.len() == 10 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
    };
    for (stem, ext) in [("htmx", "js"), ("pico", "css"), ("app", "css")] {
        assert!(hashed(stem, ext), "{stem}.<hash>.{ext} in {urls:?}");
    }

    // The first visit as a browser makes it: the page and everything it loads, compressed.
    let page = Page::read(
        app.client
            .get(app.url("/login"))
            .header(header::ACCEPT, "text/html")
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-encoding"), "gzip");
    let mut total = page.bytes.len();
    for url in &urls {
        let ext = url.rsplit('.').next().unwrap();
        let content_type = match ext {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected asset type {other}: {url}"),
        };
        let get = |encoding: Option<&str>| {
            let rb = app.client.get(app.url(url));
            let rb = match encoding {
                Some(e) => rb.header(header::ACCEPT_ENCODING, e),
                None => rb,
            };
            async move { Page::read(rb.send().await.unwrap()).await }
        };
        let plain = get(None).await;
        assert_eq!(plain.status, 200, "{url}");
        assert_eq!(
            plain.header("cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(plain.header("content-type"), content_type, "{url}");
        assert_eq!(plain.header("content-encoding"), "", "{url}");
        assert!(!plain.bytes.is_empty());
        let gz = get(Some("gzip, deflate, br")).await;
        assert_eq!(gz.status, 200, "{url}");
        assert_eq!(gz.header("content-encoding"), "gzip", "{url}");
        assert_eq!(
            gz.header("cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(gz.header("content-type"), content_type, "{url}");
        assert!(gz.bytes.starts_with(&[0x1f, 0x8b]), "{url} is gzip data");
        assert!(gz.bytes.len() < plain.bytes.len(), "{url}");
        let refused = get(Some("gzip;q=0")).await;
        assert_eq!(refused.header("content-encoding"), "", "{url}");
        assert_eq!(refused.bytes, plain.bytes, "{url}");
        total += gz.bytes.len();
    }
    assert!(total < 100 * 1024, "the first page load is {total} bytes");

    for path in [
        "/assets/htmx.0000000000.js",
        "/assets/htmx.js",
        "/assets/nothing.css",
    ] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
}

async fn unknown_pages_answer_in_the_format_asked_for(engine: Engine) {
    let app = spawn_app(engine).await;
    let ask = |path: &str, accept: &str| {
        app.client
            .get(app.url(path))
            .header(header::ACCEPT, accept)
            .send()
    };
    let page = Page::read(
        ask(
            "/no/such/page",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .await
        .unwrap(),
    )
    .await;
    page.assert_page(404, "Page not found");
    assert!(page.body.contains("<html lang=\"en\">"));
    assert!(
        page.header("content-security-policy")
            .contains("script-src 'self'")
    );
    assert!(page.session_cookies().is_empty(), "no session for a 404");

    let body = problem(ask("/no/such/page", "application/json").await.unwrap(), 404).await;
    assert_eq!(body["code"], "not_found");
    // API addresses answer problems even to a browser.
    problem(
        ask("/api/v1/no-such-thing", "text/html").await.unwrap(),
        404,
    )
    .await;

    // Unknown or malformed order ids on the pages get the same friendly page.
    let c = customer(&app, "nina0001").await;
    c.get(&format!("/orders/{}", Uuid::now_v7()))
        .await
        .assert_page(404, "Page not found");
    c.get("/orders/not-an-id")
        .await
        .assert_page(404, "Page not found");
}

async fn a_garbage_session_cookie_is_treated_as_anonymous(engine: Engine) {
    let app = spawn_app(engine).await;
    let real = customer(&app, "olaf0001").await.cookie().unwrap();
    let mut tampered = real.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let unknown = "A".repeat(43);
    for garbage in ["garbage", "%%%", unknown.as_str(), tampered.as_str()] {
        let b = Browser::with_cookie(&app, garbage);
        let p = b.get("/orders").await;
        assert_eq!((p.status, p.location()), (303, "/login"), "{garbage}");
        let fresh = b.cookie().expect("a new anonymous session");
        assert!(fresh != garbage && fresh != real, "{garbage}");
        assert_eq!(b.get("/").await.location(), "/login", "{garbage}");
    }
}

async fn an_htmx_request_without_a_session_is_sent_to_sign_in_in_a_way_htmx_follows(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    // The dashboard's search asks with htmx; with an expired or unknown session the answer must
    // be one htmx acts on. htmx ignores response headers on 3xx (the browser follows the
    // redirect itself and htmx swaps the sign-in page into the table), so: a 2xx with HX-Redirect.
    let b = Browser::with_cookie(&app, "garbage");
    let p = b.get_htmx("/dashboard/orders?username=olaf").await;
    assert_eq!(p.header("hx-redirect"), "/login");
    assert!(
        (200..300).contains(&p.status),
        "htmx does not process HX-Redirect on a {}",
        p.status
    );
}

async fn with_redis_every_instance_sees_the_same_sessions(engine: Engine) {
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let storage = TestStorage::new(engine).await;
    let mut config = storage.config();
    config.redis_url = Some(redis.into());
    // The Redis server is shared with other tests: keys of this test's own.
    config.redis_prefix = format!("shopkeep-test-{}:", Uuid::now_v7().simple());
    let b_config = config.clone();
    let a = spawn_with(storage, config).await;
    let b_app = shopkeep::Application::build(b_config).await.unwrap();
    let b_addr = b_app.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(b_app.run_until_stopped(stop.clone()));

    let name = format!("r{}", &Uuid::now_v7().simple().to_string()[20..]);
    let browser = customer(&a, &name).await;
    let cookie = browser.cookie().unwrap();
    assert_eq!(
        signed_in_sessions(&a).await,
        0,
        "sessions live in Redis, not in the database"
    );
    let on_b = |path: &'static str| {
        a.client
            .get(format!("http://{b_addr}{path}"))
            .header(header::COOKIE, format!("{COOKIE}={cookie}"))
            .header(header::ACCEPT, "text/html")
            .send()
    };
    let page = on_b("/orders").await.unwrap();
    assert_eq!(page.status(), 200, "the other instance knows the session");
    assert!(page.text().await.unwrap().contains(&name));

    // Signing out on one instance ends the session on the other.
    let out = browser.submit("/logout", &[]).await;
    assert_eq!((out.status, out.location()), (303, "/login"));
    let page = on_b("/orders").await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()[header::LOCATION], "/login");
    stop.cancel();
}

async fn secure_cookies_use_the_host_prefix(engine: Engine) {
    let storage = TestStorage::new(engine).await;
    let mut config = storage.config();
    config.http.secure_cookies = true;
    let app = spawn_with(storage, config).await;
    let res = app.client.get(app.url("/login")).send().await.unwrap();
    let set = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.starts_with("__Host-shopkeep_session="), "{set}");
    for part in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(
        !set.contains("Domain="),
        "__Host- cookies have no Domain: {set}"
    );
    // The plain name is not read when cookies are secure.
    let token = set["__Host-shopkeep_session=".len()..]
        .split(';')
        .next()
        .unwrap();
    let plain = app
        .client
        .get(app.url("/login"))
        .header(header::COOKIE, format!("{COOKIE}={token}"))
        .send()
        .await
        .unwrap();
    assert!(
        plain.headers().contains_key(header::SET_COOKIE),
        "a new session was started"
    );
}

async fn the_csv_export_is_whole_when_compressed(engine: Engine) {
    // Browsers ask for gzip; the compressing layer used to poll the finished export stream
    // again, which panicked and cut the download off.
    let (app, admin) = spawn_with_admin(engine).await;
    let admin_browser = sign_in(&app, "root").await;
    let customer = customer(&app, "gzip0001").await;
    for i in 0..3 {
        place(&customer, &format!("poster {i}"), "").await;
    }
    for (path, auth) in [
        ("/api/v1/admin/orders/export.csv", Some(admin.as_str())),
        ("/dashboard/export.csv", None),
    ] {
        let mut rb = match auth {
            Some(token) => app.client.get(app.url(path)).bearer_auth(token),
            None => admin_browser.request(Method::GET, path),
        };
        rb = rb.header(header::ACCEPT_ENCODING, "gzip");
        let res = rb.send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip", "{path}");
        let body = res.bytes().await.expect("the whole body arrives");
        assert_eq!(&body[..2], &[0x1f, 0x8b], "{path}: a gzip stream");
        assert!(body.len() > 100, "{path}: {} bytes", body.len());
    }
}
