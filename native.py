"""Which build of the hot path runs: compiled with mypyc, or pure Python.

The modules in ``HOT_PATH`` are compiled from this very source when the package is
installed where mypyc and a C compiler are available (``setup.py`` reads this list);
elsewhere, or with ``REACTIVE_ENTITIES_PURE=1`` at install time, the same modules run as
Python. Both builds behave alike and pass the same tests.

>>> isinstance(compiled, bool)
True
"""

from __future__ import annotations

import importlib
from importlib.machinery import ExtensionFileLoader

__all__ = ["HOT_PATH", "compiled", "compiled_modules"]

#: What every in-memory write runs: documents checked, diffed, masked, planned.
HOT_PATH = (
    "reactive_entities.domain.json",
    "reactive_entities.domain.diff",
    "reactive_entities.domain.masking",
    "reactive_entities.domain.planning",
    "reactive_entities.domain.transitions",
    "reactive_entities.domain.validity",
    "reactive_entities.domain.writes",
    "reactive_entities.domain.automaton",
)


def compiled_modules() -> tuple[str, ...]:
    """The modules of ``HOT_PATH`` that were loaded from a compiled extension."""
    found = []
    for name in HOT_PATH:
        spec = importlib.import_module(name).__spec__
        if spec is not None and isinstance(spec.loader, ExtensionFileLoader):
            found.append(name)
    return tuple(found)


#: True when the whole hot path runs compiled (the build is all or nothing).
compiled: bool = compiled_modules() == HOT_PATH
