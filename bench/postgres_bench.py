"""PostgreSQL scenarios of BENCHMARKS.md §3.7 and query latency of §3.8.

    run(quick, rounds, dsn, only) -> {"report": {"postgres": ..., "queries": ...},
                                      "problems": [...]}

Without ``dsn`` a throwaway server is started (like the test suite does; the full run
gives it ``shared_buffers = 1GB`` so every table of the query section stays in shared
buffers) and removed afterwards. With ``dsn`` the bench uses that database as configured:
it drops and recreates the tables ``it_entities`` and ``entity_transitions`` in the
``public`` schema and the schemas ``re_bench``, ``ref_q<rows>`` and ``re_q<rows>``, and
drops them again at the end.

Mutate scenarios (IDS = 500, N = 5,000; client 0 for the 1-client ones):

* (a) ``handle.mutate``, per-entity locking on; ``apply`` is the plugin's upsert, its
  ``RETURNING`` row mapped back to ``It``; ``read`` is the plugin's ``SELECT … = ANY``.
* (b) the same from 8 threads; client w takes the mutations with ``k % 8 == w``.
* (d1) the bare upsert, autocommit.
* (d2) on one pooled connection: ``BEGIN``; upsert; 2-row insert into
  ``entity_transitions``; ``COMMIT``.
* (y) the library's SQL sequence by hand: read; upsert (autocommit); ``BEGIN``; 2-row
  insert; ``COMMIT`` (the insert's transaction on a pooled connection).
* (y_pipelined, extra) (y) with ``BEGIN``, insert and ``COMMIT`` sent as one pipeline:
  the fewest round trips that sequence can take (3, against the library's 4).
* (x, extra) (d2) from 8 threads.
* (ya, extra) the library's own statements for (a), sent by hand with none of its write
  path in between (arrays in the store's literal form, ``codec.text_array``): on a pooled
  connection ``BEGIN`` + the schema's ``lock_entity`` (one round trip); the plugin's read
  and upsert on its connection; the change, its rows and the ``NOTIFY`` in one statement
  pipelined with ``COMMIT``. What (a) costs the server and the
  wire; (a) over (ya) is the library's own share (plus the few µs the library's scenarios
  spend mapping the plugin's rows to ``It``, which (ya) skips).

Round-2 scenarios (BENCHMARKS.md §4), on a second engine over the same schema whose kind
``it`` has ``read(ids, connection)``: the plugin's ``SELECT`` on the connection it is
given (``tx.connection`` inside a transaction).

* (t) ``with engine.transaction() as tx: handle.mutate(eid, apply, tx=tx)``; ``apply``
  runs the plugin's upsert on ``tx.connection``, inside the transaction.
* (t8) (t) from 8 threads, shared out as in (b).
* (t100) one transaction of 100 mutates over 100 distinct entities (100 consecutive
  mutations of the plan), repeated; (t1x100) the same batches, one transaction per
  mutate. Their latency samples are one per batch: its time over its 100 mutates.
* (yt, extra) (t)'s statements by hand, as (ya) but the read and upsert on the pooled
  connection inside the transaction; (yt8) it from 8 threads, shared out as in (b).

Every plugin connection and the baselines' pool are autocommit and use prepared
statements, like the library. Every timed run starts from the same reset (untimed).

Query latency (§3.8) at 10 k, 100 k and 1 M transition rows over 10,000 ids: each size is
loaded up front into its own schemas and the queries rotate over every (size, method)
pair id by id; see the section's comment.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from stats import latency_summary, median_range
from workload import FIELDS, KIND, SEVERITIES, STATUSES, It, entity_id, initial, mutations

from reactive_entities import ChangeEvent, compose
from reactive_entities.adapters.postgres.codec import bool_array, text_array
from reactive_entities.adapters.postgres.connections import open_pool
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.adapters.postgres.queries import Queries
from reactive_entities.engine import Engine, EntityHandle
from reactive_entities.testing.postgres_server import PostgresServer
from reactive_entities.transaction import Transaction

IDS = 500
N = 5_000
CLIENTS = 8
SCHEMA = "re_bench"
QUERY_IDS = 10_000
QUERY_SAMPLES = 2_000
QUERY_WARMUP = 200
QUERY_SIZES = (10_000, 100_000, 1_000_000)
WINDOW = timedelta(minutes=30)
TARGET_FACTOR = 1.5
FLOOR_TARGET = 1.25
#: Round 2 (§4): time per op of (t) over (y)'s, and (t100) ops/s over (t1x100)'s.
TX_FLOOR_TARGET = 1.0
BATCH_TARGET = 4.0
BATCH = 100
QUERY_TARGET = 1.2
FLAT_TARGET = 0.20

#: Reference figures of BENCHMARKS.md §1 (ops/s ranges).
REFERENCE = {
    "a": (456.0, 503.0),
    "b": (618.0, 1_012.0),
    "d1": (1_565.0, 1_687.0),
    "d2": (872.0, 926.0),
}
#: Reference query latencies at 1 M rows: (median range, p99 range) in µs.
QUERY_REFERENCE = {
    "in_state_since": ((746.0, 924.0), (3_200.0, 5_400.0)),
    "transition_count": ((378.0, 498.0), (3_000.0, 3_500.0)),
}
RAW_REFERENCE_MEDIAN = (210.0, 330.0)

SCENARIOS = (
    "a",
    "d1",
    "d2",
    "y",
    "y_pipelined",
    "ya",
    "t",
    "yt",
    "t1x100",
    "t100",
    "b",
    "x",
    "t8",
    "yt8",
)
SCENARIO_TEXT = {
    "a": "library `mutate`, 1 client, locking on",
    "d1": "bare upsert, autocommit",
    "d2": "upsert + 2-row insert, one transaction",
    "y": "hand-written floor: read; upsert; begin; insert; commit",
    "y_pipelined": "(y) with begin/insert/commit pipelined",
    "t": "`mutate` in `engine.transaction()`, read + upsert on `tx.connection`",
    "t1x100": "(t) in batches of 100, one transaction per mutate",
    "t100": "(t) in batches of 100, one transaction per batch",
    "b": "library `mutate`, 8 clients",
    "x": "(d2), 8 clients",
    "t8": "(t), 8 clients",
    "ya": "(a)'s statements sent by hand, no write path",
    "yt": "(t)'s statements sent by hand, no write path",
    "yt8": "(yt), 8 clients",
}
CLIENT_COUNT = {name: CLIENTS if name in ("b", "x", "t8", "yt8") else 1 for name in SCENARIOS}
#: The library's scenarios: they record 2 transition rows and 1 event per mutate.
LIBRARY = frozenset({"a", "b", "t", "t8", "t1x100", "t100"})
#: The library's statements sent by hand: its rows, no events.
BY_HAND = frozenset({"ya", "yt", "yt8"})
#: Those whose plugin upsert commits with the library's change rows (``tx.connection``).
TRANSACTIONAL = frozenset({"t", "t8", "t1x100", "t100", "yt", "yt8"})
#: Scenarios timed batch by batch (``BATCH`` mutations per batch).
BATCHED = frozenset({"t1x100", "t100"})
#: The reference figure each scenario is compared with (§4: the transactional mutate
#: against the reference's mutate); a target of 1.5× its top where marked.
REFERENCE_OF = {"a": "a", "b": "b", "d1": "d1", "d2": "d2", "t": "a", "t8": "b"}
TARGETED = frozenset({"a", "b", "t", "t8"})

# -- the plugin's SQL and the reference's tables (§3.7) --------------------------------

_COLUMNS = ", ".join(FIELDS)

REFERENCE_TABLE = """
CREATE TABLE entity_transitions (
    id               text PRIMARY KEY,
    kind             text NOT NULL,
    entity_id        text NOT NULL,
    field            text NOT NULL,
    from_value       text,
    to_value         text NOT NULL,
    transitioned_at  timestamp DEFAULT now() NOT NULL
);
CREATE INDEX entity_transitions_lookup_idx
    ON entity_transitions (kind, entity_id, field, transitioned_at);
