-- 0001: the change log and the transition log (DESIGN §6).
--
-- Runs inside the migration transaction with `search_path` set (SET LOCAL) to the
-- library's schema, so names here are unqualified.
--
-- Entity ids may be kilobytes of arbitrary text, more than a btree entry can hold, so
-- every index leads with `entity_key`: a 16-byte BLAKE2b digest of (kind, entity_id)
-- computed by the client. Queries filter on `entity_key` and recheck `kind` and
-- `entity_id`, so a digest collision could only cost a wasted heap fetch.

CREATE TABLE changes (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id       uuid NOT NULL UNIQUE,
    entity_key      uuid NOT NULL,
    kind            text NOT NULL,
    entity_id       text NOT NULL,
    op              text NOT NULL CHECK (op IN ('create', 'update', 'remove')),
    actor           jsonb NOT NULL,
    run_id          text,
    prev            jsonb,
    next            jsonb,
    delta           jsonb NOT NULL,
    changed_fields  text[] NOT NULL,
    occurred_at     timestamptz NOT NULL
);

-- latest_change (value_at) and the stamp guard of record: one seek per entity.
CREATE INDEX changes_entity_idx ON changes (entity_key, occurred_at DESC, position DESC);

CREATE TABLE transitions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id        uuid NOT NULL,
    entity_key       uuid NOT NULL,
    kind             text NOT NULL,
    entity_id        text NOT NULL,
    field            text NOT NULL,
    from_value       jsonb,            -- SQL NULL: the entity did not exist (ABSENT)
    to_value         jsonb NOT NULL,   -- JSON null is the jsonb value 'null'
    masked           boolean NOT NULL,
    transitioned_at  timestamptz NOT NULL
);

-- in_state_since, transition_count, value_at and history: one seek per (entity, field).
CREATE INDEX transitions_entity_field_idx
    ON transitions (entity_key, field, transitioned_at DESC, id DESC);

-- Both logs are append-only: UPDATE and DELETE are refused (TRUNCATE stays possible,
-- for operators who really mean to drop a log).
CREATE FUNCTION reject_log_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'feature_not_supported';
END
$$;

CREATE TRIGGER changes_append_only
    BEFORE UPDATE OR DELETE ON changes
    FOR EACH STATEMENT EXECUTE FUNCTION reject_log_rewrite();

CREATE TRIGGER transitions_append_only
    BEFORE UPDATE OR DELETE ON transitions
    FOR EACH STATEMENT EXECUTE FUNCTION reject_log_rewrite();
