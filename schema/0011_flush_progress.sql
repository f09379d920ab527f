-- 0011: durable flush progress of the hybrid state manager (msstore's own; no reference
-- counterpart: the reference keeps its dirty set only in memory, see schema/README.md).
-- One row per KV bucket flushed into agents.state: which life of the bucket it is about
-- (incarnation), the offset added to its KV revisions to form agents.state versions (so a
-- re-created bucket, whose revisions start over, can never be taken for older data), and the
-- watermark: every revision up to it is known to be in agents.state.
CREATE TABLE agents.flush_progress (
  bucket TEXT PRIMARY KEY,
  incarnation TEXT NOT NULL,
  version_offset BIGINT NOT NULL CHECK (version_offset >= 0),
  watermark BIGINT NOT NULL DEFAULT 0 CHECK (watermark >= 0),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);
