"""docs/guide.md runs: its ```python blocks execute in order in one namespace and their
own ``assert`` statements hold; the custom adapter it shows passes its contract suite."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from reactive_entities.testing.markdown_examples import (
    CodeBlock,
    python_blocks,
    run_python_blocks,
)

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"
TEST_MODULE = "test-module"


@pytest.fixture(scope="module")
def blocks() -> tuple[CodeBlock, ...]:
    """The guide's python blocks, in document order."""
    return python_blocks(GUIDE.read_text(encoding="utf-8"))


def _asserts(block: CodeBlock) -> int:
    return sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(block.source)))


@pytest.mark.postgres
def test_guide_blocks_run_and_their_asserts_hold(
    blocks: tuple[CodeBlock, ...], pg_dsn: str, pg_schema: str
) -> None:
    """Every runnable block runs in one shared namespace (the transactions section on
    the test run's PostgreSQL); a failing assert fails here."""
    given: dict[str, object] = {"PG_DSN": pg_dsn, "PG_SCHEMA": pg_schema}
    namespace = run_python_blocks(blocks, filename=str(GUIDE), given=given)
    assert "incidents" in namespace
    assert "engine" in namespace


def test_guide_checks_what_it_claims(blocks: tuple[CodeBlock, ...]) -> None:
    """The guide is mostly executed: many blocks, most carrying asserts."""
    runnable = [block for block in blocks if block.runs]
    assert len(runnable) >= 8
    assert sum(_asserts(block) for block in runnable) >= 25
    assert sum(1 for block in runnable if _asserts(block) == 0) <= 1  # the contract module


def test_guide_skips_only_the_postgres_example(blocks: tuple[CodeBlock, ...]) -> None:
    """Just the PostgreSQL block is fenced ``no-run`` (it needs a server); it compiles."""
    skipped = [block for block in blocks if not block.runs]
    assert len(skipped) == 1
    assert "compose.postgres(" in skipped[0].source
    compile(skipped[0].source, str(GUIDE), "exec")


def test_guide_custom_adapter_passes_its_contract_suite(
    blocks: tuple[CodeBlock, ...], tmp_path: Path
) -> None:
    """The block marked ``test-module`` is a test module pytest runs green, as §9 says."""
    [module] = [block for block in blocks if TEST_MODULE in block.flags]
    path = tmp_path / "test_guide_custom_adapter.py"
    path.write_text(module.source, encoding="utf-8")
    pytest_args = ["-q", "-p", "no:cacheprovider", "-W", "error", "--rootdir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", *pytest_args, str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
    assert "failed" not in done.stdout
