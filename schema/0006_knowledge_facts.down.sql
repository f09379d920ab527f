DROP TABLE IF EXISTS knowledge.facts;
