"""Change ids (SPEC §6): UUID4 strings, unique, and never shared by a forked child."""

from __future__ import annotations

import os
import uuid

import pytest

from reactive_entities.ids import new_change_id


def test_ids_are_canonical_uuid4_strings() -> None:
    """Every id parses as a version-4, RFC 4122 UUID and prints back identically."""
    for _ in range(2000):
        text = new_change_id()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_do_not_repeat() -> None:
    """100 000 ids (hundreds of batches) are all distinct."""
    ids = [new_change_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_never_reuses_parent_ids() -> None:
    """A forked child draws fresh ids, not the parent's queued ones."""
    new_change_id()  # make sure the parent holds a partly used batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        os.write(write, "\n".join(new_change_id() for _ in range(300)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {new_change_id() for _ in range(300)}
    assert len(child) == 300
    assert not child & parent
