-- Causation of events produced by runs: how many event-triggered runs led
-- to this event (0 for events from outside) and the id of the chain.
ALTER TABLE events ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN chain_id TEXT;
