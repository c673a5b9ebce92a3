"""The in-memory change feed: the ``ChangeFeed`` port inside one process (DESIGN §9).

Theory of operation
-------------------
The in-memory store hands every committed change to :meth:`MemoryFeed.append` (its
``on_commit`` hook), under the entity's lock and in recording order per entity. The feed
gives it the next position, ``Position(0, n)`` for n = 1, 2, …, and keeps it in one list,
in that order. Positions are assigned and the change appended in one step under the
feed's lock, so a reader never sees a position before a smaller one exists: every change
is "settled" the moment it is appended, and ``changes(after=p)`` never skips anything.

The feed keeps its own copies of each event's documents and hands out fresh copies, so
neither the committer nor any receiver can change what was recorded.

Work queues live here too. Each group has a scan cursor (how far :meth:`enqueue` has
turned the feed into deliveries) and its deliveries, in feed order. A delivery is
*pending* (due at once, or after a retry time), *claimed* (by a member, until a lease
ends) or *dead* (a dead letter); a completed delivery is dropped. :meth:`claim` walks the
deliveries oldest first and takes the first one that is due whose entity has no older
unfinished (pending or claimed) delivery, which keeps each entity's changes in order
within a group; dead letters are set aside and block nothing. Every time comes from the
injected clock.

One ``threading.Lock`` guards all of it. Wake-up callbacks run after the lock is
released (they may read the feed), and their failures are logged, never raised into the
committing write.
"""

from __future__ import annotations

import logging
import marshal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from itertools import islice
from typing import Final, Literal

import attrs

from reactive_entities.adapters.memory.actors import ActorTable
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.events import ChangeEvent, Op, Plan
from reactive_entities.domain.json import Document
from reactive_entities.domain.position import START, Position
from reactive_entities.domain.temporal import first_at_or_after
from reactive_entities.domain.validation import limit_problem
from reactive_entities.masked_logging import log_failure
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.feed import ChangeFeed, Claim, ConsumerStatus, DeadLetter

__all__ = ["MemoryFeed"]

_LOGGER = logging.getLogger("reactive_entities.feed")

_State = Literal["pending", "claimed", "dead"]
_Entity = tuple[str, str]
_Wake = Callable[[], None]


#: A change as the feed keeps it: an exact ``tuple`` of atomic values — its two documents
#: ``marshal``-ed together as one ``(prev, next)`` pair (exact for JSON values: ``True``
#: stays apart from ``1``; a few times cheaper to make than a copy; immutable; one call
#: instead of two, and the values both documents share are written once), the actor as
#: an index into the feed's actors, the position as its sequence number. The cyclic
#: garbage collector stops tracking such a tuple after its first pass; a NamedTuple (or
#: any object) would stay tracked, and a growing log of them made every full collection
#: slower. Fields by index: kind, entity_id, op, documents, changed_fields, actor, run_id,
#: occurred_at, change_id, sequence. Reads rebuild fresh events (:func:`_event`).
_Kept = tuple[str, str, Op, bytes, tuple[str, ...], int, str | None, datetime, str, int]
_KIND: Final = 0
_ENTITY_ID: Final = 1
_AT: Final = 7
_CHANGE_ID: Final = 8
_SEQUENCE: Final = 9


def _kept_position(kept: _Kept) -> Position:
    return Position(0, kept[_SEQUENCE])


# -- private bookkeeping (mutable; only frozen values leave the feed) --------------------------


@attrs.define
class _Delivery:
    """One change queued for a work-queue group."""

    event: _Kept  #: the feed's own record (never handed out)
    state: _State = "pending"
    attempts: int = 0  #: claims so far (reset when a dead letter is retried)
    due: datetime | None = None  #: pending: not claimable before this (None: at once)
    member: str | None = None  #: claimed: by whom
    lease_until: datetime | None = None  #: claimed: until when
    last_error: str = ""
    failed_at: datetime | None = None  #: dead: when it was set aside
    token: str | None = None  #: claimed: the current claim's token

    @property
    def entity(self) -> _Entity:
        """The changed entity: deliveries of one entity are handled in order."""
        return (self.event[_KIND], self.event[_ENTITY_ID])

    def claimable(self, now: datetime) -> bool:
        """Pending and due, or claimed with an expired lease."""
        if self.state == "pending":
            return self.due is None or self.due <= now
        if self.state == "claimed":
            return self.lease_until is not None and self.lease_until <= now
        return False

    def held_by(self, claim: Claim) -> bool:
        """Whether ``claim`` is the delivery's current claim (not a lost, older one)."""
        return self.state == "claimed" and self.token == claim.token

    def take(self, member: str, lease_until: datetime, token: str) -> None:
        """Claim it for ``member``: one more attempt, under a new ``token``."""
        self.state = "claimed"
        self.token = token
        self.attempts += 1
        self.member = member
        self.lease_until = lease_until
        self.due = None

    def release(self, state: _State, error: str, *, due: datetime | None = None) -> None:
        """Give the claim up: pending again (due at ``due``) or dead."""
        self.state = state
        self.member = None
        self.lease_until = None
        self.due = due
        self.last_error = error