"""

PLUGIN_TABLE = """
CREATE TABLE it_entities (
    id              text PRIMARY KEY,
    status          text NOT NULL,
    severity        text NOT NULL,
    title           text NOT NULL,
    summary         text NOT NULL,
    owner           text NOT NULL,
    impact_score    double precision NOT NULL,
    affected_count  integer NOT NULL,
    acknowledged    boolean NOT NULL,
    tags            jsonb NOT NULL,
    meta            jsonb NOT NULL,
    updated_at      timestamp DEFAULT now() NOT NULL
);
"""

CREATE_TABLES = (
    "DROP TABLE IF EXISTS public.it_entities, public.entity_transitions;\n"
    "SET search_path TO public;\n" + REFERENCE_TABLE + PLUGIN_TABLE + "RESET search_path;"
)

#: The throwaway server's settings for the full run: every table of the query section
#: (≈ 410 MB at 1 M rows) fits in shared buffers, as in the reference's measurement
#: (buffer hits only). The quick run keeps the defaults.
FULL_RUN_SERVER = {"shared_buffers": "1GB"}

READ = f"SELECT id, {_COLUMNS} FROM it_entities WHERE id = ANY(%s::text[])".encode()

_VALUES = "%s, %s, %s, %s, %s, %s, %s::float8, %s::int4, %s, %s::jsonb, %s::jsonb"
UPSERT = (
    f"INSERT INTO it_entities (id, {_COLUMNS}, updated_at) VALUES ({_VALUES}, now()) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in FIELDS)
    + f", updated_at = now() RETURNING id, {_COLUMNS}"
).encode()

INSERT_TRANSITIONS = (
    b"INSERT INTO entity_transitions "
    b"(id, kind, entity_id, field, from_value, to_value, transitioned_at) VALUES "
    b"(%s, %s, %s, %s, %s, %s, DEFAULT), (%s, %s, %s, %s, %s, %s, DEFAULT)"
)

# The reference's two queries (§3.8), on its table.
REF_IN_STATE_SINCE = (
    b"SELECT transitioned_at FROM entity_transitions "
    b"WHERE kind = %s AND entity_id = %s AND field = %s AND to_value = %s "
    b"ORDER BY transitioned_at DESC LIMIT 1"
)
REF_COUNT = (
    b"SELECT count(*) FROM entity_transitions "
    b"WHERE kind = %s AND entity_id = %s AND field = %s AND transitioned_at >= %s"
)

_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _row_params(eid: str, s: dict[str, Any]) -> tuple[Any, ...]:
    return (
        eid,
        s["status"],
        s["severity"],
        s["title"],
        s["summary"],
        s["owner"],
        s["impact_score"],
        s["affected_count"],
        s["acknowledged"],
        Jsonb(s["tags"]),
        Jsonb(s["meta"]),
    )


def _text(value: Any) -> str:
    """The reference's text serialization: strings raw, null as ``null``, else JSON."""
    return value if type(value) is str else _compact(value)


def _transition_params(eid: str, prev: dict[str, Any], changes: dict[str, Any]) -> list[Any]:
    params: list[Any] = []
    for field in sorted(changes):
        params += (str(uuid.uuid4()), KIND, eid, field, _text(prev[field]), _text(changes[field]))
    return params


def read_on(ids: Sequence[str], connection: psycopg.Connection[Any]) -> dict[str, It]:
    """``read(ids, connection)``: the plugin's ``SELECT`` on the connection given (the
    transaction's inside one), the rows mapped to ``It``."""
    rows = connection.execute(READ, (list(ids),), prepare=True).fetchall()
    return {row[0]: It(*row[1:]) for row in rows}


def upsert_on(connection: psycopg.Connection[Any], eid: str, state: dict[str, Any]) -> It:
    """The plugin's upsert on ``connection`` (``tx.connection``: not autocommit, inside
    the transaction); the returned row mapped back to ``It``."""
    row = connection.execute(UPSERT, _row_params(eid, state), prepare=True).fetchone()
    assert row is not None
    return It(*row[1:])


