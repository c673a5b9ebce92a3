"""Build hook: compile the in-memory hot path with mypyc, or ship pure Python.

Everything declarative lives in ``pyproject.toml``; this file only adds the compiled
modules: those ``HOT_PATH`` in ``native.py`` lists, compiled from the very same typed
source the pure-Python build runs (``reactive_entities.compiled`` says which is in use).
The build falls back to pure Python, with a warning, whenever compiling is not possible:

* ``REACTIVE_ENTITIES_PURE=1`` asks for the pure-Python build;
* mypyc is not importable (it comes with ``mypy``, a build requirement);
* mypyc rejects (or crashes on) the sources, or there is no C compiler or no Python
  headers.

A failed compile never fails the install: the package is the same without it.

The compiled modules share one C library, which mypyc names after its *group*. Naming
the group ``reactive_entities._native`` puts that library inside the package
(``reactive_entities/_native__mypyc.*.so``), so the wheel's only top-level name stays
``reactive_entities`` (DESIGN §1 rule 5).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

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


def _wanted() -> bool:
    """Whether to try compiling: not asked for pure Python, and mypyc is there."""
    if os.environ.get(PURE, "") not in ("", "0"):
        print(f"reactive-entities: {PURE} is set; building pure Python", file=sys.stderr)
        return False
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        _warn("mypyc is not available")
        return False
    return True


# mypyc runs in a child process: a crash of the compiler (it has segfaulted on a constant
# it tried to fold) must not take the install down with it. It writes the C sources under
# build/mypyc and hands back the extensions to compile.
_MYPYCIFY = """
import json, sys
from mypyc.build import mypycify
paths, group, target, out = json.loads(sys.argv[1])
# Modules it follows but does not compile (the shell, the adapters) are type-checked by
# `make check`, not here: their errors, or a missing optional import, never stop a build.
extensions = mypycify(
    ["--follow-imports=silent", *paths], opt_level="3", group_name=group, target_dir=target
)
keys = ("name", "sources", "include_dirs", "depends", "extra_compile_args")
with open(out, "w", encoding="utf-8") as f:
    json.dump([{key: getattr(e, key) for key in keys} for e in extensions], f)
"""


def _mypycify() -> list[Extension]:
    # mypy names a module after the folders holding an ``__init__.py`` above it: the
    # checkout's folder is the package, but its name is whatever the clone used. A link
    # named ``reactive_entities`` to it gives the sources their real module names.
    with tempfile.TemporaryDirectory(prefix="re-mypyc-") as staging:
        (Path(staging) / "reactive_entities").symlink_to(ROOT, target_is_directory=True)
        paths = [str(Path(staging) / "reactive_entities" / module) for module in _hot_path()]
        out = Path(staging) / "extensions.json"
        argument = json.dumps([paths, GROUP, str(ROOT / "build" / "mypyc"), str(out)])
        done = subprocess.run([sys.executable, "-c", _MYPYCIFY, argument], cwd=ROOT, check=False)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"mypyc exited with status {done.returncode}")
        specs = json.loads(out.read_text(encoding="utf-8"))
    return [Extension(**spec) for spec in specs]


class OptionalBuildExt(build_ext):
    """``build_ext`` that compiles the hot path if it can, and otherwise builds nothing:
    a failed compile leaves the pure-Python package, never a failed install."""

    def finalize_options(self) -> None:
        dist = self.distribution
        if dist.ext_modules == _PLACEHOLDER:  # compile once, when first asked for
            try:
                dist.ext_modules = _mypycify()
            except Exception as error:
                _warn(f"mypyc could not compile the hot path ({error})")
                dist.ext_modules = []
        super().finalize_options()

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:
            _warn(f"compiling the hot path failed ({type(error).__name__}: {error})")
            self._discard()
        if not self.extensions:
            self._discard()

    def _discard(self) -> None:
        # A compiled module without its shared library (or the reverse) would not import:
        # keep none of them, nor any an earlier build left in the build folder (a wheel
        # is assembled from it).
        for ext in self.extensions:
            Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        modules = [f"{GROUP}__mypyc"] + [
            "reactive_entities." + path.removesuffix(".py").replace("/", ".")
            for path in _hot_path()
        ]
        for module in modules:
            Path(self.build_lib, self.get_ext_filename(module)).unlink(missing_ok=True)
        self.extensions = self.distribution.ext_modules = []


# Makes setuptools run ``build_ext`` (and tag the wheel for this platform);
# ``OptionalBuildExt`` replaces it by mypyc's extensions.
_PLACEHOLDER = [Extension(f"{GROUP}__mypyc", sources=[])]


class BuildPy(build_py):
    """``build_py`` that leaves this file out: the repository root is the package, but
    its build script is no module of it."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (m[0] == "reactive_entities" and m[1] == "setup")]


setup(
    ext_modules=_PLACEHOLDER if _wanted() else [],
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPy},
)
