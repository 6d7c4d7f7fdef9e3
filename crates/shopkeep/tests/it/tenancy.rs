//! Property: with random shops, users and roles, no endpoint returns or changes another shop's
//! data. Later features add their endpoints to `probe_other_shop`.

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, TestApp, spawn_with_admin};

/// One generated world: for each shop, its members' roles.
#[derive(Debug, Clone)]
struct World {
    shops: Vec<Vec<&'static str>>,
}

fn worlds() -> impl Strategy<Value = World> {
    let role = prop_oneof![
        Just("customer"),
        Just("staff"),
        Just("admin"),
        Just("owner")
    ];
    proptest::collection::vec(proptest::collection::vec(role, 1..=3), 2..=3)
        .prop_map(|shops| World { shops })
}

struct Member {
    shop_index: usize,
    role: &'static str,
    token: String,
    order_id: String,
}

async fn build(app: &TestApp, root: &str, world: &World, case: usize) -> (Vec<Value>, Vec<Member>) {
    let mut shops = Vec::new();
    let mut members = Vec::new();
    for (si, roles) in world.shops.iter().enumerate() {
        let res = app
            .as_user(Method::POST, root, "/api/v1/shops")
            .json(&json!({ "slug": format!("s{case}-{si}"), "name": format!("Shop {si}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let shop: Value = res.json().await.unwrap();
        let t: Value = app
            .as_user(Method::POST, root, "/api/v1/auth/switch-shop")
            .json(&json!({ "shop_id": shop["id"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let root_here = t["access_token"].as_str().unwrap().to_string();
        for (ui, role) in roles.iter().enumerate() {
            let name = format!("u{case}s{si}n{ui}");
            app.register(&name, PASSWORD).await;
            let res = app
                .as_user(
                    Method::PUT,
                    &root_here,
                    &format!("/api/v1/shop/members/{name}"),
                )
                .json(&json!({ "role": role }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let shop_id = shop["id"].as_str().unwrap();
            let tok = app
                .token(&[
                    ("grant_type", "password"),
                    ("username", &name),
                    ("password", PASSWORD),
                    ("shop", shop_id),
                ])
                .await;
            assert_eq!(tok.status(), 200);
            let tok: Value = tok.json().await.unwrap();
            let token = tok["access_token"].as_str().unwrap().to_string();
            let order: Value = app
                .as_user(Method::POST, &token, "/api/v1/orders")
                .json(&json!({ "item_name": format!("{name} item"), "quantity": 1 }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let order_id = order["id"].as_str().unwrap().to_string();
            members.push(Member {
                shop_index: si,
                role,
                token,
                order_id,
            });
        }
        // Each shop gets an API key, created by its root owner.
        let key: Value = app
            .as_user(Method::POST, &root_here, "/api/v1/api-keys")
            .json(&json!({ "name": "k", "scopes": ["orders:read"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        shops.push(
            json!({ "shop": shop, "key_id": key["id"], "member_prefix": format!("u{case}s{si}n") }),
        );
    }
    (shops, members)
}

async fn probe_other_shop(app: &TestApp, m: &Member, shops: &[Value], members: &[Member]) {
    let mine = &shops[m.shop_index];
    let here: Value = app
        .get_as(&m.token, "/api/v1/shop")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        here["id"], mine["shop"]["id"],
        "a member sees their own shop"
    );
    let is_admin = matches!(m.role, "admin" | "owner");
    if is_admin {
        let members: Value = app
            .get_as(&m.token, "/api/v1/shop/members")
            .await
            .json()
            .await
            .unwrap();
        let prefix = mine["member_prefix"].as_str().unwrap();
        for member in members.as_array().unwrap() {
            let name = member["username"].as_str().unwrap();
            assert!(
                name == "root" || name.starts_with(prefix),
                "{name} leaked into {prefix}"
            );
        }
        let keys: Value = app
            .get_as(&m.token, "/api/v1/api-keys")
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&Value> = keys.as_array().unwrap().iter().map(|k| &k["id"]).collect();
        assert_eq!(ids, vec![&mine["key_id"]]);
        let audit: Value = app
            .get_as(&m.token, "/api/v1/audit?limit=100")
            .await
            .json()
            .await
            .unwrap();
        for item in audit["items"].as_array().unwrap() {
            if let Some(t) = item["target"]
                .as_str()
                .filter(|t| t.starts_with('u') && t.contains('s'))
            {
                assert!(t.starts_with(prefix), "audit of another shop leaked: {t}");
            }
        }
    }
    // Orders: every order listed to an admin is of this shop; the stream and export too.
    if is_admin {
        let orders: Value = app
            .get_as(&m.token, "/api/v1/admin/orders?limit=100")
            .await
            .json()
            .await
            .unwrap();
        let prefix = mine["member_prefix"].as_str().unwrap();
        for o in orders["items"].as_array().unwrap() {
            assert!(
                o["customer_username"].as_str().unwrap().starts_with(prefix),
                "order of another shop listed: {o}"
            );
        }
        let csv = app
            .get_as(&m.token, "/api/v1/admin/orders/export.csv")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(
            csv.lines().count() - 1,
            orders["items"].as_array().unwrap().len()
        );
        let stats: Value = app
            .get_as(&m.token, "/api/v1/admin/orders/stats")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            stats["total"].as_u64().unwrap() as usize,
            orders["items"].as_array().unwrap().len()
        );
    }
    for other in members.iter().filter(|o| o.shop_index != m.shop_index) {
        let res = app
            .get_as(&m.token, &format!("/api/v1/orders/{}", other.order_id))
            .await;
        assert_eq!(res.status(), 404, "reading another shop's order");
        for action in ["approve", "reject", "cancel"] {
            let res = app
                .as_user(
                    Method::POST,
                    &m.token,
                    &format!("/api/v1/orders/{}/{action}", other.order_id),
                )
                .send()
                .await
                .unwrap();
            assert!(
                matches!(res.status().as_u16(), 403 | 404),
                "{action} on another shop's order: {}",
                res.status()
            );
        }
    }
    for (i, other) in shops.iter().enumerate() {
        if i == m.shop_index {
            continue;
        }
        let res = app
            .as_user(Method::POST, &m.token, "/api/v1/auth/switch-shop")
            .json(&json!({ "shop_id": other["shop"]["id"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "switching into another shop");
        let key_id = other["key_id"].as_str().unwrap();
        let res = app
            .as_user(
                Method::DELETE,
                &m.token,
                &format!("/api/v1/api-keys/{key_id}"),
            )
            .send()
            .await
            .unwrap();
        assert!(
            matches!(res.status().as_u16(), 403 | 404),
            "revoking another shop's key: {}",
            res.status()
        );
        let name = format!("{}0", other["member_prefix"].as_str().unwrap());
        let res = app
            .as_user(
                Method::DELETE,
                &m.token,
                &format!("/api/v1/shop/members/{name}"),
            )
            .send()
            .await
            .unwrap();
        assert!(
            matches!(res.status().as_u16(), 403 | 404),
            "removing another shop's member: {}",
            res.status()
        );
    }
}

both_engines!(no_endpoint_returns_or_changes_another_shops_data);

async fn no_endpoint_returns_or_changes_another_shops_data(engine: Engine) {
    let (app, root) = spawn_with_admin(engine).await;
    let mut runner = TestRunner::new(PropConfig {
        cases: 3,
        ..PropConfig::default()
    });
    let mut worlds_seen = Vec::new();
    for _ in 0..3 {
        let tree = worlds().new_tree(&mut runner).unwrap();
        worlds_seen.push(proptest::strategy::ValueTree::current(&tree));
    }
    for (case, world) in worlds_seen.iter().enumerate() {
        let (shops, members) = build(&app, &root, world, case).await;
        for m in &members {
            probe_other_shop(&app, m, &shops, &members).await;
        }
        // Every order is still pending: nothing was decided across shops.
        for m in &members {
            let id = uuid::Uuid::parse_str(&m.order_id).unwrap();
            let status: String = shopkeep_store::on_pool!(&app.db, pool => sqlx::query_scalar(
                "SELECT status FROM orders WHERE id = $1").bind(id).fetch_one(pool).await)
            .unwrap();
            assert_eq!(status, "PENDING", "{world:?}");
        }
        // Every key still exists: nothing was revoked across shops.
        for s in &shops {
            let key_id = s["key_id"].as_str().unwrap();
            let n: i64 = shopkeep_store::on_pool!(&app.db, pool => sqlx::query_scalar(
                "SELECT count(*) FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
                .bind(uuid::Uuid::parse_str(key_id).unwrap()).fetch_one(pool).await)
            .unwrap();
            assert_eq!(n, 1, "{world:?}");
        }
    }
}