class Plugin:
    """The benchmark plugin on one autocommit connection: its read and its upsert."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def read(self, ids: Sequence[str]) -> dict[str, It]:
        """``read(ids)``: the rows present, mapped to ``It``."""
        rows = self.conn.execute(READ, (list(ids),), prepare=True).fetchall()
        return {row[0]: It(*row[1:]) for row in rows}

    def read_rows(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """The same ``SELECT``, rows left as they come (the baselines)."""
        return self.conn.execute(READ, (list(ids),), prepare=True).fetchall()

    def upsert(self, eid: str, state: dict[str, Any]) -> It:
        """The upsert; the returned row mapped back to ``It``."""
        row = self.conn.execute(UPSERT, _row_params(eid, state), prepare=True).fetchone()
        assert row is not None
        return It(*row[1:])

    def upsert_row(self, eid: str, state: dict[str, Any]) -> tuple[Any, ...] | None:
        """The same upsert, its row left as it comes (the baselines)."""
        return self.conn.execute(UPSERT, _row_params(eid, state), prepare=True).fetchone()


@attrs.define
class PgRun:
    """One timed run: ops, wall seconds, per-op latencies (µs) and counts to check."""

    ops: int
    seconds: float
    latencies_us: list[float]
    counts: dict[str, Any]

    @property
    def ops_per_s(self) -> float:
        """Throughput."""
        return self.ops / self.seconds


Op = tuple[str, dict[str, Any]]
Step = Callable[[str, dict[str, Any]], object]
BatchStep = Callable[[Sequence[Op]], object]


class Bench:
    """The fixture: tables, the library's engine, plugin connections and the baselines'
    pool, all made once; :meth:`reset` before every timed run."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.admin = psycopg.connect(dsn, autocommit=True)
        self.admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
        )
        self.admin.execute(CREATE_TABLES.encode())
        self.engine: Engine = compose.postgres(dsn, schema=SCHEMA, pool_size=CLIENTS + 2)
        self.events: list[None] = []
        self.engine.subscribe(self._on_event)
        self.plugins = [Plugin(self._connect()) for _ in range(CLIENTS)]
        self._local = threading.local()
        self.handle: EntityHandle[It] = self.engine.define_entity(KIND, It, read=self._read)
        # The round-2 scenarios' engine: same schema, kind ``it`` with a read that takes
        # the connection (one engine cannot define a kind twice).
        self.tx_engine: Engine = compose.postgres(
            dsn, schema=SCHEMA, pool_size=CLIENTS + 2, migrate=False
        )
        self.tx_engine.subscribe(self._on_event)
        self.tx_handle: EntityHandle[It] = self.tx_engine.define_entity(KIND, It, read=read_on)
        self.pool = ConnectionPool(
            dsn,
            min_size=CLIENTS,
            max_size=CLIENTS,
            kwargs={"autocommit": True},
            configure=_utc,
            name="bench-baselines",
            open=True,
        )
        self.pool.wait()
        self.current: dict[str, dict[str, Any]] = {}
        self.queries = Queries.for_schema(SCHEMA)
        self.keys = EntityKeys(SCHEMA)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True)
        _utc(conn)
        return conn

    def _on_event(self, event: ChangeEvent) -> None:
        self.events.append(None)  # list.append is atomic: safe from 8 threads

    def _read(self, ids: Sequence[str]) -> dict[str, It]:
        plugin: Plugin = getattr(self._local, "plugin", None) or self.plugins[0]
        return plugin.read(ids)

    def use_plugin(self, w: int) -> Plugin:
        """Make client ``w``'s plugin connection the one ``read`` uses in this thread."""
        plugin = self.plugins[w]
        self._local.plugin = plugin
        return plugin

    def close(self) -> None:
        """Close every connection and the engines; drop what the bench created."""
        self.tx_engine.close()
        self.engine.close()
        self.pool.close()
        for plugin in self.plugins:
            plugin.conn.close()
        self.admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
        )
        self.admin.execute(b"DROP TABLE IF EXISTS it_entities, entity_transitions")
        self.admin.close()

    # -- resets and counts ---------------------------------------------------------------

    def truncate(self) -> None:
        """Empty the plugin's, the reference's and the library's tables."""
        self.admin.execute(
            sql.SQL("TRUNCATE it_entities, entity_transitions, {}, {}").format(
                sql.Identifier(SCHEMA, "changes"), sql.Identifier(SCHEMA, "transitions")
            )
        )

    def seed(self, ids: int) -> None:
        """``initial(k)`` for ``ids`` entities: one multi-row INSERT per 1,000 rows."""
        for start in range(0, ids, 1_000):
            chunk = range(start, min(ids, start + 1_000))
            values = ", ".join(f"({_VALUES}, now())" for _ in chunk)
            params: list[Any] = []
            for k in chunk:
                params += _row_params(entity_id(k), initial(k))
            self.admin.execute(
                f"INSERT INTO it_entities (id, {_COLUMNS}, updated_at) VALUES {values}".encode(),
                params,
            )

    def reset(self) -> None:
        """§3.7's reset: truncate, seed 500 rows, checkpoint; the mirror back to initial."""
        self.truncate()
        self.seed(IDS)
        self.admin.execute(b"CHECKPOINT")
        self.current = {entity_id(k): initial(k) for k in range(IDS)}
        self.events.clear()

    def count(self, table: sql.Composable) -> int:
        """``count(*)`` of a table."""
        row = self.admin.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        return int(row[0]) if row else -1

    def counts(self) -> dict[str, int]:
        """Rows in every table, events emitted, and rows equal to the mirror."""
        rows = self.admin.execute(f"SELECT id, {_COLUMNS} FROM it_entities".encode()).fetchall()
        matching = sum(
            1 for row in rows if dict(zip(FIELDS, row[1:], strict=True)) == self.current[row[0]]
        )
        # Plugin rows written by the transaction that recorded the entity's last change
        # (same xmin): every touched entity in the transactional scenarios, none else.
        together = self.admin.execute(
            sql.SQL(
                "SELECT count(*) FROM it_entities AS e JOIN ("
                "SELECT DISTINCT ON (entity_id) entity_id, xmin AS x FROM {} "
                "WHERE kind = %s ORDER BY entity_id, position DESC"
                ") AS c ON c.entity_id = e.id WHERE e.xmin = c.x"
            ).format(sql.Identifier(SCHEMA, "changes")),
            (KIND,),
        ).fetchone()
        return {
            "changes": self.count(sql.Identifier(SCHEMA, "changes")),
            "transitions": self.count(sql.Identifier(SCHEMA, "transitions")),
            "entity_transitions": self.count(sql.Identifier("entity_transitions")),
            "it_entities": len(rows),
            "rows_matching_mirror": matching,
            "events": len(self.events),
            "rows_committed_with_change": int(together[0]) if together else -1,
        }

    # -- the scenarios' steps (one per client, built in the client's thread) -------------

    def step(self, scenario: str, w: int) -> Step:
        """The per-mutation work of ``scenario`` for client ``w``."""
        plugin = self.use_plugin(w)
        current = self.current
        if scenario in ("a", "b"):
            mutate = self.handle.mutate
            upsert = plugin.upsert

            def library(eid: str, changes: dict[str, Any]) -> object:
                def apply() -> It:
                    nxt = {**current[eid], **changes}
                    current[eid] = nxt
                    return upsert(eid, nxt)

                return mutate(eid, apply)

            return library
        if scenario in ("t", "t8"):
            transactional = self._transactional_mutate()
            begin = self.tx_engine.transaction

            def in_transaction(eid: str, changes: dict[str, Any]) -> object:
                with begin() as tx:
                    return transactional(eid, changes, tx)

            return in_transaction
        if scenario in BY_HAND:
            return self._by_hand(plugin, inside=scenario != "ya")
        upsert_row = plugin.upsert_row
        if scenario == "d1":

            def bare(eid: str, changes: dict[str, Any]) -> object:
                nxt = {**current[eid], **changes}
                current[eid] = nxt
                return upsert_row(eid, nxt)

            return bare
        pool = self.pool
        if scenario in ("d2", "x"):

            def one_transaction(eid: str, changes: dict[str, Any]) -> object:
                prev = current[eid]
                nxt = {**prev, **changes}
                current[eid] = nxt
                with pool.connection() as conn, conn.transaction():
                    row = conn.execute(UPSERT, _row_params(eid, nxt), prepare=True).fetchone()
                    conn.execute(
                        INSERT_TRANSITIONS, _transition_params(eid, prev, changes), prepare=True
                    )
                return row

            return one_transaction
        read_rows = plugin.read_rows
        if scenario == "y":

            def floor(eid: str, changes: dict[str, Any]) -> object:
                read_rows([eid])
                prev = current[eid]
                nxt = {**prev, **changes}
                current[eid] = nxt
                row = upsert_row(eid, nxt)
                with pool.connection() as conn, conn.transaction():
                    conn.execute(
                        INSERT_TRANSITIONS, _transition_params(eid, prev, changes), prepare=True
                    )
                return row

            return floor
        if scenario == "y_pipelined":

            def floor_pipelined(eid: str, changes: dict[str, Any]) -> object:
                read_rows([eid])
                prev = current[eid]
                nxt = {**prev, **changes}
                current[eid] = nxt
                row = upsert_row(eid, nxt)
                with pool.connection() as conn, conn.pipeline():
                    conn.execute(_BEGIN)
                    conn.execute(
                        INSERT_TRANSITIONS, _transition_params(eid, prev, changes), prepare=True
                    )
                    conn.execute(_COMMIT)
                return row

            return floor_pipelined
        raise ValueError(f"unknown scenario {scenario!r}")

    def _transactional_mutate(self) -> Callable[[str, dict[str, Any], Transaction], It]:
        """``tx_handle.mutate(eid, apply, tx=tx)``, ``apply`` upserting on
        ``tx.connection`` (read there, lazily: the library sends ``BEGIN`` with its lock)."""
        mutate = self.tx_handle.mutate
        current = self.current

        def transactional(eid: str, changes: dict[str, Any], tx: Transaction) -> It:
            def apply() -> It:
                nxt = {**current[eid], **changes}
                current[eid] = nxt
                return upsert_on(tx.connection, eid, nxt)

            return mutate(eid, apply, tx=tx)

        return transactional

    def _by_hand(self, plugin: Plugin, *, inside: bool) -> Step:
        """(ya) or, ``inside`` the transaction, (yt): the statements the library sends for
        one mutate, built here from the same workload values (arrays in the store's own
        literal form) with none of the library's write path."""
        queries = self.queries
        keys = self.keys
        channel = self.engine.store.channel  # type: ignore[attr-defined]
        current = self.current
        actor = _compact({"id": "system", "name": "System", "type": "system"})
        pool = self.pool

        def by_hand(eid: str, changes: dict[str, Any]) -> object:
            key = keys.entity_key(KIND, eid)
            lock = queries.lock.format(
                lock_key=keys.lock_key(KIND, eid), timeout="'30000ms'", key=f"'{key}'", at="NULL"
            )
            with pool.connection() as conn:
                cursor = conn.execute(b"BEGIN;\n" + lock.encode())
                while cursor.nextset():
                    pass
                stamped = cursor.fetchone()
                on = conn if inside else plugin.conn
                on.execute(READ, ([eid],), prepare=True).fetchall()
                prev = current[eid]
                nxt = {**prev, **changes}
                current[eid] = nxt
                row = on.execute(UPSERT, _row_params(eid, nxt), prepare=True).fetchone()
                fields = sorted(changes)
                params = {
                    "at": stamped[0] if stamped else None,
                    "key": key,
                    "change_id": str(uuid.uuid4()),
                    "kind": KIND,
                    "entity_id": eid,
                    "op": "update",
                    "actor": actor,
                    "run_id": None,
                    "prev": _compact(prev),
                    "next": _compact(nxt),
                    "delta": _compact(changes),
                    "changed_fields": text_array(fields),
                    "fields": text_array(fields),
                    "from_values": text_array([_compact(prev[f]) for f in fields]),
                    "to_values": text_array([_compact(nxt[f]) for f in fields]),
                    "masked": bool_array([False] * len(fields)),
                    "channel": channel,
                }
                with conn.pipeline():
                    conn.execute(queries.record_and_notify, params, prepare=True)
                    conn.execute(_COMMIT)
            return row

        return by_hand

    def batch_step(self, scenario: str) -> BatchStep:
        """The per-batch work of (t100) (one transaction) or (t1x100) (one per mutate)."""
        transactional = self._transactional_mutate()
        begin = self.tx_engine.transaction
        if scenario == "t100":

            def together(ops: Sequence[Op]) -> object:
                with begin() as tx:
                    for eid, changes in ops:
                        transactional(eid, changes, tx)
                return None

            return together
        if scenario == "t1x100":

            def apart(ops: Sequence[Op]) -> object:
                for eid, changes in ops:
                    with begin() as tx:
                        transactional(eid, changes, tx)
                return None

            return apart
        raise ValueError(f"unknown batched scenario {scenario!r}")

    def run(self, scenario: str, plan: list[tuple[str, dict[str, Any]]]) -> PgRun:
        """Reset, then time ``scenario`` over ``plan`` with its number of clients."""
        self.reset()
        clients = CLIENT_COUNT[scenario]
        shares: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in range(clients)]
        for eid, changes in plan:
            shares[int(eid[3:]) % clients].append((eid, changes))
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors: list[BaseException] = []
        gc.collect()
        if scenario in BATCHED:
            batches = _batches(plan)
            batch_step = self.batch_step(scenario)
            self.use_plugin(0)
            started = time.perf_counter()
            _batch_loop(batch_step, batches, latencies[0])
            seconds = time.perf_counter() - started
        elif clients == 1:
            step = self.step(scenario, 0)
            started = time.perf_counter()
            _client_loop(step, shares[0], latencies[0])
            seconds = time.perf_counter() - started
        else:
            barrier = threading.Barrier(clients + 1)

            def client(w: int) -> None:
                try:
                    step = self.step(scenario, w)
                    barrier.wait()
                    _client_loop(step, shares[w], latencies[w])
                except BaseException as error:
                    errors.append(error)
                    barrier.abort()

            threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
            for thread in threads:
                thread.start()
            with suppress(threading.BrokenBarrierError):
                barrier.wait()
            started = time.perf_counter()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            if errors:
                raise errors[0]
            self.use_plugin(0)
        merged = [us for client_latencies in latencies for us in client_latencies]
        return PgRun(len(plan), seconds, merged, self.counts())


