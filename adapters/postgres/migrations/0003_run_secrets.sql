-- 0003: the shared secret registry (compose.postgres(shared_secrets=True)).
--
-- Runs inside the migration transaction with `search_path` set to the library's schema.
--
-- A run's secrets live here for the run's lifetime only: `drop(run_id)` deletes the run's
-- row and, by cascade, its secrets. Keys are client-computed BLAKE2b digests, because run
-- ids and secrets may be longer than a btree entry can hold. `secret_runs` marks a run as
-- known even when it has no secrets (`register(run_id, [])`); `generation` changes every
-- time the run is registered anew after a drop, so a process's cached set is never
-- mixed with a dropped one. Registrations of one run are serialized by its row lock, so
-- `run_secrets.id` grows in commit order within a run: a reader asks only for ids above
-- the last one it saw.
--
-- Privileges: the tables hold secrets in clear. Nothing is granted to PUBLIC; grant the
-- application's role SELECT, INSERT, UPDATE, DELETE on both and USAGE on the schema, and
-- nothing to reporting or read-only roles (see docs/guide.md, "Shared run secrets").

CREATE TABLE secret_runs (
    run_key     bytea PRIMARY KEY,
    run_id      text NOT NULL,
    generation  bigint GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE run_secrets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_key     bytea NOT NULL REFERENCES secret_runs (run_key) ON DELETE CASCADE,
    value_key   bytea NOT NULL,
    value       text NOT NULL,
    UNIQUE (run_key, value_key)
);

REVOKE ALL ON secret_runs, run_secrets FROM PUBLIC;
