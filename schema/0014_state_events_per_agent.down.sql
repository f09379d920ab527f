-- Back to 0008: one outbox event per changed row, carrying its value.
CREATE OR REPLACE FUNCTION messages.outbox_state_changes() RETURNS TRIGGER AS $$
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

DROP FUNCTION messages.add_state_events(TEXT, UUID[], TEXT[], BIGINT[]);