def _client_loop(step: Step, ops: list[tuple[str, dict[str, Any]]], out: list[float]) -> None:
    clock = time.perf_counter
    append = out.append
    for eid, changes in ops:
        started = clock()
        step(eid, changes)
        append((clock() - started) * 1e6)


def _batches(plan: Sequence[Op]) -> list[Sequence[Op]]:
    """``plan`` cut into runs of ``BATCH`` consecutive mutations, each over distinct
    entities (§3.5's order guarantees it when ``BATCH`` divides IDS)."""
    batches = [plan[i : i + BATCH] for i in range(0, len(plan), BATCH)]
    for batch in batches:
        if len({eid for eid, _ in batch}) != len(batch):
            raise ValueError(f"a batch of {len(batch)} mutations repeats an entity")
    return batches


def _batch_loop(step: BatchStep, batches: list[Sequence[Op]], out: list[float]) -> None:
    """One latency sample per batch: its time over its number of mutations."""
    clock = time.perf_counter
    append = out.append
    for batch in batches:
        started = clock()
        step(batch)
        append((clock() - started) * 1e6 / len(batch))


def _utc(conn: psycopg.Connection[Any]) -> None:
    # The library's own connection setting, so raw and library sessions match.
    conn.execute("SET TimeZone TO 'UTC'")


