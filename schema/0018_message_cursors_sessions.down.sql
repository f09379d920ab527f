ALTER TABLE sessions.active DROP COLUMN IF EXISTS ttl_seconds;
DROP TABLE IF EXISTS messages.cursors;
ALTER TABLE messages.subscriptions DROP COLUMN IF EXISTS from_seq;
DROP INDEX IF EXISTS messages.idx_messages_log_channel_seq;
DROP INDEX IF EXISTS messages.idx_messages_log_to_seq;
DROP INDEX IF EXISTS messages.idx_messages_log_seq;
ALTER TABLE messages.log DROP COLUMN IF EXISTS seq;
DROP SEQUENCE IF EXISTS messages.log_seq;
