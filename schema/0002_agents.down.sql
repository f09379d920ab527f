-- 0002 down: drops the agents tables and everything in them.
DROP FUNCTION IF EXISTS agents.hydrate_agent_state(UUID);
DROP TABLE IF EXISTS agents.checkpoints;
DROP TABLE IF EXISTS agents.state;
DROP TABLE IF EXISTS agents.registry;
DROP FUNCTION IF EXISTS validate_agent_metadata(JSONB);
DROP TYPE IF EXISTS agent_status_type;
DROP DOMAIN IF EXISTS agent_id_type;