# -- §3.7: the mutate rounds ------------------------------------------------------------


def postgres_section(bench: Bench, quick: bool, rounds: int) -> tuple[dict[str, Any], list[str]]:
    """Warm-up round, then ``rounds`` interleaved rounds of every scenario."""
    n = 200 if quick else N
    plan = mutations(n, IDS)
    if not quick:
        print("  warm-up round", flush=True)
        for name in SCENARIOS:
            bench.run(name, plan)
    results: dict[str, list[PgRun]] = {name: [] for name in SCENARIOS}
    for r in range(1 if quick else rounds):
        for name in SCENARIOS:
            run = bench.run(name, plan)
            results[name].append(run)
            print(
                f"  round {r + 1} {name}: {run.ops_per_s:,.0f} ops/s, "
                f"p50 {latency_summary(run.latencies_us)['p50_us']:,.0f} µs",
                flush=True,
            )
    section: dict[str, Any] = {"ids": IDS, "n_mutations": n, "clients": CLIENTS, "scenarios": {}}
    for name, runs in results.items():
        ops = median_range([r.ops_per_s for r in runs])
        entry: dict[str, Any] = {
            "what": SCENARIO_TEXT[name],
            "clients": CLIENT_COUNT[name],
            "ops_per_s": ops,
            "us_per_op": median_range([1e6 / r.ops_per_s for r in runs]),
            "latency": latency_summary([us for r in runs for us in r.latencies_us]),
            "counts": runs[-1].counts,
        }
        if name in REFERENCE_OF:
            reference = REFERENCE_OF[name]
            low, high = REFERENCE[reference]
            entry["reference"] = reference
            entry["reference_ops_per_s"] = {"min": low, "max": high}
            entry["ratio_vs_reference_mid"] = ops["median"] / ((low + high) / 2)
            if name in TARGETED:
                entry["target_ops_per_s"] = TARGET_FACTOR * high
                entry["meets_target"] = ops["median"] >= TARGET_FACTOR * high
        section["scenarios"][name] = entry
    # Time per op of a scenario over a floor's (= the floor's ops/s over its), and
    # (t100)'s ops/s over (t1x100)'s, round by round (the rounds share noise).
    for name, floor in (
        ("a", "y"),
        ("a", "y_pipelined"),
        ("t", "y"),
        ("t", "y_pipelined"),
        ("a", "ya"),
        ("t", "yt"),
        ("ya", "y"),
        ("yt", "y"),
        ("t8", "yt8"),
    ):
        section[f"{name}_over_{floor}"] = _per_round(results[floor], results[name])
    section["t100_over_t1x100"] = _per_round(results["t100"], results["t1x100"])
    for key, target in (("a_over_y", FLOOR_TARGET), ("t_over_y", TX_FLOOR_TARGET)):
        section[key]["target"] = target
        section[key]["meets_target"] = section[key]["median"] <= target
    batch = section["t100_over_t1x100"]
    batch["target"] = BATCH_TARGET
    batch["meets_target"] = batch["median"] >= BATCH_TARGET
    section["markdown"] = postgres_markdown(section)
    return section, check_postgres_counts(section)


def _per_round(numerators: list[PgRun], denominators: list[PgRun]) -> dict[str, float]:
    """Median (min–max) over the rounds of one ops/s over another's."""
    return median_range(
        [n.ops_per_s / d.ops_per_s for n, d in zip(numerators, denominators, strict=True)]
    )


def check_postgres_counts(section: dict[str, Any]) -> list[str]:
    """Rows and events every scenario must leave behind: the library's (round 1's and
    the transactional ones) 1 change, 2 transition rows and 1 event per mutate; in the
    transactional ones, every touched plugin row committed with its last change."""
    n = section["n_mutations"]
    ids = section["ids"]
    problems = []
    for name, entry in section["scenarios"].items():
        library = name in LIBRARY
        logged = library or name in BY_HAND
        expect = {
            "it_entities": ids,
            "rows_matching_mirror": ids,
            "changes": n if logged else 0,
            "transitions": 2 * n if logged else 0,
            "events": n if library else 0,
            "entity_transitions": 0 if logged or name == "d1" else 2 * n,
            "rows_committed_with_change": min(n, ids) if name in TRANSACTIONAL else 0,
        }
        for key, want in expect.items():
            got = entry["counts"].get(key)
            if got != want:
                problems.append(f"postgres ({name}) {key}: expected {want}, got {got}")
    return problems


