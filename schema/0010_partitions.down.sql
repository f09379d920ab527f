-- Dated partitions are kept (their rows would otherwise be lost); only the functions go.
DROP FUNCTION IF EXISTS partitions.manage_time_partitions(REGCLASS, INTEGER, INTEGER);
DROP FUNCTION IF EXISTS partitions.create_time_partition(REGCLASS, DATE, INTERVAL);
DROP SCHEMA IF EXISTS partitions;
