-- 0024: the saga log: one row per saga, one per step outcome.
--
-- A saga's row says where it is (status, the step it is at), what it was started with
-- (context) and which process holds it until when (owner, lease_expires_at); every write to it
-- names the owner, so a process that lost its lease changes nothing. A step's outcome row is
-- committed before the next step starts; a SQL step's in the step's own transaction.
CREATE SCHEMA IF NOT EXISTS sagas;
CREATE TABLE sagas.log (
  saga_id UUID PRIMARY KEY,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  idempotency_key TEXT UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  status TEXT NOT NULL CHECK (status IN ('running', 'compensating', 'completed', 'rolled_back',
                                         'compensation_failed')),
  step INT NOT NULL CHECK (step >= 0),
  context JSONB NOT NULL DEFAULT '{}',
  owner TEXT,
  lease_expires_at TIMESTAMPTZ,
  reason TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL
);
-- Sagas that are not over, or wait for a person: what recovery and operators look for.
CREATE INDEX idx_sagas_log_open ON sagas.log (created_at)
  WHERE status IN ('running', 'compensating', 'compensation_failed');
CREATE TABLE sagas.steps (
  saga_id UUID NOT NULL REFERENCES sagas.log (saga_id) ON DELETE CASCADE,
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  step_index INT NOT NULL CHECK (step_index >= -1),  -- -1: the saga's end
  name TEXT NOT NULL,
  phase TEXT NOT NULL CHECK (phase IN ('action', 'compensation')),
  state TEXT NOT NULL CHECK (state IN ('started', 'done', 'failed', 'conflict')),
  detail JSONB NOT NULL DEFAULT '{}',
  error TEXT,
  at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (saga_id, seq)
);
