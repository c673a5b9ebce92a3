"""``plan_change``: the single decision point (SPEC §3–§7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import attrs

from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.documents import make_converter
from reactive_entities.domain.events import ABSENT, Change, Transition
from reactive_entities.domain.json import Document
from reactive_entities.domain.masking import TOKEN
from reactive_entities.domain.planning import mask_actor, plan_change
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def plan(
    prev: Document | None,
    next_doc: Document | None,
    *,
    secrets: SecretSet = EMPTY_SECRETS,
    sensitive: frozenset[str] = frozenset(),
    actor: Actor = SYSTEM_ACTOR,
    run_id: str | None = None,
) -> Change | None:
    """``plan_change`` for incident ``inc-1`` with fixed ids and time."""
    return plan_change(
        "incident",
        "inc-1",
        prev,
        next_doc,
        actor=actor,
        run_id=run_id,
        secrets=secrets,
        sensitive=sensitive,
        change_id="c-1",
        occurred_at=AT,
    )


def test_a_create_is_planned_with_rows_from_absent() -> None:
    """A create plans the whole document as delta and one row per field from ``ABSENT``."""
    change = plan(None, {"status": "open", "owner": None})
    assert change is not None
    event = change.event
    assert (event.op, event.prev, event.next) == ("create", None, {"status": "open", "owner": None})
    assert event.delta == {"status": "open", "owner": None}
    assert event.changed_fields == ("owner", "status")
    assert change.transitions == (
        Transition("owner", ABSENT, None, False),
        Transition("status", ABSENT, "open", False),
    )


def test_an_update_is_planned_with_the_changed_fields_only() -> None:
    """An update's delta and rows hold the changed fields only, in sorted order."""
    change = plan({"z": 1, "a": 1, "same": "x"}, {"z": 2, "a": 3, "same": "x"})
    assert change is not None
    assert change.event.op == "update"
    assert change.event.delta == {"a": 3, "z": 2}
    assert change.event.changed_fields == ("a", "z")
    assert [(row.field, row.from_value, row.to_value) for row in change.transitions] == [
        ("a", 1, 3),
        ("z", 1, 2),
    ]


def test_a_remove_is_planned_without_rows() -> None:
    """A remove plans an event with an empty delta and no transition rows."""
    change = plan({"status": "open"}, None)
    assert change is not None
    assert change.event.op == "remove"
    assert change.event.prev == {"status": "open"}
    assert change.event.next is None
    assert change.event.delta == {}
    assert change.event.changed_fields == ("status",)
    assert change.transitions == ()


def test_no_change_plans_nothing() -> None:
    """Structurally equal documents, or nothing on both sides, plan no change."""
    assert plan({"n": 1, "m": {"a": 1, "b": 2}}, {"n": 1.0, "m": {"b": 2, "a": 1}}) is None
    assert plan(None, None) is None


def test_the_same_instant_in_another_time_zone_is_a_no_op() -> None:
    """A datetime moved to another time zone but at the same instant plans nothing."""

    @attrs.frozen
    class Meeting:
        """A state holding one datetime."""

        starts: datetime

    converter = make_converter()
    utc = converter.unstructure(Meeting(datetime(2024, 1, 1, 9, tzinfo=UTC)))
    paris = converter.unstructure(
        Meeting(datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=1))))
    )
    assert plan(utc, paris) is None


def test_the_event_carries_the_given_identity() -> None:
    """Kind, id, run, change id, time and actor are carried into the event verbatim."""
    actor = Actor.user("u-1", "Ada")
    change = plan(None, {"a": 1}, actor=actor, run_id="run-7")
    assert change is not None
    event = change.event
    assert (event.kind, event.entity_id, event.run_id) == ("incident", "inc-1", "run-7")
    assert (event.change_id, event.occurred_at, event.actor) == ("c-1", AT, actor)