@attrs.define
class _Group:
    """A work-queue group: how far it scanned the feed, and its deliveries in feed order."""

    cursor: Position
    deliveries: dict[Position, _Delivery] = attrs.field(factory=dict)

    def next_deliverable(self, now: datetime) -> _Delivery | None:
        """The oldest claimable delivery whose entity has no older unfinished one."""
        blocked: set[_Entity] = set()
        for delivery in self.deliveries.values():
            if delivery.state == "dead" or delivery.entity in blocked:
                continue
            if delivery.claimable(now):
                return delivery
            blocked.add(delivery.entity)
        return None

    def count(self, state: _State) -> int:
        """How many deliveries are in ``state``."""
        return sum(1 for d in self.deliveries.values() if d.state == state)


# -- the feed ----------------------------------------------------------------------------------


class MemoryFeed(ChangeFeed):
    """A ``ChangeFeed`` held in memory; thread-safe, timed by the injected clock.

    Wire it to the in-memory store through the store's ``on_commit`` hook:

    >>> from reactive_entities.adapters.memory.clock import ManualClock
    >>> from reactive_entities.adapters.memory.store import InMemoryEntityStore
    >>> from reactive_entities.testing.builders import make_plan, record
    >>> clock = ManualClock()
    >>> feed = MemoryFeed(clock)
    >>> store = InMemoryEntityStore(clock, on_commit=feed.record)
    >>> _ = record(store, make_plan("incident", "inc-1", None, {"status": "open"}))
    >>> [(str(e.position), e.op, e.next) for e in feed.changes(after=None)]
    [('0-1', 'create', {'status': 'open'})]
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._log: list[_Kept] = []  # feed order
        self._by_entity: dict[_Entity, list[_Kept]] = {}
        self._wakes: dict[object, _Wake] = {}
        self._actors = ActorTable()  # kept records hold an actor's index
        self._cursors: dict[str, Position] = {}
        self._groups: dict[str, _Group] = {}
        self._claims = 0  # claims made: each claim's token is unique in this feed

    # -- writing (the store's on_commit hook) ---------------------------------------------------

    def record(self, plan: Plan, stamp: datetime) -> None:
        """The store's commit hook: keep the committed plan's change, stamped ``stamp``,
        at the next position, then call every wake-up callback."""
        self._keep(
            plan.kind,
            plan.entity_id,
            plan.op,
            _dumps((plan.prev, plan.next)),
            plan.changed_fields,
            plan.actor,
            plan.run_id,
            stamp,
            plan.change_id,
        )

    def append(self, event: ChangeEvent) -> None:
        """Keep a committed change at the next position, then call every wake-up
        callback (``record`` without a plan)."""
        self._keep(
            event.kind,
            event.entity_id,
            event.op,
            _dumps((event.prev, event.next)),
            event.changed_fields,
            event.actor,
            event.run_id,
            event.occurred_at,
            event.change_id,
        )

    def _keep(
        self,
        kind: str,
        entity_id: str,
        op: Op,
        documents: bytes,
        fields: tuple[str, ...],
        actor: Actor,
        run_id: str | None,
        stamp: datetime,
        change_id: str,
    ) -> None:
        with self._lock:
            actor_index = self._actors.index(actor)
            log = self._log
            kept: _Kept = (
                kind,
                entity_id,
                op,
                documents,
                fields,
                actor_index,
                run_id,
                stamp,
                change_id,
                len(log) + 1,
            )
            log.append(kept)
            by_entity = self._by_entity.get((kind, entity_id))
            if by_entity is None:
                self._by_entity[kind, entity_id] = [kept]
            else:
                by_entity.append(kept)
            wakes = tuple(self._wakes.values()) if self._wakes else ()
        for wake in wakes:
            self._call(wake, kept)

    def _call(self, wake: _Wake, kept: _Kept) -> None:
        """Call one wake-up; a failure is logged (masked), never raised into the commit."""
        try:
            wake()
        except Exception as error:
            log_failure(_LOGGER, f"feed wake-up {wake!r}", _event(kept, self._actors), error, None)

    # -- reading --------------------------------------------------------------------------------

    def changes(
        self, after: Position | None, *, kind: str | None = None, limit: int | None = None
    ) -> Sequence[ChangeEvent]:
        """Changes strictly after ``after`` (all when None), in feed order, of ``kind``
        when given, at most ``limit`` of them."""
        _check_limit(limit)
        with self._lock:
            matching = (e for e in self._after(after) if kind is None or e[_KIND] == kind)
            found = list(islice(matching, limit))
        return tuple(_event(e, self._actors) for e in found)

    def entity_changes(
        self,
        kind: str,
        entity_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[ChangeEvent]:
        """The entity's changes, oldest first; ``since`` inclusive; ``limit`` keeps the
        newest N."""
        _check_limit(limit)
        with self._lock:
            events = list(self._by_entity.get((kind, entity_id), ()))
        if since is not None:
            events = events[first_at_or_after(events, since, stamp=_occurred_at) :]
        if limit is not None:
            events = events[len(events) - limit :] if limit else []
        return tuple(_event(e, self._actors) for e in events)

    def head(self) -> Position:
        """The last position assigned (``START`` before the first change)."""
        with self._lock:
            return self._head()

    def on_commit(self, wake: _Wake) -> Callable[[], None]:
        """Call ``wake`` after each appended change; returns the function that stops it."""
        token = object()
        with self._lock:
            self._wakes[token] = wake

        def stop() -> None:
            with self._lock:
                self._wakes.pop(token, None)

        return stop

    # -- named broadcast cursors ----------------------------------------------------------------

    def load_cursor(self, consumer: str) -> Position | None:
        """The position ``consumer`` saved last, None if it never saved one."""
        with self._lock:
            return self._cursors.get(consumer)

    def save_cursor(self, consumer: str, position: Position) -> None:
        """Remember ``position`` as ``consumer``'s cursor."""
        with self._lock:
            self._cursors[consumer] = position

    # -- work queues ----------------------------------------------------------------------------

    def enqueue(self, group: str, kind: str | None) -> int:
        """Queue the changes (of ``kind``) after the group's scan cursor; a new group
        starts at the head. Returns how many were queued."""
        with self._lock:
            state = self._groups.get(group)
            if state is None:
                state = self._groups[group] = _Group(cursor=self._head())
            queued = 0
            for event in self._after(state.cursor):
                if kind is None or event[_KIND] == kind:
                    state.deliveries[_kept_position(event)] = _Delivery(event)
                    queued += 1
            state.cursor = max(state.cursor, self._head())
            return queued

    def claim(self, group: str, member: str, lease: timedelta) -> Claim | None:
        """Claim the group's next deliverable change for ``member`` until now + ``lease``."""
        with self._lock:
            state = self._groups.get(group)
            if state is None:
                return None
            now = self._clock.now()
            delivery = state.next_deliverable(now)
            if delivery is None:
                return None
            self._claims += 1
            token = f"{id(self):x}-{self._claims}"
            delivery.take(member, now + lease, token)
            kept, attempts = delivery.event, delivery.attempts
        return Claim(group, member, _event(kept, self._actors), attempts, now + lease, token)

    def complete(self, claim: Claim) -> bool:
        """Drop the delivery as done; False if the claim was lost."""
        with self._lock:
            delivery = self._held(claim)
            if delivery is None:
                return False
            del self._groups[claim.group].deliveries[_kept_position(delivery.event)]
            return True

    def retry_later(self, claim: Claim, error: str, delay: timedelta) -> bool:
        """Make the delivery pending again, due after ``delay``; False if the claim was
        lost."""
        with self._lock:
            delivery = self._held(claim)
            if delivery is None:
                return False
            delivery.release("pending", error, due=self._clock.now() + delay)
            return True

    def dead_letter(self, claim: Claim, error: str) -> bool:
        """Set the delivery aside as a dead letter; False if the claim was lost."""
        with self._lock:
            delivery = self._held(claim)
            if delivery is None:
                return False
            delivery.release("dead", error)
            delivery.failed_at = self._clock.now()
            return True

    def dead_letters(self, group: str) -> Sequence[DeadLetter]:
        """The group's dead letters, in feed order."""
        with self._lock:
            state = self._groups.get(group)
            dead = (
                [] if state is None else [d for d in state.deliveries.values() if d.state == "dead"]
            )
            return tuple(_dead_letter(group, d) for d in dead)

    def retry_dead_letters(self, group: str) -> int:
        """Make the group's dead letters pending again, attempts reset; how many."""
        with self._lock:
            state = self._groups.get(group)
            if state is None:
                return 0
            dead = [d for d in state.deliveries.values() if d.state == "dead"]
            for delivery in dead:
                delivery.release("pending", delivery.last_error)
                delivery.attempts = 0
                delivery.failed_at = None
            return len(dead)

    def consumers(self) -> Sequence[ConsumerStatus]:
        """Every named cursor ("broadcast") and group ("work-queue"), by name."""
        with self._lock:
            now = self._clock.now()
            statuses = [self._cursor_status(n, p, now) for n, p in self._cursors.items()]
            statuses += [self._group_status(n, g, now) for n, g in self._groups.items()]
        return tuple(sorted(statuses, key=lambda s: (s.name, s.mode)))

    # -- internals (the caller holds the lock) --------------------------------------------------

    def _head(self) -> Position:
        return _kept_position(self._log[-1]) if self._log else START

    def _after(self, position: Position | None) -> list[_Kept]:
        """The changes strictly after ``position`` (all when None). The log's positions
        are ``(0, 1)``, ``(0, 2)``, … in order, so the index follows from the position."""
        log = self._log
        if position is None:
            return log[:]
        if position.transaction != 0:
            return [] if position.transaction > 0 else log[:]
        return log[max(0, min(position.sequence, len(log))) :]

    def _held(self, claim: Claim) -> _Delivery | None:
        """The delivery ``claim`` still holds, None if the claim was lost or is unknown."""
        state = self._groups.get(claim.group)
        position = claim.change.position
        if state is None or position is None:
            return None
        delivery = state.deliveries.get(position)
        return delivery if delivery is not None and delivery.held_by(claim) else None

    def _cursor_status(self, name: str, position: Position, now: datetime) -> ConsumerStatus:
        lagging = self._after(position)
        return ConsumerStatus(
            name=name,
            mode="broadcast",
            position=position,
            lag_changes=len(lagging),
            lag_seconds=_age(now, [e[_AT] for e in lagging]),
            in_flight=0,
            waiting=0,
            dead_letters=0,
        )

    def _group_status(self, name: str, group: _Group, now: datetime) -> ConsumerStatus:
        lagging = self._after(group.cursor)
        unfinished = [d.event for d in group.deliveries.values() if d.state != "dead"]
        return ConsumerStatus(
            name=name,
            mode="work-queue",
            position=group.cursor,
            lag_changes=len(lagging),
            lag_seconds=_age(now, [e[_AT] for e in [*lagging, *unfinished]]),
            in_flight=group.count("claimed"),
            waiting=group.count("pending"),
            dead_letters=group.count("dead"),
        )