def postgres_markdown(section: dict[str, Any]) -> str:
    """The §3.7 tables."""
    lines = [
        f"## PostgreSQL mutate (IDS = {section['ids']}, N = {section['n_mutations']:,}; "
        "ops/s median (min–max); latency per op over all rounds)",
        "",
        "| scenario | what | ops/s | µs/op | p50 µs | p99 µs | reference ops/s | ratio | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in section["scenarios"].items():
        ref = e.get("reference_ops_per_s")
        ref_text = f"{ref['min']:,.0f}–{ref['max']:,.0f}" if ref else "–"
        if ref and e["reference"] != name:
            ref_text += f" ({e['reference']})"
        ratio = f"{e['ratio_vs_reference_mid']:.2f}×" if ref else "–"
        target = "–"
        if "meets_target" in e:
            verdict = "met" if e["meets_target"] else "missed"
            target = f"≥ {e['target_ops_per_s']:,.0f}: {verdict}"
        ops = e["ops_per_s"]
        lines.append(
            f"| {name} | {e['what']} | {ops['median']:,.0f} ({ops['min']:,.0f}–{ops['max']:,.0f})"
            f" | {e['us_per_op']['median']:,.0f} | {e['latency']['p50_us']:,.0f}"
            f" | {e['latency']['p99_us']:,.0f} | {ref_text} | {ratio} | {target} |"
        )
    lines.append("")
    for name, text in (("a", "(a) time/op"), ("t", "(t), in a transaction, time/op")):
        y = section[f"{name}_over_y"]
        yp = section[f"{name}_over_y_pipelined"]
        lines += [
            f"{text} over the hand-written floor (y), per round: {_range(y)}; target ≤ "
            f"{y['target']}×: {'met' if y['meets_target'] else 'missed'}. Over "
            f"(y_pipelined), the floor with the fewest round trips: {_range(yp)}.",
        ]
    lines.append(
        "The library's statements by hand, time/op per round: (ya) over (y) "
        f"{_range(section['ya_over_y'])}, (yt) over (y) {_range(section['yt_over_y'])}; "
        "the library's own share, (a) over (ya) "
        f"{_range(section['a_over_ya'])}, (t) over (yt) {_range(section['t_over_yt'])}, "
        f"(t8) over (yt8) {_range(section['t8_over_yt8'])}."
    )
    batch = section["t100_over_t1x100"]
    lines += [
        f"(t100) ops/s over (t1x100), 100 mutates per transaction against one: "
        f"{_range(batch)}; target ≥ {batch['target']}×: "
        f"{'met' if batch['meets_target'] else 'missed'}.",
        "Ratios vs the reference divide our median by the middle of its range; targets are "
        f"{TARGET_FACTOR}× the top of it. (t) and (t8) are compared with the reference's "
        "mutate, (a) and (b).",
    ]
    return "\n".join(lines)


def _range(ratio: dict[str, float]) -> str:
    return f"{ratio['median']:.2f}× ({ratio['min']:.2f}–{ratio['max']:.2f})"


# -- §3.8: query latency ----------------------------------------------------------------
#
# Every size is loaded up front into its own pair of schemas — the reference's table in
# ``ref_q<rows>`` (its SQL finds it through ``search_path``, so the statement text is the
# reference's) and the library's log in ``re_q<rows>`` — and the queries then rotate over
# every (size, method) pair id by id, so that all of them share the machine's noise and
# the flatness ratio compares like with like.

METHODS = ("library", "raw_reference", "raw_library_sql")
KINDS = ("in_state_since", "transition_count")


def _ref_schema(rows: int) -> str:
    return f"ref_q{rows}"


def _lib_schema(rows: int) -> str:
    return f"re_q{rows}"


def _generated_rows(rows: int) -> sql.Composed:
    """The §3.8 rows ``n < rows``: ``k = n % 10,000``, ``j = n / 10,000`` (minutes),
    field, from and to. The newest row of each field holds the current value ('open',
    'sev3') at every size: values count back from the field's last step. At 100 minutes
    this is §3.8's formula exactly (status: (s - 49) % 5 = (s + 1) % 5; severity:
    (s - 47) % 4 = (s + 1) % 4)."""
    minutes = rows // QUERY_IDS
    last_status = (minutes - 1) // 2
    last_severity = max(0, (minutes - 2) // 2)
    return sql.SQL(
        """
        SELECT n % {ids} AS k, j,
               CASE WHEN j % 2 = 0 THEN 'status' ELSE 'severity' END AS field,
               CASE WHEN j % 2 = 0
                    THEN ({statuses}::text[])[((j / 2 - {last_status} - 1) % 5 + 5) % 5 + 1]
                    ELSE ({severities}::text[])[((j / 2 - {last_severity} + 1) % 4 + 4) % 4 + 1]
               END AS from_value,
               CASE WHEN j % 2 = 0
                    THEN ({statuses}::text[])[((j / 2 - {last_status}) % 5 + 5) % 5 + 1]
                    ELSE ({severities}::text[])[((j / 2 - {last_severity} + 2) % 4 + 4) % 4 + 1]
               END AS to_value
          FROM (SELECT n, n / {ids} AS j FROM generate_series(0, {last}) AS n) AS g
        """
    ).format(
        ids=sql.Literal(QUERY_IDS),
        last=sql.Literal(rows - 1),
        statuses=sql.Literal(STATUSES),
        severities=sql.Literal(SEVERITIES),
        last_status=sql.Literal(last_status),
        last_severity=sql.Literal(last_severity),
    )


def _load_transitions(bench: Bench, rows: int) -> float:
    """Create and load ``rows`` transition rows (over ``rows / 10,000`` minutes ending
    now) into the reference's table and a fresh library schema; VACUUM ANALYZE."""
    started = time.perf_counter()
    admin = bench.admin
    ref = sql.Identifier(_ref_schema(rows))
    lib = _lib_schema(rows)
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ref))
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(lib)))
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(ref))
    admin.execute(sql.SQL("SET search_path TO {}").format(ref))
    admin.execute(REFERENCE_TABLE.encode())
    admin.execute(b"RESET search_path")
    compose.postgres(bench.dsn, schema=lib, pool_size=1).close()  # migrates the schema
    minutes = sql.Literal(rows // QUERY_IDS)
    generated = _generated_rows(rows)
    admin.execute(
        sql.SQL(
            """
            INSERT INTO {table}
                   (id, kind, entity_id, field, from_value, to_value, transitioned_at)
            SELECT gen_random_uuid()::text, 'it', 'it-' || g.k, g.field, g.from_value,
                   g.to_value,
                   (now() AT TIME ZONE 'UTC') - {minutes} * interval '1 minute'
                       + g.j * interval '1 minute'
              FROM ({generated}) AS g
            """
        ).format(
            table=sql.Identifier(_ref_schema(rows), "entity_transitions"),
            generated=generated,
            minutes=minutes,
        )
    )
    # The library's rows: entity_key computed here (as the library does) for the 10 k ids.
    admin.execute(b"DROP TABLE IF EXISTS bench_keys")
    admin.execute(b"CREATE TEMP TABLE bench_keys (k int PRIMARY KEY, entity_key uuid NOT NULL)")
    with admin.cursor().copy(b"COPY bench_keys (k, entity_key) FROM STDIN") as copy:
        for k in range(QUERY_IDS):
            copy.write_row((k, EntityKeys.entity_key(KIND, entity_id(k))))
    admin.execute(
        sql.SQL(
            """
            INSERT INTO {table} (change_id, entity_key, kind, entity_id, field,
                                 from_value, to_value, masked, transitioned_at)
            SELECT gen_random_uuid(), keys.entity_key, 'it', 'it-' || g.k, g.field,
                   to_jsonb(g.from_value), to_jsonb(g.to_value), false,
                   now() - {minutes} * interval '1 minute' + g.j * interval '1 minute'
              FROM ({generated}) AS g JOIN bench_keys AS keys ON keys.k = g.k
             ORDER BY g.j, g.k
            """
        ).format(table=sql.Identifier(lib, "transitions"), generated=generated, minutes=minutes)
    )
    admin.execute(b"DROP TABLE bench_keys")
    admin.execute(
        sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(_ref_schema(rows), "entity_transitions"))
    )
    admin.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(lib, "transitions")))
    return time.perf_counter() - started


Query = Callable[[str], object]


@attrs.define
class QuerySize:
    """One loaded size: its library engine, its raw connection and its query methods."""

    rows: int
    engine: Engine
    pool: ConnectionPool
    raw: tuple[psycopg.Connection[Any], ...]
    methods: dict[str, dict[str, Query]]

    def close(self) -> None:
        """Close the engine, its pool and the raw connections."""
        self.engine.close()
        self.pool.close()
        for conn in self.raw:
            conn.close()


