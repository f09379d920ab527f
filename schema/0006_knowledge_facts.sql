-- 0006: knowledge facts (reference 9.2, 9.3, 13.1 text search). The vectors are 0007.

CREATE TABLE knowledge.facts (
  fact_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  entity_type VARCHAR(100) NOT NULL,
  entity_id VARCHAR(255) NOT NULL,
  predicate VARCHAR(255) NOT NULL,
  object_value JSONB NOT NULL,
  object_type VARCHAR(50) NOT NULL,
  source_agent_id UUID REFERENCES agents.registry(agent_id),
  confidence_score DECIMAL(3,2) CHECK (confidence_score BETWEEN 0.0 AND 1.0),
  evidence JSONB DEFAULT '{}',
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  valid_from TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  valid_until TIMESTAMP WITH TIME ZONE,
  CONSTRAINT valid_entity_type CHECK (LENGTH(entity_type) > 0),
  CONSTRAINT valid_entity_id CHECK (LENGTH(entity_id) > 0),
  CONSTRAINT valid_predicate CHECK (LENGTH(predicate) > 0),
  CONSTRAINT valid_validity_period CHECK (valid_until IS NULL OR valid_until > valid_from)
);

CREATE INDEX idx_knowledge_facts_entity ON knowledge.facts (entity_type, entity_id);
CREATE INDEX idx_knowledge_facts_predicate ON knowledge.facts (predicate, created_at);
CREATE INDEX idx_knowledge_facts_source ON knowledge.facts (source_agent_id, created_at);
CREATE INDEX idx_knowledge_facts_validity ON knowledge.facts (valid_from, valid_until);
CREATE INDEX idx_knowledge_facts_confidence
  ON knowledge.facts (confidence_score DESC, created_at);
CREATE INDEX idx_knowledge_facts_object_gin ON knowledge.facts USING gin (object_value);
CREATE INDEX idx_knowledge_facts_text ON knowledge.facts
  USING gin (to_tsvector('english', predicate || ' ' || object_value::text));
