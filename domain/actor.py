"""Who caused a change (SPEC §6).

>>> Actor.user("u-1")
Actor(type='user', id='u-1', name=None)
>>> SYSTEM_ACTOR.to_dict()
{'type': 'system', 'id': 'system', 'name': 'System'}
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.validation import has_lone_surrogate

__all__ = ["ActorType", "ACTOR_TYPES", "Actor", "SYSTEM_ACTOR"]

ActorType: TypeAlias = Literal["system", "user", "application", "service"]
ACTOR_TYPES: tuple[ActorType, ...] = ("system", "user", "application", "service")


def _is_text(value: object) -> bool:
    # Validators see whatever the caller passed, whatever the annotations say.
    return isinstance(value, str)


def _check_type(_: object, __: object, value: str) -> None:
    if value not in ACTOR_TYPES:
        raise InvalidArgumentError(
            f"actor type must be one of {', '.join(ACTOR_TYPES)} (got {value!r})"
        )


def _check_id(_: object, __: object, value: str) -> None:
    if not _is_text(value) or not value.strip():
        raise InvalidArgumentError("actor id must be a non-empty str")
    if has_lone_surrogate(value):
        raise InvalidArgumentError("actor id must not contain a lone surrogate (not Unicode)")


def _check_name(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if not _is_text(value):
        raise InvalidArgumentError("actor name must be a str or None")
    if has_lone_surrogate(value):
        raise InvalidArgumentError("actor name must not contain a lone surrogate (not Unicode)")


@attrs.frozen
class Actor:
    """The user, application, service or the system itself, behind a change."""

    type: ActorType = attrs.field(validator=_check_type)
    id: str = attrs.field(validator=_check_id)
    name: str | None = attrs.field(default=None, validator=_check_name)

    @classmethod
    def user(cls, id: str, name: str | None = None) -> Actor:
        """A human user."""
        return cls("user", id, name)

    @classmethod
    def application(cls, id: str, name: str | None = None) -> Actor:
        """An application (a plugin, an integration)."""
        return cls("application", id, name)

    @classmethod
    def service(cls, id: str, name: str | None = None) -> Actor:
        """A background service or automation."""
        return cls("service", id, name)

    def to_dict(self) -> dict[str, str | None]:
        """The JSON form stored in the change log."""
        return {"type": self.type, "id": self.id, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, str | None]) -> Actor:
        """The inverse of :meth:`to_dict`."""
        return cls(data["type"], data["id"], data.get("name"))  # type: ignore[arg-type]


SYSTEM_ACTOR = Actor("system", "system", "System")
