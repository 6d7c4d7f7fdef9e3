-- Webhooks: links between shops and their accounts at outside providers, inbound receipts, and
-- the outbound side (endpoints, messages, one delivery per message and endpoint, every attempt).
-- Ids are UUID v7; times BIGINT microseconds (UTC).

-- A shop's account at a provider: resolves an inbound webhook to its shop (the Shopify shop
-- domain, the Printify shop id, ...) and holds the per-shop webhook secrets, sealed.
CREATE TABLE integrations (
    shop_id          BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    provider         TEXT NOT NULL,
    account          TEXT NOT NULL,
    secret           TEXT,
    previous_secret  TEXT,
    uninstalled_at   BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (shop_id, provider)
);
CREATE UNIQUE INDEX integrations_by_account ON integrations (provider, account);

-- Every verified inbound webhook, kept whole. (provider, event_id) de-duplicates redeliveries.
CREATE TABLE webhook_receipts (
    id           BLOB PRIMARY KEY NOT NULL,
    provider     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    -- NULL when the shop could not be resolved (status 'orphaned').
    shop_id      BLOB REFERENCES shops (id) ON DELETE CASCADE,
    -- The provider's name for the shop or account, as received.
    shop_ref     TEXT,
    -- The provider's id of the object the event is about, when the payload names one.
    resource_id  TEXT,
    -- queued, processed, failed, unhandled, orphaned
    status       TEXT NOT NULL,
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT,
    attempts     INTEGER NOT NULL,
    last_error   TEXT,
    -- When the body was erased (a privacy request); the status still says how processing went.
    redacted_at  BIGINT,
    job_id       BLOB
);
CREATE UNIQUE INDEX webhook_receipts_event ON webhook_receipts (provider, event_id);
CREATE INDEX webhook_receipts_by_shop ON webhook_receipts (shop_id, id);

-- A shop's outbound destinations. Secrets are sealed; a rotated secret keeps signing beside the
-- new one until previous_until.
CREATE TABLE webhook_endpoints (
    shop_id         BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    id              BLOB NOT NULL,
    url             TEXT NOT NULL,
    description     TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    secret          TEXT NOT NULL,
    previous_secret TEXT,
    previous_until  BIGINT,
    headers         TEXT NOT NULL,
    rate_per_second INTEGER,
    -- Start of the current run of failures; NULL after a success.
    failing_since   BIGINT,
    disabled_reason TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (shop_id, id)
);

-- One outbox event as sent: the id is the outbox row's, and it is the webhook-id header.
CREATE TABLE webhook_messages (
    shop_id     BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    id          BLOB NOT NULL,
    event_type  TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (shop_id, id)
);

-- A message on its way to one endpoint.
CREATE TABLE webhook_deliveries (
    shop_id         BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    id              BLOB NOT NULL,
    message_id      BLOB NOT NULL,
    endpoint_id     BLOB NOT NULL,
    -- pending, delivered, failed (retries exhausted), skipped (endpoint disabled or gone)
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    -- Attempts made before the current round (a resend starts the retry schedule again).
    retry_base      INTEGER NOT NULL,
    next_attempt_at BIGINT,
    -- The job that makes the next attempt; any other job for this delivery is stale and skips.
    next_job        BLOB,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (shop_id, id)
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (shop_id, message_id, endpoint_id);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (shop_id, endpoint_id, id);
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (shop_id, status, id);
-- The operator's list of failed deliveries across shops.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (id) WHERE status = 'failed';

-- Every attempt of a delivery: what the endpoint answered, how fast, the first 4 KB of its body.
CREATE TABLE webhook_attempts (
    shop_id       BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    delivery_id   BLOB NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    BIGINT NOT NULL,
    latency_us    BIGINT NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    response_body TEXT NOT NULL,
    PRIMARY KEY (shop_id, delivery_id, attempt)
);
