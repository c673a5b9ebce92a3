"""Fixed-size keys for an entity: the index key and the advisory-lock key.

Entity ids may be kilobytes long, more than a btree entry holds, so the tables index a
16-byte BLAKE2b digest of ``(kind, entity_id)`` instead (``entity_key``, a ``uuid``
column). The advisory lock of an entity is a signed 64-bit BLAKE2b digest of
``(schema, kind, entity_id)``: two schemas on one database never contend.

Each part is length-prefixed before hashing, so no two different tuples hash the same
input.

>>> keys = EntityKeys("reactive_entities")
>>> len(keys.entity_key("incident", "inc-1"))
32
>>> keys.entity_key("ab", "c") == keys.entity_key("a", "bc")
False
>>> -(2**63) <= keys.lock_key("incident", "inc-1") < 2**63
True
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["EntityKeys"]


def _part(text: str) -> bytes:
    # surrogatepass: hashing must not be where an odd string fails (the database decides).
    data = text.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(8, "big") + data


class EntityKeys:
    """Computes the keys of entities for the tables of one schema."""

    __slots__ = ("_lock_base",)

    def __init__(self, schema: str) -> None:
        base = blake2b(digest_size=8, person=b"re-lock")
        base.update(_part(schema))
        self._lock_base = base

    @staticmethod
    def entity_key(kind: str, entity_id: str) -> str:
        """The ``entity_key`` column value: 32 hex digits (PostgreSQL reads it as a uuid)."""
        digest = blake2b(digest_size=16, person=b"re-entity")
        digest.update(_part(kind))
        digest.update(_part(entity_id))
        return digest.hexdigest()

    def lock_key(self, kind: str, entity_id: str) -> int:
        """The entity's ``pg_advisory_xact_lock`` key in this schema (signed 64 bits)."""
        digest = self._lock_base.copy()
        digest.update(_part(kind))
        digest.update(_part(entity_id))
        return int.from_bytes(digest.digest(), "big", signed=True)
