-- 0022: a claim whose plan does not depend on the table's statistics.
-- msstore: type function
--
-- A queue's statistics are usually wrong when it matters: analysed while it was empty or
-- drained, then a burst of thousands of tasks arrives. Estimating a handful of pending rows,
-- the planner read every pending task, tested each one's dependencies and sorted them all to
-- keep ten: measured at 8 ms a claim over 2,800 pending tasks, against 0.1 ms walking
-- idx_tasks_queue_claim_order and stopping at the tenth claimable task. The claim is therefore a
-- function planned with sorts and bitmap scans disabled, which leaves the ordered index walk as
-- the only plan, however many rows the statistics promise.
--
-- p_now: the queue's clock (NULL: the server's); p_types: task types wanted (NULL: any);
-- p_lease: seconds (NULL: each task's max_execution_time). Returns the claimed rows.
CREATE FUNCTION tasks.claim(p_now timestamptz, p_types text[], p_agent text, p_limit int,
                            p_lease float8)
RETURNS SETOF tasks.queue
LANGUAGE sql VOLATILE
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
WITH now AS (SELECT COALESCE(p_now, clock_timestamp()) AS t),
picked AS (
  SELECT q.task_id FROM tasks.queue q, now
  WHERE q.status = 'pending'
    AND (q.scheduled_at IS NULL OR q.scheduled_at <= now.t)
    AND (q.expires_at IS NULL OR q.expires_at > now.t)
    AND (p_types IS NULL OR q.task_type = ANY(p_types))
    AND (q.assigned_agent IS NULL OR q.assigned_agent = p_agent)
    AND NOT EXISTS (
      SELECT 1 FROM tasks.dependencies d JOIN tasks.queue p ON p.task_id = d.depends_on_task_id
      WHERE d.task_id = q.task_id AND p.status <> 'completed')
  ORDER BY q.priority DESC, COALESCE(q.scheduled_at, q.created_at), q.enqueue_seq
  LIMIT p_limit
  FOR UPDATE OF q SKIP LOCKED
)
UPDATE tasks.queue q SET status = 'running', attempts = q.attempts + 1,
  claimed_by = p_agent, started_at = now.t, updated_at = now.t,
  lease_expires_at = now.t + COALESCE(p_lease * interval '1 second', q.max_execution_time)
FROM picked, now WHERE q.task_id = picked.task_id
RETURNING q.*
$$;
