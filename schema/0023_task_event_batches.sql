-- 0023: task events, one outbox row per statement and 1,000 tasks instead of one per task.
-- msstore: type function
--
-- 0008 wrote an outbox row per task and change, each with its JSON object and five index
-- entries: enqueueing 500 tasks wrote 500 outbox rows, and so did every claim and settlement
-- of a batch, which cost more than the queue's own writes. A statement now writes one row per
-- 1,000 tasks, on subject `tasks.>` (a wildcard: no event is ever published under it), its
-- payload the changed tasks column by column:
--   {"op": "INSERT" | "UPDATE", "timestamp": ..., "task_id": [...], "task_type": [...],
--    "status": [...], "previous_status": [...], "assigned_agent_id": [...], "priority": [...],
--    "metadata": [...]}
-- The relay publishes each task's event from it, on the subjects and with the payloads the
-- stream had before (tasks.<created|started|completed|failed|cancelled|updated>.<task_id>),
-- each with its own Nats-Msg-Id, so a row published again is deduplicated event by event.
-- The payload is stored uncompressed: a batch row is read once, soon, and compressing it cost
-- more than writing it.
ALTER TABLE messages.outbox ALTER COLUMN payload SET STORAGE EXTERNAL;

CREATE OR REPLACE FUNCTION messages.outbox_task_inserts() RETURNS TRIGGER AS $$
BEGIN
  INSERT INTO messages.outbox (subject, payload)
  SELECT 'tasks.>',
         jsonb_build_object('op', 'INSERT', 'timestamp', extract(epoch FROM now()),
                            'task_id', array_agg(n.task_id), 'task_type', array_agg(n.task_type),
                            'status', array_agg(n.status), 'previous_status', NULL,
                            'assigned_agent_id', array_agg(n.assigned_agent_id),
                            'priority', array_agg(n.priority), 'metadata', jsonb_agg(n.metadata))
  FROM (SELECT r.*, (row_number() OVER () - 1) / 1000 AS chunk FROM new_rows r) n
  GROUP BY n.chunk;
  IF FOUND THEN
    PERFORM pg_notify('msstore_outbox', 'tasks.queue');
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION messages.outbox_task_changes() RETURNS TRIGGER AS $$
BEGIN
  INSERT INTO messages.outbox (subject, payload)
  SELECT 'tasks.>',
         jsonb_build_object('op', 'UPDATE', 'timestamp', extract(epoch FROM now()),
                            'task_id', array_agg(n.task_id), 'task_type', array_agg(n.task_type),
                            'status', array_agg(n.status),
                            'previous_status', array_agg(n.previous_status),
                            'assigned_agent_id', array_agg(n.assigned_agent_id),
                            'priority', array_agg(n.priority), 'metadata', jsonb_agg(n.metadata))
  FROM (SELECT r.*, o.status AS previous_status, (row_number() OVER () - 1) / 1000 AS chunk
        FROM new_rows r LEFT JOIN old_rows o USING (task_id)) n
  GROUP BY n.chunk;
  IF FOUND THEN
    PERFORM pg_notify('msstore_outbox', 'tasks.queue');
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
