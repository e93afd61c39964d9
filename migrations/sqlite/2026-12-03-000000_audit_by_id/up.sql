-- Every API call appends one audit entry, and each index on the table is one
-- more B-tree insert per call. The entries are now kept in the order of their
-- ids (WITHOUT ROWID: the table is the primary key's B-tree), and an entry's
-- id carries its time, so time ranges read a range of ids and `audit_time`
-- goes.
CREATE TABLE audit_by_id (
    id               TEXT PRIMARY KEY NOT NULL,
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
) WITHOUT ROWID;
INSERT INTO audit_by_id
    SELECT id, "time", request_id, caller, flow, version, method, path, status,
           duration_ms, idempotency_key
    FROM audit;
DROP TABLE audit;
ALTER TABLE audit_by_id RENAME TO audit;
CREATE INDEX audit_flow ON audit (flow, id);
