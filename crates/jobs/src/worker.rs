//! The `worker` role: one claim loop per queue, the runner of each attempt, the completer that
//! records successes in batches, lease renewal, cancellation polling, lease reclaiming, pruning
//! and queue gauges.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shopkeep_domain::Timestamp;
use shopkeep_store::jobs::{self as store, AfterFailure, ClaimRequest, Claimed, Failure, Finished};
use shopkeep_store::{Db, StoreError};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::handler::{JobContext, JobError};
use crate::{Jobs, micros};

/// How often running jobs are checked for an operator's cancel request.
const CANCEL_POLL: Duration = Duration::from_millis(400);
/// How often expired leases are looked for and finished jobs pruned.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);
/// Finished-attempt counters are kept this long.
const STATS_KEPT: i64 = 8 * 86_400_000_000;

/// How long the SQLite completer waits for a claim to share the commit of successes with.
const ASK_WAIT: Duration = Duration::from_millis(2);

/// A queue loop's claim, made by the completer on SQLite (see [`Jobs::completer`]). The answer is
/// `None` when the claim failed (the completer logs why).
struct ClaimAsk {
    queue: String,
    limit: i64,
    reply: oneshot::Sender<Option<Vec<Claimed>>>,
}

enum Outcome {
    Succeeded(Option<serde_json::Value>),
    Failed(JobError),
    Timeout,
    Panicked(String),
    Cancelled,
}

