"""The store's SQL, composed once per schema.

Every query is one statement that the store runs as a prepared statement. Each read is a
single index seek on the fixed-size ``entity_key`` (and ``field``) that lead the indexes;
``kind`` and ``entity_id`` are rechecked on the rows found. The recheck sits *outside*
the ``ORDER BY … LIMIT`` subquery on purpose: inside it, the planner (which cannot know
that both columns depend on ``entity_key``) underestimates the matching rows and picks a
bitmap scan plus sort over every row of the field instead of reading the newest one off
the index. (A digest collision could then only make a result shorter, never wrong: the
recheck still drops foreign rows.) The schema name enters only through
:class:`psycopg.sql.Identifier`; values only as parameters.

``record`` appends a change with one statement. Its feed key ``xid`` is the writing
transaction's id, raised to the entity's previous change's key: a transaction that got
its id before waiting for the entity's lock would otherwise sort before the change it
waited for. (Gap safety holds: a row's key is never below its own transaction's id.)
In it a data-modifying CTE inserts the change
row and, from ``unnest`` of parallel arrays, its transition rows (in ``changed_fields``
order), all with the stamp fixed when the entity was locked (``lock``: the injected
clock's time, else ``clock_timestamp()``, raised if need be to the entity's previous
stamp, so stamps never decrease per entity even if the database clock steps back).

>>> queries = Queries.for_schema("reactive_entities")
>>> b'"reactive_entities".transitions' in queries.latest_transition
True
"""

from __future__ import annotations

import attrs
from psycopg import sql

__all__ = ["Queries", "schema_problem"]

_RECORD_CHANGE = """
WITH change AS (
    INSERT INTO {schema}.changes (change_id, entity_key, kind, entity_id, op, actor, run_id,
                                  prev, next, delta, changed_fields, occurred_at, xid)
    VALUES (%(change_id)s::uuid, %(key)s::uuid, %(kind)s::text, %(entity_id)s::text,
            %(op)s::text, %(actor)s::jsonb, %(run_id)s::text, %(prev)s::jsonb,
            %(next)s::jsonb, %(delta)s::jsonb, %(changed_fields)s::text[], %(at)s::timestamptz,
            GREATEST(pg_current_xact_id(),
                     (SELECT p.xid FROM {schema}.changes AS p
                       WHERE p.entity_key = %(key)s::uuid
                       ORDER BY p.position DESC LIMIT 1)))
    RETURNING occurred_at
)
"""

_INSERT_ROWS = """INSERT INTO {schema}.transitions (change_id, entity_key, kind, entity_id, field,
                                  from_value, to_value, masked, transitioned_at)
SELECT %(change_id)s::uuid, %(key)s::uuid, %(kind)s::text, %(entity_id)s::text,
       r.field, r.from_value::jsonb, r.to_value::jsonb, r.masked, change.occurred_at
  FROM change,
       unnest(%(fields)s::text[], %(from_values)s::text[], %(to_values)s::text[],
              %(masked)s::boolean[]) WITH ORDINALITY AS r(field, from_value, to_value,
                                                          masked, n)
 ORDER BY r.n"""

_RECORD = _RECORD_CHANGE + _INSERT_ROWS

# The last change of a commit also wakes feed readers everywhere (NOTIFY, sent at
# commit): one statement fewer per write than a separate ``SELECT pg_notify``.
_RECORD_AND_NOTIFY = (
    _RECORD_CHANGE.rstrip() + ",\nrows AS (\n" + _INSERT_ROWS + "\n RETURNING 1\n)\n"
    "SELECT pg_notify(%(channel)s, '')"
)


# Waiting for an entity's advisory lock is bounded by the store's lock timeout (the
# transaction's own setting — the application's, on a joined connection — is put back),
# and the entity's stamp is read after the lock: one call of migration 0004's function.
# The stamp is the clock's now (the database's, or the injected one), raised to the
# entity's previous stamp if the clock stepped back; ``lock_key`` NULL reads it alone
# (``locking=False``).
_LOCK = "SELECT {schema}.lock_entity({lock_key}, {timeout}, {key}::uuid, {at}::timestamptz)"

# Which of a transaction's change ids were committed (after a connection lost at COMMIT).
_RECORDED = "SELECT change_id::text FROM {schema}.changes WHERE change_id = ANY(%s::uuid[])"

_ROW_COLUMNS = "field, from_value::text, to_value::text, masked, change_id::text, transitioned_at"

_LATEST_TRANSITION = f"""
SELECT {_ROW_COLUMNS} FROM (
    SELECT kind, entity_id, {_ROW_COLUMNS.replace("::text", "")}
      FROM {{schema}}.transitions
     WHERE entity_key = %s::uuid AND field = %s
       AND transitioned_at <= COALESCE(%s::timestamptz, 'infinity')
     ORDER BY transitioned_at DESC, id DESC
     LIMIT 1
) AS newest
WHERE kind = %s AND entity_id = %s
"""

