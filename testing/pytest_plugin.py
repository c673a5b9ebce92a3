"""The pytest plugin this repository's test runs load (``-p``, see ``pyproject.toml``).

It registers the hypothesis profiles and the fixtures shared by ``tests/`` and
``property_tests/``.

PostgreSQL fixtures:

* ``pg_dsn`` (session) — a database to test against: ``RE_TEST_PG_DSN`` if set, else a
  throwaway :class:`PostgresServer` started on first use (only when a test asks) and
  stopped at the end of the session, whatever happened;
* ``pg_server`` (session) — that server, or None when ``RE_TEST_PG_DSN`` is used;
* ``pg_schema`` (module) — a fresh schema name for the test module, dropped afterwards.

Tests using them are marked ``postgres`` automatically (``-m "not postgres"`` skips them).

Coroutine tests (``async def test_…``) run on a fresh event loop each (``asyncio.run``),
bounded by :data:`ASYNC_TEST_TIMEOUT` seconds so a hang fails instead of stalling the
run; their fixtures are plain (async set-up goes in the test, e.g. ``async with``).
This is all the asyncio support the suite needs, so it takes no extra dependency.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from reactive_entities.testing.postgres_server import PostgresServer

#: Seconds an ``async def`` test may run before it fails.
ASYNC_TEST_TIMEOUT = 120.0

#: Names a database to run the PostgreSQL tests against instead of a throwaway server.
DSN_VARIABLE = "RE_TEST_PG_DSN"

settings.register_profile(
    "default",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("ci", parent=settings.get_profile("default"), print_blob=True)
# The second build's run in `make test` (pure Python): every property, fewer examples.
settings.register_profile("quick", parent=settings.get_profile("ci"), max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer | None]:
    """The session's throwaway PostgreSQL server (None when ``RE_TEST_PG_DSN`` is set)."""
    if os.environ.get(DSN_VARIABLE):
        yield None
        return
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PostgresServer | None) -> str:
    """A libpq DSN of the database the PostgreSQL tests use."""
    if pg_server is None:
        return os.environ[DSN_VARIABLE]
    return pg_server.dsn


@pytest.fixture(scope="module")
def pg_schema(pg_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema name for this test module (nothing is created); dropped afterwards."""
    module = re.sub(r"[^a-z0-9]+", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    name = f"re_{module[:40]}_{secrets.token_hex(4)}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


_PG_FIXTURES = frozenset({"pg_server", "pg_dsn", "pg_schema"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a PostgreSQL fixture ``postgres``."""
    for item in items:
        if _PG_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test to completion on its own event loop."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    arguments = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(asyncio.wait_for(function(**arguments), ASYNC_TEST_TIMEOUT))
    return True


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def aio_backend(request: pytest.FixtureRequest) -> tuple[str, str | None, str | None]:
    """``(backend, dsn, schema)`` for :func:`reactive_entities.testing.aio_world.open_world`:
    each asyncio engine test runs on the in-memory store and on PostgreSQL."""
    if request.param == "memory":
        return ("memory", None, None)
    return ("postgres", request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema"))
