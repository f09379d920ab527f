-- 0026: graph checkpoints (LangGraph's, through msstore.integrations.langgraph).
--
-- A checkpoint row holds everything but its channel values; a value is stored once per
-- (thread, namespace, channel, version), so a step that changes one channel adds one value,
-- not the whole state. Pending writes are keyed by (checkpoint, task, idx): written again,
-- they are not duplicated. graphs.threads holds each thread's fence: a delete raises it to a
-- checkpoint id taken at the delete, and a checkpoint or write at or below it (sent late by a
-- run that started before the delete) is dropped. Every write locks its thread's row there
-- first, so a delete and a late write cannot interleave.
CREATE SCHEMA IF NOT EXISTS graphs;
CREATE TABLE graphs.threads (
  thread_id TEXT PRIMARY KEY CHECK (length(thread_id) BETWEEN 1 AND 255),
  fence TEXT NOT NULL DEFAULT ''
);
CREATE TABLE graphs.checkpoints (
  thread_id TEXT NOT NULL,
  ns TEXT NOT NULL DEFAULT '',
  checkpoint_id TEXT NOT NULL,
  parent_id TEXT,
  body_type TEXT NOT NULL,
  body BYTEA NOT NULL,
  metadata JSONB NOT NULL DEFAULT '{}',
  versions JSONB NOT NULL DEFAULT '{}',
  run_id TEXT GENERATED ALWAYS AS (metadata ->> 'run_id') STORED,
  PRIMARY KEY (thread_id, ns, checkpoint_id)
);
CREATE INDEX idx_graphs_checkpoints_run ON graphs.checkpoints (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX idx_graphs_checkpoints_id ON graphs.checkpoints (checkpoint_id);
CREATE TABLE graphs.blobs (
  thread_id TEXT NOT NULL,
  ns TEXT NOT NULL DEFAULT '',
  channel TEXT NOT NULL,
  version TEXT NOT NULL,
  type TEXT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (thread_id, ns, channel, version)
);
CREATE TABLE graphs.writes (
  thread_id TEXT NOT NULL,
  ns TEXT NOT NULL DEFAULT '',
  checkpoint_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  idx INT NOT NULL,
  channel TEXT NOT NULL,
  type TEXT NOT NULL,
  data BYTEA NOT NULL,
  task_path TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (thread_id, ns, checkpoint_id, task_id, idx)
);
