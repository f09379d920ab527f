-- 0005: messages (channels, subscriptions, log) and sessions (reference 9.1, 9.2, 9.3).

CREATE DOMAIN message_id_type AS UUID CHECK (VALUE IS NOT NULL);
CREATE TYPE message_type AS ENUM (
  'command', 'query', 'response', 'notification', 'heartbeat', 'error'
);

CREATE TABLE messages.channels (
  channel_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  channel_name VARCHAR(255) UNIQUE NOT NULL,
  channel_type VARCHAR(50) NOT NULL,
  description TEXT,
  configuration JSONB DEFAULT '{}',
  is_active BOOLEAN DEFAULT TRUE,
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  CONSTRAINT valid_channel_name CHECK (LENGTH(channel_name) > 0),
  CONSTRAINT valid_channel_type CHECK (channel_type IN ('broadcast', 'direct', 'topic', 'queue'))
);

CREATE TABLE messages.subscriptions (
  subscription_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id agent_id_type NOT NULL REFERENCES agents.registry(agent_id) ON DELETE CASCADE,
  channel_id UUID NOT NULL REFERENCES messages.channels(channel_id) ON DELETE CASCADE,
  message_pattern VARCHAR(255),
  filters JSONB DEFAULT '{}',
  is_active BOOLEAN DEFAULT TRUE,
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  UNIQUE (agent_id, channel_id, message_pattern)
);

CREATE TABLE messages.log (
  message_id message_id_type NOT NULL DEFAULT gen_random_uuid(),
  channel_id UUID REFERENCES messages.channels(channel_id),
  -- Plain UUIDs: both ends are optional (broadcasts have no recipient), which the NOT NULL
  -- agent_id_type domain would forbid.
  from_agent_id UUID REFERENCES agents.registry(agent_id),
  to_agent_id UUID REFERENCES agents.registry(agent_id),
  broadcast_to_type VARCHAR(50),
  message_type message_type NOT NULL,
  subject VARCHAR(255),
  payload JSONB NOT NULL DEFAULT '{}',
  headers JSONB DEFAULT '{}',
  correlation_id UUID,
  reply_to VARCHAR(255),
  sent_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
  delivered_at TIMESTAMP WITH TIME ZONE,
  processed_at TIMESTAMP WITH TIME ZONE,
  delivery_attempts INTEGER DEFAULT 0,
  priority INTEGER DEFAULT 0,
  expires_at TIMESTAMP WITH TIME ZONE,
  is_persistent BOOLEAN DEFAULT TRUE,
  PRIMARY KEY (message_id, sent_at),
  CONSTRAINT valid_priority CHECK (priority BETWEEN 0 AND 10),
  CONSTRAINT valid_delivery_attempts CHECK (delivery_attempts >= 0),
  CONSTRAINT routing_consistency CHECK (
    (to_agent_id IS NOT NULL AND broadcast_to_type IS NULL) OR
    (to_agent_id IS NULL AND broadcast_to_type IS NOT NULL) OR
    (message_type = 'heartbeat')
  )
) PARTITION BY RANGE (sent_at);
CREATE TABLE messages.log_default PARTITION OF messages.log DEFAULT;

CREATE SCHEMA IF NOT EXISTS sessions;

-- Not hash-partitioned (the reference partitions by session_id): session_token must stay
-- UNIQUE, and a unique key on a partitioned table has to include the partition key.
CREATE TABLE sessions.active (
  session_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  session_token VARCHAR(255) UNIQUE NOT NULL,
  agent_id UUID REFERENCES agents.registry(agent_id),
  user_id VARCHAR(255),
  session_type VARCHAR(50) NOT NULL DEFAULT 'interactive',
  session_data JSONB DEFAULT '{}',
  preferences JSONB DEFAULT '{}',
  ip_address INET,
  user_agent TEXT,
  permissions JSONB DEFAULT '{}',
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  last_activity TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
  CONSTRAINT valid_session_token CHECK (LENGTH(session_token) >= 32),
  CONSTRAINT valid_session_type
    CHECK (session_type IN ('interactive', 'api', 'system', 'background')),
  CONSTRAINT future_expiry CHECK (expires_at > created_at)
  -- The reference's CHECK (expires_at > NOW()) is not immutable (it would fail on restore and
  -- on every update of an expired row); expiry is enforced by readers and cleanup instead.
);

CREATE INDEX idx_messages_channels_type_active ON messages.channels (channel_type, is_active);
CREATE INDEX idx_messages_subscriptions_agent ON messages.subscriptions (agent_id, is_active);
CREATE INDEX idx_messages_subscriptions_channel
  ON messages.subscriptions (channel_id, is_active);
CREATE INDEX idx_messages_log_from_sent ON messages.log (from_agent_id, sent_at);
CREATE INDEX idx_messages_log_to_sent ON messages.log (to_agent_id, sent_at);
CREATE INDEX idx_messages_log_type_sent ON messages.log (message_type, sent_at);
CREATE INDEX idx_messages_log_correlation ON messages.log (correlation_id)
  WHERE correlation_id IS NOT NULL;
CREATE INDEX idx_messages_log_channel_sent ON messages.log (channel_id, sent_at);
CREATE INDEX idx_messages_log_undelivered ON messages.log (sent_at) WHERE delivered_at IS NULL;
CREATE INDEX idx_sessions_active_agent ON sessions.active (agent_id) WHERE agent_id IS NOT NULL;
CREATE INDEX idx_sessions_active_user ON sessions.active (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX idx_sessions_active_activity ON sessions.active (last_activity);
CREATE INDEX idx_sessions_active_expires ON sessions.active (expires_at);
