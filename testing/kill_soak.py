"""The ``kill -9`` soak of transactional writes (issue 10): workers that write an app
table and the log in one transaction are killed at random moments; afterwards the log
must agree with the app's rows exactly.

* :func:`worker` (``python -m reactive_entities.testing.kill_soak worker --dsn … --schema
  … --seed N``) writes until stopped, in ``with engine.transaction() as tx:`` blocks, over
  :data:`ENTITY_IDS` shared by every worker: each block mutates one entity or several
  (the same one twice, sometimes), now and then removes one, joins a connection of its
  own instead of a pooled one, or raises to roll back. The app's rows are
  :class:`~reactive_entities.testing.sql_plugin.SqlStorage` rows written on
  ``tx.connection``. It prints ``ready`` after its first commit and, stopped by
  ``SIGTERM``, a JSON line of counts.
* :func:`run_soak` keeps ``workers`` of them running; again and again it picks one,
  waits until it is ready, kills it with ``SIGKILL`` 10–200 ms later and starts a new
  one, until ``kills`` kills happened (or ``seconds`` ran out); then it stops them all
  (``SIGTERM``) and runs :func:`check`.
* :func:`check` reads the log and the app table with SQL and lists every problem: per
  entity and field, the newest ``to_value`` must equal the app's row (no row after a
  remove); each field's chain must be intact (a row's ``from_value`` is the previous
  row's ``to_value``; ``NULL`` — ``ABSENT`` — on a create); a create or update has its
  transition rows (one per changed field, in order) and a remove none; a change's
  ``next`` is the state its rows lead to; no transition row lacks its change.

``python -m reactive_entities.testing.kill_soak run --dsn … --schema … --kills 60`` runs
the whole soak and prints the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Literal

import attrs
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from reactive_entities import compose
from reactive_entities.domain.errors import StoreError
from reactive_entities.engine import Engine, EntityHandle
from reactive_entities.testing.sql_plugin import SqlStorage
from reactive_entities.transaction import Transaction

__all__ = [
    "ENTITY_IDS",
    "KIND",
    "SoakError",
    "SoakItem",
    "SoakReport",
    "WorkerCounts",
    "check",
    "prepare",
    "run_soak",
    "sessions_left",
    "worker",
]

KIND = "soak_item"
TABLE = "soak_items"
#: The entities every worker writes.
ENTITY_IDS = tuple(f"item-{n}" for n in range(10))
Status = Literal["new", "active", "paused", "done"]
STATUSES: tuple[Status, ...] = ("new", "active", "paused", "done")
FIELDS = ("status", "counter")

_READY = "ready"
_APPLICATION = "kill-soak"
_STARTUP_TIMEOUT = 30.0  # a worker must be ready within this
_STOP_TIMEOUT = 10.0  # a worker must end within this after SIGTERM
_WORKER_LIFETIME = 900.0  # a worker ends by itself after this, whatever happens


class SoakError(RuntimeError):
    """A worker failed on its own (not by our kill), or could not be started."""


@attrs.frozen
class SoakItem:
    """The state of a soak entity, kept as an app row."""

    status: Status
    counter: int


def _item(doc: Mapping[str, Any]) -> SoakItem:
    return SoakItem(status=doc["status"], counter=doc["counter"])


def storage(schema: str) -> SqlStorage[SoakItem]:
    """The app table of the soak, in ``schema``."""
    return SqlStorage(schema, TABLE, to_doc=attrs.asdict, from_doc=_item)


def application_name(seed: int) -> str:
    """The ``application_name`` of a worker's sessions."""
    return f"{_APPLICATION}-{seed}"


def prepare(dsn: str, schema: str) -> None:
    """Migrate ``schema`` and create the app table (idempotent)."""
    with compose.postgres(dsn, schema=schema), psycopg.connect(dsn, autocommit=True) as conn:
        storage(schema).create_table(conn)


# -- the worker --------------------------------------------------------------------------


class _DeliberateRollbackError(Exception):
    """Raised inside a transaction on purpose: it must leave no trace."""


@attrs.define
class WorkerCounts:
    """What one worker did (printed as JSON when it is stopped)."""

    commits: int = 0
    changes: int = 0
    rollbacks: int = 0
    store_errors: int = 0


