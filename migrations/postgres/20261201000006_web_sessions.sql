-- Server-side sessions of the web UI, when they live in the database (the default; a deployment
-- with Valkey/Redis configured keeps them there instead). The cookie carries a random token; only
-- its SHA-256 hash is stored. Times are BIGINT microseconds since the Unix epoch (UTC).

CREATE TABLE web_sessions (
    token_hash   BYTEA PRIMARY KEY NOT NULL,
    -- NULL for a visitor who has not signed in: the session then only carries a CSRF token
    -- (and a flash message).
    user_id      UUID REFERENCES users (id) ON DELETE CASCADE,
    shop_id      UUID REFERENCES shops (id) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    flash        TEXT,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
-- Ending every session of a user (password reset).
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);
-- Retention deletes idle sessions.
CREATE INDEX web_sessions_by_last_seen ON web_sessions (last_seen_at);
