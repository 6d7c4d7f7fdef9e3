-- Durable background jobs: the queue, failed attempts, uniqueness windows, paused queues, cron
-- schedules, per-key rate limits and per-minute counters for the operator charts.
-- Ids are UUID v7; times BIGINT microseconds (UTC).

CREATE TABLE jobs (
    id               UUID PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    args             TEXT NOT NULL,
    -- 0 runs first, 9 last.
    priority         INTEGER NOT NULL,
    -- queued, running, succeeded, dead, cancelled, discarded
    state            TEXT NOT NULL,
    run_at           BIGINT NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    timeout_ms       BIGINT NOT NULL,
    unique_key       TEXT,
    rate_key         TEXT,
    tags             TEXT NOT NULL,
    shop_id          UUID,
    lease_owner      TEXT,
    lease_until      BIGINT,
    cancel_requested INTEGER NOT NULL,
    progress         INTEGER NOT NULL,
    result           TEXT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    -- A finished job is deleted after this time.
    expires_at       BIGINT
);
-- What a worker claims next: ready jobs of one queue by priority, then due time.
CREATE INDEX jobs_ready ON jobs (queue, priority, run_at, id) WHERE state = 'queued';
-- Leases to extend, cancellations to notice, expired leases to reclaim.
CREATE INDEX jobs_leased ON jobs (lease_owner, lease_until) WHERE state = 'running';
-- The operator's lists, newest first.
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_kind ON jobs (kind, state, id);
-- Pruning finished jobs.
CREATE INDEX jobs_expiring ON jobs (expires_at) WHERE expires_at IS NOT NULL;

-- Every attempt that did not succeed, with its error.
CREATE TABLE job_attempts (
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker      TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    -- failed, timeout, panicked, lost, cancelled
    outcome     TEXT NOT NULL,
    error       TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

-- A unique key names one job until the window ends; enqueues in the window collapse into it.
CREATE TABLE job_unique (
    unique_key TEXT PRIMARY KEY NOT NULL,
    job_id     UUID NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Queues an operator paused (absent = running).
CREATE TABLE job_queues (
    name       TEXT PRIMARY KEY NOT NULL,
    paused     INTEGER NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Cron schedules. next_run_at moves forward with a compare-and-set, so one instance enqueues
-- each tick.
CREATE TABLE job_schedules (
    name         TEXT PRIMARY KEY NOT NULL,
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    args         TEXT NOT NULL,
    queue        TEXT NOT NULL,
    paused       INTEGER NOT NULL,
    next_run_at  BIGINT NOT NULL,
    last_run_at  BIGINT,
    last_job_id  UUID,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Per-key rate limits (GCRA): the theoretical arrival time of the next allowed run.
CREATE TABLE job_rate (
    rate_key TEXT PRIMARY KEY NOT NULL,
    tat      BIGINT NOT NULL
);

-- Finished attempts per minute and kind, for the operator's throughput and failure charts.
CREATE TABLE job_stats (
    minute    BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    succeeded BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (minute, kind)
);

-- A user's notices (an order decided, ...), written by jobs; the id is the job's, so a job that
-- runs twice writes one notice.
CREATE TABLE notifications (
    shop_id     UUID NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    id          UUID NOT NULL,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    resource_id TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (shop_id, id)
);
CREATE INDEX notifications_by_user ON notifications (shop_id, user_id, id);
