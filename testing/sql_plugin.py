"""A plugin whose state lives in a PostgreSQL table of its own: the app side of a
transaction, for tests, examples and benchmarks.

Each state is one row ``(id text primary key, doc jsonb)`` of the table it is given.
``read(ids, connection)`` takes the connection the engine passes (inside a transaction:
``tx.connection``, so it sees the transaction's own writes); ``put``/``delete`` build an
``apply`` that writes on a given connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

__all__ = ["SqlStorage"]

S = TypeVar("S")


class SqlStorage(Generic[S]):
    """States of one kind as JSON rows of ``schema.table``; ``to_doc``/``from_doc``
    convert a state to and from its row's document."""

    def __init__(
        self,
        schema: str,
        table: str,
        *,
        to_doc: Callable[[S], Mapping[str, Any]],
        from_doc: Callable[[Mapping[str, Any]], S],
    ) -> None:
        self.table = sql.Identifier(schema, table)
        self._to_doc = to_doc
        self._from_doc = from_doc

    def create_table(self, connection: psycopg.Connection[Any]) -> None:
        """Create the table if it does not exist (the connection's transaction rules)."""
        connection.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, doc jsonb NOT NULL)"
            ).format(self.table)
        )

    def read(self, ids: Sequence[str], connection: psycopg.Connection[Any]) -> dict[str, S]:
        """The states of the ids present, as ``connection`` sees them."""
        rows = connection.execute(
            sql.SQL("SELECT id, doc FROM {} WHERE id = ANY(%s)").format(self.table), (list(ids),)
        ).fetchall()
        return {entity_id: self._from_doc(doc) for entity_id, doc in rows}

    def put(self, connection: psycopg.Connection[Any], entity_id: str, state: S) -> Callable[[], S]:
        """An ``apply`` that upserts ``state`` on ``connection`` and returns it."""

        def apply() -> S:
            connection.execute(
                sql.SQL(
                    "INSERT INTO {} (id, doc) VALUES (%s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc"
                ).format(self.table),
                (entity_id, Jsonb(dict(self._to_doc(state)))),
            )
            return state

        return apply

    def delete(self, connection: psycopg.Connection[Any], entity_id: str) -> Callable[[], None]:
        """An ``apply`` that deletes the entity's row on ``connection``."""

        def apply() -> None:
            connection.execute(
                sql.SQL("DELETE FROM {} WHERE id = %s").format(self.table), (entity_id,)
            )

        return apply

    def all(self, connection: psycopg.Connection[Any]) -> dict[str, S]:
        """Every stored state, by id."""
        rows = connection.execute(sql.SQL("SELECT id, doc FROM {}").format(self.table)).fetchall()
        return {entity_id: self._from_doc(doc) for entity_id, doc in rows}
