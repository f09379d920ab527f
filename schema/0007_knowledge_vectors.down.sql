DROP TABLE IF EXISTS knowledge.embeddings;