def worker(
    dsn: str,
    schema: str,
    seed: int,
    *,
    stop: threading.Event | None = None,
    out: IO[str] | None = None,
    lifetime: float = _WORKER_LIFETIME,
) -> WorkerCounts:
    """Write transactions until ``stop`` is set (or ``lifetime`` seconds passed, or the
    parent process is gone); prints ``ready`` to ``out`` after the first commit."""
    stop = stop if stop is not None else threading.Event()
    dsn = make_conninfo(dsn, application_name=application_name(seed))
    rng = random.Random(seed)
    items = storage(schema)
    counts = WorkerCounts()
    parent = os.getppid()
    deadline = time.monotonic() + lifetime
    ready = False
    with (
        compose.postgres(dsn, schema=schema, pool_size=2) as engine,
        psycopg.connect(dsn, autocommit=True) as own,
    ):
        handle = engine.define_entity(KIND, SoakItem, read=items.read)
        delivered = [0]  # events received: the changes this worker committed

        def count(_: object) -> None:
            delivered[0] += 1

        engine.subscribe(count)
        while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
            try:
                _one_transaction(engine, handle, items, own, rng)
                counts.commits += 1
            except _DeliberateRollbackError:
                counts.rollbacks += 1
            except StoreError:  # a lock timeout, a deadlock, a lost connection: go on
                counts.store_errors += 1
                time.sleep(0.01)
                continue
            finally:
                counts.changes = delivered[0]
            if not ready and counts.commits and out is not None:
                ready = True
                print(_READY, file=out, flush=True)
    return counts


def _one_transaction(
    engine: Engine,
    handle: EntityHandle[SoakItem],
    items: SqlStorage[SoakItem],
    own: psycopg.Connection[Any],
    rng: random.Random,
) -> None:
    """One transaction of 1–4 writes (the same entity twice, sometimes)."""
    many = rng.random() < 0.5
    ids = sorted(rng.choices(ENTITY_IDS, k=rng.randint(2, 4)) if many else [rng.choice(ENTITY_IDS)])
    joined = rng.random() < 0.2
    with engine.transaction(connection=own if joined else None) as tx:
        for entity_id in ids:
            if rng.random() < 0.04:
                handle.remove(entity_id, items.delete(tx.connection, entity_id), tx=tx)
            else:
                handle.mutate(entity_id, _step(tx, items, entity_id, rng), tx=tx)
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0, 0.002))  # a wider window for a kill
        if rng.random() < 0.05:
            raise _DeliberateRollbackError


def _step(
    tx: Transaction, items: SqlStorage[SoakItem], entity_id: str, rng: random.Random
) -> Callable[[], SoakItem]:
    """An ``apply`` that creates the entity, or moves its counter and maybe its status."""

    def apply() -> SoakItem:
        conn = tx.connection
        current = items.read([entity_id], conn).get(entity_id)
        status: Status = rng.choice(STATUSES)
        if current is None:
            state = SoakItem(status, 1)
        else:
            state = SoakItem(status if rng.random() < 0.5 else current.status, current.counter + 1)
        return items.put(conn, entity_id, state)()

    return apply


def _worker_main(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    counts = worker(
        args.dsn, args.schema, args.seed, stop=stop, out=sys.stdout, lifetime=args.lifetime
    )
    print(json.dumps(attrs.asdict(counts)), flush=True)
    return 0


# -- the driver ---------------------------------------------------------------------------


@attrs.frozen
class SoakReport:
    """What a soak did and found. ``problems`` lists every gap (empty when the log and
    the app's rows agree)."""

    kills: int
    kills_in_transaction: int
    seconds: float
    changes: int
    creates: int
    updates: int
    removes: int
    transitions: int
    entities: int
    problems: tuple[str, ...]

    @property
    def gaps(self) -> int:
        """How many problems the check found (0 is the only good answer)."""
        return len(self.problems)

    def summary(self) -> str:
        """One line of figures."""
        return (
            f"{self.kills} kills ({self.kills_in_transaction} with a transaction open) in "
            f"{self.seconds:.1f} s; {self.changes} changes committed "
            f"({self.creates} creates, {self.updates} updates, {self.removes} removes), "
            f"{self.transitions} transition rows, {self.entities} entities; "
            f"{self.gaps} gaps"
        )


class _Worker:
    """One worker process: started, waited for, killed or stopped."""

    def __init__(self, dsn: str, schema: str, seed: int) -> None:
        self.seed = seed
        # Closed by close(): the file outlives this method, as long as the process.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "reactive_entities.testing.kill_soak",
                "worker",
                "--dsn",
                dsn,
                "--schema",
                schema,
                "--seed",
                str(seed),
            ],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.ready = False

    def wait_ready(self, timeout: float) -> None:
        """Wait until the worker committed once (its ``ready`` line)."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SoakError(f"worker {self.seed} not ready after {timeout:g} s")
            readable, _, _ = select.select([stdout], [], [], min(left, 0.5))
            if readable:
                line = stdout.readline()
                if line.strip() == _READY:
                    self.ready = True
                elif not line:
                    self.fail_if_exited()
                    raise SoakError(f"worker {self.seed} closed its output before ready")
            else:
                self.fail_if_exited()

    def fail_if_exited(self) -> None:
        """Raise ``SoakError`` (with the worker's stderr) if it ended by itself."""
        code = self.process.poll()
        if code is not None:
            raise SoakError(f"worker {self.seed} exited with {code}:\n{self.stderr()}")

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-4000:]

    def kill(self) -> None:
        """SIGKILL the worker (if it still runs), reap it and close its files."""
        self.process.kill()  # a no-op once it was reaped
        self.process.wait(_STOP_TIMEOUT)
        self.close()

    def terminate(self) -> None:
        """Ask the worker to stop (SIGTERM): it ends its transaction and exits."""
        if self.process.poll() is None:
            self.process.terminate()

    def finish(self) -> None:
        """Wait for a terminated worker (SIGKILL after a while); it must end well."""
        try:
            self.process.communicate(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=_STOP_TIMEOUT)
        code = self.process.returncode
        if code != 0:
            raise SoakError(f"worker {self.seed} ended with {code}:\n{self.stderr()}")
        self.close()

    def close(self) -> None:
        """Close the pipe and the stderr file (idempotent)."""
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