def _query_size(bench: Bench, rows: int) -> QuerySize:
    """The library (through a handle on the size's schema), the reference's SQL by hand on
    its table, and the library's exact SQL by hand on the library's table; the raw
    connection has the library's session settings (autocommit, UTC) and prepares too."""
    lib = _lib_schema(rows)
    # The library's own pool settings, opened and *waited* for: compose.postgres(dsn)
    # lets its first query race the pool's first connection, and the pool then opens a
    # second one and hands the two out in turn (FIFO), each server process seeing every
    # other query with colder caches: measured +10–15 % per query, an artefact of
    # psycopg_pool, not of the library's queries.
    pool = open_pool(bench.dsn, size=10, timeout=10.0, name=f"bench-{lib}")
    pool.wait()
    engine = compose.postgres(pool=pool, schema=lib, migrate=False)
    handle: EntityHandle[It] = engine.define_entity(KIND, It, read=bench._read)
    # One connection per raw method, like the library's own: each server process then
    # serves one query in three, whatever the method (a process that served the query
    # just before answers faster).
    raw_ref = bench._connect()
    raw_ref.execute(
        sql.SQL("SET search_path TO {}, public").format(sql.Identifier(_ref_schema(rows)))
    )
    raw_lib = bench._connect()
    read_rows = bench.plugins[0].read_rows
    queries = Queries.for_schema(lib)
    latest_sql = queries.latest_transition
    count_sql = queries.count_transitions
    entity_key = EntityKeys.entity_key
    ref_execute = raw_ref.execute
    lib_execute = raw_lib.execute
    status = FIELDS.index("status") + 1  # column of the plugin's row

    def lib_since(eid: str) -> object:
        return handle.in_state_since(eid, "status")

    def lib_count(eid: str) -> object:
        return handle.transition_count(eid, "status", window=WINDOW)

    def ref_since(eid: str) -> object:
        current = read_rows([eid])[0][status]
        params = (KIND, eid, "status", current)
        row = ref_execute(REF_IN_STATE_SINCE, params, prepare=True).fetchone()
        return None if row is None else row[0].replace(tzinfo=UTC)

    def ref_count(eid: str) -> object:
        start = datetime.now(UTC).replace(tzinfo=None) - WINDOW
        row = ref_execute(REF_COUNT, (KIND, eid, "status", start), prepare=True).fetchone()
        return None if row is None else row[0]

    def raw_since(eid: str) -> object:
        current = read_rows([eid])[0][status]
        params = (entity_key(KIND, eid), "status", None, KIND, eid)
        row = lib_execute(latest_sql, params, prepare=True).fetchone()
        # to_value comes back as JSON text: compare it like the library does.
        return row[5] if row is not None and json.loads(row[2]) == current else None

    def raw_count(eid: str) -> object:
        params = {
            "key": entity_key(KIND, eid),
            "field": "status",
            "until": None,
            "since": None,
            "window": WINDOW,
            "kind": KIND,
            "entity_id": eid,
        }
        row = lib_execute(count_sql, params, prepare=True).fetchone()
        return None if row is None else row[0]

    methods: dict[str, dict[str, Query]] = {
        "in_state_since": {
            "library": lib_since,
            "raw_reference": ref_since,
            "raw_library_sql": raw_since,
        },
        "transition_count": {
            "library": lib_count,
            "raw_reference": ref_count,
            "raw_library_sql": raw_count,
        },
    }
    return QuerySize(rows, engine, pool, (raw_ref, raw_lib), methods)


Samples = dict[tuple[int, str, str], list[float]]
Answers = dict[tuple[int, str, str], list[object]]


def _measure_queries(
    sizes: list[QuerySize], ids: list[str], warmup: int
) -> tuple[Samples, Answers]:
    """Latencies (µs) and answers per (rows, kind, method). For each kind: a warm-up of
    the first ``warmup`` ids per size and method, then id by id every (size, method)
    pair, in an order rotated at each id so none is always first."""
    clock = time.perf_counter
    latencies: Samples = {}
    answers: Answers = {}
    for kind in KINDS:
        pairs = [(size, method) for size in sizes for method in METHODS]
        for size, method in pairs:
            latencies[size.rows, kind, method] = []
            answers[size.rows, kind, method] = []
            query = size.methods[kind][method]
            for eid in ids[:warmup]:
                query(eid)
        gc.collect()
        for i, eid in enumerate(ids):
            for j in range(len(pairs)):
                size, method = pairs[(i + j) % len(pairs)]
                query = size.methods[kind][method]
                began = clock()
                answer = query(eid)
                latencies[size.rows, kind, method].append((clock() - began) * 1e6)
                answers[size.rows, kind, method].append(answer)
    return latencies, answers


def queries_section(bench: Bench, quick: bool) -> tuple[dict[str, Any], list[str]]:
    """§3.8: load every size, prime, then every query kind by every method."""
    sizes = (10_000,) if quick else QUERY_SIZES
    samples = 50 if quick else QUERY_SAMPLES
    warmup = 5 if quick else QUERY_WARMUP
    ids = [entity_id((i * 7919) % QUERY_IDS) for i in range(samples)]
    problems: list[str] = []
    bench.truncate()
    bench.seed(QUERY_IDS)
    bench.current = {entity_id(k): initial(k) for k in range(QUERY_IDS)}
    bench.use_plugin(0)
    section: dict[str, Any] = {"ids": QUERY_IDS, "samples": samples, "sizes": {}}
    loads: dict[int, float] = {}
    for rows in sizes:
        print(f"  queries: loading {rows:,} rows", flush=True)
        loads[rows] = _load_transitions(bench, rows)
    bench.admin.execute(b"VACUUM ANALYZE it_entities")
    bench.admin.execute(b"CHECKPOINT")
    loaded = [_query_size(bench, rows) for rows in sizes]
    try:
        for size in loaded:
            for table in (
                sql.Identifier(_ref_schema(size.rows), "entity_transitions"),
                sql.Identifier(_lib_schema(size.rows), "transitions"),
            ):
                count = bench.count(table)
                if count != size.rows:
                    problems.append(f"queries {size.rows:,}: {table.as_string()} has {count} rows")
            # Prime: every page the timed queries touch goes into shared buffers, and
            # every method's server process maps those buffers once (a process's first
            # touch of a shared-memory page is a page fault), so no method pays for
            # another's cold start; the reference saw buffer hits only.
            for by_method in size.methods.values():
                for query in by_method.values():
                    for eid in ids:
                        query(eid)
        print("  queries: measuring", flush=True)
        latencies, answers = _measure_queries(loaded, ids, warmup)
    finally:
        for size in loaded:
            size.close()
        for rows in sizes:
            for schema in (_ref_schema(rows), _lib_schema(rows)):
                bench.admin.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    for rows in sizes:
        entry: dict[str, Any] = {"rows": rows, "load_seconds": loads[rows], "kinds": {}}
        for kind in KINDS:
            stats = {m: latency_summary(latencies[rows, kind, m]) for m in METHODS}
            got = {m: answers[rows, kind, m] for m in METHODS}
            problems += _check_answers(rows, kind, got, samples)
            entry["kinds"][kind] = {
                "stats": stats,
                "answer_sample": repr(got["library"][0]),
                "library_over_raw_library_sql": _ratios(stats, "raw_library_sql"),
                "library_over_raw_reference": _ratios(stats, "raw_reference"),
            }
        section["sizes"][str(rows)] = entry
        print(_size_summary(entry), flush=True)
    if len(sizes) > 1:
        section["flatness"] = _flatness(section, str(sizes[0]), str(sizes[-1]))
    section["markdown"] = queries_markdown(section)
    return section, problems


