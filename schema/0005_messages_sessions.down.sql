DROP TABLE IF EXISTS sessions.active;
DROP SCHEMA IF EXISTS sessions;
DROP TABLE IF EXISTS messages.log;
DROP TABLE IF EXISTS messages.subscriptions;
DROP TABLE IF EXISTS messages.channels;
DROP TYPE IF EXISTS message_type;
DROP DOMAIN IF EXISTS message_id_type;
