//! The order store under the API: batched creates (group commit), the per-customer counts the
//! triggers keep, and username searches, merged per customer or scanned, giving the same pages.

use shopkeep_domain::UserId;
use shopkeep_domain::accounts::Role;
use shopkeep_store::orders::{
    self as store, Change, CreateRequest, Filter, NewItem, NewOrder, Written,
};
use shopkeep_store::{Db, ShopScope, StoreError, accounts, on_pool};
use uuid::Uuid;

use crate::both_engines;
use crate::harness::{Engine, spawn_app};

both_engines!(
    a_batch_commits_together_and_a_failing_create_is_undone_alone,
    a_batch_without_failures_stores_every_order_line_event_and_outbox_row,
    the_counts_per_customer_follow_every_create_and_change,
    the_counters_migration_counts_the_orders_already_there,
    username_pages_are_the_same_merged_per_customer_or_scanned,
    an_export_of_several_pages_has_every_order_once_newest_first,
    pages_and_items_read_every_field_as_stored,
);

async fn customer(db: &Db, shop: Uuid, name: &str) -> UserId {
    let user = accounts::create_user(
        db,
        &accounts::NewUser {
            username: name.to_string(),
            username_folded: name.to_lowercase(),
            password_hash: "not-a-hash".into(),
            email: None,
            is_admin: false,
            locale: "en".into(),
            currency: "EUR".into(),
            timezone: "UTC".into(),
        },
        Some((shopkeep_domain::ShopId(shop), Role::Customer)),
    )
    .await
    .unwrap();
    UserId(user.id)
}

fn request(scope: ShopScope, who: Option<UserId>, item: &str, key: Option<&str>) -> CreateRequest {
    CreateRequest {
        scope,
        order: NewOrder {
            customer: who,
            notes: None,
            source: "api",
            external_id: None,
            items: vec![NewItem {
                item_name: item.to_string(),
                quantity: 1,
                product_ref: None,
                variant_ref: None,
                unit_price_minor: None,
                currency: None,
            }],
            currency: None,
            total_minor: None,
            customer_username: None,
            actor_username: None,
        },
        idempotency: key.map(|k| {
            (
                who.unwrap_or(UserId(Uuid::nil())),
                k.to_string(),
                vec![1, 2, 3],
            )
        }),
        actor: who,
        request_id: "test".into(),
    }
}

async fn setup(engine: Engine) -> (crate::harness::TestApp, ShopScope) {
    let app = spawn_app(engine).await;
    let shop = accounts::ensure_default_shop(&app.db).await.unwrap();
    (app, ShopScope::verified(shopkeep_domain::ShopId(shop.id)))
}

async fn a_batch_commits_together_and_a_failing_create_is_undone_alone(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let ann = customer(db, scope.shop_id().0, "ann0001").await;
    let ghost = UserId(Uuid::now_v7()); // no such user: the foreign key refuses the order
    let batch = vec![
        request(scope, Some(ann), "first", Some("k1")),
        request(scope, Some(ghost), "refused", None),
        request(scope, Some(ann), "retry of first", Some("k1")),
        request(scope, Some(ann), "second", None),
    ];
    let out = store::create_many(db, batch).await.unwrap();
    assert_eq!(out.len(), 4);
    let Ok(Written::New(first)) = &out[0] else {
        panic!("first: {:?}", out[0])
    };
    assert!(
        matches!(
            out[1],
            Err(StoreError::Other(_)) | Err(StoreError::Conflict(_))
        ),
        "{:?}",
        out[1]
    );
    // The same key in the same batch sees the first claim, as a later request would.
    match &out[2] {
        Ok(Written::KeyTaken {
            order_id,
            request_hash,
        }) => {
            assert_eq!(*order_id, first.order.id);
            assert_eq!(request_hash, &vec![1, 2, 3]);
        }
        other => panic!("retry: {other:?}"),
    }
    let Ok(Written::New(second)) = &out[3] else {
        panic!("second: {:?}", out[3])
    };
    // The refused order left nothing behind; the others are stored with their lines and events.
    let stored: Vec<(Uuid,)> = on_pool!(db, pool => sqlx::query_as("SELECT id FROM orders ORDER BY id")
        .fetch_all(pool).await.unwrap());
    assert_eq!(stored, vec![(first.order.id,), (second.order.id,)]);
    for table in ["order_items", "order_events", "outbox"] {
        let sql = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"));
        let n: i64 = on_pool!(db, pool => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap());
        assert_eq!(n, 2, "{table}");
    }
    let replay = store::resolve(
        db,
        scope,
        out[2].as_ref().unwrap().clone(),
        Some(&[1, 2, 3]),
    )
    .await
    .unwrap();
    assert!(matches!(replay, store::Created::Replayed(o) if o.id == first.order.id));
    let reused = store::resolve(db, scope, out[2].as_ref().unwrap().clone(), Some(&[9]))
        .await
        .unwrap();
    assert!(matches!(reused, store::Created::KeyReused));
}

