-- A finished run is never claimed, yet the full claim indexes held an entry
-- for every run, so every recorded sync run paid two index inserts for
-- nothing. These partial indexes hold queued and running runs only; the
-- claim queries write the status as a literal, which lets both databases
-- prove the index's condition.
CREATE INDEX runs_due ON runs (available_at, id) WHERE status = 'queued';
CREATE INDEX runs_lease_due ON runs (lease_expires_at) WHERE status = 'running';
DROP INDEX runs_claim;
DROP INDEX runs_lease_claim;
