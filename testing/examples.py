"""Example state classes shared by tests, docs and benchmarks."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import attrs

from reactive_entities.engine import Engine, EntityHandle
from reactive_entities.testing.plugin import DictStorage

__all__ = ["Incident", "Satellite", "Severity", "Status", "define_incidents"]

Status = Literal["open", "investigating", "resolved"]
Severity = Literal["low", "high"]


@attrs.frozen
class Incident:
    """An incident as a plugin might own it; ``token`` is meant to be declared sensitive."""

    status: Status
    severity: Severity
    title: str = ""
    token: str = ""
    system_ids: tuple[str, ...] = ()


@attrs.frozen
class Satellite:
    """A satellite with a nested, optional and time-typed state."""

    status: Literal["nominal", "degraded", "lost"]
    region: str
    launched_at: datetime | None = None
    telemetry: dict[str, float] = attrs.Factory(dict)


def define_incidents(
    engine: Engine, storage: DictStorage[Incident] | None = None, *, sensitive: bool = True
) -> tuple[EntityHandle[Incident], DictStorage[Incident]]:
    """Define the ``incident`` kind on ``engine`` over a dict storage."""
    storage = storage if storage is not None else DictStorage()
    handle = engine.define_entity(
        "incident", Incident, read=storage.read, sensitive=("token",) if sensitive else ()
    )
    return handle, storage
