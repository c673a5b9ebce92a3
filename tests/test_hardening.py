"""Issue 12 / SPEC §16 — one regression test per hardening item, on both stores where a
store is involved."""

from __future__ import annotations

import itertools
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs
import pytest

from reactive_entities import (
    ChangeEvent,
    EngineClosedError,
    InvalidArgumentError,
    StateValidationError,
    StoreError,
    compose,
)
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.engine import Engine
from reactive_entities.testing.plugin import DictStorage


@attrs.frozen
class Order:
    """A state with a Literal, an int, a sensitive token and an in_-validated field."""

    status: Literal["open", "paid", "closed"]
    total_cents: int
    stage: str = attrs.field(default="new", validator=attrs.validators.in_(["new", "done"]))
    token: str | None = None
    note: str = ""
    amount: int = 0


@pytest.fixture(params=["memory", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine of each store."""
    if request.param == "memory":
        with compose.in_memory() as engine:
            yield engine
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        with compose.postgres(dsn, schema=schema) as engine:
            yield engine


_KINDS = itertools.count()


def _orders(engine: Engine) -> tuple[Any, DictStorage[Order]]:
    storage: DictStorage[Order] = DictStorage()
    name = f"order{next(_KINDS)}"  # PostgreSQL schemas are shared by the module's tests
    return engine.define_entity(name, Order, read=storage.read, sensitive={"token"}), storage


def _escapes(secret: str) -> list[str]:
    return [
        secret,
        repr(secret)[1:-1],
        repr("'\"" + secret)[4:-1],
        json.dumps(secret)[1:-1],
        secret.replace("\\", "\\\\"),
    ]


def _recording(called: list[int]) -> Callable[[], Order]:
    def apply() -> Order:
        called.append(1)
        return Order("open", 1)

    return apply


# -- 1. repr-escaped secrets in StateValidationError -----------------------------------


def test_repr_escaped_secret_is_masked_in_validation_errors(engine: Engine) -> None:
    """Item 1: ``ab'cd-Sekret-42`` quoted by ``repr`` as ``ab\\'cd-Sekret-42`` is masked."""
    handle, _ = _orders(engine)
    secret = "ab'cd-Sekret-42"
    engine.secrets.register("run-1", [secret])
    bad = {"status": "open", "total_cents": 1, "stage": f'x" {secret}'}
    with pytest.raises(StateValidationError) as caught:
        handle.mutate("o-1", lambda: bad, run_id="run-1")
    text = f"{caught.value}\n{caught.value!r}\n{dict(caught.value.field_errors)}"
    assert "stage" in caught.value.field_errors
    for form in _escapes(secret):
        assert form not in text


# -- 2. backslash-doubled secrets in handler-failure logs --------------------------------


def test_backslash_doubled_secret_is_masked_in_handler_failure_log(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 2: a handler's ``KeyError`` quoting ``C:\\vault\\key-7f3a`` logs it masked."""
    handle, storage = _orders(engine)
    secret = "C:\\vault\\key-7f3a"
    engine.secrets.register("run-1", [secret])

    def failing(event: ChangeEvent) -> None:
        raise KeyError(f"copy from {secret}")

    engine.subscribe(failing)
    with caplog.at_level(logging.WARNING):
        handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="run-1")
    messages = [r.getMessage() for r in caplog.records if "failed for" in r.getMessage()]
    assert messages, "the handler failure was logged"
    for message in messages:
        assert "KeyError" in message
        for form in _escapes(secret):
            assert form not in message


# -- 3. repr of a secret set; captured locals ----------------------------------------------


def test_secret_set_repr_shows_counts_never_values() -> None:
    """Item 3: ``repr(SecretSet)`` (and of its parts) shows counts, never a value."""
    secrets = SecretSet.of(["hunter2-secret", "abc"])
    texts = [repr(secrets), repr(secrets.values), repr(secrets.maskable), repr(secrets.finder)]
    assert repr(secrets) == "<SecretSet: 2 values, 1 maskable>"
    assert not any("hunter2" in t or "abc" in t for t in texts)


def _many_secrets() -> list[str]:
    return ["s3cr3t-alpha-1", "s3cr3t-beta-22", *(f"bulk-secret-{i:03}" for i in range(100))]


def test_no_secret_in_captured_locals_of_a_failing_mutate(engine: Engine) -> None:
    """Item 3: a failing mutate's traceback with captured locals holds no run secret."""
    handle, storage = _orders(engine)
    engine.secrets.register("run-1", _many_secrets())  # no local of this test holds them
    handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="run-1")

    def apply() -> Order:
        raise RuntimeError("plugin write failed")

    with pytest.raises(RuntimeError) as caught:
        handle.mutate("o-1", apply, run_id="run-1")
    formatted = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "secrets = <SecretSet: 102 values, 102 maskable>" in formatted
    assert not [s for s in _many_secrets() if s in formatted]


