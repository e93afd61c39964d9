ALTER TABLE idempotency DROP COLUMN owner;
