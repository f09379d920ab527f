DROP FUNCTION IF EXISTS monitoring.check_connection_pool_health();
DROP VIEW IF EXISTS monitoring.connection_stats;
DROP SCHEMA IF EXISTS monitoring;