def test_no_secret_in_captured_locals_of_a_failing_register() -> None:
    """Item 3: ``register`` after close fails without its values in captured locals."""
    engine = compose.in_memory()
    engine.close()
    with pytest.raises(EngineClosedError) as caught:
        engine.secrets.register("run-1", ["never-shown-secret"])
    formatted = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "values = <hidden>" in formatted
    assert "never-shown-secret" not in formatted.replace('"never-shown-secret"', "")


# -- 4. a DSN password never in StoreError / CLI stderr ----------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:Pw-Zq81x%zz@localhost:1/db",
        "postgresql://app:Pw-Zq81x@localhost:1/db?password=Pw-Zq81x%zz",
        "host=localhost port=1 user=app password='Pw-Zq81x %zz' dbname=db sslmode=bogus",
    ],
)
def test_dsn_password_never_in_store_error(dsn: str) -> None:
    """Item 4: an unparseable or unreachable DSN's password is in no message or cause."""
    with pytest.raises(StoreError) as caught:
        compose.postgres(dsn, pool_timeout=1)
    texts = []
    error: BaseException | None = caught.value
    while error is not None:
        texts.append(f"{error}\n{error!r}")
        error = error.__cause__ or error.__context__
    joined = "\n".join(texts)
    assert "Pw-Zq81x" not in joined
    assert "could not connect to PostgreSQL" in joined


def test_dsn_password_never_on_cli_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Item 4: the CLI's one-line error for an unparseable DSN hides the password."""
    from reactive_entities.cli import main

    code = main(["migrate", "--dsn", "postgresql://app:Pw-Zq81x%zz@localhost:1/db"])
    captured = capsys.readouterr()
    assert code == 1
    assert "could not connect" in captured.err
    assert "Pw-Zq81x" not in captured.out + captured.err


# -- 5. values PostgreSQL cannot hold --------------------------------------------------------


@pytest.mark.parametrize("kind", ["instance", "mapping", "nested"])
def test_huge_ints_are_refused_up_front_by_every_store(engine: Engine, kind: str) -> None:
    """Item 5: an int over 4,300 digits is a StateValidationError, nothing recorded."""
    handle, storage = _orders(engine)
    huge = 10**5000

    @attrs.frozen
    class Loose:
        data: Any

    loose_storage: DictStorage[Loose] = DictStorage()
    loose = engine.define_entity(f"loose{next(_KINDS)}", Loose, read=loose_storage.read)
    writes: dict[str, Callable[[], object]] = {
        "instance": lambda: handle.mutate("o-1", storage.put("o-1", Order("open", huge))),
        "mapping": lambda: handle.mutate("o-1", lambda: {"status": "open", "total_cents": huge}),
        "nested": lambda: loose.mutate("l-1", loose_storage.put("l-1", Loose({"d": [1, -huge]}))),
    }
    with pytest.raises(StateValidationError) as caught:
        writes[kind]()
    assert "4300 digits" in str(caught.value)
    assert handle.history("o-1") == ()
    assert loose.history("l-1") == ()


