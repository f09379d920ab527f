-- 0025: the saga log's writes as functions, so that their plans are cached in the session.
--
-- A SQL step's outcome is written by the step's own transaction together with its COMMIT, in
-- one round trip of two statements; such a round trip cannot use a prepared statement, so
-- the write it carries is a function call whose plans PL/pgSQL keeps.

-- Lock a saga for its owner: true if `p_owner` holds it and it has not ended.
CREATE FUNCTION sagas.hold(p_id UUID, p_owner TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM sagas.log
  WHERE saga_id = p_id AND owner = p_owner
    AND status NOT IN ('completed', 'rolled_back', 'compensation_failed')
  FOR UPDATE;
  RETURN FOUND;
END
$$;

-- Move a saga held by `p_owner` to `p_status` at `p_step` and add its step records (a JSON
-- array of {i, n, p, s, d, e, a}, in order). A NULL `p_lease` releases the lease. False, and
-- nothing written, if `p_owner` does not hold it; with `p_strict`, an error instead (the
-- caller's transaction must not commit).
CREATE FUNCTION sagas.append(
  p_id UUID, p_owner TEXT, p_status TEXT, p_step INT, p_reason TEXT, p_lease FLOAT8,
  p_now FLOAT8, p_records JSONB, p_strict BOOLEAN
) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE sagas.log SET status = p_status, step = p_step, reason = p_reason,
    lease_expires_at = to_timestamp(p_lease),
    owner = CASE WHEN p_lease IS NULL THEN NULL ELSE owner END,
    updated_at = to_timestamp(p_now)
  WHERE saga_id = p_id AND owner = p_owner
    AND status NOT IN ('completed', 'rolled_back', 'compensation_failed');
  IF NOT FOUND THEN
    IF p_strict THEN
      RAISE EXCEPTION 'saga % is not held by %', p_id, p_owner USING ERRCODE = '55000';
    END IF;
    RETURN FALSE;
  END IF;
  INSERT INTO sagas.steps (saga_id, step_index, name, phase, state, detail, error, at)
  SELECT p_id, r.i, r.n, r.p, r.s, r.d, r.e, to_timestamp(r.a)
  FROM ROWS FROM (jsonb_to_recordset(p_records)
    AS (i INT, n TEXT, p TEXT, s TEXT, d JSONB, e TEXT, a FLOAT8))
    WITH ORDINALITY AS r(i, n, p, s, d, e, a, o)
  ORDER BY r.o;
  RETURN TRUE;
END
$$;
