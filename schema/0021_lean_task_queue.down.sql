CREATE INDEX IF NOT EXISTS idx_tasks_queue_status_priority
  ON tasks.queue (status, priority, created_at);
CREATE INDEX IF NOT EXISTS idx_tasks_queue_assigned_agent ON tasks.queue (assigned_agent_id, status);
CREATE INDEX IF NOT EXISTS idx_tasks_queue_type_status ON tasks.queue (task_type, status);
CREATE INDEX IF NOT EXISTS idx_tasks_queue_scheduled ON tasks.queue (scheduled_at)
  WHERE scheduled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_tasks_queue_expires ON tasks.queue (expires_at)
  WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_tasks_queue_payload_gin ON tasks.queue USING gin (payload);
CREATE INDEX IF NOT EXISTS idx_tasks_executions_status ON tasks.executions (status, started_at);
INSERT INTO tasks.executions (task_id, agent_id, execution_attempt, started_at, status)
SELECT q.task_id, r.agent_id, q.attempts, q.started_at, 'running'
FROM tasks.queue q JOIN agents.registry r ON r.agent_name = q.claimed_by
WHERE q.status = 'running';
