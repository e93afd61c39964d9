-- The analyst console: browser sessions (only a hash of the session id is
-- stored; the key's scopes are read from api_keys on every request) and the
-- outbound HTTP calls a run made.

CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY NOT NULL,
    key_id        TEXT NOT NULL,
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX console_sessions_key ON console_sessions (key_id, created_at);

ALTER TABLE runs ADD COLUMN http_calls TEXT;
