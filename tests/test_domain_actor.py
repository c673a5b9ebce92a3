"""Who caused a change (SPEC §6)."""

from __future__ import annotations

import attrs
import pytest

from reactive_entities.domain.actor import ACTOR_TYPES, SYSTEM_ACTOR, Actor
from reactive_entities.domain.errors import InvalidArgumentError


def test_the_system_actor() -> None:
    """``SYSTEM_ACTOR`` is ``Actor("system", "system", "System")``."""
    assert Actor("system", "system", "System") == SYSTEM_ACTOR


def test_constructors_set_the_type() -> None:
    """``user``, ``application`` and ``service`` build actors of that type."""
    assert Actor.user("u-1") == Actor("user", "u-1", None)
    assert Actor.application("app", "App") == Actor("application", "app", "App")
    assert Actor.service("svc") == Actor("service", "svc")
    assert ACTOR_TYPES == ("system", "user", "application", "service")


def test_dict_round_trip() -> None:
    """``to_dict`` and ``from_dict`` are inverses; a missing name reads as None."""
    actor = Actor.user("u-1", "Ada")
    assert actor.to_dict() == {"type": "user", "id": "u-1", "name": "Ada"}
    assert Actor.from_dict(actor.to_dict()) == actor
    assert Actor.from_dict({"type": "service", "id": "s"}) == Actor.service("s")


@pytest.mark.parametrize(
    ("type_", "id_", "name", "message"),
    [
        ("robot", "r-1", None, "actor type must be one of"),
        ("user", "", None, "actor id must be a non-empty str"),
        ("user", "   ", None, "actor id must be a non-empty str"),
        ("user", 7, None, "actor id must be a non-empty str"),
        ("user", "u-1", 7, "actor name must be a str or None"),
    ],
)
def test_invalid_actors_are_refused(type_: object, id_: object, name: object, message: str) -> None:
    """Bad types, ids and names raise ``InvalidArgumentError``, also a ``ValueError``."""
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        Actor(type_, id_, name)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_actors_are_frozen() -> None:
    """An actor cannot be changed after creation."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SYSTEM_ACTOR.id = "other"  # type: ignore[misc]