def test_deep_nesting_is_refused_up_front_by_every_store(engine: Engine) -> None:
    """Item 5 (etc.): documents nested deeper than 256 levels are refused alike."""

    @attrs.frozen
    class Loose:
        data: Any

    storage: DictStorage[Loose] = DictStorage()
    handle = engine.define_entity(f"deep{next(_KINDS)}", Loose, read=storage.read)
    value: Any = "leaf"
    for _ in range(300):
        value = [value]
    with pytest.raises(StateValidationError, match="nested deeper than 256"):
        handle.mutate("d-1", storage.put("d-1", Loose(value)))
    assert handle.history("d-1") == ()


# -- 7. instances are checked like mappings ---------------------------------------------


def test_instances_are_type_checked_like_mappings(engine: Engine) -> None:
    """Item 7: ``Order(status="closed", total_cents="100")`` is refused like its dict."""
    handle, storage = _orders(engine)
    bad = Order(status="nope", total_cents="100")  # type: ignore[arg-type]
    with pytest.raises(StateValidationError) as from_instance:
        handle.mutate("o-1", storage.put("o-1", bad))
    with pytest.raises(StateValidationError) as from_mapping:
        handle.mutate("o-1", lambda: {"status": "nope", "total_cents": "100"})
    assert set(from_instance.value.field_errors) == {"status", "total_cents"}
    assert set(from_mapping.value.field_errors) == {"status", "total_cents"}
    assert handle.history("o-1") == ()


def test_instances_from_read_are_type_checked(engine: Engine) -> None:
    """Item 7: a wrongly typed instance returned by ``read`` is refused before ``apply``."""
    handle, storage = _orders(engine)
    storage.rows["o-1"] = Order(status="open", total_cents=True)  # bool is not int
    called: list[int] = []
    with pytest.raises(StateValidationError, match="total_cents"):
        handle.mutate("o-1", _recording(called))
    assert called == []


# -- 8. a sensitive None stays None ------------------------------------------------------


def test_sensitive_null_stays_null(engine: Engine) -> None:
    """Item 8: a null sensitive field is recorded as null; setting it reads null → ****."""
    handle, storage = _orders(engine)
    events: list[ChangeEvent] = []
    engine.subscribe(events.append)
    handle.mutate("o-1", storage.put("o-1", Order("open", 1, token=None)))
    handle.mutate("o-1", storage.put("o-1", Order("open", 1, token="tok-1")))
    handle.mutate("o-1", storage.put("o-1", Order("open", 1, token=None)))
    rows = [(r.from_value, r.to_value, r.masked) for r in handle.history("o-1", field="token")]
    assert [r[1:] for r in rows] == [(None, False), ("****", True), (None, True)]
    assert rows[1][0] is None
    assert rows[2][0] == "****"
    assert events[0].next is not None
    assert events[0].next["token"] is None


# -- 9. subscribe without kind; closed engine; the doubled "(got …)" ---------------------


def test_subscribe_fields_without_kind_must_name_a_field_of_some_kind() -> None:
    """Item 9: ``subscribe(fields={"colour"})`` without kind raises unless some kind has it."""
    with compose.in_memory() as engine:
        with pytest.raises(InvalidArgumentError, match="colour"):
            engine.subscribe(print, fields={"colour"})
        _orders(engine)
        with pytest.raises(InvalidArgumentError, match="colour"):
            engine.subscribe(print, fields={"status", "colour"})
        subscription = engine.subscribe(print, fields={"status"})
        subscription.cancel()


