-- 0007: embeddings for semantic search. Needs the pgvector extension; skipped, and left
-- pending, on a server without it. HNSW, not the reference's ivfflat: an ivfflat index built
-- on an empty table has no useful lists, HNSW needs no training data (pgvector >= 0.5).
-- msstore: requires-extension vector

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE knowledge.embeddings (
  embedding_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  fact_id UUID NOT NULL REFERENCES knowledge.facts(fact_id) ON DELETE CASCADE,
  embedding_model VARCHAR(100) NOT NULL,
  embedding_version VARCHAR(20) NOT NULL,
  embedding_vector VECTOR({{embedding_dim}}),
  text_content TEXT NOT NULL,
  content_hash VARCHAR(64) NOT NULL,
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  CONSTRAINT valid_embedding_model CHECK (LENGTH(embedding_model) > 0),
  CONSTRAINT valid_text_content CHECK (LENGTH(text_content) > 0)
);

CREATE INDEX idx_knowledge_embeddings_vector ON knowledge.embeddings
  USING hnsw (embedding_vector vector_cosine_ops);
CREATE INDEX idx_knowledge_embeddings_fact ON knowledge.embeddings (fact_id);
CREATE INDEX idx_knowledge_embeddings_model
  ON knowledge.embeddings (embedding_model, embedding_version);
CREATE UNIQUE INDEX idx_knowledge_embeddings_hash
  ON knowledge.embeddings (content_hash, embedding_model, embedding_version);