/// `order_counts` against a count of the orders themselves.
async fn assert_counts_match(db: &Db) {
    let kept: Vec<(Uuid, String, i64)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT customer_id, status, n FROM order_counts WHERE n <> 0 ORDER BY customer_id, status")
        .fetch_all(pool).await.unwrap());
    let counted: Vec<(Uuid, String, i64)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT customer_id, status, count(*) FROM orders WHERE customer_id IS NOT NULL \
         GROUP BY customer_id, status ORDER BY customer_id, status")
        .fetch_all(pool).await.unwrap());
    assert_eq!(kept, counted);
}

async fn the_counts_per_customer_follow_every_create_and_change(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let shop = scope.shop_id().0;
    let (bea, cy) = (
        customer(db, shop, "bea0001").await,
        customer(db, shop, "cy00001").await,
    );
    let mut ids = Vec::new();
    for (i, who) in [Some(bea), Some(bea), Some(cy), None, Some(bea), Some(cy)]
        .into_iter()
        .enumerate()
    {
        let out = store::create_many(db, vec![request(scope, who, &format!("tea {i}"), None)])
            .await
            .unwrap();
        let Ok(Written::New(o)) = &out[0] else {
            panic!("{:?}", out[0])
        };
        ids.push(o.order.id);
    }
    assert_counts_match(db).await;
    for (id, from, to) in [
        (ids[0], "PENDING", "APPROVED"),
        (ids[1], "PENDING", "REJECTED"),
        (ids[2], "PENDING", "CANCELLED"),
        (ids[3], "PENDING", "APPROVED"),
    ] {
        let change = Change {
            from,
            to,
            decision: to != "CANCELLED",
            actor: bea,
            reason: None,
            request_id: "test",
            event_type: "order.changed",
            jobs: &[],
        };
        assert!(matches!(
            store::transition(db, scope, id, &change).await.unwrap(),
            store::Transition::Done(_)
        ));
    }
    assert_counts_match(db).await;
    // What the lists show: a customer's tabs, a username search, the whole shop.
    let counts = |f: Filter| async move {
        let mut c = store::counts(db, scope, &f).await.unwrap();
        c.retain(|(_, n)| *n != 0);
        c.sort();
        c
    };
    let s = |v: &[(&str, i64)]| {
        v.iter()
            .map(|(a, n)| (a.to_string(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(Filter {
            customer: Some(bea),
            ..Filter::default()
        })
        .await,
        s(&[("APPROVED", 1), ("PENDING", 1), ("REJECTED", 1)])
    );
    assert_eq!(
        counts(Filter {
            username_contains: Some("y0".into()),
            ..Filter::default()
        })
        .await,
        s(&[("CANCELLED", 1), ("PENDING", 1)])
    );
    assert_eq!(
        counts(Filter::default()).await,
        s(&[
            ("APPROVED", 2),
            ("CANCELLED", 1),
            ("PENDING", 2),
            ("REJECTED", 1)
        ])
    );
    // A status filter does not change the tab counts; a date range counts the orders themselves.
    assert_eq!(
        counts(Filter {
            username_exact: Some("bea0001".into()),
            status: Some("PENDING".into()),
            ..Filter::default()
        })
        .await,
        s(&[("APPROVED", 1), ("PENDING", 1), ("REJECTED", 1)])
    );
    assert_eq!(
        counts(Filter {
            username_exact: Some("bea0001".into()),
            from: Some(0),
            ..Filter::default()
        })
        .await,
        s(&[("APPROVED", 1), ("PENDING", 1), ("REJECTED", 1)])
    );
}

/// Every page of `f`, `limit` at a time, as ids. Each page is also read with its counts, which
/// must give the same page and the counts [`store::counts`] gives.
async fn all_pages(db: &Db, scope: ShopScope, f: &Filter, limit: i64) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut before = None;
    let mut want_counts = store::counts(db, scope, f).await.unwrap();
    want_counts.sort();
    loop {
        let page = store::list(db, scope, f, before, limit).await.unwrap();
        let (with_counts, mut counts) = store::list_with_counts(db, scope, f, before, limit)
            .await
            .unwrap();
        assert_eq!(format!("{with_counts:?}"), format!("{page:?}"), "{f:?}");
        counts.sort();
        assert_eq!(counts, want_counts, "{f:?}");
        ids.extend(page.iter().map(|o| o.id));
        if page.len() < usize::try_from(limit).unwrap() {
            return ids;
        }
        before = page.last().map(|o| o.id);
    }
}

async fn username_pages_are_the_same_merged_per_customer_or_scanned(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let shop = scope.shop_id().0;
    // 70 customers (more than are merged per customer) and one whose name matches nothing else.
    let mut customers = Vec::new();
    for i in 0..70 {
        customers.push((
            format!("buyer{i:03}"),
            customer(db, shop, &format!("Buyer{i:03}")).await,
        ));
    }
    let other = customer(db, shop, "zed0001").await;
    // Orders in batches, spread unevenly: customer i gets i % 4 orders.
    let mut placed: Vec<(Uuid, String)> = Vec::new();
    let mut batch = Vec::new();
    for round in 0..3 {
        for (name, id) in &customers {
            let n: usize = name[5..].parse().unwrap();
            if round < n % 4 {
                batch.push((name.clone(), request(scope, Some(*id), "tea", None)));
            }
        }
        batch.push(("zed0001".into(), request(scope, Some(other), "tea", None)));
    }
    let (names, requests): (Vec<String>, Vec<CreateRequest>) = batch.into_iter().unzip();
    for (name, out) in names
        .into_iter()
        .zip(store::create_many(db, requests).await.unwrap())
    {
        let Ok(Written::New(o)) = out else {
            panic!("{out:?}")
        };
        placed.push((o.order.id, name));
    }
    placed.sort_by_key(|p| std::cmp::Reverse(p.0));
    let expect = |pred: &dyn Fn(&str) -> bool| -> Vec<Uuid> {
        placed
            .iter()
            .filter(|(_, n)| pred(n))
            .map(|(id, _)| *id)
            .collect()
    };
    let search = |text: &str| Filter {
        username_contains: Some(text.into()),
        ..Filter::default()
    };
    // 10 customers match "buyer01" (merged), all 70 match "uyer0" (scanned), one matches exactly.
    for limit in [1, 3, 20] {
        assert_eq!(
            all_pages(db, scope, &search("buyer01"), limit).await,
            expect(&|n| n.contains("buyer01")),
            "buyer01, limit {limit}"
        );
        assert_eq!(
            all_pages(db, scope, &search("uyer0"), limit).await,
            expect(&|n| n.contains("uyer0")),
            "uyer0, limit {limit}"
        );
        let exact = Filter {
            username_exact: Some("buyer003".into()),
            ..Filter::default()
        };
        assert_eq!(
            all_pages(db, scope, &exact, limit).await,
            expect(&|n| n == "buyer003"),
            "exact, limit {limit}"
        );
    }
    assert!(all_pages(db, scope, &search("nobody"), 5).await.is_empty());
    // A status filter applies on both paths.
    let first = placed
        .iter()
        .find(|(_, n)| n.starts_with("buyer01"))
        .unwrap()
        .0;
    let approve = Change {
        from: "PENDING",
        to: "APPROVED",
        decision: true,
        actor: other,
        reason: None,
        request_id: "test",
        event_type: "order.approved",
        jobs: &[],
    };
    store::transition(db, scope, first, &approve).await.unwrap();
    for text in ["buyer01", "uyer"] {
        let f = Filter {
            status: Some("APPROVED".into()),
            ..search(text)
        };
        assert_eq!(all_pages(db, scope, &f, 2).await, vec![first], "{text}");
    }
}

async fn a_batch_without_failures_stores_every_order_line_event_and_outbox_row(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let dora = customer(db, scope.shop_id().0, "dora001").await;
    let mut batch = Vec::new();
    for i in 0..5 {
        let mut r = request(
            scope,
            Some(dora),
            &format!("cup {i}"),
            (i < 2).then_some("same-key"),
        );
        r.order.items.push(NewItem {
            item_name: format!("saucer {i}"),
            quantity: 2,
            product_ref: Some("p-1".into()),
            variant_ref: None,
            unit_price_minor: Some(450),
            currency: Some("EUR".into()),
        });
        r.order.notes = Some(format!("note {i}"));
        batch.push(r);
    }
    let out = store::create_many(db, batch).await.unwrap();
    let mut new = Vec::new();
    for (i, o) in out.iter().enumerate() {
        match o {
            Ok(Written::New(full)) => new.push((i, full.order.id)),
            Ok(Written::KeyTaken { order_id, .. }) => {
                assert_eq!(i, 1, "only the repeated key is taken");
                assert_eq!(
                    *order_id,
                    out[0]
                        .as_ref()
                        .map(|w| match w {
                            Written::New(f) => f.order.id,
                            _ => Uuid::nil(),
                        })
                        .unwrap()
                );
            }
            Err(e) => panic!("{i}: {e}"),
        }
    }
    assert_eq!(
        new.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 2, 3, 4]
    );
    for (i, id) in &new {
        let full = store::get(db, scope, *id).await.unwrap().unwrap();
        assert_eq!(
            (full.status.as_str(), full.notes.clone()),
            ("PENDING", Some(format!("note {i}")))
        );
        let lines = store::items(db, scope, *id).await.unwrap();
        let shown: Vec<(i32, String, i32, Option<i64>)> = lines
            .iter()
            .map(|l| {
                (
                    l.position,
                    l.item_name.clone(),
                    l.quantity,
                    l.unit_price_minor,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                (0, format!("cup {i}"), 1, None),
                (1, format!("saucer {i}"), 2, Some(450))
            ]
        );
        let events = store::events(db, scope, *id).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].to_status.as_str(), events[0].actor_id),
            ("PENDING", Some(dora.0))
        );
    }
    let outbox: i64 = on_pool!(db, pool => sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'order.created'")
        .fetch_one(pool).await.unwrap());
    assert_eq!(outbox, 4);
    assert_counts_match(db).await;
}

