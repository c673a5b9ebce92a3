"""What the PostgreSQL adapters say to the database, written once for both drivers.

An operation that takes several statements (a feed scan, a migration, the check after a
lost ``COMMIT``) is a generator: it yields each :class:`Statement` (or a :class:`Pause`)
and receives the rows the statement returned. It does no I/O itself, so the synchronous
adapters run it on a ``psycopg.Connection`` with :func:`run` and the asyncio adapters on
a ``psycopg.AsyncConnection`` with :func:`run_async` — the SQL, the parameters and the
decoding of the answers exist once. A :class:`Dialogue` names such an operation for
error messages and says how a store runs it (inside a transaction, retried once on a
fresh connection).

>>> def answer() -> Steps[int]:
...     rows = yield Statement(b"SELECT 41")
...     return rows[0][0] + 1
>>> steps = answer()
>>> next(steps).query
b'SELECT 41'
>>> try:
...     steps.send([(41,)])
... except StopIteration as done:
...     print(done.value)
42
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import attrs
import psycopg
from psycopg import sql

__all__ = [
    "Dialogue",
    "Pause",
    "Rows",
    "Statement",
    "Steps",
    "failure_message",
    "one",
    "run",
    "run_async",
]

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
#: A statement's text: literal, bytes, or composed with quoted identifiers.
Query = str | bytes | sql.SQL | sql.Composed


@attrs.frozen
class Statement:
    """One statement to execute; its rows (none for a command) are the reply."""

    query: Query
    params: Any = None
    #: True for the store's hot statements; None lets psycopg decide (and allows a
    #: parameterless text of several statements).
    prepare: bool | None = None
    #: ``executemany`` over ``params``, a sequence of parameter rows (reply: no rows).
    many: bool = False


@attrs.frozen
class Pause:
    """Wait this many seconds before the next step (the reply is no rows)."""

    seconds: float


Step = Statement | Pause
Steps = Generator[Step, Rows, T]


@attrs.frozen
class Dialogue(Generic[T]):
    """An operation: what it does (for "could not …" messages) and its steps."""

    what: str
    steps: Callable[[], Steps[T]]
    #: Run all the steps inside one transaction on one connection.
    transaction: bool = False
    #: Read-only: a connection found broken may be replaced and the steps run again.
    retry: bool = False


def failure_message(dialogue: Dialogue[Any], error: BaseException) -> str:
    """The ``StoreError`` message of a dialogue the driver failed. A read's message
    keeps the driver's text out (as it always has); a write's gives its first line."""
    if dialogue.retry:
        return f"could not {dialogue.what}"
    text = str(error).strip()
    return f"could not {dialogue.what}: {text.splitlines()[0] if text else type(error).__name__}"


def one(what: str, statement: Statement, *, retry: bool = False) -> Dialogue[Rows]:
    """A dialogue of a single statement, answering its rows."""

    def steps() -> Steps[Rows]:
        return (yield statement)

    return Dialogue(what, steps, retry=retry)


def run(conn: psycopg.Connection[Any], steps: Steps[T]) -> T:
    """Drive ``steps`` on a synchronous connection; returns what they return."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                rows: Rows = []
            elif step.many:
                with conn.cursor() as cursor:
                    cursor.executemany(step.query, step.params)
                rows = []
            else:
                cursor = conn.execute(step.query, step.params, prepare=step.prepare)
                rows = cursor.fetchall() if cursor.description is not None else []
            step = steps.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(conn: psycopg.AsyncConnection[Any], steps: Steps[T]) -> T:
    """Drive ``steps`` on an asyncio connection; returns what they return."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                rows: Rows = []
            elif step.many:
                async with conn.cursor() as cursor:
                    await cursor.executemany(step.query, step.params)
                rows = []
            else:
                cursor = await conn.execute(step.query, step.params, prepare=step.prepare)
                rows = await cursor.fetchall() if cursor.description is not None else []
            step = steps.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
