"""The PostgreSQL change feed (the ``ChangeFeed`` port): the change log read in a
gap-safe order, wake-ups by LISTEN/NOTIFY, and durable subscription state in tables.

Theory of operation.

* **Order.** Each change row carries ``xid`` (its writing transaction's id, raised to the
  entity's previous change's key — see ``queries``) and ``position``. The feed is ordered
  by ``(xid, position)`` and a reader reads only rows with ``xid`` below
  ``pg_snapshot_xmin(pg_current_snapshot())``, the oldest transaction still running:
  those rows are final. A transaction that commits later has a larger id than every
  finished one, so its rows always land after the cursor of any reader — a reader never
  skips a change, and a rolled-back transaction leaves nothing to wait for.
* **Wake-ups.** A committing write transaction sends one ``pg_notify`` on the schema's
  channel (with its inserts, so it costs no round trip). One dedicated connection per
  feed LISTENs on a background thread; on every (re)connect it LISTENs first and then
  wakes everyone, so they catch up from their cursors; a lost notification only delays
  a reader until its fallback poll.
* **Durable state.** ``consumers`` keeps named broadcast cursors; ``work_groups`` how far
  each work-queue group scanned the feed; ``deliveries`` each group's unfinished
  deliveries, claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, in per-entity order.
  Times (leases, retry delays) come from the database clock unless a clock was injected.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from reactive_entities.adapters.postgres.codec import utc
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import StoreError
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.ports.feed import ChangeFeed, Claim, ConsumerStatus, DeadLetter

if TYPE_CHECKING:
    from reactive_entities.adapters.postgres.store import PostgresEntityStore

__all__ = ["PostgresFeed", "channel_for"]

_LOGGER = logging.getLogger("reactive_entities.feed")
_decode = json.JSONDecoder().decode

_COLUMNS = (
    "kind, entity_id, op, prev::text, next::text, delta::text, changed_fields, actor::text,"
    " run_id, occurred_at, change_id::text, xid::text, position"
)
_SETTLED = "xid < pg_snapshot_xmin(pg_current_snapshot())"


def channel_for(schema: str) -> str:
    """The NOTIFY channel of a schema's feed (a short, safe identifier)."""
    return "re_feed_" + blake2b(schema.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _event(row: Sequence[Any]) -> ChangeEvent:
    (kind, entity_id, op, prev, nxt, delta, fields, actor, run_id, at, change_id, xid, pos) = row
    return ChangeEvent(
        kind,
        entity_id,
        op,
        None if prev is None else _decode(prev),
        None if nxt is None else _decode(nxt),
        _decode(delta),
        tuple(fields),
        Actor.from_dict(_decode(actor)),
        run_id,
        utc(at),
        change_id,
        Position(int(xid), pos),
    )


class _Queries:
    """The feed's statements for one schema."""

    def __init__(self, schema: str) -> None:
        def q(text: str) -> bytes:
            return sql.SQL(text).format(schema=sql.Identifier(schema)).as_bytes(None)

        # ORDER BY names the table's columns (c.): a bare "xid" would be the output
        # column xid::text, sorting "1000" before "999".
        self.changes = q(
            f"SELECT {_COLUMNS} FROM {{schema}}.changes AS c"
            " WHERE (c.xid, c.position) > (%(xid)s::xid8, %(pos)s) AND " + _SETTLED + ""
            " AND (%(kind)s::text IS NULL OR c.kind = %(kind)s)"
            " ORDER BY c.xid, c.position LIMIT %(limit)s"
        )
        self.entity_changes = q(
            f"SELECT {_COLUMNS} FROM (SELECT * FROM {{schema}}.changes"
            " WHERE entity_key = %(key)s::uuid"
            " AND occurred_at >= COALESCE(%(since)s::timestamptz, '-infinity')"
            " ORDER BY position DESC LIMIT %(limit)s) AS newest"
            " WHERE kind = %(kind)s AND entity_id = %(entity_id)s ORDER BY position"
        )
        self.head = b"SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
        self.load_cursor = q("SELECT xid::text, position FROM {schema}.consumers WHERE name = %s")
        self.save_cursor = q(
            "INSERT INTO {schema}.consumers (name, xid, position) VALUES (%s, %s::xid8, %s)"
            " ON CONFLICT (name) DO UPDATE SET xid = EXCLUDED.xid,"
            " position = EXCLUDED.position, updated_at = clock_timestamp()"
        )
        self.start_group = q(
            "INSERT INTO {schema}.work_groups (name, xid, position)"
            " VALUES (%s, pg_snapshot_xmin(pg_current_snapshot()), 0) ON CONFLICT DO NOTHING"
        )
        self.lock_group = q(
            "SELECT xid::text, position FROM {schema}.work_groups WHERE name = %s FOR UPDATE"
        )
        # One scan past the group's cursor: queue the matching changes, move the cursor to
        # the last change scanned (matching or not).
        self.scan = q(
            "WITH scanned AS ("
            " SELECT xid, position, entity_key, kind FROM {schema}.changes"
            " WHERE (xid, position) > (%(xid)s::xid8, %(pos)s) AND " + _SETTLED + ""
            " ORDER BY xid, position LIMIT %(limit)s),"
            " queued AS (INSERT INTO {schema}.deliveries"
            " (group_name, change_xid, change_pos, entity_key)"
            " SELECT %(group)s, xid, position, entity_key FROM scanned"
            " WHERE %(kind)s::text IS NULL OR kind = %(kind)s"
            " ON CONFLICT DO NOTHING RETURNING 1),"
            " last AS (SELECT xid, position FROM scanned ORDER BY xid DESC, position DESC LIMIT 1),"
            " moved AS (UPDATE {schema}.work_groups g SET xid = last.xid,"
            " position = last.position, updated_at = clock_timestamp()"
            " FROM last WHERE g.name = %(group)s RETURNING 1)"
            " SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM scanned),"
            " (SELECT count(*) FROM moved)"
        )
        self.claim = q(
            "WITH now_ AS (SELECT COALESCE(%(now)s::timestamptz, clock_timestamp()) AS t),"
            " next_ AS ("
            " SELECT c.id FROM {schema}.deliveries c, now_"
            " WHERE c.group_name = %(group)s AND c.state <> 'dead'"
            " AND ((c.state = 'pending' AND c.not_before <= now_.t)"
            "  OR (c.state = 'claimed' AND c.lease_until < now_.t))"
            # Only the oldest unfinished delivery of its entity (per-entity order): one
            # index seek per candidate, whatever the planner's statistics say.
            " AND c.id = (SELECT o.id FROM {schema}.deliveries o"
            "  WHERE o.group_name = c.group_name AND o.entity_key = c.entity_key"
            "  AND o.state <> 'dead'"
            "  ORDER BY o.change_xid, o.change_pos LIMIT 1)"
            " ORDER BY c.change_xid, c.change_pos LIMIT 1 FOR UPDATE OF c SKIP LOCKED)"
            " UPDATE {schema}.deliveries d SET state = 'claimed', member = %(member)s,"
            " attempts = d.attempts + 1, lease_until = now_.t + %(lease)s::interval,"
            " claim_token = gen_random_uuid()"
            " FROM next_, now_ WHERE d.id = next_.id"
            " RETURNING d.id, d.change_pos, d.attempts, d.lease_until, d.claim_token::text"
        )
        self.change_at = q(f"SELECT {_COLUMNS} FROM {{schema}}.changes WHERE position = %s")
        held = (
            " WHERE group_name = %(group)s AND change_pos = %(pos)s"
            " AND state = 'claimed' AND claim_token = %(token)s::uuid"
        )
        self.complete = q("DELETE FROM {schema}.deliveries" + held + " RETURNING 1")
        self.retry_later = q(
            "UPDATE {schema}.deliveries SET state = 'pending', member = NULL,"
            " lease_until = NULL, claim_token = NULL, last_error = %(error)s,"
            " not_before = COALESCE(%(now)s::timestamptz, clock_timestamp())"
            " + %(delay)s::interval" + held + " RETURNING 1"
        )
        self.dead_letter = q(
            "UPDATE {schema}.deliveries SET state = 'dead', member = NULL, lease_until = NULL,"
            " claim_token = NULL,"
            " last_error = %(error)s,"
            " failed_at = COALESCE(%(now)s::timestamptz, clock_timestamp())" + held + " RETURNING 1"
        )
        self.dead_letters = q(
            "SELECT d.change_pos, d.change_xid::text, c.change_id::text, c.kind, c.entity_id,"
            " d.attempts, COALESCE(d.last_error, ''), d.failed_at"
            " FROM {schema}.deliveries d JOIN {schema}.changes c ON c.position = d.change_pos"
            " WHERE d.group_name = %s AND d.state = 'dead' ORDER BY d.change_xid, d.change_pos"
        )
        # Retried letters wake the group's members in every process (a NOTIFY, sent
        # when the statement's transaction commits).
        self.retry_dead = q(
            "WITH retried AS (UPDATE {schema}.deliveries SET state = 'pending', attempts = 0,"
            " not_before = '-infinity', failed_at = NULL"
            " WHERE group_name = %(group)s AND state = 'dead' RETURNING 1)"
            " SELECT 1 FROM retried, (SELECT pg_notify(%(channel)s, '')) AS woken"
        )
        self.consumers = q(
            "SELECT 'broadcast', name, xid::text, position FROM {schema}.consumers"
            " UNION ALL SELECT 'work-queue', name, xid::text, position FROM {schema}.work_groups"
            " ORDER BY 2, 1"
        )
        self.lag = q(
            "SELECT count(*), min(occurred_at) FROM {schema}.changes"
            " WHERE (xid, position) > (%s::xid8, %s) AND " + _SETTLED
        )
        self.group_counts = q(
            "SELECT count(*) FILTER (WHERE d.state = 'claimed'),"
            " count(*) FILTER (WHERE d.state = 'pending'),"
            " count(*) FILTER (WHERE d.state = 'dead'),"
            " min(c.occurred_at) FILTER (WHERE d.state <> 'dead')"
            " FROM {schema}.deliveries d JOIN {schema}.changes c ON c.position = d.change_pos"
            " WHERE d.group_name = %s"
        )


class PostgresFeed(ChangeFeed):
    """The change feed of a :class:`PostgresEntityStore` (its pool, schema and clock)."""

    def __init__(
        self,
        store: PostgresEntityStore,
        *,
        conninfo: str,
        logger: logging.Logger | None = None,
        scan_limit: int = 1000,
    ) -> None:
        self._store = store
        self._q = _Queries(store.schema)
        self._conninfo = conninfo
        self._logger = logger if logger is not None else _LOGGER
        self._scan_limit = scan_limit
        self._channel = channel_for(store.schema)
        self._wakes: dict[int, Callable[[], None]] = {}
        self._wakes_lock = threading.Lock()
        self._listener: _Listener | None = None
        self._closed = False

    @property
    def channel(self) -> str:
        """The NOTIFY channel committing writers signal."""
        return self._channel

    # -- reading -------------------------------------------------------------------------

    def changes(
        self, after: Position | None, *, kind: str | None = None, limit: int | None = None
    ) -> Sequence[ChangeEvent]:
        """Settled changes after ``after``, in feed order."""
        start = after if after is not None else Position(0, 0)
        params = {
            "xid": str(start.transaction),
            "pos": start.sequence,
            "kind": kind,
            "limit": limit,
        }
        rows = self._store._read("read the change feed", self._q.changes, params)
        return tuple(_event(row) for row in rows)

    def entity_changes(
        self,
        kind: str,
        entity_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[ChangeEvent]:
        """The entity's changes, oldest first (``limit`` keeps the newest N)."""
        params = {
            "key": self._store._keys.entity_key(kind, entity_id),
            "since": since,
            "limit": limit,
            "kind": kind,
            "entity_id": entity_id,
        }
        rows = self._store._read(
            f"read the changes of {kind}:{entity_id[:120]}", self._q.entity_changes, params
        )
        return tuple(_event(row) for row in rows)

    def head(self) -> Position:
        """``(oldest running transaction, 0)``: every later commit sorts after it."""
        rows = self._store._read("read the feed's head", self._q.head, ())
        return Position(int(rows[0][0]), 0)

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` on every NOTIFY of the schema's channel (and after a reconnect)."""
        key = id(wake)
        with self._wakes_lock:
            self._wakes[key] = wake
            if self._listener is None and not self._closed:
                self._listener = _Listener(self)
                self._listener.start()

        def stop() -> None:
            with self._wakes_lock:
                self._wakes.pop(key, None)

        return stop

    def _wake_all(self) -> None:
        with self._wakes_lock:
            wakes = list(self._wakes.values())
        for wake in wakes:
            wake()

    # -- cursors -------------------------------------------------------------------------

    def load_cursor(self, consumer: str) -> Position | None:
        """The consumer's stored position."""
        rows = self._store._read(
            f'read the cursor of consumer "{consumer}"', self._q.load_cursor, (consumer,)
        )
        return Position(int(rows[0][0]), rows[0][1]) if rows else None

    def save_cursor(self, consumer: str, position: Position) -> None:
        """Store the consumer's position."""
        params = (consumer, str(position.transaction), position.sequence)
        self._store._write(f'save the cursor of consumer "{consumer}"', self._q.save_cursor, params)

    # -- work queues ---------------------------------------------------------------------

    def enqueue(self, group: str, kind: str | None) -> int:
        """Queue the group's unseen settled changes (one scan of up to ``scan_limit``
        changes per transaction, repeated until caught up)."""
        total = 0
        while True:
            queued, scanned = self._store._in_transaction(
                f'scan the feed for group "{group}"', lambda conn: self._scan(conn, group, kind)
            )
            total += queued
            if scanned < self._scan_limit:
                return total

    def _scan(self, conn: psycopg.Connection[Any], group: str, kind: str | None) -> tuple[int, int]:
        conn.execute(self._q.start_group, (group,), prepare=True)
        xid, pos = conn.execute(self._q.lock_group, (group,), prepare=True).fetchall()[0]
        params = {"xid": xid, "pos": pos, "group": group, "kind": kind, "limit": self._scan_limit}
        row = conn.execute(self._q.scan, params, prepare=True).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def claim(self, group: str, member: str, lease: timedelta) -> Claim | None:
        """The next deliverable change of the group, claimed for ``member``."""
        params = {"group": group, "member": member, "lease": lease, "now": self._now()}
        rows = self._store._write(f'claim a change for group "{group}"', self._q.claim, params)
        if not rows:
            return None
        _, pos, attempts, lease_until, token = rows[0]
        found = self._store._read("read a claimed change", self._q.change_at, (pos,))
        if not found:  # pragma: no cover - the log is append-only
            raise StoreError(f"claimed change at position {pos} is missing from the log")
        return Claim(group, member, _event(found[0]), attempts, utc(lease_until), token)

    def _held(self, claim: Claim, **extra: Any) -> dict[str, Any]:
        position = claim.change.position
        assert position is not None
        return {
            "group": claim.group,
            "pos": position.sequence,
            "token": claim.token,
            "now": self._now(),
            **extra,
        }

    def complete(self, claim: Claim) -> bool:
        """Delete the finished delivery (if the claim still holds)."""
        return bool(self._store._write("complete a delivery", self._q.complete, self._held(claim)))

    def retry_later(self, claim: Claim, error: str, delay: timedelta) -> bool:
        """Make the delivery pending again after ``delay``."""
        params = self._held(claim, error=error, delay=delay)
        return bool(self._store._write("reschedule a delivery", self._q.retry_later, params))

    def dead_letter(self, claim: Claim, error: str) -> bool:
        """Set the delivery aside."""
        params = self._held(claim, error=error)
        return bool(self._store._write("dead-letter a delivery", self._q.dead_letter, params))

    def dead_letters(self, group: str) -> Sequence[DeadLetter]:
        """The group's dead letters in feed order."""
        rows = self._store._read(
            f'read the dead letters of group "{group}"', self._q.dead_letters, (group,)
        )
        return tuple(
            DeadLetter(group, cid, Position(int(xid), pos), kind, eid, attempts, error, utc(at))
            for pos, xid, cid, kind, eid, attempts, error, at in rows
        )

    def retry_dead_letters(self, group: str) -> int:
        """Make every dead letter of the group pending again."""
        rows = self._store._write(
            f'retry the dead letters of group "{group}"',
            self._q.retry_dead,
            {"group": group, "channel": self._channel},
        )
        return len(rows)

    def consumers(self) -> Sequence[ConsumerStatus]:
        """Named consumers and groups with their lag and delivery counts."""
        store = self._store
        out = []
        now = store.now()
        for mode, name, xid, pos in store._read("list consumers", self._q.consumers, ()):
            position = Position(int(xid), pos)
            count, oldest = store._read("measure lag", self._q.lag, (xid, pos))[0]
            claimed = waiting = dead = 0
            if mode == "work-queue":
                # A group's unhandled work also includes its queued and claimed deliveries.
                claimed, waiting, dead, queued_oldest = store._read(
                    "count deliveries", self._q.group_counts, (name,)
                )[0]
                if queued_oldest is not None and (oldest is None or queued_oldest < oldest):
                    oldest = queued_oldest
            lag_seconds = None if oldest is None else max((now - utc(oldest)).total_seconds(), 0.0)
            out.append(
                ConsumerStatus(
                    name, mode, position, int(count), lag_seconds, claimed, waiting, dead
                )
            )
        return tuple(out)

    def _now(self) -> datetime | None:
        clock = self._store._clock
        return None if clock is None else clock.now()

    def close(self) -> None:
        """Stop the listener thread (within a second or so); idempotent."""
        with self._wakes_lock:
            self._closed = True
            listener, self._listener = self._listener, None
            self._wakes.clear()
        if listener is not None:
            listener.stop()


class _Listener:
    """The feed's LISTEN connection, on a named daemon thread."""

    _BACKOFF_MAX = 5.0

    def __init__(self, feed: PostgresFeed) -> None:
        self._feed = feed
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"reactive-entities-listen[{feed._store.schema}]", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        feed = self._feed
        delay = 0.1
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(feed.channel))
        while not self._stop.is_set():
            try:
                with psycopg.connect(feed._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(listen)
                    delay = 0.1
                    feed._wake_all()  # catch up on whatever was missed while not listening
                    while not self._stop.is_set():
                        # Ends after half a second without stopping: the stop flag is
                        # checked at least that often.
                        for _ in conn.notifies(timeout=0.5):
                            feed._wake_all()
            except psycopg.Error as error:
                if self._stop.is_set():
                    return
                feed._logger.warning(
                    "change feed listener lost its connection (%s); reconnecting in %.1f s",
                    type(error).__name__,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self._BACKOFF_MAX)
