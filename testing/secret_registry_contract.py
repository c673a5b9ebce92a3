"""The ``SecretRegistry`` contract: a pytest suite for secret registry adapters::

class TestMyRegistry(SecretRegistryContract):
    @pytest.fixture
    def registry(self):
        yield MyRegistry()
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from reactive_entities.ports.secret_registry import SecretRegistry
from reactive_entities.testing.overrides import must_override

__all__ = ["SecretRegistryContract"]


class SecretRegistryContract:
    """Behaviour every ``SecretRegistry`` must show (SPEC §4)."""

    @pytest.fixture
    def registry(self) -> Iterator[SecretRegistry]:
        """Override: yield the registry under test."""
        yield from must_override("subclass SecretRegistryContract and provide a `registry` fixture")

    def test_unknown_run_has_no_secrets(self, registry: SecretRegistry) -> None:
        """An unknown run's set is empty and masks nothing."""
        secrets = registry.secrets_for("nobody")
        assert len(secrets) == 0
        assert not secrets

    def test_register_then_look_up(self, registry: SecretRegistry) -> None:
        """Registered values come back, de-duplicated; empty strings are ignored."""
        registry.register("run-1", ["alpha-secret", "alpha-secret", "", "beta-secret"])
        secrets = registry.secrets_for("run-1")
        assert secrets.values == frozenset({"alpha-secret", "beta-secret"})
        assert secrets.maskable == ("alpha-secret", "beta-secret")

    def test_short_values_are_kept_but_not_maskable(self, registry: SecretRegistry) -> None:
        """Values under 4 characters are registered but never masked."""
        registry.register("run-1", ["abc", "abcd"])
        secrets = registry.secrets_for("run-1")
        assert "abc" in secrets
        assert secrets.maskable == ("abcd",)

    def test_registering_again_adds(self, registry: SecretRegistry) -> None:
        """A second ``register`` for the run extends its set."""
        registry.register("run-1", ["first-secret"])
        registry.register("run-1", ["second-secret"])
        assert registry.secrets_for("run-1").values == frozenset({"first-secret", "second-secret"})

    def test_runs_are_isolated(self, registry: SecretRegistry) -> None:
        """One run's secrets are not another's."""
        registry.register("run-1", ["one-secret"])
        registry.register("run-2", ["two-secret"])
        assert registry.secrets_for("run-1").values == frozenset({"one-secret"})
        assert registry.secrets_for("run-2").values == frozenset({"two-secret"})

    def test_drop_forgets_and_is_idempotent(self, registry: SecretRegistry) -> None:
        """``drop`` removes the run's secrets; dropping twice or an unknown run is fine."""
        registry.register("run-1", ["one-secret"])
        registry.drop("run-1")
        registry.drop("run-1")
        registry.drop("never-registered")
        assert not registry.secrets_for("run-1")

    @pytest.mark.parametrize("bad", ["a-single-string", [b"bytes"], [1234]])
    def test_rejects_values_that_are_not_strings(
        self, registry: SecretRegistry, bad: object
    ) -> None:
        """A bare string or non-str values raise a ``ValueError``/``TypeError``."""
        with pytest.raises((ValueError, TypeError)):
            registry.register("run-1", bad)  # type: ignore[arg-type]
        assert not registry.secrets_for("run-1")

    def test_concurrent_registrations_all_land(self, registry: SecretRegistry) -> None:
        """Threads registering into one run lose nothing."""

        def add(t: int) -> None:
            for i in range(20):
                registry.register("run-1", [f"secret-{t}-{i}"])

        threads = [threading.Thread(target=add, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(registry.secrets_for("run-1")) == 8 * 20
