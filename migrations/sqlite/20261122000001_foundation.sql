-- Instance-wide settings: one row per key (default shop, bootstrap markers, feature flags).
CREATE TABLE app_settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
