"""A kind's schema: its attrs class, fields and converter hooks, and state validation.

``build_schema`` checks a definition (SPEC §1 steps 4–5) and caches what every mutate
needs — field names and the converter's hooks — so the hot path does no lookups.
``Schema.validate`` turns whatever ``read`` or ``apply`` produced into a state and its
document, or into redacted per-field problems.

>>> import attrs
>>> @attrs.frozen
... class Light:
...     on: bool
>>> from reactive_entities.domain.documents import make_converter
>>> schema = build_schema("light", Light, (), make_converter()).unwrap()
>>> schema.validate({"on": True}).unwrap()[1]
{'on': True}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import cattrs
from returns.result import Failure, Result, Success

from reactive_entities.domain.documents import structure_problems
from reactive_entities.domain.errors import DefinitionError, UnknownFieldError
from reactive_entities.domain.instance_check import InstanceChecker, instance_checker
from reactive_entities.domain.json import Document
from reactive_entities.domain.masking import mask_text
from reactive_entities.domain.secret_set import EMPTY_SECRETS, SecretSet
from reactive_entities.domain.validity import document_problems

__all__ = ["Schema", "Problems", "build_schema", "redact_problems", "WITHHELD"]

#: ``(path, reason)`` pairs describing why a value is not a valid state.
Problems = tuple[tuple[str, str], ...]

WITHHELD = "invalid value (details withheld: they could reveal a sensitive value)"


@attrs.frozen
class Schema:
    """Everything the engine needs to know about one kind's state class."""

    kind: str
    state_class: type[Any]
    fields: tuple[str, ...]
    field_set: frozenset[str]
    sensitive: frozenset[str]
    unstructure: Callable[[Any], Document] = attrs.field(repr=False)
    structure: Callable[[Any, type[Any]], Any] = attrs.field(repr=False)
    #: Checks an instance's field values against their annotations (generated once).
    checker: InstanceChecker = attrs.field(repr=False)

    def instance_document(self, value: object) -> Document | None:
        """The document of ``value`` when it is a valid instance of the state class,
        else None (then :meth:`validate` says why).

        This is the common case of every write, answered without building a ``Result``.
        """
        if type(value) is not self.state_class or not self.checker.check(value):
            return None
        try:
            doc = self.unstructure(value)
        except Exception:  # validate() reports it
            return None
        return None if document_problems(doc) else doc

    def validate(
        self, value: object, secrets: SecretSet = EMPTY_SECRETS
    ) -> Result[tuple[Any, Document], Problems]:
        """``(state, document)`` for an instance of the state class or a mapping.

        A mapping is structured (unknown keys rejected, defaults filled, validators run);
        an instance was validated by its own attrs validators when it was built, and its
        field values are checked against their annotations by the same strict rules.
        Either way the document must hold only JSON values. Problems are redacted with
        ``secrets`` and the kind's sensitive fields.
        """
        state: Any = value
        if isinstance(value, self.state_class):
            wrong = self.checker.problems(value)
            if wrong:
                return Failure(redact_problems(tuple(wrong), secrets, self, value))
        else:
            if not isinstance(value, Mapping):
                got = type(value).__name__
                return Failure(
                    (("$", f"expected {self.state_class.__name__} or a mapping (got {got})"),)
                )
            try:
                state = self.structure(value, self.state_class)
            except Exception as error:
                problems = tuple(structure_problems(error))
                return Failure(redact_problems(problems, secrets, self, value))
        try:
            doc = self.unstructure(state)
        except Exception as error:
            problems = (("$", f"{type(error).__name__}: {error}"),)
            return Failure(redact_problems(problems, secrets, self, state))
        found = document_problems(doc)
        if found:
            return Failure(redact_problems(tuple(found), secrets, self, state))
        return Success((state, doc))


def build_schema(
    kind: str, state: object, sensitive: Iterable[str], converter: cattrs.Converter
) -> Result[Schema, DefinitionError | UnknownFieldError]:
    """Check that ``state`` is an attrs class and ``sensitive`` names its fields."""
    if not isinstance(state, type) or not attrs.has(state):
        got = state.__name__ if isinstance(state, type) else type(state).__name__
        return Failure(
            DefinitionError(f'state of kind "{kind}" must be an attrs class (got {got})')
        )
    fields = tuple(a.name for a in attrs.fields(state))
    field_set = frozenset(fields)
    wanted = (sensitive,) if isinstance(sensitive, str) else tuple(sensitive)
    unknown = [name for name in wanted if name not in field_set]
    if unknown:
        return Failure(
            UnknownFieldError(
                f"sensitive field(s) {', '.join(map(repr, unknown))} are not fields of kind "
                f'"{kind}" ({state.__name__} has {", ".join(fields)})'
            )
        )
    return Success(
        Schema(
            kind=kind,
            state_class=state,
            fields=fields,
            field_set=field_set,
            sensitive=frozenset(wanted),
            unstructure=converter.get_unstructure_hook(state),
            structure=converter.get_structure_hook(state),
            checker=instance_checker(state, converter),
        )
    )


def redact_problems(
    problems: Problems, secrets: SecretSet, schema: Schema, raw: object
) -> Problems:
    """``problems`` with run secrets masked and anything touching a sensitive value
    withheld: a reason about a sensitive field, or one quoting a sensitive value."""
    if not problems:
        return problems
    quoted = _sensitive_texts(schema, raw)
    secrets = secrets.escaped()
    out = []
    for path, reason in problems:
        top = path.split(".", 1)[0].split("[", 1)[0]
        if any(text in path for text in quoted):
            # A dict key quoting the sensitive value: keep only the field's name.
            path, reason = top, WITHHELD
        elif top in schema.sensitive or any(text in reason for text in quoted):
            reason = WITHHELD
        # Even our own words are masked: a secret may happen to be one ("valu").
        out.append((mask_text(path, secrets), mask_text(reason, secrets)))
    return tuple(out)


def _sensitive_texts(schema: Schema, raw: object) -> tuple[str, ...]:
    """Every text form in which a sensitive value could appear in a message."""
    if not schema.sensitive:
        return ()
    texts: set[str] = set()
    for name in schema.sensitive:
        if isinstance(raw, Mapping):
            if name not in raw:
                continue
            value = raw[name]
        elif hasattr(raw, name):
            value = getattr(raw, name)
        else:
            continue
        _collect_texts(value, texts)
    texts.discard("")
    return tuple(texts)


def _collect_texts(value: object, into: set[str]) -> None:
    if value is None or isinstance(value, bool):
        return  # nothing secret about null or a flag, and "None" is in many messages
    into.add(repr(value))
    into.add(str(value))
    if isinstance(value, str):
        # Escaped as ``repr`` writes it inside a longer quoted text that contains it.
        into.add(repr(value)[1:-1])
    if isinstance(value, Mapping):
        for key, item in value.items():
            _collect_texts(key, into)
            _collect_texts(item, into)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect_texts(item, into)
