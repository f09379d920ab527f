-- 0001 down: drop the schemas. RESTRICT (the default): a schema that still holds objects is
-- an error, so rolling back never destroys data that a later migration did not remove.
DROP SCHEMA IF EXISTS knowledge;
DROP SCHEMA IF EXISTS messages;
DROP SCHEMA IF EXISTS tasks;
DROP SCHEMA IF EXISTS agents;
