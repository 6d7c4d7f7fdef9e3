//! The shopkeep requests the scenarios send, each timed and checked into a [`Step`].

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::stats::{Outcome, Step};

/// The order every scenario places: one line, no price.
pub const ORDER_BODY: &str = r#"{"item_name":"Widget","quantity":1}"#;

/// A client for one server; cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// `base` is `http://host:port`; `timeout` bounds each request.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path`, with a bearer token when given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `req`, records it in `step`, and gives `check`'s value when the status is `expect`
    /// and `check` accepts the body. Any other result is recorded as an error and gives None.
    pub async fn call<T>(
        &self,
        step: &Step,
        req: RequestBuilder,
        expect: StatusCode,
        check: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Option<T> {
        let start = Instant::now();
        let res = req.send().await;
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                step.record(start, start.elapsed(), Outcome::Transport(error_chain(&e)));
                return None;
            }
        };
        let status = res.status();
        let body = res.bytes().await;
        let took = start.elapsed();
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                step.record(start, took, Outcome::Transport(error_chain(&e)));
                return None;
            }
        };
        if status != expect {
            let text = String::from_utf8_lossy(&body).into_owned();
            step.record(start, took, Outcome::Status(status.as_u16(), text));
            return None;
        }
        match check(&body) {
            Ok(v) => {
                step.record(start, took, Outcome::Ok);
                Some(v)
            }
            Err(why) => {
                step.record(start, took, Outcome::Check(why));
                None
            }
        }
    }

    /// POST /api/v1/auth/register: 201.
    pub async fn register(&self, step: &Step, username: &str, password: &str) -> Option<()> {
        let req = self
            .request(Method::POST, "/api/v1/auth/register", None)
            .json(&json!({ "username": username, "password": password }));
        self.call(step, req, StatusCode::CREATED, |_| Ok(())).await
    }

    /// POST /api/v1/auth/token (password grant): 200 with an access token and its lifetime.
    pub async fn login(&self, step: &Step, username: &str, password: &str) -> Option<Token> {
        let req = self
            .request(Method::POST, "/api/v1/auth/token", None)
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ]);
        self.call(step, req, StatusCode::OK, |b| {
            let v: Value = serde_json::from_slice(b).map_err(|e| format!("token body: {e}"))?;
            let access = v["access_token"].as_str().ok_or("no access_token")?;
            Ok(Token {
                access: access.to_string(),
                expires_in: Duration::from_secs(v["expires_in"].as_u64().unwrap_or(60)),
                issued: Instant::now(),
            })
        })
        .await
    }

    /// POST /api/v1/orders with a fresh Idempotency-Key: 201 with the new order's id.
    pub async fn create_order(&self, step: &Step, token: &str) -> Option<String> {
        let req = self
            .request(Method::POST, "/api/v1/orders", Some(token))
            .header("content-type", "application/json")
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .body(ORDER_BODY);
        self.call(step, req, StatusCode::CREATED, |b| {
            let v: Value = serde_json::from_slice(b).map_err(|e| format!("order body: {e}"))?;
            match (v["id"].as_str(), v["status"].as_str()) {
                (Some(id), Some(st)) if st.eq_ignore_ascii_case("pending") => Ok(id.to_string()),
                _ => Err(format!("a new order should be pending with an id: {v}")),
            }
        })
        .await
    }

    /// GET /api/v1/orders (first page): 200, and every id of `expect` is on the page.
    pub async fn list_orders(&self, step: &Step, token: &str, expect: &[String]) -> Option<()> {
        let req = self.request(Method::GET, "/api/v1/orders", Some(token));
        self.call(step, req, StatusCode::OK, |b| {
            let v: Value = serde_json::from_slice(b).map_err(|e| format!("list body: {e}"))?;
            let items = v["items"].as_array().ok_or("no items")?;
            let on_page: Vec<&str> = items.iter().filter_map(|o| o["id"].as_str()).collect();
            let missing = expect
                .iter()
                .filter(|id| !on_page.contains(&id.as_str()))
                .count();
            if missing > 0 {
                return Err(format!(
                    "{missing} of the user's {} orders are not on the first page",
                    expect.len()
                ));
            }
            Ok(())
        })
        .await
    }

    /// POST /api/v1/orders/{id}/approve as a shop admin: 200 with status `approved`.
    pub async fn approve(&self, step: &Step, admin: &str, id: &str) -> Option<()> {
        let req = self.request(
            Method::POST,
            &format!("/api/v1/orders/{id}/approve"),
            Some(admin),
        );
        self.call(step, req, StatusCode::OK, |b| {
            let v: Value = serde_json::from_slice(b).map_err(|e| format!("approve body: {e}"))?;
            match v["status"].as_str() {
                Some(st) if st.eq_ignore_ascii_case("approved") => Ok(()),
                other => Err(format!("approved order has status {other:?}")),
            }
        })
        .await
    }
}

/// An access token and when it was issued.
#[derive(Debug, Clone)]
pub struct Token {
    /// The JWT.
    pub access: String,
    /// Its lifetime as the server gave it.
    pub expires_in: Duration,
    /// When the answer arrived.
    pub issued: Instant,
}

impl Token {
    /// True when less than a minute (or a quarter of its life) is left.
    pub fn nearly_expired(&self) -> bool {
        let margin = (self.expires_in / 4).min(Duration::from_secs(60));
        self.issued.elapsed() + margin >= self.expires_in
    }
}

/// `e` and its sources on one line (reqwest's top-level message alone hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
