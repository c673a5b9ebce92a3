"""README.md's embedding example runs and its ``assert`` statements hold."""

from __future__ import annotations

from pathlib import Path

from reactive_entities.testing.markdown_examples import python_blocks, run_python_blocks

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs() -> None:
    """The README's python blocks run in order in one namespace; none is skipped."""
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python example"
    assert all(block.runs for block in blocks)
    assert any("assert " in block.source for block in blocks)
    namespace = run_python_blocks(blocks, filename=str(README))
    assert "engine" in namespace
