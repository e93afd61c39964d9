CREATE INDEX audit_time ON audit ("time");
