//! The outbound webhook store under the workers: a dispatch round turns outbox events into one
//! delivery per matching endpoint, each with its first job, and a batch of attempts moves each
//! delivery on once, however often an attempt is handed in.

use shopkeep_domain::ShopId;
use shopkeep_store::webhooks::{
    self as store, AttemptRecord, AttemptWrite, Delivery, DeliveryFilter, EndpointFields,
    EndpointHealth, Next,
};
use shopkeep_store::{Db, ShopScope, accounts, on_pool};
use uuid::Uuid;

use crate::both_engines;
use crate::harness::{Engine, TestApp, TestStorage, spawn_with};
use crate::jobs_store::{NOW, QUEUE, job};

both_engines!(
    a_dispatch_round_delivers_each_event_to_each_matching_endpoint_once,
    a_batch_of_attempts_moves_each_delivery_on_once,
    one_read_gives_each_asked_delivery_its_own_context,
    a_job_completion_stores_the_attempt_it_carries_or_nothing,
);

/// A server without the worker role: no dispatcher or worker touches the rows the test writes.
async fn setup(engine: Engine) -> (TestApp, ShopScope) {
    let storage = TestStorage::new(engine).await;
    let mut config = storage.config();
    config
        .roles
        .retain(|r| *r != shopkeep::config::Role::Worker);
    let app = spawn_with(storage, config).await;
    let shop = accounts::ensure_default_shop(&app.db).await.unwrap();
    (app, ShopScope::verified(ShopId(shop.id)))
}

async fn endpoint(db: &Db, scope: ShopScope, filter: &str, enabled: bool) -> Uuid {
    let id = Uuid::now_v7();
    let f = EndpointFields {
        url: "https://hooks.example.com/in".into(),
        description: String::new(),
        event_types: filter.into(),
        enabled,
        headers: "{}".into(),
        rate_per_second: None,
    };
    store::create_endpoint(db, scope, id, &f, "sealed", NOW)
        .await
        .unwrap();
    id
}

async fn outbox(db: &Db, scope: ShopScope, event_type: &str) -> Uuid {
    let id = Uuid::now_v7();
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO outbox (id, shop_id, event_type, resource_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id).bind(scope.shop_id().0).bind(event_type).bind(id.to_string())
        .bind(format!("{{\"type\":\"{event_type}\"}}")).bind(NOW)
        .execute(pool).await.map(|_| ()))
    .unwrap();
    id
}

/// Each delivery's first job, in the test queue so that no worker of the server runs it.
fn first_job(shop: Uuid, _delivery: Uuid, run_at: i64) -> shopkeep_store::jobs::NewJob {
    let mut j = job("test.deliver");
    j.shop_id = Some(shop);
    j.run_at = run_at;
    j
}

async fn deliveries(db: &Db, scope: ShopScope) -> Vec<Delivery> {
    let f = DeliveryFilter {
        limit: 100,
        ..DeliveryFilter::default()
    };
    let mut v = store::deliveries(db, scope, &f).await.unwrap();
    v.reverse();
    v
}

async fn a_dispatch_round_delivers_each_event_to_each_matching_endpoint_once(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let all = endpoint(db, scope, "[]", true).await;
    let created_only = endpoint(db, scope, "[\"order.created\"]", true).await;
    endpoint(db, scope, "[]", false).await;
    let events = [
        outbox(db, scope, "order.created").await,
        outbox(db, scope, "order.approved").await,
        outbox(db, scope, "order.created").await,
    ];

    // A round smaller than the outbox takes the oldest events; the next round the rest.
    assert_eq!(
        store::dispatch_outbox(db, 2, NOW, &first_job)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store::dispatch_outbox(db, 500, NOW, &first_job)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store::dispatch_outbox(db, 500, NOW, &first_job)
            .await
            .unwrap(),
        Some(0),
        "every event is published"
    );

    let got: Vec<(Uuid, Uuid)> = deliveries(db, scope)
        .await
        .iter()
        .map(|d| (d.message_id, d.endpoint_id))
        .collect();
    let mut want = vec![
        (events[0], all),
        (events[0], created_only),
        (events[1], all),
        (events[2], all),
        (events[2], created_only),
    ];
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "one delivery per event and matching endpoint");
    // Deliveries are created in event order.
    let order: Vec<Uuid> = got.iter().map(|(m, _)| *m).collect();
    let mut in_event_order = order.clone();
    in_event_order.sort();
    assert_eq!(order, in_event_order);

    // Each delivery expects the job that was enqueued with it, and no other job was enqueued.
    let jobs = shopkeep_store::jobs::list(
        db,
        &shopkeep_store::jobs::JobFilter {
            state: None,
            kind: None,
            queue: Some(QUEUE.into()),
            before: None,
            limit: 100,
        },
    )
    .await
    .unwrap();
    assert_eq!(jobs.len(), 5);
    for d in deliveries(db, scope).await {
        assert_eq!(d.status, "pending");
        assert!(
            jobs.iter().any(|j| Some(j.id) == d.next_job),
            "delivery {} has its job",
            d.id
        );
    }
    // Each message is its outbox event, copied as it was.
    for (e, kind) in events
        .iter()
        .zip(["order.created", "order.approved", "order.created"])
    {
        let payload = store::message_payload(db, scope, *e).await.unwrap();
        assert_eq!(payload, Some(format!("{{\"type\":\"{kind}\"}}")));
    }
    for d in deliveries(db, scope).await {
        assert_eq!(d.resource_id, d.message_id.to_string());
        let kind = if d.message_id == events[1] {
            "order.approved"
        } else {
            "order.created"
        };
        assert_eq!(d.event_type, kind);
    }
}

