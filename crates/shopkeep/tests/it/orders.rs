//! Orders end to end on both engines: create, read, workflow, races, idempotency, lists, search,
//! export, statistics and live updates.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, TestApp, problem, spawn_with, spawn_with_admin};

both_engines!(
    a_customer_places_an_order_and_reads_it_with_its_timeline,
    every_bad_order_field_is_named_and_nothing_is_stored,
    customers_see_and_touch_only_their_own_orders,
    the_workflow_allows_only_pending_transitions_and_names_the_current_status,
    two_admins_deciding_at_once_exactly_one_wins,
    idempotent_creates_return_the_first_order_even_under_concurrent_retries,
    pages_stay_stable_while_new_orders_arrive,
    admins_search_by_username_status_and_date,
    the_csv_export_parses_back_to_the_same_rows_and_neutralises_formulas,
    statistics_are_exact_on_a_known_data_set,
    status_changes_stream_live_to_the_customer_and_admins_only,
    each_change_writes_an_outbox_event_in_the_same_transaction,
);

async fn place(app: &TestApp, token: &str, item: &str, qty: i64) -> Value {
    let res = app
        .as_user(Method::POST, token, "/api/v1/orders")
        .json(&json!({ "item_name": item, "quantity": qty }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "place {item}");
    res.json().await.unwrap()
}

async fn decide(app: &TestApp, token: &str, id: &str, action: &str) -> reqwest::Response {
    app.as_user(
        Method::POST,
        token,
        &format!("/api/v1/orders/{id}/{action}"),
    )
    .send()
    .await
    .unwrap()
}

async fn a_customer_places_an_order_and_reads_it_with_its_timeline(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let token = app.customer("olga0001").await;
    let res = app
        .as_user(Method::POST, &token, "/api/v1/orders")
        .json(&json!({ "item_name": "  Green tea  ", "quantity": 3, "notes": "gift wrap" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let order: Value = res.json().await.unwrap();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["items"][0]["item_name"], "Green tea");
    assert_eq!(order["items"][0]["quantity"], 3);
    assert_eq!(order["customer_username"], "olga0001");
    assert_eq!(
        location,
        format!("/api/v1/orders/{}", order["id"].as_str().unwrap())
    );
    let read: Value = app.get_as(&token, &location).await.json().await.unwrap();
    assert_eq!(read["events"][0]["to"], "PENDING");
    assert!(read["events"][0]["request_id"].is_string());
    assert_eq!(read["notes"], "gift wrap");

    let priced = app
        .as_user(Method::POST, &token, "/api/v1/orders")
        .json(&json!({ "items": [
            { "item_name": "Mug", "quantity": 2, "unit_price_minor": 1250, "currency": "EUR", "product_ref": "p1" },
            { "item_name": "Spoon", "quantity": 1, "unit_price_minor": 199, "currency": "EUR" }
        ] }))
        .send()
        .await
        .unwrap();
    assert_eq!(priced.status(), 201);
    let priced: Value = priced.json().await.unwrap();
    assert_eq!(
        (priced["total_minor"].as_i64(), priced["currency"].as_str()),
        (Some(2699), Some("EUR"))
    );
}

async fn every_bad_order_field_is_named_and_nothing_is_stored(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let token = app.customer("pavel002").await;
    let post = |body: Value| {
        app.as_user(Method::POST, &token, "/api/v1/orders")
            .json(&body)
            .send()
    };
    let body = problem(
        post(json!({ "item_name": " ", "quantity": 0, "notes": "x".repeat(1001) }))
            .await
            .unwrap(),
        422,
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{body}");
    for f in ["body.item_name", "body.quantity", "body.notes"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    let body = problem(
        post(json!({ "item_name": "tea", "quantity": 1, "colour": "red" }))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "body.colour");
    let body = problem(
        post(json!({ "item_name": "tea", "quantity": "two" }))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "body.quantity");
    let body = problem(post(json!({ "items": [{ "item_name": "a", "quantity": 1 }, { "item_name": "", "quantity": 101, "unit_price_minor": 5 }] })).await.unwrap(), 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "body.items[1].item_name",
        "body.items[1].quantity",
        "body.items[1].currency",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    let body = problem(
        post(json!({ "item_name": "a\u{0000}b", "quantity": 1 }))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["code"], "control_characters");
    let huge = json!({ "item_name": "tea", "quantity": 1, "notes": "x".repeat(2 * 1024 * 1024) });
    problem(post(huge).await.unwrap(), 413).await;
    let res = app
        .as_user(Method::POST, &token, "/api/v1/orders")
        .header("content-type", "application/json")
        .body("{\"item_name\": ")
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    let res = app
        .as_user(Method::POST, &token, "/api/v1/orders")
        .header("idempotency-key", "bad key with spaces")
        .json(&json!({ "item_name": "tea", "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(res, 400).await["errors"][0]["field"],
        "header.idempotency-key"
    );
    let page: Value = app
        .get_as(&token, "/api/v1/orders")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["counts"]["all"], 0, "nothing was stored");
    let body = problem(app.get_as(&token, "/api/v1/orders?cursor=%%%").await, 400).await;
    assert_eq!(body["code"], "invalid_cursor");
    let body = problem(
        app.get_as(&token, "/api/v1/orders?status=lost&limit=0")
            .await,
        400,
    )
    .await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    problem(app.get_as(&token, "/api/v1/orders?sort=asc").await, 400).await;
    problem(app.get_as(&token, "/api/v1/orders/not-a-uuid").await, 404).await;
}

async fn customers_see_and_touch_only_their_own_orders(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let a = app.customer("quinn003").await;
    let b = app.customer("rosa0004").await;
    let order = place(&app, &a, "lamp", 1).await;
    let id = order["id"].as_str().unwrap();
    let body = problem(app.get_as(&b, &format!("/api/v1/orders/{id}")).await, 404).await;
    let missing = problem(
        app.get_as(&b, &format!("/api/v1/orders/{}", uuid::Uuid::now_v7()))
            .await,
        404,
    )
    .await;
    assert_eq!(
        body["detail"], missing["detail"],
        "another's order looks missing"
    );
    problem(decide(&app, &b, id, "cancel").await, 404).await;
    let list: Value = app.get_as(&b, "/api/v1/orders").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let list: Value = app.get_as(&a, "/api/v1/orders").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["counts"]["pending"], 1);
    let body = problem(app.get_as(&a, "/api/v1/admin/orders").await, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("orders:admin"));
}

async fn the_workflow_allows_only_pending_transitions_and_names_the_current_status(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let c = app.customer("sven0005").await;
    let o1 = place(&app, &c, "chair", 1).await;
    let o2 = place(&app, &c, "table", 1).await;
    let o3 = place(&app, &c, "stool", 1).await;
    let (id1, id2, id3) = (
        o1["id"].as_str().unwrap(),
        o2["id"].as_str().unwrap(),
        o3["id"].as_str().unwrap(),
    );
    assert_eq!(
        problem(decide(&app, &c, id1, "approve").await, 403).await["code"],
        "missing_scope"
    );
    let res = decide(&app, &admin, id1, "approve").await;
    assert_eq!(res.status(), 200);
    let approved: Value = res.json().await.unwrap();
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(approved["events"][1]["actor"], "root");
    assert!(approved["decided_at"].is_string());
    let body = problem(decide(&app, &admin, id1, "reject").await, 409).await;
    assert_eq!(body["code"], "invalid_transition");
    assert!(
        body["detail"].as_str().unwrap().contains("APPROVED"),
        "{body}"
    );
    problem(decide(&app, &c, id1, "cancel").await, 409).await;

    let res = app
        .as_user(
            Method::POST,
            &admin,
            &format!("/api/v1/orders/{id2}/reject"),
        )
        .json(&json!({ "reason": "out of stock" }))
        .send()
        .await
        .unwrap();
    let rejected: Value = res.json().await.unwrap();
    assert_eq!(
        (rejected["status"].as_str(), rejected["reason"].as_str()),
        (Some("REJECTED"), Some("out of stock"))
    );
    let res = app
        .as_user(
            Method::POST,
            &admin,
            &format!("/api/v1/orders/{id3}/reject"),
        )
        .json(&json!({ "reason": "x".repeat(501) }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 422).await["errors"][0]["field"], "body.reason");
    assert_eq!(
        problem(decide(&app, &admin, id3, "cancel").await, 403).await["code"],
        "not_the_customer"
    );
    let res = decide(&app, &c, id3, "cancel").await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "CANCELLED");
    problem(decide(&app, &admin, id3, "approve").await, 409).await;
}

async fn two_admins_deciding_at_once_exactly_one_wins(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let c = app.customer("tara0006").await;
    for i in 0..8 {
        let o = place(&app, &c, &format!("item {i}"), 1).await;
        let id = o["id"].as_str().unwrap().to_string();
        let (a, b) = tokio::join!(
            decide(&app, &admin, &id, "approve"),
            decide(&app, &admin, &id, "reject")
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "order {i}");
        let read: Value = app
            .get_as(&admin, &format!("/api/v1/orders/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            read["events"].as_array().unwrap().len(),
            2,
            "one decision recorded"
        );
    }
}

async fn idempotent_creates_return_the_first_order_even_under_concurrent_retries(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let c = app.customer("ugo00007").await;
    let send = |key: &'static str, body: Value| {
        app.as_user(Method::POST, &c, "/api/v1/orders")
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send("k-1", json!({ "item_name": "vase", "quantity": 2 }))
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send("k-1", json!({ "item_name": "vase", "quantity": 2 }))
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let other = send("k-1", json!({ "item_name": "vase", "quantity": 3 }))
        .await
        .unwrap();
    assert_eq!(problem(other, 422).await["code"], "idempotency_key_reused");

    let retries: Vec<_> = (0..10)
        .map(|_| send("k-2", json!({ "item_name": "bowl", "quantity": 1 })))
        .collect();
    let results = futures_util::future::join_all(retries).await;
    let mut ids = std::collections::BTreeSet::new();
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.status(), 201);
        ids.insert(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(ids.len(), 1, "ten concurrent retries made one order");
    let page: Value = app.get_as(&c, "/api/v1/orders").await.json().await.unwrap();
    assert_eq!(page["counts"]["all"], 2);
}

async fn pages_stay_stable_while_new_orders_arrive(engine: Engine) {
    let (app, _) = spawn_with_admin(engine).await;
    let c = app.customer("vera0008").await;
    let mut made = Vec::new();
    for i in 0..25 {
        made.push(
            place(&app, &c, &format!("n{i}"), 1).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let p1: Value = app.get_as(&c, "/api/v1/orders").await.json().await.unwrap();
    assert_eq!(p1["items"].as_array().unwrap().len(), 20);
    assert_eq!(
        p1["items"][0]["id"].as_str().unwrap(),
        made[24],
        "newest first"
    );
    for i in 0..5 {
        place(&app, &c, &format!("late{i}"), 1).await;
    }
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2: Value = app
        .get_as(&c, &format!("/api/v1/orders?cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let p2_ids: Vec<&str> = p2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = made[..5].iter().rev().map(String::as_str).collect();
    assert_eq!(
        p2_ids, expected,
        "page 2 is exactly the 5 oldest, no repeats"
    );
    assert!(p2["next_cursor"].is_null());
    assert_eq!(p2["counts"]["all"], 30);
    let pending: Value = app
        .get_as(&c, "/api/v1/orders?status=pending&limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["items"].as_array().unwrap().len(), 30);
    let none: Value = app
        .get_as(&c, "/api/v1/orders?status=approved")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
}

async fn admins_search_by_username_status_and_date(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let w = app.customer("Wanda009").await;
    let x = app.customer("xavier10").await;
    let wo = place(&app, &w, "w1", 1).await;
    place(&app, &w, "w2", 1).await;
    place(&app, &x, "x1", 1).await;
    decide(&app, &admin, wo["id"].as_str().unwrap(), "approve").await;
    let q = |query: &str| {
        app.as_user(Method::GET, &admin, &format!("/api/v1/admin/orders{query}"))
            .send()
    };
    let all: Value = q("").await.unwrap().json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let by_partial: Value = q("?username=ANDA").await.unwrap().json().await.unwrap();
    assert_eq!(by_partial["items"].as_array().unwrap().len(), 2);
    assert!(
        by_partial["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["customer_username"] == "Wanda009")
    );
    let exact_miss: Value = q("?username=wanda&match=exact")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(exact_miss["items"].as_array().unwrap().len(), 0);
    let exact: Value = q("?username=WANDA009&match=exact&status=approved")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(exact["items"].as_array().unwrap().len(), 1);
    assert_eq!(exact["counts"]["all"], 2);
    let wildcard: Value = q("?username=%25").await.unwrap().json().await.unwrap();
    assert_eq!(
        wildcard["items"].as_array().unwrap().len(),
        0,
        "% is a character, not a wildcard"
    );
    let today = &wo["created_at"].as_str().unwrap()[..10];
    let dated: Value = q(&format!("?from={today}&to={today}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dated["items"].as_array().unwrap().len(), 3);
    let future: Value = q("?from=2999-01-01").await.unwrap().json().await.unwrap();
    assert_eq!(future["items"].as_array().unwrap().len(), 0);
    let body = problem(
        q("?from=yesterday&match=fuzzy&username=a").await.unwrap(),
        400,
    )
    .await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
}

async fn the_csv_export_parses_back_to_the_same_rows_and_neutralises_formulas(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let c = app.customer("yusuf011").await;
    let tricky = place(&app, &c, "=HYPERLINK(\"http://x\")", 2).await;
    let quoted = app
        .as_user(Method::POST, &c, "/api/v1/orders")
        .json(&json!({ "item_name": "Comma, \"quote\"", "quantity": 1, "notes": "line one\nline two" }))
        .send()
        .await
        .unwrap();
    assert_eq!(quoted.status(), 201);
    for i in 0..3 {
        place(&app, &c, &format!("plain {i}"), 1).await;
    }
    decide(&app, &admin, tricky["id"].as_str().unwrap(), "reject").await;
    let res = app.get_as(&admin, "/api/v1/admin/orders/export.csv").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"orders-20")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let text = res.text().await.unwrap();
    assert!(text.contains("\r\n"), "RFC 4180 line ends");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(headers[0], "id");
    assert_eq!(headers.len(), 16);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let list: Value = app
        .get_as(&admin, "/api/v1/admin/orders?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(rows.len(), items.len());
    for (row, o) in rows.iter().zip(items) {
        assert_eq!(&row[0], o["id"].as_str().unwrap());
        assert_eq!(&row[1], o["created_at"].as_str().unwrap());
        assert_eq!(&row[3], o["status"].as_str().unwrap());
        assert_eq!(&row[5], o["customer_username"].as_str().unwrap());
        assert_eq!(&row[10], o["notes"].as_str().unwrap_or(""));
    }
    let tricky_row = rows
        .iter()
        .find(|r| &r[0] == tricky["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        &tricky_row[8], "2 x =HYPERLINK(\"http://x\")",
        "a formula inside a cell that does not start it is kept"
    );
    assert_eq!(&tricky_row[3], "REJECTED");
    let quoted_row = rows.iter().find(|r| r[8].contains("Comma")).unwrap();
    assert_eq!(&quoted_row[8], "1 x Comma, \"quote\"");
    assert_eq!(&quoted_row[10], "line one\nline two");

    let starts = place(&app, &c, "@cmd", 1).await;
    let text = app
        .get_as(&admin, "/api/v1/admin/orders/export.csv?status=pending")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let row = reader
        .records()
        .map(Result::unwrap)
        .find(|r| &r[0] == starts["id"].as_str().unwrap())
        .unwrap();
    assert!(row[8].starts_with("1 x @cmd"));
    let text = app
        .get_as(&admin, "/api/v1/admin/orders/export.csv?username=nobody")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 1, "header only");
    problem(
        app.get_as(&admin, "/api/v1/admin/orders/export.csv?limit=5")
            .await,
        400,
    )
    .await;
}

async fn statistics_are_exact_on_a_known_data_set(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let c = app.customer("zoe00012").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            place(&app, &c, &format!("s{i}"), 1).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids[..3] {
        decide(&app, &admin, id, "approve").await;
    }
    decide(&app, &admin, &ids[3], "reject").await;
    decide(&app, &c, &ids[4], "cancel").await;
    // Fix the decision times to known durations: 60 s, 120 s, 180 s, 600 s -> median 150 s.
    for (id, secs) in ids[..4].iter().zip([60_i64, 120, 180, 600]) {
        let id = uuid::Uuid::parse_str(id).unwrap();
        shopkeep_store::on_pool!(&app.db, pool => sqlx::query("UPDATE orders SET decided_at = created_at + $1 WHERE id = $2")
            .bind(secs * 1_000_000).bind(id).execute(pool).await.map(|_| ())).unwrap();
    }
    // One order created 3 days ago.
    let old = uuid::Uuid::parse_str(&ids[5]).unwrap();
    shopkeep_store::on_pool!(&app.db, pool => sqlx::query("UPDATE orders SET created_at = created_at - $1 WHERE id = $2")
        .bind(3 * 86_400_000_000_i64).bind(old).execute(pool).await.map(|_| ())).unwrap();
    let s: Value = app
        .get_as(&admin, "/api/v1/admin/orders/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["total"], 6);
    assert_eq!(
        s["by_status"],
        json!({ "pending": 1, "approved": 3, "rejected": 1, "cancelled": 1 })
    );
    assert_eq!(s["approval_rate"], 0.75);
    assert_eq!(s["median_time_to_decision_seconds"], 150.0);
    let days = s["orders_per_day"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[29]["count"], 5);
    assert_eq!(days[26]["count"], 1);
    assert_eq!(
        days.iter()
            .map(|d| d["count"].as_i64().unwrap())
            .sum::<i64>(),
        6
    );
}

/// Reads SSE frames until one satisfies `want`, or fails after `secs`.
async fn next_event(
    res: &mut reqwest::Response,
    want: impl Fn(&str) -> bool,
    secs: u64,
) -> Option<String> {
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .ok()?
            .ok()??;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame = buf[..end].to_string();
            buf.drain(..end + 2);
            if want(&frame) {
                return Some(frame);
            }
        }
    }
}

async fn status_changes_stream_live_to_the_customer_and_admins_only(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let c = app.customer("amos0013").await;
    let other = app.customer("bea00014").await;
    let order = place(&app, &c, "kettle", 1).await;
    let id = order["id"].as_str().unwrap().to_string();
    let mut mine = app.get_as(&c, "/api/v1/orders/stream").await;
    assert_eq!(mine.headers()["content-type"], "text/event-stream");
    let mut admins = app.get_as(&admin, "/api/v1/orders/stream").await;
    let mut theirs = app.get_as(&other, "/api/v1/orders/stream").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(decide(&app, &admin, &id, "approve").await.status(), 200);
    let frame = next_event(&mut mine, |f| f.contains("APPROVED"), 5)
        .await
        .expect("the customer hears about it");
    assert!(
        frame.contains("event: order.status") && frame.contains(&id),
        "{frame}"
    );
    next_event(&mut admins, |f| f.contains(&id), 5)
        .await
        .expect("admins hear about it");
    assert!(
        next_event(&mut theirs, |f| f.contains(&id), 1)
            .await
            .is_none(),
        "another customer does not"
    );
}

async fn each_change_writes_an_outbox_event_in_the_same_transaction(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let c = app.customer("cleo0015").await;
    let order = place(&app, &c, "rug", 1).await;
    let id = order["id"].as_str().unwrap();
    decide(&app, &admin, id, "approve").await;
    decide(&app, &admin, id, "reject").await;
    let rows: Vec<(String, String)> = shopkeep_store::on_pool!(&app.db, pool => sqlx::query_as(
        "SELECT event_type, payload FROM outbox WHERE resource_id = $1 ORDER BY id").bind(id).fetch_all(pool).await).unwrap();
    let types: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["order.created", "order.approved"],
        "the refused reject wrote nothing"
    );
    let payload: Value = serde_json::from_str(&rows[1].1).unwrap();
    assert_eq!(payload["status"], "APPROVED");
}

both_engines!(live_updates_cross_instances_through_redis);

async fn live_updates_cross_instances_through_redis(engine: Engine) {
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let storage = crate::harness::TestStorage::new(engine).await;
    let mut config = storage.config();
    config.redis_url = Some(redis.into());
    config.redis_prefix = format!("shopkeep-test-{}:", uuid::Uuid::now_v7().simple());
    config.bootstrap_admin = Some(("root".into(), PASSWORD.to_string().into()));
    let b_config = config.clone();
    let a = spawn_with(storage, config).await;
    let admin = a.login("root", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let c = a.customer("dina0016").await;
    let order = place(&a, &c, "clock", 1).await;
    let id = order["id"].as_str().unwrap().to_string();
    let b_app = shopkeep::Application::build(b_config).await.unwrap();
    let b_addr = b_app.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(b_app.run_until_stopped(stop.clone()));
    let mut on_b = a
        .client
        .get(format!("http://{b_addr}/api/v1/orders/stream"))
        .bearer_auth(&c)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(decide(&a, &admin, &id, "approve").await.status(), 200);
    next_event(&mut on_b, |f| f.contains("APPROVED") && f.contains(&id), 5)
        .await
        .expect("instance B relays A's update");
    stop.cancel();
}
