-- The node that started an in-flight idempotent request: when that node is
-- gone (missed heartbeats or a clean stop), a retry takes the key over at
-- once instead of waiting for the record to go stale.
ALTER TABLE idempotency ADD COLUMN owner TEXT;
