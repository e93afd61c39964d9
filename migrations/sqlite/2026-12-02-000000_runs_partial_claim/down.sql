CREATE INDEX runs_claim ON runs (status, available_at, id);
CREATE INDEX runs_lease_claim ON runs (status, lease_expires_at);
DROP INDEX runs_due;
DROP INDEX runs_lease_due;
