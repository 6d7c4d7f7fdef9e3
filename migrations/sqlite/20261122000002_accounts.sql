-- Accounts, shops (tenants), memberships, tokens, API keys, audit log.
-- Ids are UUID v7; times are BIGINT microseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id              BLOB PRIMARY KEY NOT NULL,
    username        TEXT NOT NULL,
    username_folded TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    email           TEXT,
    is_admin        BOOLEAN NOT NULL,
    locale          TEXT NOT NULL,
    currency        TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_login_at   BIGINT
);

CREATE TABLE shops (
    id                BLOB PRIMARY KEY NOT NULL,
    slug              TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    registration_open BOOLEAN NOT NULL,
    is_default        BOOLEAN NOT NULL,
    created_at        BIGINT NOT NULL
);
-- At most one default shop, even when several instances start at once.
CREATE UNIQUE INDEX shops_single_default ON shops (is_default) WHERE is_default;

CREATE TABLE memberships (
    shop_id    BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (shop_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

-- Opaque refresh tokens, stored as SHA-256 hashes, rotated on every use. A family is one login;
-- reusing a rotated token revokes the whole family.
CREATE TABLE refresh_tokens (
    id          BLOB PRIMARY KEY NOT NULL,
    shop_id     BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT,
    scope       TEXT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

-- Access tokens revoked before they expire (logout). Rows past expires_at are pruned.
CREATE TABLE revoked_tokens (
    jti        BLOB PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_time ON revoked_tokens (revoked_at);

-- EdDSA keys that sign access tokens. The newest unretired key signs; retired keys verify
-- until the tokens they signed expire. Private keys are sealed with the instance secret key.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    private_key BLOB NOT NULL,
    public_key  BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

CREATE TABLE api_keys (
    shop_id      BLOB NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
    id           BLOB NOT NULL,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_by   BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    PRIMARY KEY (shop_id, id)
);

-- Security-relevant events. shop_id is NULL for platform events (e.g. a failed login for an
-- unknown username).
CREATE TABLE audit_log (
    id         BLOB PRIMARY KEY NOT NULL,
    shop_id    BLOB,
    actor_id   BLOB,
    action     TEXT NOT NULL,
    target     TEXT,
    ip         TEXT,
    detail     TEXT NOT NULL,
    request_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_by_shop ON audit_log (shop_id, id);