def run_soak(
    dsn: str,
    schema: str,
    kills: int,
    seconds: float,
    *,
    workers: int = 2,
    seed: int | None = None,
) -> SoakReport:
    """Kill workers ``kills`` times (within ``seconds``; fewer kills if time runs out),
    then stop them and :func:`check` the log against the app's rows."""
    rng = random.Random(seed)
    prepare(dsn, schema)
    started = time.monotonic()
    deadline = started + seconds
    seeds = iter(range(rng.randrange(1_000_000) * 1000, sys.maxsize))
    running: list[_Worker] = []
    done = in_transaction = 0
    try:
        with psycopg.connect(dsn, autocommit=True) as monitor:
            running = [_Worker(dsn, schema, next(seeds)) for _ in range(workers)]
            while done < kills and time.monotonic() < deadline:
                victim = running[rng.randrange(workers)]
                victim.wait_ready(max(1.0, min(_STARTUP_TIMEOUT, deadline - time.monotonic())))
                for each in running:
                    each.fail_if_exited()
                time.sleep(rng.uniform(0.010, 0.200))
                victim.fail_if_exited()
                in_transaction += _in_transaction(monitor, victim.seed)
                victim.kill()
                done += 1
                running[running.index(victim)] = _Worker(dsn, schema, next(seeds))
            for each in running:
                each.wait_ready(_STARTUP_TIMEOUT)  # the restarted ones write too
            for each in running:
                each.terminate()
            for each in running:
                each.finish()
    finally:
        for each in running:  # nothing may outlive the soak, whatever happened
            with contextlib.suppress(Exception):
                each.kill()
    elapsed = time.monotonic() - started
    found = check(dsn, schema)
    return SoakReport(kills=done, kills_in_transaction=in_transaction, seconds=elapsed, **found)


def _in_transaction(monitor: psycopg.Connection[Any], seed: int) -> bool:
    """Whether a session of the worker has a transaction open (a moment before a kill)."""
    row = monitor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND xact_start IS NOT NULL",
        [application_name(seed)],
    ).fetchone()
    return row is not None and row[0] > 0


