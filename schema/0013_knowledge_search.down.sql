DROP INDEX IF EXISTS knowledge.idx_knowledge_embeddings_text;
DROP INDEX IF EXISTS knowledge.idx_knowledge_embeddings_fact_model;
DROP INDEX IF EXISTS knowledge.idx_knowledge_embeddings_hash;
CREATE UNIQUE INDEX idx_knowledge_embeddings_hash
  ON knowledge.embeddings (content_hash, embedding_model, embedding_version);
