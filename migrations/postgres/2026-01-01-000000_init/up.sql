-- Flowgate schema, version 1. Portable column types: TEXT ids and JSON,
-- BIGINT epoch milliseconds, INTEGER flags (0/1). Kept identical on SQLite and
-- PostgreSQL except for `COLLATE "C"` on cursor columns (PostgreSQL only).

CREATE TABLE flows (
    name          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    live_version  INTEGER,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE flow_versions (
    flow          TEXT COLLATE "C" NOT NULL REFERENCES flows (name) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    files         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    published_at  BIGINT,
    retired_at    BIGINT,
    PRIMARY KEY (flow, version)
);

CREATE TABLE runs (
    id                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    flow              TEXT NOT NULL,
    version           INTEGER NOT NULL,
    trigger_kind      TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    input             TEXT NOT NULL,
    available_at      BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    started_at        BIGINT,
    finished_at       BIGINT,
    duration_ms       BIGINT,
    response_status   INTEGER,
    response          TEXT,
    error             TEXT,
    scheduled_at      BIGINT,
    event_id          TEXT,
    idempotency_key   TEXT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX runs_queued ON runs (available_at, id) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_flow_id ON runs (flow, id);
CREATE INDEX runs_status_id ON runs (status, id);

CREATE TABLE run_logs (
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    "time"    BIGINT NOT NULL,
    level     TEXT NOT NULL,
    message   TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE run_attempts (
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    owner        TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    outcome      TEXT,
    error        TEXT,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    email_lower   TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    status        TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    external_ids  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX users_status ON users (status, created_at);
CREATE INDEX users_created ON users (created_at, id);

-- One row per external_ids entry, so lookups by (system, id) use an index.
CREATE TABLE user_external_ids (
    system       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (system, external_id, user_id)
);
CREATE INDEX user_external_ids_user ON user_external_ids (user_id);

CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE secrets (
    name        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    nonce       TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE kv (
    flow        TEXT NOT NULL,
    "key"       TEXT NOT NULL,
    value       TEXT NOT NULL,
    expires_at  BIGINT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (flow, "key")
);
CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE events (
    id             TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    event_type     TEXT NOT NULL,
    source         TEXT NOT NULL,
    "time"         BIGINT NOT NULL,
    data           TEXT NOT NULL,
    external_id    TEXT,
    created_at     BIGINT NOT NULL,
    dispatched_at  BIGINT,
    UNIQUE (source, external_id)
);
CREATE INDEX events_pending ON events (id) WHERE dispatched_at IS NULL;

CREATE TABLE idempotency (
    scope_key     TEXT PRIMARY KEY NOT NULL,
    request_hash  TEXT NOT NULL,
    state         TEXT NOT NULL,
    response      TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX idempotency_expires ON idempotency (expires_at);

CREATE TABLE schedule_ticks (
    flow        TEXT NOT NULL,
    due_at      BIGINT NOT NULL,
    state       TEXT NOT NULL,
    run_id      TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (flow, due_at)
);

CREATE TABLE audit (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    "time"           BIGINT NOT NULL,
    request_id       TEXT NOT NULL,
    caller           TEXT,
    flow             TEXT,
    version          INTEGER,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    status           INTEGER NOT NULL,
    duration_ms      BIGINT NOT NULL,
    idempotency_key  TEXT
);
CREATE INDEX audit_time ON audit ("time");
CREATE INDEX audit_flow ON audit (flow, id);
