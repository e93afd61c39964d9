ALTER TABLE runs DROP COLUMN http_calls;
DROP TABLE console_sessions;