def test_a_change_from_one_secret_to_another_is_recorded() -> None:
    """Secret → other secret is a change (diffed unmasked) with ``****`` on both sides."""
    secrets = SecretSet.of(["first-secret", "second-secret"])
    change = plan({"token": "first-secret"}, {"token": "second-secret"}, secrets=secrets)
    assert change is not None
    assert change.event.prev == {"token": TOKEN}
    assert change.event.next == {"token": TOKEN}
    assert change.event.delta == {"token": TOKEN}
    assert change.transitions == (Transition("token", TOKEN, TOKEN, True),)


def test_run_secrets_are_masked_everywhere_in_the_event() -> None:
    """Run secrets are masked in prev, next, delta, nested values and keys, and rows."""
    secrets = SecretSet.of(["hunter22"])
    prev: Document = {"note": "pw hunter22", "meta": {"hunter22": ["hunter22"]}, "n": 1}
    next_doc: Document = {"note": "pw hunter22", "meta": {}, "n": 2}
    change = plan(prev, next_doc, secrets=secrets)
    assert change is not None
    event = change.event
    assert event.prev == {"note": "pw ****", "meta": {"****": ["****"]}, "n": 1}
    assert event.next == {"note": "pw ****", "meta": {}, "n": 2}
    assert event.delta == {"meta": {}, "n": 2}
    assert change.transitions == (
        Transition("meta", {"****": ["****"]}, {}, True),
        Transition("n", 1, 2, False),
    )
    assert "hunter22" not in repr(change)


def test_sensitive_fields_read_as_the_token_whatever_the_run() -> None:
    """Sensitive fields are ``****`` in prev, next, delta and rows even without secrets."""
    change = plan(
        {"pin": "12", "name": "a"}, {"pin": "34", "name": "b"}, sensitive=frozenset({"pin"})
    )
    assert change is not None
    assert change.event.prev == {"pin": TOKEN, "name": "a"}
    assert change.event.next == {"pin": TOKEN, "name": "b"}
    assert change.event.delta == {"name": "b", "pin": TOKEN}
    assert change.transitions == (
        Transition("name", "a", "b", False),
        Transition("pin", TOKEN, TOKEN, True),
    )


def test_the_masked_flag_follows_either_side() -> None:
    """A row is masked when masking changed its from value only, or its to value only."""
    secrets = SecretSet.of(["hunter22"])
    change = plan({"a": "hunter22", "b": "x"}, {"a": "clear", "b": "hunter22"}, secrets=secrets)
    assert change is not None
    assert [(row.field, row.masked) for row in change.transitions] == [("a", True), ("b", True)]


def test_rows_are_unmasked_without_secrets() -> None:
    """Without secrets or sensitive fields no row is masked and values are kept."""
    change = plan({"a": "x"}, {"a": "y"}, secrets=SecretSet.of(["zzzz"]))
    assert change is not None
    assert change.transitions == (Transition("a", "x", "y", False),)


def test_the_actor_is_masked() -> None:
    """Run secrets are masked out of the actor's id and name."""
    secrets = SecretSet.of(["hunter22"])
    change = plan(None, {"a": 1}, secrets=secrets, actor=Actor.user("hunter22", "is hunter22"))
    assert change is not None
    assert change.event.actor == Actor.user(TOKEN, "is ****")


def test_mask_actor_returns_the_actor_when_nothing_is_masked() -> None:
    """An actor without secrets comes back as the very same object."""
    actor = Actor.service("svc-1", None)
    assert mask_actor(actor, SecretSet.of(["hunter22"])) is actor
    assert mask_actor(actor, EMPTY_SECRETS) is actor


def test_plan_change_does_not_mutate_its_documents() -> None:
    """The documents passed in are left as they were."""
    prev: Document = {"a": ["hunter22"], "pin": "1"}
    next_doc: Document = {"a": ["x"], "pin": "2"}
    plan(prev, next_doc, secrets=SecretSet.of(["hunter22"]), sensitive=frozenset({"pin"}))
    assert prev == {"a": ["hunter22"], "pin": "1"}
    assert next_doc == {"a": ["x"], "pin": "2"}
