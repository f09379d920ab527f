-- Back to one outbox row per task and change (0008's functions). Batch rows still waiting are
-- unpacked into the rows 0008 would have written (after every waiting row, in batch order),
-- for a relay that does not know batches.
INSERT INTO messages.outbox (subject, payload, created_at)
SELECT 'tasks.' ||
         CASE
           WHEN b.payload->>'op' = 'INSERT' THEN 'created'
           WHEN (b.payload->'previous_status'->>(e.i - 1)::int)
                IS DISTINCT FROM (b.payload->'status'->>(e.i - 1)::int) THEN
             CASE b.payload->'status'->>(e.i - 1)::int
               WHEN 'running' THEN 'started'
               WHEN 'completed' THEN 'completed'
               WHEN 'failed' THEN 'failed'
               WHEN 'cancelled' THEN 'cancelled'
               ELSE 'updated'
             END
           ELSE 'updated'
         END || '.' || e.task_id,
       jsonb_build_object('task_id', e.task_id,
                          'task_type', b.payload->'task_type'->((e.i - 1)::int),
                          'status', b.payload->'status'->((e.i - 1)::int),
                          'previous_status', b.payload->'previous_status'->((e.i - 1)::int),
                          'assigned_agent_id', b.payload->'assigned_agent_id'->((e.i - 1)::int),
                          'priority', b.payload->'priority'->((e.i - 1)::int),
                          'timestamp', b.payload->'timestamp',
                          'metadata', b.payload->'metadata'->((e.i - 1)::int)),
       b.created_at
FROM messages.outbox b,
     jsonb_array_elements_text(b.payload->'task_id') WITH ORDINALITY AS e(task_id, i)
WHERE b.subject = 'tasks.>' AND b.published_at IS NULL AND b.failed_at IS NULL
ORDER BY b.outbox_id, e.i;
DELETE FROM messages.outbox
WHERE subject = 'tasks.>' AND published_at IS NULL AND failed_at IS NULL;
ALTER TABLE messages.outbox ALTER COLUMN payload SET STORAGE EXTENDED;

CREATE OR REPLACE FUNCTION messages.outbox_task_changes() RETURNS TRIGGER AS $$
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

CREATE OR REPLACE FUNCTION messages.outbox_task_inserts() RETURNS TRIGGER AS $$
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
