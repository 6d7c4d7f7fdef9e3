//! The load tool (bench/load) against the real application: a small journey succeeds with
//! exact counts, and a refused step is counted as an error instead of disappearing.

use shopkeep_load::journey::{self, JourneyOptions};

use crate::both_engines;
use crate::harness::{Engine, PASSWORD, spawn_with_admin};

both_engines!(
    a_small_journey_creates_lists_and_approves_every_order_without_errors,
    a_wrong_admin_password_is_counted_as_approve_errors,
);

const USERS: u64 = 5;
const ORDERS: u64 = 5;

async fn a_small_journey_creates_lists_and_approves_every_order_without_errors(engine: Engine) {
    let (app, admin) = spawn_with_admin(engine).await;
    let opts = JourneyOptions::new(&app.url(""), USERS, "root", PASSWORD);
    let report = journey::run(&opts).await.expect("the journey runs");

    assert_eq!(report.total_errors(), 0, "{}", report.table());
    assert_eq!(report.journeys_completed, Some(USERS));
    for (step, count) in [
        ("admin login", 1),
        ("register", USERS),
        ("login", USERS),
        ("create", USERS * ORDERS),
        ("list", USERS),
        ("approve", USERS * ORDERS),
    ] {
        let s = report.step(step).expect(step);
        assert_eq!(
            (s.count, s.ok),
            (count, count),
            "{step}: {}",
            report.table()
        );
        assert!(s.max_ms > 0.0 && s.p50_ms <= s.p99_ms, "{step} latencies");
    }

    // What the tool counted is what the server holds.
    let stats: serde_json::Value = app
        .get_as(&admin, "/api/v1/admin/orders/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], USERS * ORDERS, "{stats}");
    let approved: serde_json::Value = app
        .get_as(&admin, "/api/v1/admin/orders?status=approved&limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        approved["items"].as_array().unwrap().len() as u64,
        USERS * ORDERS
    );
}

async fn a_wrong_admin_password_is_counted_as_approve_errors(engine: Engine) {
    let (app, _admin) = spawn_with_admin(engine).await;
    let opts = JourneyOptions::new(&app.url(""), 2, "root", "not-the-Admin-password-9");
    let report = journey::run(&opts).await.expect("the journey runs");

    let login = report.step("admin login").unwrap();
    assert_eq!((login.count, login.errors), (1, 1), "{}", report.table());
    assert_eq!(login.errors_by_kind.get("400"), Some(&1));
    assert!(
        login.error_samples[0].contains("invalid_grant"),
        "{login:?}"
    );

    let approve = report.step("approve").unwrap();
    assert_eq!((approve.count, approve.ok, approve.errors), (10, 0, 10));
    assert_eq!(
        approve.errors_by_kind.get("skipped: admin not signed in"),
        Some(&10)
    );
    // The customers' part still worked and is counted as such.
    assert_eq!(report.step("create").unwrap().ok, 10);
    assert_eq!(report.journeys_completed, Some(0));
    assert_eq!(report.total_errors(), 11);
    assert!(report.table().contains("ERRORS in approve"));
}
