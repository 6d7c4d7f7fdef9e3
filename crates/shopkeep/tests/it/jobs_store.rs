//! The job store under the workers: the operator's lists by state and kind read the indexes each
//! state has, and a completion changes only the jobs its owner still runs.

use shopkeep_store::Db;
use shopkeep_store::jobs::{
    self as store, AfterFailure, CancelOutcome, Failure, Finished, JobFilter, NewJob,
};
use uuid::Uuid;

use crate::both_engines;
use crate::harness::{Engine, spawn_app};

both_engines!(
    every_state_lists_its_own_jobs_newest_first,
    a_completion_changes_only_the_jobs_its_owner_runs,
    a_completion_stores_each_jobs_own_result,
);

/// A queue no worker of the test server runs, so only the test moves these jobs.
pub(crate) const QUEUE: &str = "store-test";
/// A fixed time, late enough that no pruning or lease reclaim of the test server touches it.
pub(crate) const NOW: i64 = 1_800_000_000_000_000;

/// A job of `kind` in [`QUEUE`], due at [`NOW`].
pub(crate) fn job(kind: &str) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        kind: kind.into(),
        queue: QUEUE.into(),
        args: "{}".into(),
        priority: 5,
        run_at: NOW,
        max_attempts: 1,
        timeout_ms: 1_000,
        unique: None,
        rate_key: None,
        tags: "[]".into(),
        shop_id: None,
    }
}

async fn ids(db: &Db, state: Option<&str>, kind: Option<&str>) -> Vec<Uuid> {
    let f = JobFilter {
        state: state.map(str::to_string),
        kind: kind.map(str::to_string),
        queue: Some(QUEUE.into()),
        before: None,
        limit: 100,
    };
    store::list(db, &f)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect()
}

fn newest_first(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v.reverse();
    v
}

