-- 0002: agent registry, agent state (hash-partitioned), checkpoints: reference sections 2.1,
-- 2.2, 9.1 and 9.2 (agents), with the deviations listed in schema/README.md.

CREATE DOMAIN agent_id_type AS UUID CHECK (VALUE IS NOT NULL);

CREATE TYPE agent_status_type AS ENUM (
  'initializing', 'active', 'idle', 'suspended', 'terminated', 'error'
);

CREATE FUNCTION validate_agent_metadata(metadata JSONB) RETURNS BOOLEAN AS $$
BEGIN
  IF NOT (metadata ? 'created_at' AND metadata ? 'version') THEN
    RETURN FALSE;
  END IF;
  IF NOT (metadata->>'created_at') ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}' THEN
    RETURN FALSE;
  END IF;
  RETURN TRUE;
END;
$$ LANGUAGE plpgsql IMMUTABLE;

CREATE TABLE agents.registry (
  agent_id agent_id_type PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_type VARCHAR(50) NOT NULL,
  agent_name VARCHAR(255) NOT NULL,
  status agent_status_type DEFAULT 'initializing',
  capabilities JSONB DEFAULT '{}',
  configuration JSONB DEFAULT '{}',
  -- The reference defaults to '{}', which its own CHECK rejects: default to valid metadata.
  metadata JSONB NOT NULL DEFAULT jsonb_build_object(
    'created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'version', 1)
    CHECK (validate_agent_metadata(metadata)),
  -- Plain UUID: the reference's agent_id_type forbids NULL, which made this optional column
  -- reject every agent without a parent.
  parent_agent_id UUID REFERENCES agents.registry(agent_id),
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  last_heartbeat TIMESTAMP WITH TIME ZONE,
  CONSTRAINT valid_agent_name CHECK (LENGTH(agent_name) > 0),
  CONSTRAINT valid_agent_type CHECK (LENGTH(agent_type) > 0),
  CONSTRAINT no_self_parent CHECK (agent_id != parent_agent_id)
);

CREATE TABLE agents.state (
  agent_id agent_id_type NOT NULL REFERENCES agents.registry(agent_id) ON DELETE CASCADE,
  -- msstore keys are up to 1,024 characters (the reference's VARCHAR(255) is too short).
  state_key TEXT NOT NULL,
  state_value JSONB NOT NULL,
  version BIGINT NOT NULL DEFAULT 1,
  checksum VARCHAR(64), -- SHA-256 of the canonical JSON
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  expires_at TIMESTAMP WITH TIME ZONE, -- TTL, honoured on read
  PRIMARY KEY (agent_id, state_key),
  CONSTRAINT valid_state_key CHECK (LENGTH(state_key) BETWEEN 1 AND 1024),
  CONSTRAINT valid_version CHECK (version > 0)
) PARTITION BY HASH (agent_id);

CREATE TABLE agents.state_0 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE agents.state_1 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE agents.state_2 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE agents.state_3 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE agents.state_4 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE agents.state_5 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE agents.state_6 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE agents.state_7 PARTITION OF agents.state FOR VALUES WITH (MODULUS 8, REMAINDER 7);

CREATE INDEX idx_state_value_gin ON agents.state USING gin (state_value);
CREATE INDEX idx_state_updated ON agents.state (updated_at);
CREATE INDEX idx_state_key_prefix ON agents.state (state_key text_pattern_ops);

CREATE TABLE agents.checkpoints (
  checkpoint_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id agent_id_type NOT NULL REFERENCES agents.registry(agent_id) ON DELETE CASCADE,
  checkpoint_name VARCHAR(255),
  state_snapshot JSONB NOT NULL,
  kv_revision BIGINT,
  trigger_event VARCHAR(100),
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  CONSTRAINT valid_checkpoint_name CHECK (checkpoint_name IS NULL OR LENGTH(checkpoint_name) > 0)
);
CREATE INDEX idx_checkpoints_agent ON agents.checkpoints (agent_id, created_at DESC);

CREATE FUNCTION agents.hydrate_agent_state(p_agent_id UUID)
RETURNS TABLE(key TEXT, value JSONB) AS $$
BEGIN
  RETURN QUERY
  SELECT s.state_key, s.state_value
  FROM agents.state s
  WHERE s.agent_id = p_agent_id
    AND (s.expires_at IS NULL OR s.expires_at > NOW())
  ORDER BY s.updated_at DESC;
END;
$$ LANGUAGE plpgsql STABLE;