async fn the_counters_migration_counts_the_orders_already_there(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let (eve, fay) = (
        customer(db, scope.shop_id().0, "eve0001").await,
        customer(db, scope.shop_id().0, "fay0001").await,
    );
    let batch = [Some(eve), Some(eve), Some(fay), None]
        .into_iter()
        .map(|who| request(scope, who, "tea", None))
        .collect();
    let out = store::create_many(db, batch).await.unwrap();
    let Ok(Written::New(first)) = &out[0] else {
        panic!("{:?}", out[0])
    };
    let approve = Change {
        from: "PENDING",
        to: "APPROVED",
        decision: true,
        actor: fay,
        reason: None,
        request_id: "test",
        event_type: "order.approved",
        jobs: &[],
    };
    store::transition(db, scope, first.order.id, &approve)
        .await
        .unwrap();
    // Back to the schema before the migration, with the orders kept.
    let undo: &[&str] = match engine {
        Engine::Sqlite => &[
            "DROP TRIGGER order_counts_insert",
            "DROP TRIGGER order_counts_update",
            "DROP TRIGGER order_counts_delete",
            "DROP TABLE order_counts",
        ],
        Engine::Postgres => &[
            "DROP FUNCTION order_counts_track() CASCADE",
            "DROP TABLE order_counts",
        ],
    };
    for sql in undo {
        on_pool!(db, pool => sqlx::query(sqlx::AssertSqlSafe(*sql)).execute(pool).await.map(|_| ()))
            .unwrap();
    }
    on_pool!(db, pool => sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 20261202000007")
        .execute(pool).await.map(|_| ()))
    .unwrap();
    db.migrate().await.unwrap();
    let rows: i64 = on_pool!(db, pool => sqlx::query_scalar("SELECT count(*) FROM order_counts WHERE n > 0")
        .fetch_one(pool).await.unwrap());
    assert_eq!(rows, 3, "eve: pending and approved; fay: pending");
    assert_counts_match(db).await;
    // And the triggers are back.
    store::create_many(db, vec![request(scope, Some(fay), "more tea", None)])
        .await
        .unwrap();
    assert_counts_match(db).await;
}

