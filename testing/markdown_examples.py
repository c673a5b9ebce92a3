"""Run the ```python examples of a Markdown document, so documentation cannot rot.

Every block fenced as ```python runs, in document order, in one shared namespace, the
way a reader would paste them into one session; its own ``assert`` statements are the
checks. A block fenced as ```python no-run (e.g. one that needs a PostgreSQL server) is
only compiled. Other words after ``python`` are flags a test may look for
(:attr:`CodeBlock.flags`). Tracebacks point at the Markdown file's own line numbers.

>>> doc = "Intro\\n\\n```python\\nx = 2\\n```\\n\\n```python no-run\\ny = x + 1\\n```\\n"
>>> [(block.line, block.runs) for block in python_blocks(doc)]
[(3, True), (7, False)]
>>> run_python_blocks(python_blocks(doc), filename="doc.md")["x"]
2
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

__all__ = ["CodeBlock", "python_blocks", "run_python_blocks"]

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
NO_RUN = "no-run"


@attrs.frozen
class CodeBlock:
    """One fenced code block: ``line`` is the 1-based line of its opening fence."""

    line: int
    info: str
    source: str

    @property
    def language(self) -> str:
        """The first word of the info string (``python``)."""
        words = self.info.split()
        return words[0] if words else ""

    @property
    def flags(self) -> frozenset[str]:
        """The words after the language (``no-run``, or your own markers)."""
        return frozenset(self.info.split()[1:])

    @property
    def runs(self) -> bool:
        """False when the info string carries the ``no-run`` flag."""
        return NO_RUN not in self.flags


def python_blocks(markdown: str) -> tuple[CodeBlock, ...]:
    """The ```python blocks of ``markdown``, in document order."""
    return tuple(block for block in _fenced_blocks(markdown) if block.language == "python")


def run_python_blocks(
    blocks: Iterable[CodeBlock], *, filename: str, given: dict[str, object] | None = None
) -> dict[str, object]:
    """Execute the runnable blocks in order in one namespace (compiling the others),
    which starts with ``given`` (e.g. a test database's DSN); return the namespace. An
    exception, a failed ``assert`` included, propagates."""
    namespace: dict[str, object] = {"__name__": "__markdown_examples__", **(given or {})}
    for block in blocks:
        # Leading newlines make the compiled line numbers those of the Markdown file;
        # dont_inherit keeps this module's `from __future__` imports out of the examples.
        code = compile("\n" * block.line + block.source, filename, "exec", dont_inherit=True)
        if block.runs:
            exec(code, namespace)
    return namespace


def _fenced_blocks(markdown: str) -> Iterable[CodeBlock]:
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        start = index
        while index < len(lines) and not _closes(lines[index], fence):
            index += 1
        body = [_dedent(line, indent) for line in lines[start:index]]
        yield CodeBlock(line=start, info=opening["info"], source="\n".join(body) + "\n")
        index += 1  # past the closing fence


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(line) - len(line.lstrip(" ")) <= 3 and (
        stripped == fence[0] * len(stripped) and len(stripped) >= len(fence)
    )


def _dedent(line: str, indent: int) -> str:
    removable = len(line) - len(line.lstrip(" "))
    return line[min(indent, removable) :]
