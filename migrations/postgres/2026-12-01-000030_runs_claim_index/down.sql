CREATE INDEX runs_queued ON runs (available_at, id) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE status = 'running';
DROP INDEX runs_claim;
DROP INDEX runs_lease_claim;
