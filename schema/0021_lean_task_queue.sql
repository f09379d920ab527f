-- 0021: the task queue's hot rows carry only the indexes its statements read.
--
-- Every claim and settlement rewrites a task row (its status changes, and status is in the
-- partial indexes' predicates, so no update is HOT): each index on tasks.queue is written on
-- every state change. These indexes serve no statement msstore runs (claims use
-- idx_tasks_queue_claim_order, the lease rescue idx_tasks_queue_leases, lists
-- idx_tasks_queue_enqueue_seq, purges idx_tasks_queue_finished), and the GIN index on the
-- payload was rewritten with every change of a row whose payload never changes.
DROP INDEX IF EXISTS tasks.idx_tasks_queue_status_priority;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_assigned_agent;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_type_status;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_scheduled;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_expires;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_payload_gin;
DROP INDEX IF EXISTS tasks.idx_tasks_executions_status;

-- An attempt's tasks.executions row is written once, with the change that ends it (completed,
-- failed, lease expired, cancelled), instead of inserted at the claim and updated at the end.
-- The attempt under way is the task row itself (status running, attempts, claimed_by,
-- started_at); the rows it had as 'running' go.
DELETE FROM tasks.executions WHERE status = 'running';