fn write(scope: ShopScope, d: &Delivery, attempt: i32, next: Next, now: i64) -> AttemptWrite {
    let status_code = if matches!(next, Next::Delivered) {
        204
    } else {
        500
    };
    AttemptWrite {
        scope,
        delivery: d.clone(),
        attempt: AttemptRecord {
            attempt,
            started_at: now,
            latency_us: 1_000,
            status_code: Some(status_code),
            error: (status_code != 204).then(|| "the endpoint answered 500".to_string()),
            response_body: String::new(),
        },
        next,
        now,
        disable_after: 5 * 86_400 * 1_000_000,
    }
}

async fn a_batch_of_attempts_moves_each_delivery_on_once(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    endpoint(db, scope, "[]", true).await;
    for _ in 0..5 {
        outbox(db, scope, "order.created").await;
    }
    store::dispatch_outbox(db, 500, NOW, &first_job)
        .await
        .unwrap();
    let ds = deliveries(db, scope).await;
    assert_eq!(ds.len(), 5);

    // Delivery 0 was recorded before (its job ran twice); the batch has it again, delivery 1
    // twice, a failure of delivery 2 with its retry, delivery 3 exhausted, and two attempts of
    // delivery 4 (its updates then apply one after the other).
    let t = NOW + 10;
    store::record_attempts(db, &[write(scope, &ds[0], 1, Next::Delivered, t)])
        .await
        .unwrap();
    let mut retry = job("test.deliver");
    retry.run_at = t + 5_000_000;
    let retry_id = retry.id;
    let mut retry4 = job("test.deliver");
    retry4.run_at = t;
    let batch = [
        write(scope, &ds[0], 1, Next::Delivered, t + 1),
        write(scope, &ds[1], 1, Next::Delivered, t + 1),
        write(scope, &ds[1], 1, Next::Delivered, t + 2),
        write(scope, &ds[2], 1, Next::Retry(Box::new(retry)), t + 1),
        write(scope, &ds[3], 1, Next::Failed, t + 1),
        write(scope, &ds[4], 1, Next::Retry(Box::new(retry4)), t + 1),
        write(scope, &ds[4], 2, Next::Delivered, t + 2),
    ];
    let health = store::record_attempts(db, &batch).await.unwrap();
    assert_eq!(health, vec![EndpointHealth::Ok; 7]);

    let after = deliveries(db, scope).await;
    let summary: Vec<(&str, i32, Option<i32>)> = after
        .iter()
        .map(|d| (d.status.as_str(), d.attempts, d.last_status))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("delivered", 1, Some(204)),
            ("delivered", 1, Some(204)),
            ("pending", 1, Some(500)),
            ("failed", 1, Some(500)),
            ("delivered", 2, Some(204)),
        ]
    );
    assert_eq!(after[0].updated_at, t, "the repeat changed nothing");
    assert_eq!(after[1].updated_at, t + 1, "the first of the two counts");
    assert_eq!(after[2].next_job, Some(retry_id));
    assert_eq!(after[2].next_attempt_at, Some(t + 5_000_000));
    assert_eq!(
        after[2].last_error.as_deref(),
        Some("the endpoint answered 500")
    );
    assert_eq!(after[3].next_attempt_at, None);
    assert_eq!(after[4].updated_at, t + 2, "the later attempt applies last");
    assert_eq!(after[4].next_job, None);
    for (d, want) in after.iter().zip([1, 1, 1, 1, 2]) {
        assert_eq!(
            store::attempts(db, scope, d.id).await.unwrap().len(),
            want,
            "one attempt row for delivery {}",
            d.id
        );
    }
    let retry_job = shopkeep_store::jobs::get(db, retry_id).await.unwrap();
    assert!(retry_job.is_some(), "the retry was enqueued with the batch");
}