def test_every_call_on_a_closed_engine_raises() -> None:
    """Item 9: after ``close()``, every engine call — ``secrets.register`` too — raises."""
    engine = compose.in_memory()
    handle, _ = _orders(engine)
    engine.close()
    calls: list[Callable[[], object]] = [
        lambda: engine.secrets.register("run-1", ["abcd-secret"]),
        lambda: engine.secrets.secrets_for("run-1"),
        lambda: engine.secrets.drop("run-1"),
        engine.kinds,
        lambda: engine.handle(handle.kind),
        lambda: engine.subscribe(print),
        lambda: engine.register_deriver(handle.kind, lambda e: ()),
        lambda: engine.declare_non_reactive_state(table="t", reason="bookkeeping"),
        engine.non_reactive_declarations,
        lambda: engine.define_entity("other", Order, read=lambda ids: {}),
        lambda: handle.get("o-1"),
        lambda: handle.mutate("o-1", lambda: Order("open", 1)),
        lambda: handle.history("o-1"),
    ]
    for call in calls:
        with pytest.raises(EngineClosedError):
            call()
    engine.close()  # still idempotent


def test_bad_id_message_says_got_once() -> None:
    """Item 9: ``entity id must be a str (got int)`` — not followed by a second "(got …)"."""
    with compose.in_memory() as engine:
        handle, _ = _orders(engine)
        with pytest.raises(InvalidArgumentError) as caught:
            handle.get(5)
        assert str(caught.value) == "entity id must be a str (got int)"
        with pytest.raises(InvalidArgumentError, match=r"blank \(got ' '\)"):
            handle.get(" ")


# -- 10. unknown run ids -----------------------------------------------------------------


def test_unknown_run_warns_once_per_run_id_by_default(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: a write naming an unknown run logs one WARNING per run id and records."""
    handle, storage = _orders(engine)
    with caplog.at_level(logging.WARNING):
        handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="typo-run")
        handle.mutate("o-1", storage.put("o-1", Order("paid", 1)), run_id="typo-run")
        handle.mutate("o-1", storage.put("o-1", Order("closed", 1)), run_id="other-run")
    warnings = [r.getMessage() for r in caplog.records if "no registered secrets" in r.getMessage()]
    assert len(warnings) == 2
    assert '"typo-run"' in warnings[0]
    assert '"other-run"' in warnings[1]
    assert len(handle.history("o-1", field="status")) == 3


def test_unknown_run_error_refuses_before_apply(engine: Engine) -> None:
    """Item 10: ``unknown_run="error"`` raises ``InvalidArgumentError`` before ``apply``."""
    handle, storage = _orders(engine)
    engine.secrets._runs.policy = "error"  # as compose.…(unknown_run="error") sets it
    called: list[int] = []
    with pytest.raises(InvalidArgumentError, match="typo-run"):
        handle.mutate("o-1", _recording(called), run_id="typo-run")
    assert called == []
    assert handle.history("o-1") == ()
    engine.secrets.register("empty-run", [])  # known, without secrets
    handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="empty-run")
    assert len(handle.history("o-1", field="status")) == 1


@pytest.mark.parametrize("policy", ["error", "warn", "allow"])
def test_compose_takes_the_unknown_run_policy(
    policy: Literal["error", "warn", "allow"], caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: ``compose.in_memory(unknown_run=...)`` sets the policy; others are refused."""
    with compose.in_memory(unknown_run=policy) as engine:
        handle, storage = _orders(engine)
        assert engine.secrets.unknown_run == policy
        with caplog.at_level(logging.WARNING):
            if policy == "error":
                with pytest.raises(InvalidArgumentError):
                    handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="r")
            else:
                handle.mutate("o-1", storage.put("o-1", Order("open", 1)), run_id="r")
        logged = [r for r in caplog.records if "no registered secrets" in r.getMessage()]
        assert len(logged) == (1 if policy == "warn" else 0)
    with pytest.raises(InvalidArgumentError, match="unknown_run"):
        compose.in_memory(unknown_run="strict")  # type: ignore[arg-type]
