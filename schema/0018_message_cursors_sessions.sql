-- 0018: what the message log and the session store need beyond the reference (msstore's own).
--
-- messages.log gets `seq`, one order for the whole log (sent_at can tie, and the table is
-- partitioned by it); each agent reads its inbox after its cursor in messages.cursors and moves
-- it with acks (at-least-once delivery). A subscription delivers what is logged after it
-- (`from_seq`); its pattern is matched as the regular expression kept in `filters->>'regex'`.
-- sessions.active keeps each session's sliding TTL.
CREATE SEQUENCE messages.log_seq;
ALTER TABLE messages.log ADD COLUMN seq BIGINT NOT NULL DEFAULT nextval('messages.log_seq');
CREATE INDEX idx_messages_log_seq ON messages.log (seq);
CREATE INDEX idx_messages_log_to_seq ON messages.log (to_agent_id, seq);
CREATE INDEX idx_messages_log_channel_seq ON messages.log (channel_id, seq)
  WHERE to_agent_id IS NULL;

ALTER TABLE messages.subscriptions ADD COLUMN from_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE messages.cursors (
  agent_id UUID PRIMARY KEY REFERENCES agents.registry(agent_id) ON DELETE CASCADE,
  acked_seq BIGINT NOT NULL DEFAULT 0 CHECK (acked_seq >= 0),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);

ALTER TABLE sessions.active ADD COLUMN ttl_seconds DOUBLE PRECISION
  CHECK (ttl_seconds IS NULL OR ttl_seconds > 0);
