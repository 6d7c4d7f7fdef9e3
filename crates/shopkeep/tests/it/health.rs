//! Probes, metrics, OpenAPI and the error model as a client meets them.

use crate::both_engines;
use crate::harness::{Engine, problem, spawn_app};

both_engines!(
    readyz_answers_ready_with_the_engine_and_schema_version,
    readyz_answers_503_naming_pending_migrations,
    readyz_answers_503_when_the_schema_is_newer_than_the_binary,
    metrics_count_requests_by_route_template_and_show_the_pool,
    unknown_routes_and_wrong_methods_answer_problem_json,
    openapi_and_swagger_ui_are_served_from_the_binary,
);

async fn readyz_answers_ready_with_the_engine_and_schema_version(engine: Engine) {
    let app = spawn_app(engine).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(app.engine(), engine);
    let expected = match engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    };
    assert_eq!(body["engine"], expected);
    assert_eq!(
        body["schema_version"].as_i64(),
        app.db.latest_known_migration()
    );
}

async fn readyz_answers_503_naming_pending_migrations(engine: Engine) {
    let app = spawn_app(engine).await;
    let latest = app.db.latest_known_migration().unwrap();
    shopkeep_store::on_pool!(&app.db, pool => sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest).execute(pool).await.map(|_| ()))
    .unwrap();
    let body = problem(app.get("/readyz").await, 503).await;
    assert_eq!(body["code"], "not_ready");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("pending") && detail.contains(&latest.to_string()),
        "{detail}"
    );
}

async fn readyz_answers_503_when_the_schema_is_newer_than_the_binary(engine: Engine) {
    let app = spawn_app(engine).await;
    insert_future_migration(&app.db).await;
    let body = problem(app.get("/readyz").await, 503).await;
    assert!(
        body["detail"].as_str().unwrap().contains("newer shopkeep"),
        "{body}"
    );
}

/// Records a migration this binary does not carry, as a newer shopkeep would have.
pub async fn insert_future_migration(db: &shopkeep_store::Db) {
    shopkeep_store::on_pool!(db, pool => sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from the future', $2, $3, 0)")
        .bind(99_991_231_000_000_i64)
        .bind(true)
        .bind(vec![0_u8; 48])
        .execute(pool).await.map(|_| ()))
    .unwrap();
}

async fn metrics_count_requests_by_route_template_and_show_the_pool(engine: Engine) {
    let app = spawn_app(engine).await;
    app.get("/readyz").await;
    app.get("/no/such/route").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/readyz",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404""#),
        "unmatched paths share one label: {text}"
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{route="/readyz",le="0.005"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"db_pool_connections{state="idle"}"#),
        "{text}"
    );
    assert!(text.contains("shopkeep_build_info{"), "{text}");
    if engine == Engine::Sqlite {
        // Starting wrote (the signing key, the schedules) through the one writer.
        for m in [
            "shopkeep_sqlite_writer_wait_seconds_count",
            "shopkeep_sqlite_writer_held_seconds_sum",
        ] {
            assert!(text.contains(m), "{m}: {text}");
        }
    }
}

async fn unknown_routes_and_wrong_methods_answer_problem_json(engine: Engine) {
    let app = spawn_app(engine).await;
    let body = problem(app.get("/api/v1/nothing-here").await, 404).await;
    assert_eq!(body["code"], "not_found");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here")
    );

    let res = app.client.delete(app.url("/readyz")).send().await.unwrap();
    let body = problem(res, 405).await;
    assert_eq!(body["code"], "method_not_allowed");

    // A sane caller-supplied request id is echoed; a hostile one is replaced.
    let res = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "edge-42.a:b_c")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "edge-42.a:b_c");
    assert_eq!(problem(res, 404).await["request_id"], "edge-42.a:b_c");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id\twith<chars>")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, "bad id\twith<chars>");
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
}

async fn openapi_and_swagger_ui_are_served_from_the_binary(engine: Engine) {
    let app = spawn_app(engine).await;
    let doc: serde_json::Value = app.get("/api/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    assert!(doc["paths"]["/healthz"]["get"].is_object());
    assert!(doc["paths"]["/readyz"]["get"]["responses"]["503"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    // The request bodies carry the rules the validators apply, for clients and the API fuzzer.
    let schemas = &doc["components"]["schemas"];
    let order = &schemas["OrderIn"]["properties"];
    assert_eq!(order["quantity"]["maximum"], 100, "{order}");
    assert_eq!(order["item_name"]["maxLength"], 255, "{order}");
    assert_eq!(order["notes"]["maxLength"], 1000, "{order}");
    assert_eq!(schemas["ItemIn"]["properties"]["quantity"]["minimum"], 1);
    let register = &schemas["RegisterIn"]["properties"];
    assert_eq!(register["username"]["pattern"], "^[A-Za-z0-9]{4,20}$");
    assert_eq!(register["password"]["minLength"], 8);
    // Every operation says what a database outage looks like, and every write a full disk; and
    // operation ids are unique, as OpenAPI requires (client generators name methods by them).
    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}"));
            if let Some(other) = ids.insert(id.to_string(), format!("{method} {path}")) {
                panic!("operationId {id} of {method} {path} is also {other}'s");
            }
        }
        if path == "/healthz" {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            assert!(responses["503"].is_object(), "{method} {path}: no 503");
            if matches!(method.as_str(), "post" | "put" | "patch" | "delete") {
                let full = &responses["507"]["content"]["application/problem+json"];
                assert!(full.is_object(), "{method} {path}: no 507");
            }
        }
    }

    let res = app.get("/api/docs/").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("cdn.") && !html.contains("unpkg"),
        "no CDN: {html}"
    );
    let js = app.get("/api/docs/swagger-ui-bundle.js").await;
    assert_eq!(js.status(), 200, "the bundle is embedded");
}
