"""Ports: the small ``typing.Protocol`` interfaces the engine talks to.

A custom adapter needs no inheritance; it implements the methods. Our own adapters
subclass the protocols so a missing method is a type error.
"""

from reactive_entities.ports.clock import Clock
from reactive_entities.ports.emitter import Emitter, Subscription, SubscriptionHub
from reactive_entities.ports.feed import ChangeFeed, Claim, ConsumerStatus, DeadLetter
from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.ports.store import EntityStore, StoreTransaction

__all__ = [
    "ChangeFeed",
    "Claim",
    "ConsumerStatus",
    "DeadLetter",
    "Clock",
    "Emitter",
    "EntityStore",
    "SecretRegistry",
    "StoreTransaction",
    "Subscription",
    "SubscriptionHub",
]
