-- Cluster membership: one row per node that ever started on this database,
-- refreshed by its heartbeat. A node whose heartbeat is older than the
-- configured bound (or that recorded a clean stop) is shown as gone, and
-- the other nodes release the runs it still holds.
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY NOT NULL,
    version         TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    last_heartbeat  BIGINT NOT NULL,
    stopped_at      BIGINT
);

-- One row: the sequence of cache-relevant changes (publish, rollback,
-- retire, disable, keys, secrets). Every such change increments it in its
-- own transaction; nodes compare it now and then as the fallback for a
-- missed change notification.
CREATE TABLE cluster_changes (
    id   INTEGER PRIMARY KEY NOT NULL,
    seq  BIGINT NOT NULL
);
INSERT INTO cluster_changes (id, seq) VALUES (1, 0);

-- Which node recorded a schedule tick.
ALTER TABLE schedule_ticks ADD COLUMN node_id TEXT;

-- Shared fixed-window rate counters of `[limits] scope = "cluster"` flows.
CREATE TABLE rate_windows (
    flow          TEXT NOT NULL,
    caller        TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    used          BIGINT NOT NULL,
    PRIMARY KEY (flow, caller, window_start)
);
CREATE INDEX rate_windows_start ON rate_windows (window_start);
