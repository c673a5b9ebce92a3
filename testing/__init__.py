"""Public test helpers: one pytest contract suite per port, and builders.

A custom adapter proves itself by subclassing the suite and providing a fixture::

    from reactive_entities.testing import EntityStoreContract

    class TestMyStore(EntityStoreContract):
        @pytest.fixture
        def store(self, clock):
            yield MyStore(clock=clock)

An async adapter does the same with the ``Async…Contract`` twins, whose fixture returns
a function opening the adapter as an async context manager (see each suite).

Importing this package needs pytest (a test dependency, not a runtime one).
"""

from reactive_entities.testing.async_feed_contract import AsyncChangeFeedContract
from reactive_entities.testing.async_store_contract import AsyncEntityStoreContract
from reactive_entities.testing.builders import make_plan, record
from reactive_entities.testing.clock_contract import ClockContract
from reactive_entities.testing.emitter_contract import EmitterContract, sample_events
from reactive_entities.testing.feed_contract import ChangeFeedContract
from reactive_entities.testing.secret_registry_contract import SecretRegistryContract
from reactive_entities.testing.store_contract import EntityStoreContract

__all__ = [
    "AsyncChangeFeedContract",
    "AsyncEntityStoreContract",
    "ChangeFeedContract",
    "ClockContract",
    "EmitterContract",
    "EntityStoreContract",
    "SecretRegistryContract",
    "make_plan",
    "record",
    "sample_events",
]
