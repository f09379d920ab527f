DROP TABLE IF EXISTS graphs.writes;
DROP TABLE IF EXISTS graphs.blobs;
DROP TABLE IF EXISTS graphs.checkpoints;
DROP TABLE IF EXISTS graphs.threads;
DROP SCHEMA IF EXISTS graphs;
