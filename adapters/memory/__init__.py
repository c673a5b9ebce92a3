"""In-memory adapters: store, emitter with subscriptions, secret registry, clocks."""

from reactive_entities.adapters.memory.clock import ManualClock, SystemClock
from reactive_entities.adapters.memory.emitter import (
    FanOutEmitter,
    InProcessEmitter,
    Subscription,
)
from reactive_entities.adapters.memory.secret_registry import InMemorySecretRegistry
from reactive_entities.adapters.memory.store import InMemoryEntityStore

__all__ = [
    "FanOutEmitter",
    "InMemoryEntityStore",
    "InMemorySecretRegistry",
    "InProcessEmitter",
    "ManualClock",
    "Subscription",
    "SystemClock",
]