async fn one_read_gives_each_asked_delivery_its_own_context(engine: Engine) {
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    let first = endpoint(db, scope, "[]", true).await;
    let second = endpoint(db, scope, "[\"order.created\"]", true).await;
    outbox(db, scope, "order.created").await;
    outbox(db, scope, "order.approved").await;
    store::dispatch_outbox(db, 500, NOW, &first_job)
        .await
        .unwrap();
    let ds = deliveries(db, scope).await;
    assert_eq!(ds.len(), 3);
    let other_shop = ShopScope::verified(ShopId(Uuid::now_v7()));
    let asked = [
        (scope, ds[2].id),
        (scope, Uuid::now_v7()),
        (scope, ds[0].id),
        (scope, ds[2].id),
        (other_shop, ds[1].id),
        (scope, ds[1].id),
    ];
    let got = store::attempt_contexts(db, &asked).await.unwrap();
    assert_eq!(got.len(), asked.len(), "one answer per question");
    assert!(got[1].is_none(), "an unknown delivery has no context");
    assert!(
        got[4].is_none(),
        "another shop's scope does not see the delivery"
    );
    for i in [0, 2, 3, 5] {
        let c = got[i].as_ref().expect("a known delivery has its context");
        let d = ds.iter().find(|d| d.id == asked[i].1).unwrap();
        assert_eq!(c.delivery.id, d.id, "answer {i} is the delivery asked for");
        assert_eq!(c.delivery.message_id, d.message_id);
        let e = c.endpoint.as_ref().expect("its endpoint exists");
        assert_eq!(e.id, d.endpoint_id);
        assert!([first, second].contains(&e.id));
        let payload = store::message_payload(db, scope, d.message_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.payload, payload, "answer {i} carries its own message");
    }
    assert!(
        store::attempt_contexts(db, &[]).await.unwrap().is_empty(),
        "nothing asked, nothing read"
    );
}

async fn a_job_completion_stores_the_attempt_it_carries_or_nothing(engine: Engine) {
    use shopkeep_store::jobs::{self as jobs, Along, Finished};
    let (app, scope) = setup(engine).await;
    let db = &app.db;
    endpoint(db, scope, "[]", true).await;
    for _ in 0..2 {
        outbox(db, scope, "order.created").await;
    }
    store::dispatch_outbox(db, 500, NOW, &first_job)
        .await
        .unwrap();
    let ds = deliveries(db, scope).await;
    let claimed = jobs::claim(db, QUEUE, "w1", 10, NOW, NOW + 60_000_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let job_of = |d: &Delivery| d.next_job.expect("a pending delivery has its job");
    let finished = |d: &Delivery, w: AttemptWrite| Finished {
        id: job_of(d),
        kind: "test.deliver".into(),
        result: Some("{\"outcome\":\"delivered\"}".into()),
        along: Some(Along::WebhookAttempt(Box::new(w))),
    };
    let t = NOW + 10;
    let good = finished(&ds[0], write(scope, &ds[0], 1, Next::Delivered, t));
    // An attempt the database refuses for good: its shop does not exist.
    let elsewhere = ShopScope::verified(ShopId(Uuid::now_v7()));
    let refused = finished(&ds[1], write(elsewhere, &ds[1], 1, Next::Delivered, t));

    // One transaction: the refused write takes the completions and the good attempt with it.
    let err = jobs::complete_and_claim(db, "w1", &[good.clone(), refused], &[], t, t, t)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    for d in &ds {
        assert_eq!(
            jobs::get(db, job_of(d)).await.unwrap().unwrap().state,
            "running"
        );
    }
    assert!(
        store::attempts(db, scope, ds[0].id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(deliveries(db, scope).await[0].status, "pending");

    let (n, _) = jobs::complete_and_claim(db, "w1", &[good], &[], t, t, t)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let job = jobs::get(db, job_of(&ds[0])).await.unwrap().unwrap();
    assert_eq!(job.state, "succeeded");
    assert_eq!(job.result.as_deref(), Some("{\"outcome\":\"delivered\"}"));
    let after = deliveries(db, scope).await;
    assert_eq!(
        (after[0].status.as_str(), after[0].attempts),
        ("delivered", 1)
    );
    let attempts = store::attempts(db, scope, ds[0].id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(204));
    assert_eq!(
        after[1].status, "pending",
        "the other delivery waits for its own attempt"
    );
}
