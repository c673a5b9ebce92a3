"""The driver-independent half of a PostgreSQL write transaction.

:class:`WriteState` holds what a transaction knows — the entities it locked and their
stamps, the changes it recorded, whether it began and ended — and everything it decides
without I/O: the round trip that locks an entity, the inserts that commit it, and what a
failure means. ``transaction.py`` (synchronous) and ``async_transaction.py`` (asyncio)
add the I/O: each sends what this module composes and hands the outcome back here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from reactive_entities.adapters.postgres.codec import utc
from reactive_entities.adapters.postgres.operations import StoreOperations, ref
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import Plan

__all__ = ["WriteState", "check_idle", "BEGIN", "SESSION_END_WAIT"]

Key = tuple[str, str]
#: Sent ahead of the first lock, in its round trip.
BEGIN = b"BEGIN;"
#: How long the commit-outcome check waits for the failed session to end.
SESSION_END_WAIT = 10.0


class WriteState:
    """What one write transaction holds and decides; see the module docstring."""

    __slots__ = (
        "_began",
        "_ended",
        "_joined",
        "_local",
        "_lock_timeout",
        "_locked",
        "_locking",
        "_ops",
        "_pending",
        "_restore_autocommit",
        "_returned",
    )

    def __init__(
        self, ops: StoreOperations, *, locking: bool, lock_timeout: timedelta, joined: bool
    ) -> None:
        self._ops = ops
        self._locking = locking
        self._lock_timeout = lock_timeout
        self._joined = joined
        self._locked: dict[Key, datetime] = {}
        self._local: list[tuple[Key, object]] = []  # in-process locks held
        self._pending: list[tuple[Plan, dict[str, Any]]] = []
        self._ended = False
        self._began = False
        self._restore_autocommit = False
        self._returned = False

    # -- lock ------------------------------------------------------------------------------

    def _known_stamp(self, kind: str, entity_id: str) -> datetime | None:
        """The stamp of an entity this transaction locked already (None if it did not);
        ``InvalidArgumentError`` once the transaction ended."""
        stamp = self._locked.get((kind, entity_id))
        if stamp is None and self._ended:
            raise InvalidArgumentError(
                f"lock of {ref(kind, entity_id)} after the transaction ended"
            )
        return stamp

    def _lock_statement(self, kind: str, entity_id: str) -> bytes:
        """``BEGIN`` when due, then the bounded advisory lock and the entity's stamp (one
        call of the schema's ``lock_entity``): one round trip, a multi-statement simple
        query, so its values are literals the store computed."""
        ops = self._ops
        clock = ops.clock
        at = "NULL" if clock is None else f"'{clock.now().isoformat()}'"
        key = f"'{ops.keys.entity_key(kind, entity_id)}'"
        timeout_ms = max(1, round(self._lock_timeout.total_seconds() * 1000))
        lock_key = ops.keys.lock_key(kind, entity_id) if self._locking else "NULL"
        statement = ops.queries.lock.format(
            lock_key=lock_key, timeout=f"'{timeout_ms}ms'", key=key, at=at
        ).encode()
        return statement if self._began else BEGIN + b"\n" + statement

    def _stamp_from(self, kind: str, entity_id: str, row: tuple[Any, ...] | None) -> datetime:
        if row is None:  # pragma: no cover - the statement always returns the stamp
            raise StoreError(f"no stamp returned for {ref(kind, entity_id)}")
        return utc(row[0])

    def _lock_failure(self, kind: str, entity_id: str, error: BaseException) -> StoreError:
        what = ref(kind, entity_id)
        if isinstance(error, pg_errors.LockNotAvailable):
            seconds = self._lock_timeout.total_seconds()
            return StoreError(f"timed out after {seconds:g} s waiting for the lock of {what}")
        if isinstance(error, pg_errors.DeadlockDetected):
            return StoreError(
                f"deadlock detected while locking {what}; the transaction is rolled back"
            )
        return StoreError(f"could not lock {what}")

    # -- record ----------------------------------------------------------------------------

    def _record(self, plan: Plan) -> datetime:
        """Encode the plan for the commit; returns the stamp fixed by ``lock``."""
        stamp = self._locked.get((plan.kind, plan.entity_id))
        if stamp is None or self._ended:
            raise InvalidArgumentError(
                f"record of {ref(plan.kind, plan.entity_id)} needs its lock in a live transaction"
            )
        self._pending.append((plan, self._ops.record_params(plan, stamp)))
        return stamp

    # -- commit ----------------------------------------------------------------------------

    def _check_live(self) -> None:
        if self._ended:
            raise InvalidArgumentError("commit of a transaction that already ended")

    def _commit_inserts(self, channel: str) -> list[tuple[bytes, Any]]:
        """The statements that precede ``COMMIT``: every insert, the last one with the
        NOTIFY that wakes feed readers everywhere (sent at commit)."""
        queries = self._ops.queries
        pending = self._pending
        statements: list[tuple[bytes, Any]] = [(queries.record, params) for _, params in pending]
        if pending:  # the last insert carries the NOTIFY
            statements[-1] = (queries.record_and_notify, {**pending[-1][1], "channel": channel})
        return statements

    def _commit_failure(self) -> StoreError:
        """The error of a commit the server refused (the transaction rolled back)."""
        first = self._pending[0][0] if self._pending else None
        return StoreError(
            "could not record "
            + (
                f"change {first.change_id} of {ref(first.kind, first.entity_id)}"
                if first is not None
                else "the transaction"
            )
            + (f" and {len(self._pending) - 1} more" if len(self._pending) > 1 else "")
        )

    @staticmethod
    def _check_committed(status: str | None) -> None:
        if status != "COMMIT":
            # An earlier statement failed (the application caught its error): PostgreSQL
            # answers COMMIT of an aborted transaction with ROLLBACK, silently.
            raise StoreError(
                "the transaction was aborted by an earlier failed statement, so PostgreSQL "
                "rolled it back: nothing of it was committed"
            )

    def _pending_ids(self, error: BaseException) -> list[str]:
        """The change ids to look for after a lost commit (``StoreError`` if none)."""
        ids = [plan.change_id for plan, _ in self._pending]
        if not ids:
            raise StoreError(
                "the connection failed while committing; the outcome is unknown "
                "(the transaction recorded no change to look for)"
            ) from error
        return ids

    def _settle(self, found: set[str] | BaseException, error: BaseException) -> None:
        """Decide a lost commit from what a fresh connection found (or why it could not
        ask): all recorded → return (success); none → ``StoreError``; unknown → one
        saying so and naming the change id."""
        ids = [plan.change_id for plan, _ in self._pending]
        first = self._pending[0][0]
        what = f" of {ref(first.kind, first.entity_id)}"
        if isinstance(found, BaseException):
            raise StoreError(
                f"could not record change {ids[0]}{what}"
                + (f" (and {len(ids) - 1} more)" if len(ids) > 1 else "")
                + ": the connection failed while committing and the outcome is unknown "
                "(the database could not be asked)"
            ) from found
        if len(found) == len(ids):
            return  # committed: the caller succeeds and delivers
        if not found:
            raise StoreError(
                f"could not record change {ids[0]}{what}: the connection failed while "
                "committing, and it was not recorded (the transaction rolled back)"
            ) from error
        raise StoreError(  # pragma: no cover - one transaction commits all or nothing
            f"the connection failed while committing change {ids[0]}; only part of the "
            "transaction is visible, which should be impossible"
        ) from error

    def _forget(self) -> list[tuple[Key, object]]:
        """Mark the transaction ended; returns the in-process locks to release."""
        self._ended = True
        self._pending = []
        self._locked = {}
        local, self._local = self._local, []
        return local


def check_idle(connection: object, expected: type, name: str) -> None:
    """``InvalidArgumentError`` unless ``connection`` is an open, idle ``expected`` (a
    connection class called ``name`` in the message)."""
    if not isinstance(connection, expected):
        raise InvalidArgumentError(f"connection must be a {name} (got {type(connection).__name__})")
    conn: Any = connection
    if conn.closed:
        raise InvalidArgumentError("connection is closed")
    status = conn.info.transaction_status
    if status != TransactionStatus.IDLE:
        raise InvalidArgumentError(
            f"connection must be idle, not inside a transaction (status: {status.name}); "
            "the library begins and ends the transaction itself"
        )
