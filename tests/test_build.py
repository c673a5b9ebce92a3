"""The two builds of the hot path (issue 13): compiled with mypyc, or pure Python."""

from __future__ import annotations

import importlib
import os
import shutil

import reactive_entities
from reactive_entities import native


def test_compiled_tells_whether_the_hot_path_runs_compiled() -> None:
    """``reactive_entities.compiled`` is True exactly when every hot-path module is compiled."""
    assert reactive_entities.compiled is (native.compiled_modules() == native.HOT_PATH)


def test_the_build_is_all_or_nothing() -> None:
    """Either every hot-path module is loaded compiled or none is."""
    assert native.compiled_modules() in ((), native.HOT_PATH)


def test_the_hot_path_names_pure_domain_modules() -> None:
    """Every compiled module is a module of the pure core, importable in both builds."""
    for name in native.HOT_PATH:
        assert name.startswith("reactive_entities.domain.")
        assert importlib.import_module(name).__all__


def test_the_run_tests_the_build_it_expects() -> None:
    """The build that runs is the one expected: ``RE_EXPECT_BUILD`` (``make test`` sets
    ``pure`` for its pure-Python run), else compiled wherever a C compiler exists — so a
    silent fallback to pure Python cannot pass unnoticed."""
    default = "compiled" if shutil.which("cc") else "pure"
    expected = os.environ.get("RE_EXPECT_BUILD", default)
    assert expected in ("pure", "compiled")
    assert reactive_entities.compiled is (expected == "compiled"), (
        f"expected the {expected} build (set RE_EXPECT_BUILD to say otherwise)"
    )
