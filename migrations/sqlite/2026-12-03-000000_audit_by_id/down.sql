CREATE TABLE audit_with_rowid (
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
);
INSERT INTO audit_with_rowid
    SELECT id, "time", request_id, caller, flow, version, method, path, status,
           duration_ms, idempotency_key
    FROM audit;
DROP TABLE audit;
ALTER TABLE audit_with_rowid RENAME TO audit;
CREATE INDEX audit_time ON audit ("time");
CREATE INDEX audit_flow ON audit (flow, id);
