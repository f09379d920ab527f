-- 0004: tasks: queue, dependencies, executions (reference 9.1, 9.2, 9.3).

CREATE DOMAIN task_id_type AS UUID CHECK (VALUE IS NOT NULL);
CREATE TYPE task_status_type AS ENUM (
  'pending', 'queued', 'running', 'paused', 'completed', 'failed', 'cancelled'
);
CREATE TYPE task_priority_type AS ENUM ('low', 'normal', 'high', 'urgent', 'critical');

-- Not partitioned (the reference lists it by task_type): a key on task_id alone, which every
-- reference to a task needs, cannot exist on a table partitioned by another column.
CREATE TABLE tasks.queue (
  task_id task_id_type PRIMARY KEY DEFAULT gen_random_uuid(),
  task_type VARCHAR(100) NOT NULL,
  task_name VARCHAR(255),
  assigned_agent_id UUID REFERENCES agents.registry(agent_id),
  created_by_agent_id UUID REFERENCES agents.registry(agent_id),
  parent_task_id UUID REFERENCES tasks.queue(task_id),
  payload JSONB NOT NULL DEFAULT '{}',
  configuration JSONB DEFAULT '{}',
  metadata JSONB DEFAULT '{}',
  status task_status_type DEFAULT 'pending',
  priority task_priority_type DEFAULT 'normal',
  scheduled_at TIMESTAMP WITH TIME ZONE,
  started_at TIMESTAMP WITH TIME ZONE,
  completed_at TIMESTAMP WITH TIME ZONE,
  expires_at TIMESTAMP WITH TIME ZONE,
  max_execution_time INTERVAL DEFAULT '1 hour',
  max_retries INTEGER DEFAULT 3,
  retry_count INTEGER DEFAULT 0,
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  CONSTRAINT valid_task_type CHECK (LENGTH(task_type) > 0),
  CONSTRAINT valid_retry_count CHECK (retry_count >= 0 AND retry_count <= max_retries),
  CONSTRAINT valid_timing CHECK (
    (started_at IS NULL OR started_at >= created_at) AND
    (completed_at IS NULL OR completed_at >= COALESCE(started_at, created_at)) AND
    (expires_at IS NULL OR expires_at > created_at)
  ),
  CONSTRAINT no_self_parent CHECK (task_id != parent_task_id)
);

CREATE TABLE tasks.dependencies (
  dependency_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  task_id task_id_type NOT NULL REFERENCES tasks.queue(task_id) ON DELETE CASCADE,
  depends_on_task_id task_id_type NOT NULL REFERENCES tasks.queue(task_id) ON DELETE CASCADE,
  dependency_type VARCHAR(50) DEFAULT 'completion',
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  UNIQUE (task_id, depends_on_task_id),
  CONSTRAINT no_self_dependency CHECK (task_id != depends_on_task_id),
  CONSTRAINT valid_dependency_type
    CHECK (dependency_type IN ('completion', 'start', 'data', 'resource'))
);

CREATE TABLE tasks.executions (
  execution_id UUID NOT NULL DEFAULT gen_random_uuid(),
  task_id task_id_type NOT NULL REFERENCES tasks.queue(task_id) ON DELETE CASCADE,
  agent_id agent_id_type NOT NULL REFERENCES agents.registry(agent_id),
  execution_attempt INTEGER NOT NULL DEFAULT 1,
  started_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
  completed_at TIMESTAMP WITH TIME ZONE,
  status task_status_type DEFAULT 'running',
  result JSONB,
  error_message TEXT,
  error_details JSONB,
  cpu_time_ms BIGINT,
  memory_peak_mb INTEGER,
  io_operations BIGINT,
  PRIMARY KEY (execution_id, started_at),
  CONSTRAINT valid_execution_attempt CHECK (execution_attempt > 0),
  CONSTRAINT completion_consistency CHECK (
    (status = 'completed' AND completed_at IS NOT NULL AND result IS NOT NULL) OR
    (status = 'failed' AND completed_at IS NOT NULL AND error_message IS NOT NULL) OR
    (status IN ('running', 'paused') AND completed_at IS NULL)
  )
) PARTITION BY RANGE (started_at);
CREATE TABLE tasks.executions_default PARTITION OF tasks.executions DEFAULT;

CREATE INDEX idx_tasks_queue_status_priority ON tasks.queue (status, priority, created_at);
CREATE INDEX idx_tasks_queue_assigned_agent ON tasks.queue (assigned_agent_id, status);
CREATE INDEX idx_tasks_queue_type_status ON tasks.queue (task_type, status);
CREATE INDEX idx_tasks_queue_parent ON tasks.queue (parent_task_id)
  WHERE parent_task_id IS NOT NULL;
CREATE INDEX idx_tasks_queue_scheduled ON tasks.queue (scheduled_at)
  WHERE scheduled_at IS NOT NULL;
CREATE INDEX idx_tasks_queue_expires ON tasks.queue (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX idx_tasks_queue_payload_gin ON tasks.queue USING gin (payload);
CREATE INDEX idx_tasks_dependencies_task ON tasks.dependencies (task_id);
CREATE INDEX idx_tasks_dependencies_depends_on ON tasks.dependencies (depends_on_task_id);
CREATE INDEX idx_tasks_executions_task_started ON tasks.executions (task_id, started_at);
CREATE INDEX idx_tasks_executions_agent_started ON tasks.executions (agent_id, started_at);
CREATE INDEX idx_tasks_executions_status ON tasks.executions (status, started_at);
