-- 0003: agent lifecycle events (range-partitioned by time) and the section 9.3 agent indexes.
-- msstore: type index

CREATE TABLE agents.lifecycle_events (
  event_id UUID NOT NULL DEFAULT gen_random_uuid(),
  agent_id agent_id_type NOT NULL REFERENCES agents.registry(agent_id) ON DELETE CASCADE,
  event_type VARCHAR(50) NOT NULL,
  previous_status agent_status_type,
  new_status agent_status_type,
  event_data JSONB DEFAULT '{}',
  triggered_by UUID REFERENCES agents.registry(agent_id),
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
  -- A partitioned table's primary key must include its partition key.
  PRIMARY KEY (event_id, created_at),
  CONSTRAINT valid_event_type CHECK (LENGTH(event_type) > 0),
  CONSTRAINT status_change CHECK (previous_status IS DISTINCT FROM new_status)
) PARTITION BY RANGE (created_at);
-- Rows outside every dated partition land here instead of failing.
CREATE TABLE agents.lifecycle_events_default PARTITION OF agents.lifecycle_events DEFAULT;

CREATE INDEX idx_agents_registry_type_status ON agents.registry (agent_type, status);
CREATE INDEX idx_agents_registry_parent ON agents.registry (parent_agent_id)
  WHERE parent_agent_id IS NOT NULL;
CREATE INDEX idx_agents_registry_heartbeat ON agents.registry (last_heartbeat)
  WHERE status = 'active';
CREATE INDEX idx_agents_registry_metadata_gin ON agents.registry USING gin (metadata);
CREATE INDEX idx_agents_state_expires ON agents.state (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX idx_agents_state_agent_updated ON agents.state (agent_id, updated_at);
CREATE INDEX idx_agents_checkpoints_name ON agents.checkpoints (checkpoint_name)
  WHERE checkpoint_name IS NOT NULL;
CREATE INDEX idx_agents_lifecycle_agent_created ON agents.lifecycle_events (agent_id, created_at);
CREATE INDEX idx_agents_lifecycle_event_type ON agents.lifecycle_events (event_type, created_at);
CREATE INDEX idx_agents_lifecycle_status_change
  ON agents.lifecycle_events (new_status, created_at);
