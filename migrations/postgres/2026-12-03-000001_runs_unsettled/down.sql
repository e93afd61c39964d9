CREATE INDEX runs_status_id ON runs (status, id);
DROP INDEX runs_unsettled;
