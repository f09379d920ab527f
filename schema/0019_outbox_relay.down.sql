DROP TRIGGER IF EXISTS message_outbox_insert ON messages.log;
DROP FUNCTION IF EXISTS messages.outbox_message_inserts();
DROP INDEX IF EXISTS messages.idx_messages_outbox_failed;
DROP INDEX IF EXISTS messages.idx_messages_outbox_published;
DROP INDEX IF EXISTS messages.idx_messages_outbox_subject;
DROP INDEX IF EXISTS messages.idx_messages_outbox_unpublished;
ALTER TABLE messages.outbox
  DROP COLUMN IF EXISTS last_error,
  DROP COLUMN IF EXISTS attempts,
  DROP COLUMN IF EXISTS failure_reason,
  DROP COLUMN IF EXISTS failed_at;
CREATE INDEX idx_messages_outbox_unpublished ON messages.outbox (outbox_id)
  WHERE published_at IS NULL;
