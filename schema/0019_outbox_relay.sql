-- 0019: what the outbox relay needs (msstore's own), and message events.
-- msstore: type function
--
-- A row the relay can never publish (a subject NATS refuses, a payload over the server's
-- limit, a subject no stream captures) is set aside with `failed_at` and its reason, so it
-- stops blocking the rows behind it and an operator sees it; `attempts` and `last_error`
-- count the transient failures (NATS down) of a row still waiting. The relay claims rows in
-- outbox order and publishes a row only when no earlier unpublished row of its subject is held
-- by another relay: idx_messages_outbox_subject answers that per claimed row.
--
-- Messages logged in messages.log are announced too (reference 11.1, AGENT_MESSAGES), small
-- like state events: who sent what kind of message to whom, never its payload.
--   messages.direct.<to_agent_id>, messages.broadcast.<channel_id>,
--   messages.notification.<to_agent_id or channel_id>, agents.heartbeat.<from_agent_id>
ALTER TABLE messages.outbox
  ADD COLUMN failed_at TIMESTAMP WITH TIME ZONE,
  ADD COLUMN failure_reason TEXT,
  ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  ADD COLUMN last_error TEXT;

DROP INDEX messages.idx_messages_outbox_unpublished;
CREATE INDEX idx_messages_outbox_unpublished ON messages.outbox (outbox_id)
  WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX idx_messages_outbox_subject ON messages.outbox (subject, outbox_id)
  WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX idx_messages_outbox_published ON messages.outbox (published_at)
  WHERE published_at IS NOT NULL;
CREATE INDEX idx_messages_outbox_failed ON messages.outbox (outbox_id)
  WHERE failed_at IS NOT NULL;

CREATE FUNCTION messages.outbox_message_inserts() RETURNS TRIGGER AS $$
BEGIN
  INSERT INTO messages.outbox (subject, payload)
  SELECT CASE
           WHEN n.message_type = 'heartbeat' AND n.from_agent_id IS NOT NULL
             THEN 'agents.heartbeat.' || n.from_agent_id::text
           WHEN n.message_type = 'notification'
             THEN 'messages.notification.' || COALESCE(n.to_agent_id, n.channel_id)::text
           WHEN n.to_agent_id IS NOT NULL THEN 'messages.direct.' || n.to_agent_id::text
           ELSE 'messages.broadcast.' || n.channel_id::text
         END,
         jsonb_build_object('message_id', n.message_id, 'seq', n.seq,
                            'channel_id', n.channel_id, 'from_agent_id', n.from_agent_id,
                            'to_agent_id', n.to_agent_id,
                            'message_type', n.message_type, 'priority', n.priority,
                            'correlation_id', n.correlation_id,
                            'timestamp', extract(epoch FROM n.sent_at))
  FROM new_rows n
  WHERE n.to_agent_id IS NOT NULL OR n.channel_id IS NOT NULL
     OR (n.message_type = 'heartbeat' AND n.from_agent_id IS NOT NULL)
  ORDER BY n.seq;
  PERFORM pg_notify('msstore_outbox', 'messages.log');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER message_outbox_insert AFTER INSERT ON messages.log
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION messages.outbox_message_inserts();
