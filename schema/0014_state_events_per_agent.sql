-- 0014: agents.state change events, one per agent and statement instead of one per row.
-- msstore: type function
--
-- 0008 wrote one outbox row per changed state row, with the whole new value in it: a bulk
-- flush of N rows wrote N more rows (and N more index entries) into messages.outbox, doubling
-- what the flush wrote. KV already carries every value (the flusher copies it from there), so
-- an event now says which keys of an agent reached PostgreSQL, at which versions:
--   {"operation": "INSERT" | "UPDATE" | "DELETE", "agent_id": ..., "state_keys": [...],
--    "versions": [...], "timestamp": ...}
-- on subject agents.state.<agent_id>, at most 500 keys per event (keys are at most 1,024
-- characters, so an event stays under NATS's default 1 MiB payload limit).
CREATE FUNCTION messages.add_state_events(
  operation TEXT, agent_ids UUID[], state_keys TEXT[], versions BIGINT[]
) RETURNS VOID AS $$
  INSERT INTO messages.outbox (subject, payload)
  SELECT 'agents.state.' || c.agent_id::text,
         jsonb_build_object('operation', operation, 'agent_id', c.agent_id,
                            'state_keys', jsonb_agg(c.state_key ORDER BY c.state_key),
                            'versions', jsonb_agg(c.version ORDER BY c.state_key),
                            'timestamp', extract(epoch FROM now()))
  FROM (SELECT u.agent_id, u.state_key, u.version,
               (row_number() OVER (PARTITION BY u.agent_id ORDER BY u.state_key) - 1) / 500
                 AS chunk
        FROM unnest(agent_ids, state_keys, versions) AS u(agent_id, state_key, version)) c
  GROUP BY c.agent_id, c.chunk;
$$ LANGUAGE sql;

-- Transition tables differ by event (old_rows exists only for DELETE here), hence two calls.
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
