-- Back to 0015: tombstones become plain deletes (their rows go), failures are forgotten.
CREATE OR REPLACE FUNCTION agents.hydrate_agent_state(p_agent_id UUID)
RETURNS TABLE(key TEXT, value JSONB) AS $$
BEGIN
  RETURN QUERY
  SELECT s.state_key, s.state_value
  FROM agents.state s
  WHERE s.agent_id = p_agent_id
    AND (s.expires_at IS NULL OR s.expires_at > NOW())
  ORDER BY s.updated_at DESC;
END;
$$ LANGUAGE plpgsql STABLE;

CREATE OR REPLACE FUNCTION messages.outbox_state_changes() RETURNS TRIGGER AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM messages.add_state_events(TG_OP, array_agg(agent_id), array_agg(state_key),
                                      array_agg(version))
    FROM old_rows;
  ELSE
    PERFORM messages.add_state_events(TG_OP, array_agg(agent_id), array_agg(state_key),
                                      array_agg(version))
    FROM new_rows;
  END IF;
  PERFORM pg_notify('msstore_outbox', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TABLE IF EXISTS agents.flush_failures;
DELETE FROM agents.state WHERE deleted;
DROP INDEX IF EXISTS agents.idx_state_expires;
DROP INDEX IF EXISTS agents.idx_state_sweep;
ALTER TABLE agents.state DROP COLUMN deleted;
