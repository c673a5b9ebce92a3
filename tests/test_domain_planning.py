"""``plan_change``: the single decision point (SPEC §3–§7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import attrs

from reactive_entities.domain.actor import SYSTEM_ACTOR, Actor
from reactive_entities.domain.documents import make_converter
from reactive_entities.domain.events import ABSENT, Plan, Transition
from reactive_entities.domain.json import Document
from reactive_entities.domain.masking import TOKEN
from reactive_entities.domain.planning import mask_actor, plan_change
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def plan_for(
    prev: Document | None,
    next_doc: Document | None,
    *,
    secrets: SecretSet = EMPTY_SECRETS,
    sensitive: frozenset[str] = frozenset(),
    actor: Actor = SYSTEM_ACTOR,
    run_id: str | None = None,
) -> Plan | None:
    """``plan_change`` for incident ``inc-1`` with a fixed change id."""
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
    )


def test_a_create_is_planned_with_rows_from_absent() -> None:
    """A create plans the whole document as delta and one row per field from ``ABSENT``."""
    plan = plan_for(None, {"status": "open", "owner": None})
    assert plan is not None
    assert (plan.op, plan.prev, plan.next) == ("create", None, {"status": "open", "owner": None})
    assert plan.delta == {"status": "open", "owner": None}
    assert plan.changed_fields == ("owner", "status")
    assert plan.transitions == (
        Transition("owner", ABSENT, None, False),
        Transition("status", ABSENT, "open", False),
    )


def test_an_update_is_planned_with_the_changed_fields_only() -> None:
    """An update's delta and rows hold the changed fields only, in sorted order."""
    plan = plan_for({"z": 1, "a": 1, "same": "x"}, {"z": 2, "a": 3, "same": "x"})
    assert plan is not None
    assert plan.op == "update"
    assert plan.delta == {"a": 3, "z": 2}
    assert plan.changed_fields == ("a", "z")
    assert [(row.field, row.from_value, row.to_value) for row in plan.transitions] == [
        ("a", 1, 3),
        ("z", 1, 2),
    ]


def test_a_remove_is_planned_without_rows() -> None:
    """A remove plans a change with an empty delta and no transition rows."""
    plan = plan_for({"status": "open"}, None)
    assert plan is not None
    assert plan.op == "remove"
    assert plan.prev == {"status": "open"}
    assert plan.next is None
    assert plan.delta == {}
    assert plan.changed_fields == ("status",)
    assert plan.transitions == ()


def test_no_change_plans_nothing() -> None:
    """Structurally equal documents, or nothing on both sides, plan no change."""
    assert plan_for({"n": 1, "m": {"a": 1, "b": 2}}, {"n": 1.0, "m": {"b": 2, "a": 1}}) is None
    assert plan_for(None, None) is None


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
    assert plan_for(utc, paris) is None


def test_the_plan_carries_the_given_identity() -> None:
    """Kind, id, run, change id and actor pass verbatim; ``event(at)`` adds the store's time."""
    actor = Actor.user("u-1", "Ada")
    plan = plan_for(None, {"a": 1}, actor=actor, run_id="run-7")
    assert plan is not None
    assert (plan.kind, plan.entity_id, plan.run_id) == ("incident", "inc-1", "run-7")
    assert (plan.change_id, plan.actor) == ("c-1", actor)
    event = plan.event(AT)
    assert (event.change_id, event.occurred_at, event.actor) == ("c-1", AT, actor)
    assert (event.kind, event.entity_id, event.run_id) == ("incident", "inc-1", "run-7")


def test_a_change_from_one_secret_to_another_is_recorded() -> None:
    """Secret → other secret is a change (diffed unmasked) with ``****`` on both sides."""
    secrets = SecretSet.of(["first-secret", "second-secret"])
    plan = plan_for({"token": "first-secret"}, {"token": "second-secret"}, secrets=secrets)
    assert plan is not None
    assert plan.prev == {"token": TOKEN}
    assert plan.next == {"token": TOKEN}
    assert plan.delta == {"token": TOKEN}
    assert plan.transitions == (Transition("token", TOKEN, TOKEN, True),)


