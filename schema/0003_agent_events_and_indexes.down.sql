DROP INDEX IF EXISTS agents.idx_agents_registry_type_status, agents.idx_agents_registry_parent,
  agents.idx_agents_registry_heartbeat, agents.idx_agents_registry_metadata_gin,
  agents.idx_agents_state_expires, agents.idx_agents_state_agent_updated,
  agents.idx_agents_checkpoints_name;
DROP TABLE IF EXISTS agents.lifecycle_events;
