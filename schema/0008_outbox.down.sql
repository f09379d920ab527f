DROP TRIGGER IF EXISTS task_outbox_update ON tasks.queue;
DROP TRIGGER IF EXISTS task_outbox_insert ON tasks.queue;
DROP TRIGGER IF EXISTS state_outbox_delete ON agents.state;
DROP TRIGGER IF EXISTS state_outbox_update ON agents.state;
DROP TRIGGER IF EXISTS state_outbox_insert ON agents.state;
DROP FUNCTION IF EXISTS messages.outbox_task_inserts();
DROP FUNCTION IF EXISTS messages.outbox_task_changes();
DROP FUNCTION IF EXISTS messages.outbox_state_changes();
DROP TABLE IF EXISTS messages.outbox;
