-- 0009: connection monitoring (reference 12.2).
-- msstore: type function

CREATE SCHEMA IF NOT EXISTS monitoring;

CREATE VIEW monitoring.connection_stats AS
SELECT datname AS database_name, usename AS username, application_name, client_addr,
       client_hostname, state, COUNT(*) AS connection_count,
       MIN(backend_start) AS oldest_connection, MAX(backend_start) AS newest_connection,
       AVG(EXTRACT(epoch FROM (NOW() - backend_start))) AS avg_connection_age_seconds
FROM pg_stat_activity
WHERE datname = current_database()
GROUP BY datname, usename, application_name, client_addr, client_hostname, state
ORDER BY connection_count DESC;

CREATE FUNCTION monitoring.check_connection_pool_health()
RETURNS TABLE(
  pool_name TEXT, total_connections INTEGER, active_connections INTEGER,
  idle_connections INTEGER, idle_in_transaction INTEGER, max_connections INTEGER,
  health_status TEXT, recommendations TEXT[]
) AS $$
DECLARE
  v_max INTEGER;
  v_total INTEGER;
  v_active INTEGER;
  v_idle INTEGER;
  v_idle_tx INTEGER;
  v_recommendations TEXT[] := '{}';
BEGIN
  SELECT setting::INTEGER INTO v_max FROM pg_settings WHERE name = 'max_connections';
  SELECT COUNT(*), COUNT(*) FILTER (WHERE state = 'active'),
         COUNT(*) FILTER (WHERE state = 'idle'),
         COUNT(*) FILTER (WHERE state = 'idle in transaction')
  INTO v_total, v_active, v_idle, v_idle_tx
  FROM pg_stat_activity WHERE datname = current_database();
  IF v_total > v_max * 0.8 THEN
    v_recommendations := array_append(v_recommendations, 'Connection count approaching maximum');
  END IF;
  IF v_idle_tx > 5 THEN
    v_recommendations := array_append(v_recommendations,
                                       'High number of idle in transaction connections');
  END IF;
  IF v_active > v_total * 0.7 THEN
    v_recommendations := array_append(v_recommendations,
                                       'High ratio of active connections - consider scaling');
  END IF;
  RETURN QUERY SELECT 'application_pool'::TEXT, v_total, v_active, v_idle, v_idle_tx, v_max,
    CASE WHEN v_total > v_max * 0.9 THEN 'critical'
         WHEN v_total > v_max * 0.8 THEN 'warning'
         ELSE 'healthy' END,
    v_recommendations;
END;
$$ LANGUAGE plpgsql;
