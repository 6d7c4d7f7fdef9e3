-- Instance-wide settings: one row per key (default shop, bootstrap markers, feature flags).
-- Times are BIGINT microseconds since the Unix epoch (UTC) on both engines; see docs/ARCHITECTURE.md.
CREATE TABLE app_settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