def test_run_secrets_are_masked_everywhere_in_the_plan() -> None:
    """Run secrets are masked in prev, next, delta, nested values and keys, and rows."""
    secrets = SecretSet.of(["hunter22"])
    prev: Document = {"note": "pw hunter22", "meta": {"hunter22": ["hunter22"]}, "n": 1}
    next_doc: Document = {"note": "pw hunter22", "meta": {}, "n": 2}
    plan = plan_for(prev, next_doc, secrets=secrets)
    assert plan is not None
    assert plan.prev == {"note": "pw ****", "meta": {"****": ["****"]}, "n": 1}
    assert plan.next == {"note": "pw ****", "meta": {}, "n": 2}
    assert plan.delta == {"meta": {}, "n": 2}
    assert plan.transitions == (
        Transition("meta", {"****": ["****"]}, {}, True),
        Transition("n", 1, 2, False),
    )
    assert "hunter22" not in repr(plan)
    assert "hunter22" not in repr(plan.event(AT))


def test_sensitive_fields_read_as_the_token_whatever_the_run() -> None:
    """Sensitive fields are ``****`` in prev, next, delta and rows even without secrets."""
    plan = plan_for(
        {"pin": "12", "name": "a"}, {"pin": "34", "name": "b"}, sensitive=frozenset({"pin"})
    )
    assert plan is not None
    assert plan.prev == {"pin": TOKEN, "name": "a"}
    assert plan.next == {"pin": TOKEN, "name": "b"}
    assert plan.delta == {"name": "b", "pin": TOKEN}
    assert plan.transitions == (
        Transition("name", "a", "b", False),
        Transition("pin", TOKEN, TOKEN, True),
    )


def test_the_masked_flag_follows_either_side() -> None:
    """A row is masked when masking changed its from value only, or its to value only."""
    secrets = SecretSet.of(["hunter22"])
    plan = plan_for({"a": "hunter22", "b": "x"}, {"a": "clear", "b": "hunter22"}, secrets=secrets)
    assert plan is not None
    assert [(row.field, row.masked) for row in plan.transitions] == [("a", True), ("b", True)]


def test_rows_are_unmasked_without_secrets() -> None:
    """Without secrets or sensitive fields no row is masked and values are kept."""
    plan = plan_for({"a": "x"}, {"a": "y"}, secrets=SecretSet.of(["zzzz"]))
    assert plan is not None
    assert plan.transitions == (Transition("a", "x", "y", False),)


def test_the_actor_is_masked() -> None:
    """Run secrets are masked out of the actor's id and name."""
    secrets = SecretSet.of(["hunter22"])
    plan = plan_for(None, {"a": 1}, secrets=secrets, actor=Actor.user("hunter22", "is hunter22"))
    assert plan is not None
    assert plan.actor == Actor.user(TOKEN, "is ****")


def test_mask_actor_returns_the_actor_when_nothing_is_masked() -> None:
    """An actor without secrets comes back as the very same object."""
    actor = Actor.service("svc-1", None)
    assert mask_actor(actor, SecretSet.of(["hunter22"])) is actor
    assert mask_actor(actor, EMPTY_SECRETS) is actor


def test_plan_change_does_not_mutate_its_documents() -> None:
    """The documents passed in are left as they were."""
    prev: Document = {"a": ["hunter22"], "pin": "1"}
    next_doc: Document = {"a": ["x"], "pin": "2"}
    plan_for(prev, next_doc, secrets=SecretSet.of(["hunter22"]), sensitive=frozenset({"pin"}))
    assert prev == {"a": ["hunter22"], "pin": "1"}
    assert next_doc == {"a": ["x"], "pin": "2"}
