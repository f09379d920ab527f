DROP FUNCTION IF EXISTS tasks.claim(timestamptz, text[], text, int, float8);
