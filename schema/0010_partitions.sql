-- 0010: time-partition management (reference 13.2), made to work.
-- msstore: type partition
--
-- Fixes to the reference: schema-qualified tables are regclass arguments (format('%I') of
-- 'agents.lifecycle_events' names one table with a dot in it); the partition column is read
-- from the catalog (executions and log are keyed by started_at / sent_at, not created_at);
-- partitions inherit the parent's indexes on ATTACH instead of a hand-made created_at index;
-- calls inside PL/pgSQL use PERFORM. Rows already in the DEFAULT partition for the new range
-- are moved into it before it is attached (else PostgreSQL refuses the new partition).

CREATE SCHEMA IF NOT EXISTS partitions;

CREATE FUNCTION partitions.create_time_partition(
  p_table REGCLASS, p_start DATE, p_interval INTERVAL DEFAULT '1 day'
) RETURNS TEXT AS $$
DECLARE
  v_schema TEXT;
  v_table TEXT;
  v_column TEXT;
  v_name TEXT;
  v_end DATE := (p_start + p_interval)::DATE;
  v_default REGCLASS;
BEGIN
  SELECT n.nspname, c.relname INTO v_schema, v_table
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
  SELECT a.attname INTO v_column
  FROM pg_partitioned_table pt
  JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
  WHERE pt.partrelid = p_table AND pt.partstrat = 'r';
  IF v_column IS NULL THEN
    RAISE EXCEPTION '% is not partitioned by range', p_table;
  END IF;
  v_name := v_table || '_' || to_char(p_start, 'YYYY_MM_DD');
  IF to_regclass(format('%I.%I', v_schema, v_name)) IS NOT NULL THEN
    RETURN NULL;  -- exists already
  END IF;
  EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                 v_schema, v_name, p_table);
  SELECT i.inhrelid::REGCLASS INTO v_default
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = p_table AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
  IF v_default IS NOT NULL THEN
    EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING *) '
                   'INSERT INTO %I.%I SELECT * FROM moved',
                   v_default, v_column, p_start, v_column, v_end, v_schema, v_name);
  END IF;
  EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                 p_table, v_schema, v_name, p_start, v_end);
  RETURN v_schema || '.' || v_name;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION partitions.manage_time_partitions(
  p_table REGCLASS, p_retain_days INTEGER DEFAULT 30, p_future_days INTEGER DEFAULT 7
) RETURNS INTEGER AS $$
DECLARE
  v_changed INTEGER := 0;
  v_child REGCLASS;
  v_name TEXT;
BEGIN
  FOR i IN 0..p_future_days LOOP
    IF partitions.create_time_partition(p_table, CURRENT_DATE + i) IS NOT NULL THEN
      v_changed := v_changed + 1;
    END IF;
  END LOOP;
  FOR v_child, v_name IN
    SELECT i.inhrelid::REGCLASS, c.relname
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = p_table AND c.relname ~ '_\d{4}_\d{2}_\d{2}$'
  LOOP
    IF to_date(substring(v_name FROM '(\d{4}_\d{2}_\d{2})$'), 'YYYY_MM_DD')
       < CURRENT_DATE - p_retain_days THEN
      EXECUTE format('DROP TABLE %s', v_child);
      v_changed := v_changed + 1;
    END IF;
  END LOOP;
  RETURN v_changed;
END;
$$ LANGUAGE plpgsql;

-- Yesterday, today and tomorrow, as the reference creates them.
SELECT partitions.create_time_partition(t, CURRENT_DATE + d)
FROM unnest(ARRAY['agents.lifecycle_events', 'tasks.executions', 'messages.log']::REGCLASS[]) t,
     generate_series(-1, 1) d;
