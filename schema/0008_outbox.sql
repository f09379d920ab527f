-- 0008: state and task change events (reference 11.4), as a transactional outbox.
-- msstore: type function
--
-- The reference publishes with pg_notify, whose payloads are capped at 8000 bytes and lost
-- when nobody listens. Here each change is a row in messages.outbox, committed with the change
-- itself; a relay publishes rows to NATS with Nats-Msg-Id = msg_id (so JetStream drops a
-- repeat) and marks them published. pg_notify('msstore_outbox') only wakes the relay; a lost
-- notification delays nothing beyond the relay's next poll. Statement-level triggers with
-- transition tables: a bulk flush of N rows costs one INSERT ... SELECT, not N trigger calls.

CREATE TABLE messages.outbox (
  outbox_id BIGSERIAL PRIMARY KEY,
  msg_id UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  subject TEXT NOT NULL,
  payload JSONB NOT NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
  published_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX idx_messages_outbox_unpublished ON messages.outbox (outbox_id)
  WHERE published_at IS NULL;

CREATE FUNCTION messages.outbox_state_changes() RETURNS TRIGGER AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO messages.outbox (subject, payload)
    SELECT 'agents.state.' || o.agent_id::text,
           jsonb_build_object('operation', TG_OP, 'agent_id', o.agent_id,
                              'state_key', o.state_key, 'old_value', o.state_value,
                              'new_value', NULL, 'version', o.version,
                              'timestamp', extract(epoch FROM now()))
    FROM old_rows o;
  ELSE
    INSERT INTO messages.outbox (subject, payload)
    SELECT 'agents.state.' || n.agent_id::text,
           jsonb_build_object('operation', TG_OP, 'agent_id', n.agent_id,
                              'state_key', n.state_key, 'old_value', NULL,
                              'new_value', n.state_value, 'version', n.version,
                              'timestamp', extract(epoch FROM now()))
    FROM new_rows n;
  END IF;
  PERFORM pg_notify('msstore_outbox', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- One trigger per event: PostgreSQL allows transition tables only on single-event triggers.
CREATE TRIGGER state_outbox_insert AFTER INSERT ON agents.state
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION messages.outbox_state_changes();
CREATE TRIGGER state_outbox_update AFTER UPDATE ON agents.state
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION messages.outbox_state_changes();
CREATE TRIGGER state_outbox_delete AFTER DELETE ON agents.state
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION messages.outbox_state_changes();

CREATE FUNCTION messages.outbox_task_changes() RETURNS TRIGGER AS $$
BEGIN
  INSERT INTO messages.outbox (subject, payload)
  SELECT 'tasks.' ||
           CASE
             WHEN TG_OP = 'INSERT' THEN 'created'
             WHEN o.status IS DISTINCT FROM n.status THEN
               CASE n.status
                 WHEN 'running' THEN 'started'
                 WHEN 'completed' THEN 'completed'
                 WHEN 'failed' THEN 'failed'
                 WHEN 'cancelled' THEN 'cancelled'
                 ELSE 'updated'
               END
             ELSE 'updated'
           END || '.' || n.task_id::text,
         jsonb_build_object('task_id', n.task_id, 'task_type', n.task_type,
                            'status', n.status, 'previous_status', o.status,
                            'assigned_agent_id', n.assigned_agent_id, 'priority', n.priority,
                            'timestamp', extract(epoch FROM now()), 'metadata', n.metadata)
  FROM new_rows n LEFT JOIN old_rows o USING (task_id);
  PERFORM pg_notify('msstore_outbox', 'tasks.queue');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION messages.outbox_task_inserts() RETURNS TRIGGER AS $$
BEGIN
  INSERT INTO messages.outbox (subject, payload)
  SELECT 'tasks.created.' || n.task_id::text,
         jsonb_build_object('task_id', n.task_id, 'task_type', n.task_type,
                            'status', n.status, 'previous_status', NULL,
                            'assigned_agent_id', n.assigned_agent_id, 'priority', n.priority,
                            'timestamp', extract(epoch FROM now()), 'metadata', n.metadata)
  FROM new_rows n;
  PERFORM pg_notify('msstore_outbox', 'tasks.queue');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER task_outbox_insert AFTER INSERT ON tasks.queue
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION messages.outbox_task_inserts();
CREATE TRIGGER task_outbox_update AFTER UPDATE ON tasks.queue
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION messages.outbox_task_changes();
