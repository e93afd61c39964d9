DROP TABLE rate_windows;
ALTER TABLE schedule_ticks DROP COLUMN node_id;
DROP TABLE cluster_changes;
DROP TABLE nodes;
