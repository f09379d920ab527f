-- 0016: deletes and expiries as durable facts in agents.state (msstore's own).
--
-- A delete used to remove its row, which left nothing for the version guard to compare a late
-- write with: a flush of an older revision that arrived after the delete (another process's,
-- or a recovery pass's) inserted the value again. A delete is now a tombstone row at the
-- delete's version (`deleted`, state_value null), so every older write is refused by the same
-- `WHERE s.version < EXCLUDED.version` that guards updates. Reads skip tombstones; sweeping
-- removes them once no reader can still need them (see msstore's recovery module).
--
-- agents.flush_failures keeps the entries a flush or a recovery pass could not store (bytes
-- msstore cannot decode, a value PostgreSQL refuses), so an operator sees them and the
-- watermark can move past them.
ALTER TABLE agents.state ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX idx_state_sweep ON agents.state (updated_at) WHERE deleted;
CREATE INDEX idx_state_expires ON agents.state (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE agents.flush_failures (
  bucket TEXT NOT NULL,
  state_key TEXT NOT NULL,
  revision BIGINT NOT NULL CHECK (revision > 0),
  reason TEXT NOT NULL,
  seen_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
  PRIMARY KEY (bucket, revision)
);

-- Tombstones are announced as DELETE events; sweeping a tombstone announces nothing more.
CREATE OR REPLACE FUNCTION messages.outbox_state_changes() RETURNS TRIGGER AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM messages.add_state_events(TG_OP, array_agg(agent_id), array_agg(state_key),
                                      array_agg(version))
    FROM old_rows WHERE NOT deleted HAVING count(*) > 0;
  ELSE
    PERFORM messages.add_state_events(TG_OP, array_agg(agent_id), array_agg(state_key),
                                      array_agg(version))
    FROM new_rows WHERE NOT deleted HAVING count(*) > 0;
    PERFORM messages.add_state_events('DELETE', array_agg(agent_id), array_agg(state_key),
                                      array_agg(version))
    FROM new_rows WHERE deleted HAVING count(*) > 0;
  END IF;
  PERFORM pg_notify('msstore_outbox', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION agents.hydrate_agent_state(p_agent_id UUID)
RETURNS TABLE(key TEXT, value JSONB) AS $$
BEGIN
  RETURN QUERY
  SELECT s.state_key, s.state_value
  FROM agents.state s
  WHERE s.agent_id = p_agent_id AND NOT s.deleted
    AND (s.expires_at IS NULL OR s.expires_at > NOW())
  ORDER BY s.updated_at DESC;
END;
$$ LANGUAGE plpgsql STABLE;
