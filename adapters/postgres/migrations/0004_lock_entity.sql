-- 0004: lock an entity and read its stamp in one statement (the stamp alone when the
-- store runs with `locking=False`: `p_lock_key` NULL).
--
-- Runs inside the migration transaction with `search_path` set to the library's schema;
-- `SET search_path FROM CURRENT` keeps that schema for the function's own query.
--
-- Every write sends this (after `BEGIN`, in one round trip): five statements before it —
-- save `lock_timeout`, set it, take the advisory lock, put it back, read the stamp —
-- cost the server a parse and plan each and the client a result each. The stamp is read
-- by its own statement *after* the lock, so it takes a new snapshot and sees the change
-- the lock's previous holder committed (one statement would have read with a snapshot
-- taken before it waited). It is the clock's now (`p_at`, an injected clock's time, else
-- `clock_timestamp()`), raised to the entity's newest stamp.

CREATE FUNCTION lock_entity(p_lock_key bigint, p_timeout text, p_key uuid, p_at timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    saved text := current_setting('lock_timeout');
    newest timestamptz;
BEGIN
    IF p_lock_key IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_timeout, true);
        PERFORM pg_advisory_xact_lock(p_lock_key);
        PERFORM set_config('lock_timeout', saved, true);
    END IF;
    SELECT c.occurred_at INTO newest
      FROM changes AS c
     WHERE c.entity_key = p_key
     ORDER BY c.occurred_at DESC, c.position DESC
     LIMIT 1;
    RETURN GREATEST(COALESCE(p_at, clock_timestamp()), newest);
END
$$;
