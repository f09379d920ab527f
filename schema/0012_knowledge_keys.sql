-- 0012: keyed facts (msstore's own). A fact may carry a key (the KNOWLEDGE_BASE route's
-- DataStorage keys); a new fact for a key replaces the stored one only with a higher version,
-- as every msstore table row. Facts without a key accumulate as before.
ALTER TABLE knowledge.facts
  ADD COLUMN fact_key TEXT,
  ADD COLUMN version BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1),
  ADD CONSTRAINT valid_fact_key CHECK (fact_key IS NULL OR LENGTH(fact_key) BETWEEN 1 AND 1024);

CREATE UNIQUE INDEX idx_knowledge_facts_key ON knowledge.facts (fact_key COLLATE "C")
  WHERE fact_key IS NOT NULL;