_LATEST_CHANGE = """
SELECT op, change_id::text, occurred_at, changed_fields, actor::text, run_id FROM (
    SELECT kind, entity_id, op, change_id, occurred_at, changed_fields, actor, run_id
      FROM {schema}.changes
     WHERE entity_key = %s::uuid
       AND occurred_at <= COALESCE(%s::timestamptz, 'infinity')
     ORDER BY occurred_at DESC, position DESC
     LIMIT 1
) AS newest
WHERE kind = %s AND entity_id = %s
"""

# The window's end is the given ``until`` or the database's now. ``statement_timestamp()``
# is stable within the statement, so both bounds are index conditions.
_COUNT_TRANSITIONS = """
SELECT count(*)
  FROM {schema}.transitions
 WHERE entity_key = %(key)s::uuid AND field = %(field)s
   AND transitioned_at <= COALESCE(%(until)s::timestamptz, statement_timestamp())
   AND transitioned_at >= COALESCE(
           %(since)s::timestamptz,
           COALESCE(%(until)s::timestamptz, statement_timestamp()) - %(window)s::interval)
   AND kind = %(kind)s AND entity_id = %(entity_id)s
"""

# Newest ``limit`` rows (LIMIT NULL means all), returned oldest first.
_FIELD_TRANSITIONS = f"""
SELECT {_ROW_COLUMNS} FROM (
    SELECT id, kind, entity_id, {_ROW_COLUMNS.replace("::text", "")}
      FROM {{schema}}.transitions
     WHERE entity_key = %s::uuid AND field = %s
       AND transitioned_at >= COALESCE(%s::timestamptz, '-infinity')
     ORDER BY transitioned_at DESC, id DESC
     LIMIT %s
) AS newest
WHERE kind = %s AND entity_id = %s
ORDER BY transitioned_at, id
"""

_ENTITY_TRANSITIONS = f"""
SELECT {_ROW_COLUMNS} FROM (
    SELECT id, kind, entity_id, {_ROW_COLUMNS.replace("::text", "")}
      FROM {{schema}}.transitions
     WHERE entity_key = %s::uuid
       AND transitioned_at >= COALESCE(%s::timestamptz, '-infinity')
     ORDER BY transitioned_at DESC, id DESC
     LIMIT %s
) AS newest
WHERE kind = %s AND entity_id = %s
ORDER BY transitioned_at, id
"""

_NOW = "SELECT clock_timestamp()"


def schema_problem(schema: object) -> str | None:
    """Why ``schema`` cannot name the library's schema, or None.

    >>> schema_problem("reactive_entities") is None
    True
    >>> schema_problem("")
    'must be a non-empty str'
    """
    if not isinstance(schema, str) or not schema:
        return "must be a non-empty str"
    if "\x00" in schema:
        return "must not contain NUL"
    if len(schema.encode("utf-8", "surrogatepass")) > 63:
        return "must be at most 63 bytes long (PostgreSQL's identifier limit)"
    return None


def _render(template: str, schema: str) -> bytes:
    # Identifier quoting needs no connection: it doubles double quotes.
    composed = sql.SQL(template).format(schema=sql.Identifier(schema))
    return composed.as_bytes(None)


@attrs.frozen
class Queries:
    """The store's statements for one schema, as bytes ready to execute."""

    record: bytes
    record_and_notify: bytes
    lock: str
    recorded: bytes
    latest_transition: bytes
    latest_change: bytes
    count_transitions: bytes
    field_transitions: bytes
    entity_transitions: bytes
    now: bytes

    @classmethod
    def for_schema(cls, schema: str) -> Queries:
        """Compose every statement for ``schema``."""
        return cls(
            record=_render(_RECORD, schema),
            record_and_notify=_render(_RECORD_AND_NOTIFY, schema),
            # Filled per entity with literals the store computes (a key, a timestamp):
            # they go out after BEGIN in one multi-statement round trip, which cannot
            # carry parameters (``stamp`` alone when locking is off). The schema is
            # quoted here, as everywhere.
            lock=_render(
                _LOCK.replace("{lock_key}", "{{lock_key}}")
                .replace("{timeout}", "{{timeout}}")
                .replace("{key}", "{{key}}")
                .replace("{at}", "{{at}}"),
                schema,
            ).decode(),
            recorded=_render(_RECORDED, schema),
            latest_transition=_render(_LATEST_TRANSITION, schema),
            latest_change=_render(_LATEST_CHANGE, schema),
            count_transitions=_render(_COUNT_TRANSITIONS, schema),
            field_transitions=_render(_FIELD_TRANSITIONS, schema),
            entity_transitions=_render(_ENTITY_TRANSITIONS, schema),
            now=_NOW.encode(),
        )