/// The export reads 1,000 orders a page: across page boundaries every order comes out once, in
/// order.
async fn an_export_of_several_pages_has_every_order_once_newest_first(engine: Engine) {
    let (app, admin) = crate::harness::spawn_with_admin(engine).await;
    let shop = accounts::ensure_default_shop(&app.db).await.unwrap();
    let scope = ShopScope::verified(shopkeep_domain::ShopId(shop.id));
    let ann = customer(&app.db, shop.id, "ann0002").await;
    let mut created = Vec::new();
    for chunk in 0..12 {
        let batch = (0..200)
            .map(|i| request(scope, Some(ann), &format!("item {chunk}-{i}"), None))
            .collect();
        for w in store::create_many(&app.db, batch).await.unwrap() {
            let Ok(Written::New(o)) = w else {
                panic!("a create failed: {w:?}")
            };
            created.push(o.order.id);
        }
    }
    let text = app
        .get_as(&admin, "/api/v1/admin/orders/export.csv")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let ids: Vec<Uuid> = reader
        .records()
        .map(|r| r.unwrap()[0].parse().unwrap())
        .collect();
    created.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids.len(), 2_400);
    assert_eq!(ids, created, "every order once, newest first");
}

/// Pages and the items of an export (read as one JSON array per statement on SQLite) carry every
/// field exactly as the single-order reads do: text that needs escaping, absent values, a
/// decision, priced lines, an order without a customer.
async fn pages_and_items_read_every_field_as_stored(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let shop = scope.shop_id().0;
    let bea = customer(db, shop, "bea0001").await;
    let tricky = "\"quoted\" \\ back\nslash\ttab \u{e9}t\u{e9} \u{1f389} \u{1}";
    let mut priced = request(scope, Some(bea), tricky, None);
    priced.order.notes = Some(format!("{tricky} <b>&amp;</b>"));
    priced.order.external_id = Some("ext-1".into());
    priced.order.currency = Some("EUR".into());
    priced.order.total_minor = Some(i64::from(i32::MAX) * 3);
    priced.order.items[0].product_ref = Some("prod-1".into());
    priced.order.items[0].unit_price_minor = Some(i64::from(i32::MAX));
    priced.order.items[0].currency = Some("EUR".into());
    priced.order.items[0].quantity = 3;
    priced.order.items.push(NewItem {
        item_name: "second".into(),
        quantity: 100,
        product_ref: None,
        variant_ref: Some("var-2".into()),
        unit_price_minor: Some(0),
        currency: None,
    });
    let out = store::create_many(
        db,
        vec![
            priced,
            request(scope, None, "no customer", None),
            request(scope, Some(bea), "decided", None),
        ],
    )
    .await
    .unwrap();
    let ids: Vec<Uuid> = out
        .iter()
        .map(|w| match w {
            Ok(Written::New(o)) => o.order.id,
            other => panic!("{other:?}"),
        })
        .collect();
    let change = Change {
        from: "PENDING",
        to: "REJECTED",
        decision: true,
        actor: bea,
        reason: Some("out of stock: \"tea\" \u{1f375}"),
        request_id: "test",
        event_type: "order.changed",
        jobs: &[],
    };
    assert!(matches!(
        store::transition(db, scope, ids[2], &change).await.unwrap(),
        store::Transition::Done(_)
    ));

    let one_by_one = |ids: Vec<Uuid>| async move {
        let mut rows = Vec::new();
        for id in ids {
            rows.push(format!(
                "{:?}",
                store::get(db, scope, id).await.unwrap().unwrap()
            ));
        }
        rows
    };
    let mut sorted = ids.clone();
    sorted.sort();
    let newest_first: Vec<Uuid> = sorted.iter().rev().copied().collect();
    let page = store::list(db, scope, &Filter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>(),
        one_by_one(newest_first.clone()).await
    );
    // The page with its counts, for each kind of count, equals the two read apart.
    for f in [
        Filter::default(),
        Filter {
            customer: Some(bea),
            ..Filter::default()
        },
        Filter {
            status: Some("REJECTED".into()),
            from: Some(0),
            ..Filter::default()
        },
        Filter {
            username_contains: Some("ea0".into()),
            ..Filter::default()
        },
    ] {
        let (rows, mut counts) = store::list_with_counts(db, scope, &f, None, 10)
            .await
            .unwrap();
        let apart = store::list(db, scope, &f, None, 10).await.unwrap();
        assert_eq!(format!("{rows:?}"), format!("{apart:?}"), "{f:?}");
        let mut want = store::counts(db, scope, &f).await.unwrap();
        counts.sort();
        want.sort();
        assert_eq!(counts, want, "{f:?}");
        assert!(!counts.is_empty(), "{f:?}");
    }
    // A cursor in the middle.
    let older = store::list(db, scope, &Filter::default(), Some(sorted[2]), 10)
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>(),
        one_by_one(vec![sorted[1], sorted[0]]).await
    );

    let mut want = Vec::new();
    for id in &sorted {
        for item in store::items(db, scope, *id).await.unwrap() {
            want.push(format!("{id} {item:?}"));
        }
    }
    let got: Vec<String> = store::items_for(db, scope, &ids)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, item)| format!("{id} {item:?}"))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 4);
}
