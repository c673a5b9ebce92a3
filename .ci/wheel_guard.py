"""Guard what we ship: build the wheel and check its only top-level name is
``reactive_entities`` (DESIGN §1 rule 5), and that no stray top-level module such as
``domain`` is importable in this environment."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "build",
                "--wheel",
                "--no-isolation",
                "--outdir",
                out,
                str(root),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (wheel,) = Path(out).glob("*.whl")
        names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    problems = []
    if top != {"reactive_entities"}:
        problems.append(f"wheel top-level names: {sorted(top)} (want only reactive_entities)")
    for required in (
        "reactive_entities/py.typed",
        "reactive_entities/adapters/postgres/migrations/0001_initial.sql",
    ):
        if required not in names:
            problems.append(f"wheel lacks {required}")
    if "reactive_entities/setup.py" in names:
        problems.append("wheel ships the build script setup.py as a module")
    if any("/tests/" in n or "/property_tests/" in n or "/bench/" in n for n in names):
        problems.append("wheel ships tests, property tests or benchmarks")
    if importlib.util.find_spec("domain") is not None:
        problems.append("a top-level `domain` module is importable (compat editable mode?)")
    for problem in problems:
        print(f"wheel guard: {problem}", file=sys.stderr)
    if not problems:
        print(f"wheel guard: ok ({len(names)} files, top-level {sorted(top)})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
