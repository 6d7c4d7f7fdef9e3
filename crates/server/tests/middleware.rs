//! The middleware stack and error model, driven in-process without a network.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use shopkeep_server::extract::ApiJson;
use shopkeep_server::{ApiError, HttpOptions, with_middleware};
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OrderIn {
    item_name: String,
    quantity: u32,
}

async fn panics() -> &'static str {
    panic!("the secret internals")
}

static EFFECT_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The app with a time limit long enough that only `/slow` runs into it (a panic's backtrace
/// can take longer than 200 ms to print on a busy machine).
fn app() -> Router {
    app_with_timeout(Duration::from_secs(10))
}

fn app_with_timeout(request_timeout: Duration) -> Router {
    let routes = Router::new()
        .route("/panic", get(panics))
        .route(
            "/effect",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                EFFECT_DONE.store(true, std::sync::atomic::Ordering::SeqCst);
                "done"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/internal",
            get(|| async {
                Err::<(), _>(ApiError::internal(anyhow::anyhow!(
                    "password=hunter2 in a stack"
                )))
            }),
        )
        .route(
            "/orders",
            post(|ApiJson(o): ApiJson<OrderIn>| async move { format!("{o:?}") }),
        )
        .route("/big", get(|| async { "x".repeat(10_000) }));
    with_middleware(
        routes,
        &HttpOptions {
            request_timeout,
            body_limit: 1024,
            compression: true,
        },
    )
}

async fn call(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    call_on(app(), req).await
}

async fn call_on(
    app: Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, body)
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn assert_problem(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: &serde_json::Value,
    want: u16,
    code: &str,
) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(body["status"], want);
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], format!("urn:shopkeep:problem:{code}"));
    assert_eq!(
        body["request_id"].as_str().unwrap(),
        headers["x-request-id"].to_str().unwrap()
    );
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_500_problem_and_the_server_keeps_serving() {
    let app = app();
    let res = app.clone().oneshot(get_req("/panic")).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_problem(status, &headers, &body, 500, "internal");
    assert!(!String::from_utf8_lossy(&bytes).contains("secret internals"));
    let again = app.oneshot(get_req("/big")).await.unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn an_internal_error_shows_the_request_id_and_nothing_internal() {
    let (status, headers, body) = call(get_req("/internal")).await;
    assert_problem(status, &headers, &body, 500, "internal");
    assert!(!body.to_string().contains("hunter2"));
    assert_eq!(body["detail"], "an internal error occurred");
}

#[tokio::test]
async fn a_request_over_the_time_limit_answers_503_problem() {
    let app = app_with_timeout(Duration::from_millis(200));
    let (status, headers, body) = call_on(app, get_req("/slow")).await;
    assert_problem(status, &headers, &body, 503, "unavailable");
    assert_eq!(headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413_problem() {
    let big = format!(r#"{{"item_name":"{}","quantity":1}}"#, "a".repeat(4000));
    let (status, headers, body) = call(post_json("/orders", big)).await;
    assert_problem(status, &headers, &body, 413, "payload_too_large");
    assert_eq!(
        headers[header::CONNECTION],
        "close",
        "the unread body ends the connection"
    );
}

#[tokio::test]
async fn malformed_json_is_400_and_bad_fields_are_422_naming_them() {
    let (status, headers, body) = call(post_json("/orders", "{\"item_name\": ")).await;
    assert_problem(status, &headers, &body, 400, "malformed_json");

    let (status, headers, body) = call(post_json(
        "/orders",
        r#"{"item_name":"tea","quantity":"many"}"#,
    ))
    .await;
    assert_problem(status, &headers, &body, 422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "body.quantity", "{body}");

    let (status, headers, body) = call(post_json(
        "/orders",
        r#"{"item_name":"tea","quantity":1,"x":2}"#,
    ))
    .await;
    assert_problem(status, &headers, &body, 422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "body.x", "{body}");

    let req = Request::post("/orders").body(Body::from("{}")).unwrap();
    let (status, headers, body) = call(req).await;
    assert_problem(status, &headers, &body, 415, "unsupported_media_type");
}

#[tokio::test]
async fn invalid_utf8_and_random_bytes_never_panic() {
    for bytes in [
        vec![0xff, 0xfe, 0x00],
        vec![b'{'; 900],
        b"[1,2,".to_vec(),
        vec![],
    ] {
        let (status, _, body) = call(post_json("/orders", bytes)).await;
        assert!(status.is_client_error(), "{status} {body}");
    }
}

#[tokio::test]
async fn responses_are_gzipped_for_clients_that_accept_it() {
    let req = Request::get("/big")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.len() < 1000, "compressed to {} bytes", bytes.len());
}

#[tokio::test]
async fn a_handler_finishes_its_work_when_the_client_goes_away() {
    let req = Request::post("/effect").body(Body::empty()).unwrap();
    // The caller gives up after 20 ms, as a client that disconnects does: its future is dropped.
    let gave_up = tokio::time::timeout(Duration::from_millis(20), app().oneshot(req)).await;
    assert!(
        gave_up.is_err(),
        "the handler takes longer than the caller waits"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !EFFECT_DONE.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler was dropped half-way"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
