-- Orders, their line items, the audit trail of status changes, idempotency keys, and the
-- outbox of events for webhook delivery. Ids are UUID v7; times BIGINT microseconds (UTC).

CREATE TABLE orders (
    shop_id     BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    id          BLOB NOT NULL,
    customer_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    status      TEXT NOT NULL,
    notes       TEXT,
    source      TEXT NOT NULL,
    external_id TEXT,
    currency    TEXT,
    total_minor BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    decided_at  BIGINT,
    decided_by  BLOB REFERENCES users (id) ON DELETE SET NULL,
    reason      TEXT,
    PRIMARY KEY (shop_id, id)
);
-- An order synced from elsewhere arrives once per shop and source.
CREATE UNIQUE INDEX orders_by_external_id ON orders (shop_id, source, external_id);
-- A customer's own list, with and without a status filter, newest first.
CREATE INDEX orders_by_customer ON orders (shop_id, customer_id, id);
CREATE INDEX orders_by_customer_status ON orders (shop_id, customer_id, status, id);
-- The admin list filtered by status, newest first.
CREATE INDEX orders_by_status ON orders (shop_id, status, id);
-- Date ranges and per-day statistics.
CREATE INDEX orders_by_created ON orders (shop_id, created_at);

CREATE TABLE order_items (
    shop_id          BLOB NOT NULL,
    order_id         BLOB NOT NULL,
    position         INTEGER NOT NULL,
    item_name        TEXT NOT NULL,
    quantity         INTEGER NOT NULL,
    product_ref      TEXT,
    variant_ref      TEXT,
    unit_price_minor BIGINT,
    currency         TEXT,
    PRIMARY KEY (shop_id, order_id, position),
    FOREIGN KEY (shop_id, order_id) REFERENCES orders (shop_id, id) ON DELETE CASCADE
);

CREATE TABLE order_events (
    shop_id     BLOB NOT NULL,
    id          BLOB NOT NULL,
    order_id    BLOB NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor_id    BLOB,
    reason      TEXT,
    request_id  TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (shop_id, id),
    FOREIGN KEY (shop_id, order_id) REFERENCES orders (shop_id, id) ON DELETE CASCADE
);
CREATE INDEX order_events_by_order ON order_events (shop_id, order_id, id);

-- A retried create with the same key returns the first order instead of making another.
CREATE TABLE idempotency_keys (
    shop_id      BLOB NOT NULL,
    user_id      BLOB NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    order_id     BLOB NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (shop_id, user_id, key)
);

-- Events written in the same transaction as the change that caused them; the webhooks feature
-- delivers them, in order per resource, at least once.
CREATE TABLE outbox (
    id           BLOB PRIMARY KEY NOT NULL,
    shop_id      BLOB NOT NULL,
    event_type   TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (published_at, id);