def _check_answers(rows: int, kind: str, got: dict[str, list[object]], samples: int) -> list[str]:
    """Every method answered every query; the library agrees with its SQL by hand, and
    with the reference on counts; ``in_state_since`` found a row for every id."""
    problems = []
    for method, answers in got.items():
        if len(answers) != samples:
            problems.append(f"queries {rows:,} {kind} {method}: {len(answers)} answers")
    none = sum(1 for answer in got["library"] if answer is None)
    if none:
        problems.append(f"queries {rows:,} {kind}: {none} library answers are None")
    for method in ("raw_reference", "raw_library_sql"):
        if kind == "in_state_since" and method == "raw_reference":
            continue  # stamped by another INSERT: another now()
        differ = sum(1 for a, b in zip(got["library"], got[method], strict=True) if a != b)
        if differ:
            problems.append(f"queries {rows:,} {kind}: {differ} answers differ from {method}")
    return problems


def _ratios(stats: dict[str, dict[str, float]], base: str) -> dict[str, float]:
    lib = stats["library"]
    raw = stats[base]
    return {
        "median": lib["p50_us"] / raw["p50_us"],
        "p99": lib["p99_us"] / raw["p99_us"],
        "mean": lib["mean_us"] / raw["mean_us"],
    }


def _flatness(section: dict[str, Any], small: str, large: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        for method in METHODS:
            a = section["sizes"][small]["kinds"][kind]["stats"][method]
            b = section["sizes"][large]["kinds"][kind]["stats"][method]
            out[f"{kind}/{method}"] = {
                "median_change": b["p50_us"] / a["p50_us"] - 1,
                "mean_change": b["mean_us"] / a["mean_us"] - 1,
            }
    return out


def _size_summary(entry: dict[str, Any]) -> str:
    parts = []
    for kind, k in entry["kinds"].items():
        s = k["stats"]
        parts.append(
            f"{kind} p50 lib {s['library']['p50_us']:.0f}"
            f" / raw {s['raw_library_sql']['p50_us']:.0f}"
            f" / ref {s['raw_reference']['p50_us']:.0f} µs"
        )
    return f"  {entry['rows']:,} rows: " + "; ".join(parts)


def queries_markdown(section: dict[str, Any]) -> str:
    """The §3.8 tables."""
    lines = [
        f"## Query latency ({section['ids']:,} ids, {section['samples']:,} queries per kind and "
        "method; µs)",
        "",
        "library = through the handle; raw library SQL = the library's exact statements by "
        "hand on its table; raw reference = the reference's statements on `entity_transitions`.",
        "",
        "| rows | query | method | median | p99 | mean | ratio lib/this (median, mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, entry in section["sizes"].items():
        for kind, k in entry["kinds"].items():
            for method, s in k["stats"].items():
                if method == "library":
                    ratio = "–"
                else:
                    key = f"library_over_{method}"
                    r = k[key]
                    ratio = f"{r['median']:.2f}×, {r['mean']:.2f}×"
                lines.append(
                    f"| {int(size):,} | {kind} | {method.replace('_', ' ')} | {s['p50_us']:,.0f}"
                    f" | {s['p99_us']:,.0f} | {s['mean_us']:,.0f} | {ratio} |"
                )
    sizes = list(section["sizes"])
    top = section["sizes"][sizes[-1]]
    lines += ["", f"At {int(sizes[-1]):,} rows:"]
    for kind, (med, p99) in QUERY_REFERENCE.items():
        k = top["kinds"][kind]
        r = k["library_over_raw_library_sql"]
        verdict = "met" if r["median"] <= QUERY_TARGET else "missed"
        lines.append(
            f"* {kind}: library {k['stats']['library']['p50_us']:,.0f} µs median "
            f"(reference {med[0]:,.0f}–{med[1]:,.0f}, p99 {p99[0]:,.0f}–{p99[1]:,.0f}); "
            f"library / same SQL by hand {r['median']:.2f}× (target ≤ {QUERY_TARGET}×: {verdict})"
        )
    if "flatness" in section:
        lines += ["", f"Flatness, {int(sizes[0]):,} → {int(sizes[-1]):,} rows (target ± 20 %):"]
        for name, change in section["flatness"].items():
            ok = abs(change["median_change"]) <= FLAT_TARGET
            lines.append(
                f"* {name}: median {change['median_change']:+.0%}, mean "
                f"{change['mean_change']:+.0%}{'' if ok else ' (outside ± 20 %)'}"
            )
    loads = ", ".join(
        f"{int(size):,} rows {entry['load_seconds']:.1f} s"
        for size, entry in section["sizes"].items()
    )
    lines += [
        "",
        f"Load (both tables, untimed): {loads}. Each size spans rows / 10,000 minutes ending"
        " now; the newest row of each field holds the current value at every size.",
    ]
    return "\n".join(lines)


# -- entry point ------------------------------------------------------------------------


@contextmanager
def database(dsn: str | None, quick: bool) -> Iterator[str]:
    """``dsn`` itself, or a throwaway server's (the full run's settings unless quick)."""
    if dsn is not None:
        yield dsn
        return
    with PostgresServer(settings=None if quick else FULL_RUN_SERVER) as server:
        yield server.dsn


def run(quick: bool, rounds: int, dsn: str | None, only: set[str]) -> dict[str, Any]:
    """Run the selected PostgreSQL parts; see the module docstring."""
    report: dict[str, Any] = {}
    problems: list[str] = []
    with database(dsn, quick) as url:
        bench = Bench(url)
        try:
            if "postgres" in only:
                print("postgres scenarios", flush=True)
                started = time.perf_counter()
                report["postgres"], found = postgres_section(bench, quick, rounds)
                report["postgres"]["seconds"] = time.perf_counter() - started
                problems += found
            if "queries" in only:
                print("query latency", flush=True)
                started = time.perf_counter()
                report["queries"], found = queries_section(bench, quick)
                report["queries"]["seconds"] = time.perf_counter() - started
                problems += found
        finally:
            bench.close()
    return {"report": report, "problems": problems}
