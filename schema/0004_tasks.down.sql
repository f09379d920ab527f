DROP TABLE IF EXISTS tasks.executions;
DROP TABLE IF EXISTS tasks.dependencies;
DROP TABLE IF EXISTS tasks.queue;
DROP TYPE IF EXISTS task_priority_type;
DROP TYPE IF EXISTS task_status_type;
DROP DOMAIN IF EXISTS task_id_type;
