"""Build hook: compile the in-memory hot path with mypyc, or ship pure Python.

Everything declarative lives in ``pyproject.toml``; this file only adds the compiled
modules. The modules listed in ``COMPILED`` are compiled from the very same typed source
the pure-Python build runs (``reactive_entities.compiled`` says which is in use). The
build falls back to pure Python, with a warning, whenever compiling is not possible:

* ``REACTIVE_ENTITIES_PURE=1`` asks for the pure-Python build;
* mypyc is not importable (it comes with ``mypy``, a build requirement);
* mypyc rejects the sources, or there is no C compiler or no Python headers.

A failed compile never fails the install: the package is the same without it.

The compiled modules share one C library, which mypyc names after its *group*. Naming
the group ``reactive_entities._native`` puts that library inside the package
(``reactive_entities/_native__mypyc.*.so``), so the wheel's only top-level name stays
``reactive_entities`` (DESIGN §1 rule 5).
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PURE = "REACTIVE_ENTITIES_PURE"
GROUP = "reactive_entities._native"



def _hot_path() -> list[str]:
    """The source files of ``HOT_PATH`` in ``native.py`` (read, not imported: the
    package's dependencies need not be installed while it builds)."""
    tree = ast.parse((ROOT / "native.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "HOT_PATH":
            modules: tuple[str, ...] = ast.literal_eval(node.value)
            return [m.removeprefix("reactive_entities.").replace(".", "/") + ".py" for m in modules]
    raise LookupError("native.py defines no HOT_PATH")


def _warn(message: str) -> None:
    print(f"reactive-entities: {message}; building pure Python", file=sys.stderr)


def _compiled_extensions() -> list[object]:
    if os.environ.get(PURE, "") not in ("", "0"):
        print(f"reactive-entities: {PURE} is set; building pure Python", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not available")
        return []
    # mypy names a module after the folders holding an ``__init__.py`` above it: the
    # checkout's folder is the package, but its name is whatever the clone used. A link
    # named ``reactive_entities`` to it gives the sources their real module names.
    staging = Path(tempfile.mkdtemp(prefix="re-mypyc-"))
    (staging / "reactive_entities").symlink_to(ROOT, target_is_directory=True)
    paths = [str(staging / "reactive_entities" / module) for module in _hot_path()]
    try:
        return list(
            mypycify(
                paths,
                opt_level="3",
                group_name=GROUP,
                target_dir=str(ROOT / "build" / "mypyc"),
            )
        )
    except BaseException as error:  # mypyc exits via SystemExit on type errors
        _warn(f"mypyc could not compile the hot path ({type(error).__name__}: {error})")
        return []


class OptionalBuildExt(build_ext):
    """``build_ext`` that turns a failed compile into the pure-Python build."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:
            _warn(f"compiling the hot path failed ({type(error).__name__}: {error})")
            self._discard()

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            _warn(f"compiling {getattr(ext, 'name', ext)} failed ({error})")
            self._discard()
            raise

    def _discard(self) -> None:
        # A compiled module without its shared library (or the reverse) would not import:
        # ship none of them.
        for ext in self.extensions:
            built = Path(self.get_ext_fullpath(ext.name))
            built.unlink(missing_ok=True)
        self.extensions = []
        self.distribution.ext_modules = []


setup(ext_modules=_compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
