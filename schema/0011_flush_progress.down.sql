DROP TABLE IF EXISTS agents.flush_progress;