def sessions_left(dsn: str) -> int:
    """How many sessions of soak workers the server still has."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            [f"{_APPLICATION}-%"],
        ).fetchone()
    return 0 if row is None else int(row[0])


# -- the checker ---------------------------------------------------------------------------


def check(dsn: str, schema: str) -> dict[str, Any]:
    """Compare the log with the app table (see the module docstring); returns the
    counts and ``problems``."""
    changes_table = sql.Identifier(schema, "changes")
    transitions_table = sql.Identifier(schema, "transitions")
    with psycopg.connect(dsn, autocommit=True) as conn:
        changes = conn.execute(
            sql.SQL(
                "SELECT entity_id, change_id::text, op, changed_fields, next"
                " FROM {} WHERE kind = %s ORDER BY position"
            ).format(changes_table),
            [KIND],
        ).fetchall()
        transitions = conn.execute(
            sql.SQL(
                "SELECT change_id::text, entity_id, field, from_value::text, to_value::text"
                " FROM {} WHERE kind = %s ORDER BY id"
            ).format(transitions_table),
            [KIND],
        ).fetchall()
        app: dict[str, dict[str, Any]] = dict(
            conn.execute(sql.SQL("SELECT id, doc FROM {}").format(storage(schema).table))
        )
    rows_of: dict[str, list[tuple[str, str, str | None, str]]] = {}
    for change_id, entity_id, field, from_text, to_text in transitions:
        rows_of.setdefault(change_id, []).append((entity_id, field, from_text, to_text))
    problems: list[str] = []
    states: dict[str, dict[str, Any] | None] = {}
    ops = {"create": 0, "update": 0, "remove": 0}
    for entity_id, change_id, op, changed_fields, next_doc in changes:
        ops[op] += 1
        where = f"{entity_id} change {change_id} ({op})"
        rows = rows_of.pop(change_id, [])
        current = states.get(entity_id)
        if op == "remove":
            if rows:
                problems.append(f"{where}: a remove has {len(rows)} transition rows")
            if current is None:
                problems.append(f"{where}: removes an entity the log has as absent")
            states[entity_id] = None
            continue
        problems.extend(_check_rows(where, op, current, rows, list(changed_fields)))
        if op == "create" and current is not None:
            problems.append(f"{where}: creates an entity the log has as present")
        if op == "update" and current is None:
            problems.append(f"{where}: updates an entity the log has as absent")
        state = dict(current or {})
        for _, field, _, to_text in rows:
            state[field] = json.loads(to_text)
        if next_doc != state:
            problems.append(f"{where}: next {next_doc!r} but its rows lead to {state!r}")
        states[entity_id] = state
    for change_id, rows in rows_of.items():
        problems.append(f"{len(rows)} transition row(s) of change {change_id} with no change")
    for entity_id in sorted(set(states) | set(app)):
        logged = states.get(entity_id)
        row = app.get(entity_id)
        if logged is None and row is not None:
            problems.append(f"{entity_id}: the app has {row!r}; the log has it absent")
        elif logged is not None and row is None:
            problems.append(f"{entity_id}: the log has {logged!r}; the app has no row")
        elif logged is not None and row is not None:
            for field in FIELDS:
                if logged.get(field) != row.get(field):
                    problems.append(
                        f"{entity_id}.{field}: newest to_value {logged.get(field)!r}, "
                        f"app row {row.get(field)!r}"
                    )
    return {
        "changes": len(changes),
        "creates": ops["create"],
        "updates": ops["update"],
        "removes": ops["remove"],
        "transitions": len(transitions),
        "entities": len(set(states) | set(app)),
        "problems": tuple(problems),
    }


def _check_rows(
    where: str,
    op: str,
    current: dict[str, Any] | None,
    rows: Sequence[tuple[str, str, str | None, str]],
    changed_fields: list[str],
) -> list[str]:
    """The chain checks of one create or update's transition rows."""
    problems = []
    if not rows:
        problems.append(f"{where}: a change without transition rows")
    fields = [field for _, field, _, _ in rows]
    if fields != changed_fields:
        problems.append(f"{where}: rows for {fields}, changed_fields {changed_fields}")
    for _, field, from_text, _ in rows:
        if op == "create":
            if from_text is not None:
                problems.append(f"{where}.{field}: a create from {from_text}, not ABSENT")
            continue
        previous = None if current is None else current.get(field)
        if from_text is None or json.loads(from_text) != previous:
            problems.append(
                f"{where}.{field}: from_value {from_text} but the previous to_value "
                f"was {json.dumps(previous)} (a gap in the chain)"
            )
    return problems


# -- the command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``worker`` (one worker process) or ``run`` (a whole soak; prints the report)."""
    parser = argparse.ArgumentParser(prog="python -m reactive_entities.testing.kill_soak")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("worker", help="write transactions until SIGTERM")
    one.add_argument("--dsn", required=True)
    one.add_argument("--schema", required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--lifetime", type=float, default=_WORKER_LIFETIME)
    whole = commands.add_parser("run", help="run a soak and print its report")
    whole.add_argument("--dsn", required=True)
    whole.add_argument("--schema", required=True)
    whole.add_argument("--kills", type=int, default=60)
    whole.add_argument("--seconds", type=float, default=600.0)
    whole.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "worker":
        return _worker_main(args)
    report = run_soak(args.dsn, args.schema, args.kills, args.seconds, seed=args.seed)
    print(report.summary())
    for problem in report.problems:
        print(f"  {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