impl Jobs {
    /// Runs workers for [`Jobs::queues`] until `stop` fires; then stops claiming, gives running
    /// jobs `shutdown_grace` to finish, and releases the rest (their attempt not counted) so
    /// another worker takes them.
    pub async fn run_workers(self, stop: CancellationToken) {
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Finished>();
        // On SQLite the completer claims too, in its own transactions (one commit, one sync to
        // disk, for both); PostgreSQL claims and completes in parallel.
        let (ask_tx, ask_rx) = match self.inner.db {
            Db::Sqlite(_) => {
                let (tx, rx) = mpsc::unbounded_channel::<ClaimAsk>();
                (Some(tx), Some(rx))
            }
            Db::Postgres(_) => (None, None),
        };
        let claiming = CancellationToken::new();
        let mut loops = JoinSet::new();
        let runners = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        for (queue, concurrency) in self.queues() {
            loops.spawn(self.clone().queue_loop(
                queue,
                concurrency,
                claiming.clone(),
                done_tx.clone(),
                ask_tx.clone(),
                runners.clone(),
            ));
        }
        drop(done_tx);
        drop(ask_tx);
        let background = CancellationToken::new();
        let completer = tokio::spawn(self.clone().completer(done_rx, ask_rx));
        let renew = tokio::spawn(self.clone().renew_and_watch(background.clone()));
        let maint = tokio::spawn(self.clone().maintenance(background.clone()));
        let listen = tokio::spawn(self.clone().listen(background.clone()));
        tracing::info!(owner = %self.inner.owner, queues = ?self.queues(), "job workers started");

        stop.cancelled().await;
        claiming.cancel();
        while loops.join_next().await.is_some() {}
        let deadline = Instant::now() + self.inner.opts.shutdown_grace;
        let running = self.running_ids();
        if !running.is_empty() {
            tracing::info!(
                running = running.len(),
                "waiting for running jobs before stopping"
            );
        }
        let mut set = std::mem::take(&mut *runners.lock().await);
        let finished = tokio::time::timeout_at(deadline.into(), async {
            while set.join_next().await.is_some() {}
        })
        .await;
        let mut unfinished = Vec::new();
        if finished.is_err() {
            // Out of time: stop the rest; their jobs are given back below.
            self.inner.stopping.store(true, Ordering::SeqCst);
            unfinished = self.running_ids();
            for id in &unfinished {
                self.fire_local(*id);
            }
            set.abort_all();
            while set.join_next().await.is_some() {}
            self.clear_running();
        }
        // Every runner has ended, so the completer sees its channel close after the last flush;
        // a job that succeeded in the last moment is recorded before the rest are released.
        if let Err(e) = completer.await {
            tracing::error!(error = %e, "job completer failed");
        }
        if !unfinished.is_empty() {
            match store::release(
                &self.inner.db,
                &self.inner.owner,
                &unfinished,
                Timestamp::now().0,
            )
            .await
            {
                Ok(n) => tracing::warn!(
                    released = n,
                    "shutdown deadline passed; unfinished jobs released to run elsewhere"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "releasing unfinished jobs failed; their leases will expire and another worker reclaims them")
                }
            }
        }
        background.cancel();
        let _ = tokio::join!(renew, maint, listen);
        tracing::info!("job workers stopped");
    }

    fn running_ids(&self) -> Vec<uuid::Uuid> {
        let r = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        r.keys().copied().collect()
    }

    fn clear_running(&self) {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    async fn queue_loop(
        self,
        queue: String,
        concurrency: usize,
        stop: CancellationToken,
        done: mpsc::UnboundedSender<Finished>,
        asks: Option<mpsc::UnboundedSender<ClaimAsk>>,
        runners: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    ) {
        let sem = Arc::new(Semaphore::new(concurrency));
        let waker = self.waker(&queue);
        let poll = self.inner.opts.poll_interval;
        let mut paused_checked = Instant::now() - Duration::from_secs(10);
        loop {
            // Pauses made through this process apply at once; others' within a poll interval.
            if paused_checked.elapsed() >= poll {
                paused_checked = Instant::now();
                match store::paused_queues(&self.inner.db).await {
                    Ok(p) => {
                        *self.inner.paused.lock().unwrap_or_else(|p| p.into_inner()) =
                            p.into_iter().collect();
                    }
                    Err(e) => tracing::warn!(queue, error = %e, "reading paused queues failed"),
                }
            }
            let paused = self
                .inner
                .paused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&queue);
            if paused {
                tokio::select! {
                    () = tokio::time::sleep(poll) => continue,
                    () = waker.notified() => continue,
                    () = stop.cancelled() => return,
                }
            }
            let first = tokio::select! {
                p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                () = stop.cancelled() => return,
            };
            let want = (sem.available_permits() + 1).min(self.inner.opts.claim_batch.max(1));
            let limit = i64::try_from(want).unwrap_or(1);
            let claimed = match &asks {
                Some(asks) => {
                    let (reply, answer) = oneshot::channel();
                    let ask = ClaimAsk {
                        queue: queue.clone(),
                        limit,
                        reply,
                    };
                    match asks.send(ask) {
                        Ok(()) => answer.await.ok().flatten(),
                        Err(_) => None,
                    }
                }
                None => {
                    let now = Timestamp::now().0;
                    let lease_until = now.saturating_add(micros(self.inner.opts.lease));
                    store::claim(
                        &self.inner.db,
                        &queue,
                        &self.inner.owner,
                        limit,
                        now,
                        lease_until,
                    )
                    .await
                    .inspect_err(
                        |e| tracing::warn!(queue, error = %e, "claiming jobs failed; retrying"),
                    )
                    .ok()
                }
            };
            let jobs = match claimed {
                Some(j) => j,
                None => {
                    drop(first);
                    tokio::select! {
                        () = tokio::time::sleep(poll) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            };
            if jobs.is_empty() {
                drop(first);
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = waker.notified() => {}
                    () = stop.cancelled() => return,
                }
                continue;
            }
            let mut permits = vec![first];
            while permits.len() < jobs.len() {
                match sem.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let mut set = runners.lock().await;
            while set.try_join_next().is_some() {}
            for (job, permit) in jobs.into_iter().zip(permits) {
                let token = CancellationToken::new();
                self.inner
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(job.id, token.clone());
                let me = self.clone();
                let done = done.clone();
                set.spawn(async move {
                    me.run_one(job, token, done).await;
                    drop(permit);
                });
            }
        }
    }

    async fn run_one(
        &self,
        job: Claimed,
        token: CancellationToken,
        done: mpsc::UnboundedSender<Finished>,
    ) {
        let db = &self.inner.db;
        let owner = &self.inner.owner;
        let started = Timestamp::now().0;
        let kind_label = job.kind.clone();
        let Some(kind) = self.inner.registry.get(&job.kind).cloned() else {
            self.untrack(job.id);
            // An older or newer deployment may know it; keep it with the usual backoff.
            let err = format!("no handler for kind {:?} in this worker", job.kind);
            let policy = crate::KindPolicy::default();
            self.record_failure(
                &job,
                "failed",
                &err,
                started,
                policy.backoff.delay(job.attempt),
                true,
            )
            .await;
            return;
        };
        if let (Some(rate), Some(key)) = (kind.policy.rate, job.rate_key.as_deref()) {
            let emission = (1_000_000.0 / rate.per_second.max(1e-6)) as i64;
            match store::rate_acquire(db, key, emission, i64::from(rate.burst.max(1)), started)
                .await
            {
                Ok(None) => {}
                Ok(Some(at)) => {
                    self.untrack(job.id);
                    if let Err(e) = store::release(db, owner, &[job.id], at).await {
                        tracing::warn!(job = %job.id, error = %e, "rescheduling a rate-limited job failed");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "rate limit check failed; running anyway");
                }
            }
        }
        metrics::counter!("shopkeep_jobs_started_total", "kind" => kind_label.clone()).increment(1);
        metrics::histogram!("shopkeep_jobs_wait_seconds", "queue" => job.queue.clone())
            .record((started - job.run_at.max(job.created_at)).max(0) as f64 / 1e6);
        let args: serde_json::Value = match serde_json::from_str(&job.args) {
            Ok(a) => a,
            Err(e) => serde_json::Value::String(format!("unreadable arguments: {e}")),
        };
        let ctx = JobContext {
            id: job.id,
            kind: job.kind.as_str().into(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            shop_id: job.shop_id,
            cancel: token.clone(),
            db: db.clone(),
            owner: owner.clone(),
            along: Default::default(),
        };
        let along = ctx.along.clone();
        let clock = Instant::now();
        let mut handle = tokio::spawn((kind.run)(ctx, args));
        let timeout = Duration::from_millis(u64::try_from(job.timeout_ms).unwrap_or(0));
        let grace = self.inner.opts.cancel_grace;
        let outcome = tokio::select! {
            // A cooperative handler may return before this select sees its token fire: an
            // unsuccessful end after a cancellation is the cancellation.
            r = &mut handle => match joined(r) {
                Outcome::Succeeded(v) => Outcome::Succeeded(v),
                _ if token.is_cancelled() => Outcome::Cancelled,
                other => other,
            },
            () = tokio::time::sleep(timeout) => {
                token.cancel();
                // Give a cooperative handler a moment to stop, then drop it.
                let _ = tokio::time::timeout(grace.min(Duration::from_secs(1)), &mut handle).await;
                handle.abort();
                Outcome::Timeout
            }
            () = token.cancelled() => {
                match tokio::time::timeout(grace, &mut handle).await {
                    Ok(r) => match joined(r) {
                        Outcome::Succeeded(v) => Outcome::Succeeded(v),
                        _ => Outcome::Cancelled,
                    },
                    Err(_) => {
                        handle.abort();
                        Outcome::Cancelled
                    }
                }
            }
        };
        metrics::histogram!("shopkeep_jobs_run_seconds", "kind" => kind_label.clone())
            .record(clock.elapsed().as_secs_f64());
        self.untrack(job.id);
        let backoff = kind.policy.backoff.delay(job.attempt);
        match outcome {
            Outcome::Succeeded(result) => {
                metrics::counter!("shopkeep_jobs_succeeded_total", "kind" => kind_label)
                    .increment(1);
                let result = result.map(|v| v.to_string());
                let along = along.lock().unwrap_or_else(|p| p.into_inner()).take();
                let _ = done.send(Finished {
                    id: job.id,
                    kind: job.kind,
                    result,
                    along,
                });
            }
            Outcome::Cancelled if self.inner.stopping.load(Ordering::SeqCst) => {
                // Shutdown, not an operator: run_workers releases the job.
            }
            Outcome::Cancelled => {
                self.record_cancelled(&job, started).await;
            }
            Outcome::Failed(JobError::Fatal(e)) => {
                self.record_failure(&job, "failed", &e, started, backoff, false)
                    .await;
            }
            Outcome::Failed(JobError::Retry(e)) => {
                self.record_failure(&job, "failed", &e, started, backoff, true)
                    .await;
            }
            Outcome::Timeout => {
                let e = format!("timed out after {} ms", job.timeout_ms);
                self.record_failure(&job, "timeout", &e, started, backoff, true)
                    .await;
            }
            Outcome::Panicked(msg) => {
                let e = format!("the handler panicked: {msg}");
                self.record_failure(&job, "panicked", &e, started, backoff, true)
                    .await;
            }
        }
    }

    fn untrack(&self, id: uuid::Uuid) {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    async fn record_cancelled(&self, job: &Claimed, started: i64) {
        let now = Timestamp::now().0;
        let f = Failure {
            id: job.id,
            kind: &job.kind,
            attempt: job.attempt,
            outcome: "cancelled",
            error: "cancelled by an operator",
            started_at: started,
            next: AfterFailure::Cancelled,
        };
        metrics::counter!("shopkeep_jobs_failed_total", "kind" => job.kind.clone(), "outcome" => "cancelled").increment(1);
        if let Err(e) = store::fail(
            &self.inner.db,
            &self.inner.owner,
            &f,
            now,
            self.keep_until(now),
        )
        .await
        {
            tracing::error!(job = %job.id, error = %e, "recording a cancelled job failed");
        }
    }

    async fn record_failure(
        &self,
        job: &Claimed,
        outcome: &str,
        error: &str,
        started: i64,
        backoff: Duration,
        retryable: bool,
    ) {
        let now = Timestamp::now().0;
        let next = if retryable && job.attempt < job.max_attempts {
            AfterFailure::Retry(now.saturating_add(micros(backoff)))
        } else {
            AfterFailure::Dead
        };
        let kind = job.kind.clone();
        metrics::counter!("shopkeep_jobs_failed_total", "kind" => kind.clone(), "outcome" => outcome.to_string()).increment(1);
        match next {
            AfterFailure::Retry(_) => {
                metrics::counter!("shopkeep_jobs_retried_total", "kind" => kind).increment(1)
            }
            _ => metrics::counter!("shopkeep_jobs_dead_total", "kind" => kind).increment(1),
        }
        // Keep errors bounded: a handler may fail with a whole response body.
        let error: String = error.chars().take(4000).collect();
        tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempt, outcome, error = %error, next = next.state(), "job attempt failed");
        let f = Failure {
            id: job.id,
            kind: &job.kind,
            attempt: job.attempt,
            outcome,
            error: &error,
            started_at: started,
            next,
        };
        let mut wait = Duration::from_millis(100);
        for _ in 0..5 {
            match store::fail(
                &self.inner.db,
                &self.inner.owner,
                &f,
                now,
                self.keep_until(now),
            )
            .await
            {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "recording a failed attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        tracing::error!(job = %job.id, "could not record the failed attempt; the lease will expire and the job runs again");
    }

    /// Records successes in batches: everything that finished while the previous batch was
    /// being written goes into the next transaction. On SQLite it also makes the queue loops'
    /// claims (`asks`), in the transaction of the successes that are waiting, if any.
    async fn completer(
        self,
        mut rx: mpsc::UnboundedReceiver<Finished>,
        mut asks: Option<mpsc::UnboundedReceiver<ClaimAsk>>,
    ) {
        const MAX_BATCH: usize = 2000;
        let mut buf = Vec::with_capacity(1024);
        let mut pending: Vec<ClaimAsk> = Vec::new();
        loop {
            match asks.as_mut() {
                None => {
                    if rx.recv_many(&mut buf, MAX_BATCH).await == 0 {
                        return;
                    }
                }
                Some(a) => {
                    let mut closed = false;
                    tokio::select! {
                        n = rx.recv_many(&mut buf, MAX_BATCH) => {
                            // Closed: every queue loop (which holds a sender) and runner ended.
                            if n == 0 {
                                return;
                            }
                        }
                        ask = a.recv() => match ask {
                            Some(ask) => pending.push(ask),
                            None => closed = true,
                        },
                    }
                    // A success frees its slot, and the loop that owns the slot asks to claim
                    // a moment later: wait a little for that ask, so that both share a commit
                    // rather than taking the writer one after the other.
                    if pending.is_empty() && !closed {
                        match tokio::time::timeout(ASK_WAIT, a.recv()).await {
                            Ok(Some(ask)) => pending.push(ask),
                            Ok(None) => closed = true,
                            Err(_) => {}
                        }
                    }
                    while let Ok(ask) = a.try_recv() {
                        pending.push(ask);
                    }
                    while buf.len() < MAX_BATCH
                        && let Ok(f) = rx.try_recv()
                    {
                        buf.push(f);
                    }
                    if closed {
                        asks = None;
                    }
                }
            }
            if !pending.is_empty() {
                self.claim_for(&mut pending, &mut buf).await;
            }
            if !buf.is_empty() {
                self.record_successes(&buf).await;
                buf.clear();
            }
        }
    }

    /// Answers the waiting claims, completing `done` in the same transaction; `done` is emptied
    /// when that transaction commits, and kept for [`Self::record_successes`] when it fails.
    async fn claim_for(&self, asks: &mut Vec<ClaimAsk>, done: &mut Vec<Finished>) {
        let db = &self.inner.db;
        let owner = &self.inner.owner;
        let now = Timestamp::now().0;
        let lease_until = now.saturating_add(micros(self.inner.opts.lease));
        let requests: Vec<ClaimRequest> = asks
            .iter()
            .map(|a| ClaimRequest {
                queue: a.queue.clone(),
                limit: a.limit,
            })
            .collect();
        match store::complete_and_claim(
            db,
            owner,
            done,
            &requests,
            now,
            self.keep_until(now),
            lease_until,
        )
        .await
        {
            Ok((_, claimed)) => {
                done.clear();
                for (ask, jobs) in asks.drain(..).zip(claimed) {
                    if let Err(Some(jobs)) = ask.reply.send(Some(jobs)) {
                        // The loop that asked is gone: give its jobs back at once.
                        let ids: Vec<uuid::Uuid> = jobs.iter().map(|j| j.id).collect();
                        if let Err(e) = store::release(db, owner, &ids, now).await {
                            tracing::warn!(jobs = ids.len(), error = %e, "giving back claimed jobs failed; their leases will expire");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(queues = asks.len(), error = %e, "claiming jobs failed; retrying");
                for ask in asks.drain(..) {
                    let _ = ask.reply.send(None);
                }
            }
        }
    }

    /// Marks `done` succeeded, retrying with backoff until the database takes it. A write along
    /// that the database refuses for good must not hold back the other completions, nor its own:
    /// the jobs are then completed one at a time, and one whose write is still refused is
    /// completed without it, with an error in the log. (The one such write known is an attempt
    /// at a delivery whose shop was deleted meanwhile, which took the delivery with it.)
    async fn record_successes(&self, done: &[Finished]) {
        let mut wait = Duration::from_millis(50);
        loop {
            let now = Timestamp::now().0;
            match store::complete(
                &self.inner.db,
                &self.inner.owner,
                done,
                now,
                self.keep_until(now),
            )
            .await
            {
                Ok(_) => return,
                Err(e) if !e.is_retryable() && done.iter().any(|f| f.along.is_some()) => {
                    if let [one] = done {
                        tracing::error!(job = %one.id, kind = %one.kind, error = %e, "the write a finished job left to its completion was refused; completing the job without it");
                        let bare = Finished {
                            along: None,
                            ..one.clone()
                        };
                        return Box::pin(self.record_successes(std::slice::from_ref(&bare))).await;
                    }
                    tracing::warn!(jobs = done.len(), error = %e, "completing finished jobs with their writes was refused; completing them one at a time");
                    for f in done {
                        Box::pin(self.record_successes(std::slice::from_ref(f))).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(jobs = done.len(), error = %e, "recording finished jobs failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Renews this worker's leases and fires the tokens of jobs an operator cancelled.
    async fn renew_and_watch(self, stop: CancellationToken) {
        let renew_every = (self.inner.opts.lease / 3).max(Duration::from_millis(100));
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(CANCEL_POLL.min(renew_every)) => {}
                () = stop.cancelled() => return,
            }
            if self.running_ids().is_empty() {
                last_renew = Instant::now();
                continue;
            }
            if last_renew.elapsed() >= renew_every {
                last_renew = Instant::now();
                let until = Timestamp::now()
                    .0
                    .saturating_add(micros(self.inner.opts.lease));
                if let Err(e) = store::heartbeat(&self.inner.db, &self.inner.owner, until).await {
                    tracing::warn!(error = %e, "renewing job leases failed");
                }
            }
            match store::cancel_requested(&self.inner.db, &self.inner.owner).await {
                Ok(ids) => ids.into_iter().for_each(|id| self.fire_local(id)),
                Err(e) => tracing::warn!(error = %e, "checking for cancelled jobs failed"),
            }
        }
    }

    /// Reclaims expired leases, prunes finished jobs, and refreshes the queue gauges.
    async fn maintenance(self, stop: CancellationToken) {
        let db: Db = self.inner.db.clone();
        let mut last_gauges = Instant::now() - Duration::from_secs(60);
        let mut last_prune = Instant::now() - Duration::from_secs(3600);
        loop {
            let now = Timestamp::now().0;
            match store::reclaim_expired(&db, now, self.keep_until(now)).await {
                Ok(rows) => {
                    for r in &rows {
                        tracing::warn!(job = %r.id, kind = %r.kind, attempt = r.attempt, state = %r.state, "job lease expired; reclaimed");
                        metrics::counter!("shopkeep_jobs_failed_total", "kind" => r.kind.clone(), "outcome" => "lost").increment(1);
                    }
                    let queues: Vec<String> = match rows.is_empty() {
                        true => Vec::new(),
                        false => self.queues().into_iter().map(|(q, _)| q).collect(),
                    };
                    self.wake_queues(queues.iter().map(String::as_str));
                }
                Err(e) => tracing::warn!(error = %e, "reclaiming expired job leases failed"),
            }
            if last_prune.elapsed() >= Duration::from_secs(60) {
                last_prune = Instant::now();
                match store::prune(&db, now, now - STATS_KEPT).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "finished jobs pruned"),
                    Err(e) => tracing::warn!(error = %e, "pruning finished jobs failed"),
                }
            }
            if last_gauges.elapsed() >= Duration::from_secs(5) {
                last_gauges = Instant::now();
                if let Err(e) = self.refresh_gauges(now).await {
                    tracing::warn!(error = %e, "reading queue depths failed");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(MAINTENANCE_EVERY) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn refresh_gauges(&self, now: i64) -> Result<(), StoreError> {
        let db = &self.inner.db;
        let depths = store::depths(db).await?;
        for (q, _) in self.queues() {
            for state in ["queued", "running", "dead"] {
                let n = depths
                    .iter()
                    .find(|(dq, ds, _)| *dq == q && ds == state)
                    .map_or(0, |d| d.2);
                metrics::gauge!("shopkeep_jobs_queue_depth", "queue" => q.clone(), "state" => state)
                    .set(n as f64);
            }
        }
        let ready = store::ready(db, now).await?;
        for (q, _) in self.queues() {
            let lag = ready
                .iter()
                .find(|(rq, ..)| *rq == q)
                .map_or(0, |r| (now - r.2).max(0));
            metrics::gauge!("shopkeep_jobs_queue_lag_seconds", "queue" => q).set(lag as f64 / 1e6);
        }
        Ok(())
    }

    /// PostgreSQL: wakes local workers when another instance enqueues (LISTEN/NOTIFY).
    async fn listen(self, stop: CancellationToken) {
        let Db::Postgres(pool) = &self.inner.db else {
            return;
        };
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "job notifications unavailable; polling only");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            };
            if let Err(e) = listener.listen(store::NOTIFY_CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed; polling only");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    () = stop.cancelled() => return,
                }
            }
            loop {
                tokio::select! {
                    n = listener.recv() => match n {
                        Ok(n) => self.waker(n.payload()).notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "job notifications interrupted; reconnecting");
                            break;
                        }
                    },
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

fn joined(r: Result<crate::JobResult, tokio::task::JoinError>) -> Outcome {
    match r {
        Ok(Ok(v)) => Outcome::Succeeded(v),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "non-string panic payload".into());
            Outcome::Panicked(msg)
        }
        Err(_) => Outcome::Cancelled,
    }
}