# -- helpers -----------------------------------------------------------------------------------


def _check_limit(limit: int | None) -> None:
    problem = None if limit is None else limit_problem(limit)
    if problem is not None:
        raise InvalidArgumentError(f"limit {problem}")


_dumps = marshal.dumps


def _loads(data: bytes) -> tuple[Document | None, Document | None]:
    documents: tuple[Document | None, Document | None] = marshal.loads(data)
    return documents


def _event(kept: _Kept, actors: ActorTable) -> ChangeEvent:
    """A fresh :class:`ChangeEvent` of a kept change: documents decoded anew (so the
    receiver owns them), the delta rebuilt from ``next`` and the changed fields."""
    kind, entity_id, op, documents, fields, actor, run_id, at, change_id, seq = kept
    prev, nxt = _loads(documents)
    if nxt is None:
        delta: Document = {}
    elif op == "create":
        delta = dict(nxt)
    else:
        delta = {field: nxt.get(field) for field in fields}
    return ChangeEvent(
        kind,
        entity_id,
        op,
        prev,
        nxt,
        delta,
        fields,
        actors[actor],
        run_id,
        at,
        change_id,
        Position(0, seq),
    )


def _occurred_at(kept: _Kept) -> datetime:
    return kept[_AT]


def _age(now: datetime, moments: list[datetime]) -> float | None:
    """Seconds since the oldest of ``moments`` (never negative), None when there are none."""
    if not moments:
        return None
    return max((now - min(moments)).total_seconds(), 0.0)


def _dead_letter(group: str, delivery: _Delivery) -> DeadLetter:
    event = delivery.event
    return DeadLetter(
        group=group,
        change_id=event[_CHANGE_ID],
        position=_kept_position(event),
        kind=event[_KIND],
        entity_id=event[_ENTITY_ID],
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        failed_at=delivery.failed_at if delivery.failed_at is not None else event[_AT],
    )
