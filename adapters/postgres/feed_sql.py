"""The change feed's SQL and operations, shared by the synchronous feed (``feed.py``)
and the asyncio one (``async_feed.py``): every statement, its parameters and the
decoding of its rows, as :class:`~reactive_entities.adapters.postgres.dialogue.Dialogue`
objects that either flavour of store runs. See ``feed.py`` for the theory of operation.

>>> channel_for("reactive_entities").startswith("re_feed_")
True
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from hashlib import blake2b
from typing import Any

from psycopg import sql

from reactive_entities.adapters.postgres.codec import utc
from reactive_entities.adapters.postgres.dialogue import Dialogue, Statement, Steps
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.adapters.postgres.queries import Queries
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import StoreError
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.position import Position
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.feed import Claim, ConsumerStatus, DeadLetter

__all__ = ["FeedOperations", "Wakes", "channel_for"]

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


class FeedOperations:
    """The feed's operations on one schema, for a store with this ``clock`` (None: the
    database's clock times leases and retries)."""

    def __init__(self, schema: str, clock: Clock | None, *, scan_limit: int) -> None:
        self._q = _Queries(schema)
        self._now_query = Queries.for_schema(schema).now
        self._keys = EntityKeys(schema)
        self._clock = clock
        self.scan_limit = scan_limit
        self.channel = channel_for(schema)

    # -- reading -------------------------------------------------------------------------

    def changes(
        self, after: Position | None, kind: str | None, limit: int | None
    ) -> Dialogue[Sequence[ChangeEvent]]:
        """Settled changes after ``after``, in feed order."""
        start = after if after is not None else Position(0, 0)
        params = {
            "xid": str(start.transaction),
            "pos": start.sequence,
            "kind": kind,
            "limit": limit,
        }
        return _events("read the change feed", Statement(self._q.changes, params, prepare=True))

    def entity_changes(
        self, kind: str, entity_id: str, since: datetime | None, limit: int | None
    ) -> Dialogue[Sequence[ChangeEvent]]:
        """The entity's changes, oldest first (``limit`` keeps the newest N)."""
        params = {
            "key": self._keys.entity_key(kind, entity_id),
            "since": since,
            "limit": limit,
            "kind": kind,
            "entity_id": entity_id,
        }
        what = f"read the changes of {kind}:{entity_id[:120]}"
        return _events(what, Statement(self._q.entity_changes, params, prepare=True))

    def head(self) -> Dialogue[Position]:
        """``(oldest running transaction, 0)``: every later commit sorts after it."""

        def steps() -> Steps[Position]:
            rows = yield Statement(self._q.head, (), prepare=True)
            return Position(int(rows[0][0]), 0)

        return Dialogue("read the feed's head", steps, retry=True)

    # -- cursors -------------------------------------------------------------------------

    def load_cursor(self, consumer: str) -> Dialogue[Position | None]:
        """The consumer's stored position."""

        def steps() -> Steps[Position | None]:
            rows = yield Statement(self._q.load_cursor, (consumer,), prepare=True)
            return Position(int(rows[0][0]), rows[0][1]) if rows else None

        return Dialogue(f'read the cursor of consumer "{consumer}"', steps, retry=True)

    def save_cursor(self, consumer: str, position: Position) -> Dialogue[None]:
        """Store the consumer's position."""
        params = (consumer, str(position.transaction), position.sequence)

        def steps() -> Steps[None]:
            yield Statement(self._q.save_cursor, params, prepare=True)

        return Dialogue(f'save the cursor of consumer "{consumer}"', steps)

    # -- work queues ---------------------------------------------------------------------

    def scan(self, group: str, kind: str | None) -> Dialogue[tuple[int, int]]:
        """One scan of up to ``scan_limit`` changes past the group's cursor, in one
        transaction: ``(queued, scanned)``. A feed repeats it until it scans fewer."""

        def steps() -> Steps[tuple[int, int]]:
            q = self._q
            yield Statement(q.start_group, (group,), prepare=True)
            xid, pos = (yield Statement(q.lock_group, (group,), prepare=True))[0]
            params = {
                "xid": xid,
                "pos": pos,
                "group": group,
                "kind": kind,
                "limit": self.scan_limit,
            }
            row = (yield Statement(q.scan, params, prepare=True))[0]
            return int(row[0]), int(row[1])

        return Dialogue(f'scan the feed for group "{group}"', steps, transaction=True)

    def claim(self, group: str, member: str, lease: timedelta) -> Dialogue[Claim | None]:
        """The next deliverable change of the group, claimed for ``member``."""
        params = {"group": group, "member": member, "lease": lease, "now": self._now()}

        def steps() -> Steps[Claim | None]:
            rows = yield Statement(self._q.claim, params, prepare=True)
            if not rows:
                return None
            _, pos, attempts, lease_until, token = rows[0]
            found = yield Statement(self._q.change_at, (pos,), prepare=True)
            if not found:  # pragma: no cover - the log is append-only
                raise StoreError(f"claimed change at position {pos} is missing from the log")
            return Claim(group, member, _event(found[0]), attempts, utc(lease_until), token)

        return Dialogue(f'claim a change for group "{group}"', steps)

    def complete(self, claim: Claim) -> Dialogue[bool]:
        """Delete the finished delivery (if the claim still holds)."""
        params = self._held(claim)
        return _held("complete a delivery", Statement(self._q.complete, params, prepare=True))

    def retry_later(self, claim: Claim, error: str, delay: timedelta) -> Dialogue[bool]:
        """Make the delivery pending again after ``delay``."""
        params = self._held(claim, error=error, delay=delay)
        return _held("reschedule a delivery", Statement(self._q.retry_later, params, prepare=True))

    def dead_letter(self, claim: Claim, error: str) -> Dialogue[bool]:
        """Set the delivery aside."""
        params = self._held(claim, error=error)
        return _held("dead-letter a delivery", Statement(self._q.dead_letter, params, prepare=True))

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

    def dead_letters(self, group: str) -> Dialogue[Sequence[DeadLetter]]:
        """The group's dead letters in feed order."""

        def steps() -> Steps[Sequence[DeadLetter]]:
            rows = yield Statement(self._q.dead_letters, (group,), prepare=True)
            return tuple(
                DeadLetter(group, cid, Position(int(xid), pos), kind, eid, attempts, error, utc(at))
                for pos, xid, cid, kind, eid, attempts, error, at in rows
            )

        return Dialogue(f'read the dead letters of group "{group}"', steps, retry=True)

    def retry_dead_letters(self, group: str) -> Dialogue[int]:
        """Make every dead letter of the group pending again; how many."""
        params = {"group": group, "channel": self.channel}

        def steps() -> Steps[int]:
            return len((yield Statement(self._q.retry_dead, params, prepare=True)))

        return Dialogue(f'retry the dead letters of group "{group}"', steps)

    def consumers(self) -> Dialogue[Sequence[ConsumerStatus]]:
        """Named consumers and groups with their lag and delivery counts."""

        def steps() -> Steps[Sequence[ConsumerStatus]]:
            q = self._q
            clock = self._clock
            if clock is not None:
                now = clock.now()
            else:
                now = utc((yield Statement(self._now_query))[0][0])
            out = []
            for mode, name, xid, pos in (yield Statement(q.consumers, (), prepare=True)):
                count, oldest = (yield Statement(q.lag, (xid, pos), prepare=True))[0]
                claimed = waiting = dead = 0
                if mode == "work-queue":
                    # A group's unhandled work also includes its queued and claimed ones.
                    rows = yield Statement(q.group_counts, (name,), prepare=True)
                    claimed, waiting, dead, queued_oldest = rows[0]
                    if queued_oldest is not None and (oldest is None or queued_oldest < oldest):
                        oldest = queued_oldest
                lag = None if oldest is None else max((now - utc(oldest)).total_seconds(), 0.0)
                position = Position(int(xid), pos)
                out.append(
                    ConsumerStatus(name, mode, position, int(count), lag, claimed, waiting, dead)
                )
            return tuple(out)

        return Dialogue("list consumers", steps, retry=True)

    def _now(self) -> datetime | None:
        clock = self._clock
        return None if clock is None else clock.now()


def _events(what: str, statement: Statement) -> Dialogue[Sequence[ChangeEvent]]:
    def steps() -> Steps[Sequence[ChangeEvent]]:
        return tuple(_event(row) for row in (yield statement))

    return Dialogue(what, steps, retry=True)


def _held(what: str, statement: Statement) -> Dialogue[bool]:
    """A statement on a claimed delivery: True if the claim still held."""

    def steps() -> Steps[bool]:
        return bool((yield statement))

    return Dialogue(what, steps)


class Wakes:
    """The wake-ups registered with a feed's ``on_commit``; safe from any thread."""

    def __init__(self) -> None:
        self._wakes: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def add(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Register ``wake``; returns the function that unregisters it."""
        key = id(wake)
        with self._lock:
            self._wakes[key] = wake

        def stop() -> None:
            with self._lock:
                self._wakes.pop(key, None)

        return stop

    def wake_all(self) -> None:
        """Call every registered wake-up."""
        with self._lock:
            wakes = list(self._wakes.values())
        for wake in wakes:
            wake()

    def clear(self) -> None:
        """Unregister every wake-up."""
        with self._lock:
            self._wakes.clear()
