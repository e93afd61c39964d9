-- Nearly every run ends succeeded, and no query looks runs up by that
-- status, yet the status index held an entry for each. This partial index
-- holds the others only (queued, running, failed, dead); the queries by one
-- of those statuses add `status <> 'succeeded'` as a literal, which lets
-- both databases prove the index's condition. A recorded sync run that
-- succeeded now inserts into the table and two indexes (its id, its flow).
CREATE INDEX runs_unsettled ON runs (status, id) WHERE status <> 'succeeded';
DROP INDEX runs_status_id;