async fn every_state_lists_its_own_jobs_newest_first(engine: Engine) {
    let app = spawn_app(engine).await;
    let db = &app.db;
    let jobs: Vec<NewJob> = (0..12)
        .map(|i| job(if i % 2 == 0 { "test.even" } else { "test.odd" }))
        .collect();
    store::enqueue(db, &jobs, NOW).await.unwrap();
    let all: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();

    // Claimed oldest first: jobs 0-5 run, 6-11 wait.
    let claimed = store::claim(db, QUEUE, "w1", 6, NOW, NOW + 60_000_000)
        .await
        .unwrap();
    let mut claimed_ids: Vec<Uuid> = claimed.iter().map(|c| c.id).collect();
    claimed_ids.sort();
    assert_eq!(claimed_ids, all[..6].to_vec());
    let done: Vec<Finished> = [0, 1]
        .iter()
        .map(|&i| Finished {
            id: all[i],
            kind: jobs[i].kind.clone(),
            result: None,
            along: None,
        })
        .collect();
    assert_eq!(
        store::complete(db, "w1", &done, NOW + 1, NOW + 1_000)
            .await
            .unwrap(),
        2
    );
    let failure = Failure {
        id: all[2],
        kind: &jobs[2].kind,
        attempt: 1,
        outcome: "failed",
        error: "boom",
        started_at: NOW,
        next: AfterFailure::Dead,
    };
    assert!(
        store::fail(db, "w1", &failure, NOW + 2, NOW + 1_000)
            .await
            .unwrap()
    );
    assert_eq!(
        store::cancel(db, all[6], NOW + 3, NOW + 1_000)
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert!(
        store::discard(db, all[7], NOW + 4, NOW + 1_000)
            .await
            .unwrap()
    );

    let expect = |idx: &[usize]| newest_first(idx.iter().map(|&i| all[i]).collect());
    assert_eq!(ids(db, Some("succeeded"), None).await, expect(&[0, 1]));
    assert_eq!(ids(db, Some("dead"), None).await, expect(&[2]));
    assert_eq!(ids(db, Some("running"), None).await, expect(&[3, 4, 5]));
    assert_eq!(ids(db, Some("cancelled"), None).await, expect(&[6]));
    assert_eq!(ids(db, Some("discarded"), None).await, expect(&[7]));
    assert_eq!(ids(db, Some("queued"), None).await, expect(&[8, 9, 10, 11]));
    assert_eq!(
        ids(db, None, None).await,
        expect(&(0..12).collect::<Vec<_>>())
    );
    assert_eq!(
        ids(db, None, Some("test.odd")).await,
        expect(&[1, 3, 5, 7, 9, 11])
    );
    assert_eq!(
        ids(db, Some("queued"), Some("test.even")).await,
        expect(&[8, 10])
    );
    assert_eq!(ids(db, Some("dead"), Some("test.even")).await, expect(&[2]));
    assert_eq!(
        ids(db, Some("dead"), Some("test.odd")).await,
        Vec::<Uuid>::new()
    );

    let mut depths: Vec<(String, i64)> = store::depths(db)
        .await
        .unwrap()
        .into_iter()
        .filter(|(q, ..)| q == QUEUE)
        .map(|(_, state, n)| (state, n))
        .collect();
    depths.sort();
    assert_eq!(
        depths,
        vec![
            ("dead".into(), 1),
            ("queued".into(), 4),
            ("running".into(), 3)
        ]
    );
}

async fn a_completion_changes_only_the_jobs_its_owner_runs(engine: Engine) {
    let app = spawn_app(engine).await;
    let db = &app.db;
    let jobs: Vec<NewJob> = (0..3).map(|_| job("test.noop")).collect();
    store::enqueue(db, &jobs, NOW).await.unwrap();
    let claimed = store::claim(db, QUEUE, "w1", 2, NOW, NOW + 60_000_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let finished = |ids: &[Uuid]| -> Vec<Finished> {
        ids.iter()
            .map(|&id| Finished {
                id,
                kind: "test.noop".into(),
                result: None,
                along: None,
            })
            .collect()
    };
    let mut all: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    all.sort();
    // Another owner, and a job still queued, are left alone.
    assert_eq!(
        store::complete(db, "w2", &finished(&all[..2]), NOW, NOW)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store::complete(db, "w1", &finished(&all[2..]), NOW, NOW)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store::complete(db, "w1", &finished(&all), NOW, NOW)
            .await
            .unwrap(),
        2
    );
    // Done once: a repeat changes nothing.
    assert_eq!(
        store::complete(db, "w1", &finished(&all), NOW, NOW)
            .await
            .unwrap(),
        0
    );
    let with_result = Finished {
        id: all[2],
        kind: "test.noop".into(),
        result: Some("{}".into()),
        along: None,
    };
    assert_eq!(
        store::complete(db, "w1", &[with_result], NOW, NOW)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        ids(db, Some("succeeded"), None).await,
        newest_first(all[..2].to_vec())
    );
    assert_eq!(ids(db, Some("queued"), None).await, vec![all[2]]);
}

async fn a_completion_stores_each_jobs_own_result(engine: Engine) {
    let app = spawn_app(engine).await;
    let db = &app.db;
    let jobs: Vec<NewJob> = (0..4).map(|_| job("test.result")).collect();
    store::enqueue(db, &jobs, NOW).await.unwrap();
    let mut all: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    all.sort();
    // w1 runs the first three; the fourth stays queued.
    let claimed = store::claim(db, QUEUE, "w1", 3, NOW, NOW + 60_000_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let done = |id: Uuid, result: Option<&str>| Finished {
        id,
        kind: "test.result".into(),
        result: result.map(str::to_string),
        along: None,
    };
    let batch = [
        done(all[0], Some(r#"{"n":0}"#)),
        done(all[1], None),
        done(all[2], Some(r#"{"n":2}"#)),
        done(all[3], Some(r#"{"n":3}"#)),
    ];
    assert_eq!(
        store::complete(db, "w1", &batch, NOW + 1, NOW + 1_000)
            .await
            .unwrap(),
        3,
        "the queued job is not w1's to complete"
    );
    let mut got = Vec::new();
    for id in &all {
        let row = store::get(db, *id).await.unwrap().unwrap();
        got.push((row.state, row.result));
    }
    assert_eq!(
        got,
        vec![
            ("succeeded".to_string(), Some(r#"{"n":0}"#.to_string())),
            ("succeeded".to_string(), None),
            ("succeeded".to_string(), Some(r#"{"n":2}"#.to_string())),
            ("queued".to_string(), None),
        ]
    );
    // Through the SQLite workers' path too: completion and claim in one transaction.
    let claimed = store::claim(db, QUEUE, "w2", 1, NOW + 2, NOW + 60_000_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let (n, _) = store::complete_and_claim(
        db,
        "w2",
        &[done(all[3], Some(r#"{"n":"last"}"#))],
        &[],
        NOW + 3,
        NOW + 1_000,
        NOW + 60_000_000,
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let row = store::get(db, all[3]).await.unwrap().unwrap();
    assert_eq!(row.result.as_deref(), Some(r#"{"n":"last"}"#));
}
