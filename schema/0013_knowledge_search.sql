-- 0013: what the knowledge base's searches need from knowledge.embeddings (msstore's own).
-- msstore: requires-extension vector
--
-- * Several facts may share a text: its vector is reused (looked up by content hash), not
--   embedded again, so the content hash is no longer unique (0007 made it so; the reference's
--   index was plain). One embedding per fact and model version instead.
-- * Full-text search runs over the embedded text (the same text the vector came from).
DROP INDEX knowledge.idx_knowledge_embeddings_hash;
CREATE INDEX idx_knowledge_embeddings_hash
  ON knowledge.embeddings (content_hash, embedding_model, embedding_version);
CREATE UNIQUE INDEX idx_knowledge_embeddings_fact_model
  ON knowledge.embeddings (fact_id, embedding_model, embedding_version);
CREATE INDEX idx_knowledge_embeddings_text
  ON knowledge.embeddings USING gin (to_tsvector('english', text_content));
