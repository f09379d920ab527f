DROP INDEX IF EXISTS knowledge.idx_knowledge_facts_key;
ALTER TABLE knowledge.facts
  DROP CONSTRAINT IF EXISTS valid_fact_key,
  DROP COLUMN IF EXISTS version,
  DROP COLUMN IF EXISTS fact_key;
