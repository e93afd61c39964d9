-- Claims look for the oldest due run by status. The partial indexes
-- (`WHERE status = 'queued'`, `WHERE status = 'running'`) cannot serve a
-- query whose status is a bound parameter, so SQLite read and sorted every
-- queued run for each claim. Full indexes led by status serve both
-- databases with parameters.
CREATE INDEX runs_claim ON runs (status, available_at, id);
CREATE INDEX runs_lease_claim ON runs (status, lease_expires_at);
DROP INDEX runs_queued;
DROP INDEX runs_leases;
