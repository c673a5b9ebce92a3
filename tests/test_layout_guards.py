"""DESIGN §1 — the layout rules, guarded: one top-level name, absolute imports, package data."""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.resources
import importlib.util
import inspect
import pkgutil
from pathlib import Path

import pytest

import reactive_entities
from reactive_entities.domain.writes import plan_write
from reactive_entities.engine import EntityHandle
from reactive_entities.kind_core import KindCore
from reactive_entities.transaction import Transaction

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ["domain", "ports", "adapters", "testing"]


def _package_modules() -> list[str]:
    names = ["reactive_entities"]
    for info in pkgutil.walk_packages(reactive_entities.__path__, "reactive_entities."):
        names.append(info.name)
    return sorted(n for n in names if n != "reactive_entities.__main__")


def test_domain_is_not_a_top_level_module() -> None:
    """DESIGN §1.5: `domain` must not leak as a top-level importable name."""
    assert importlib.util.find_spec("domain") is None
    assert importlib.util.find_spec("adapters") is None


def test_no_relative_imports_anywhere() -> None:
    """DESIGN §1.1: every import in the package is absolute."""
    offenders = []
    for path in ROOT.glob("**/*.py"):
        if any(part in {".venv", ".venv-pure", "build"} for part in path.parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_no_init_in_test_folders_and_no_root_conftest() -> None:
    """DESIGN §1.2: tests/, property_tests/, bench/, docs/ have no __init__.py; no root conftest."""
    for folder in ("tests", "property_tests", "bench", "docs"):
        assert not (ROOT / folder / "__init__.py").exists()
    assert not (ROOT / "conftest.py").exists()


def test_migrations_are_package_data() -> None:
    """DESIGN §1.5: migrations are read through importlib.resources."""
    migrations = importlib.resources.files("reactive_entities.adapters.postgres") / "migrations"
    names = sorted(p.name for p in migrations.iterdir() if p.name.endswith(".sql"))
    assert names
    assert names[0].startswith("0001_")
    assert (importlib.resources.files("reactive_entities") / "py.typed").is_file()


def test_domain_does_not_read_the_clock_or_randomness() -> None:
    """DESIGN §2: no clock read, random id or I/O call appears in domain/ source."""
    banned = ("datetime.now", ".now(", "utcnow", "uuid4", "random.", "open(", "print(")
    for path in (ROOT / "domain").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for word in banned:
            assert word not in source, f"{path.name} uses {word}"


@pytest.mark.parametrize("module", _package_modules())
def test_doctests(module: str) -> None:
    """Every docstring example in the package runs (STYLE §17)."""
    mod = importlib.import_module(module)
    failures, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, report=True)
    assert failures == 0


def test_the_write_pipeline_stays_one_short_function() -> None:
    """SPEC §5: the whole mutate/remove pipeline reads as one function of ≤ 60 lines."""
    lines, _ = inspect.getsourcelines(Transaction._write)
    assert len(lines) <= 60, f"Transaction._write grew to {len(lines)} lines"
    pipeline = "".join(lines)
    assert "._plan(" in pipeline  # KindCore._plan: plan_write, shared with the asyncio engine
    assert "plan_write(" in "".join(inspect.getsourcelines(KindCore._plan)[0])
    assert ".record(" in pipeline
    # Read as text: in the compiled build ``plan_write`` has no Python source to inspect.
    writes = importlib.resources.files("reactive_entities.domain") / "writes.py"
    assert plan_write.__name__ == "plan_write"
    assert "plan_change(" in writes.read_text(encoding="utf-8")
    entry, _ = inspect.getsourcelines(EntityHandle._write)
    assert len(entry) <= 60, f"EntityHandle._write grew to {len(entry)} lines"
