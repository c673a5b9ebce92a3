"""The laws of the functional core, each written once as a plain function.

A law takes concrete values and raises ``AssertionError`` when they break it; it never
draws data itself. This repository's property tests call the laws with hypothesis
(``property_tests/test_laws_*.py``, strategies in :mod:`reactive_entities.testing.strategies`),
and a contract suite — or a user checking a custom converter hook — can call the same
functions with values of its own::

    from reactive_entities.testing import laws
    laws.structure_round_trip(converter, MyState(...))

Every law calls the domain through :func:`call_unmutated`, so each one also checks that
the domain never mutated its arguments (frozen attrs classes protect attributes, not the
dicts and lists inside documents).

>>> diff_of_equal_documents_is_empty({"a": 1}, {"a": 1.0})
>>> call_unmutated(sorted, [2, 1])
[1, 2]
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeAlias, TypeVar

import attrs
import cattrs
from returns.result import Failure, Success

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.automaton import Automaton
from reactive_entities.domain.diff import diff
from reactive_entities.domain.documents import document_problems
from reactive_entities.domain.errors import StateValidationError
from reactive_entities.domain.events import ABSENT, Op, Plan, TransitionRecord
from reactive_entities.domain.json import Document, JSONValue, canonical_json, structurally_equal
from reactive_entities.domain.masking import TOKEN, mask_deep, mask_text, regex_ranges
from reactive_entities.domain.planning import plan_change
from reactive_entities.domain.schema import Schema
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.domain.temporal import (
    first_at_or_after,
    newest_at_or_before,
    transition_count,
)

__all__ = [
    "call_unmutated",
    "same_value",
    "only_stars",
    "surviving_secrets",
    # canonical JSON and structural equality
    "canonical_json_is_deterministic",
    "equal_variants_agree",
    "structural_equality_matches_canonical_json",
    "structural_equality_is_an_equivalence",
    "integral_float_equals_int",
    "bool_never_equals_number",
    # diff
    "diff_of_equal_documents_is_empty",
    "update_delta_turns_prev_into_next",
    "create_and_remove_rules",
    # masking
    "mask_text_leaves_no_secret",
    "mask_text_is_idempotent",
    "small_set_finds_what_brute_force_finds",
    "mask_deep_leaves_no_secret",
    "mask_deep_returns_input_when_nothing_is_maskable",
    "secret_forms",
    "escaped_masking_leaves_no_form",
    "automaton_finds_what_brute_force_finds",
    # planning
    "PlanInputs",
    "plan_change_leaves_no_secret",
    "plan_change_is_none_iff_diff_is_empty",
    "plan_change_rows_follow_changed_fields",
    "plan_change_masked_flag",
    "Before",
    "Action",
    "PLAN_TABLE",
    "plan_change_follows_table",
    # documents and schemas
    "structure_round_trip",
    "validate_agrees_on_instance_and_document",
    "validation_reveals_nothing",
    # temporal
    "transition_count_matches_brute_force",
    "newest_at_or_before_matches_brute_force",
    "first_at_or_after_matches_brute_force",
]

P = ParamSpec("P")
R = TypeVar("R")


def _require(condition: bool, message: str) -> None:
    # Not ``assert``: laws must hold under ``python -O`` too.
    if not condition:
        raise AssertionError(message)


# -- immutability -----------------------------------------------------------------------


def same_value(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are equal *and* built alike: same types all the way down,
    same dict key order. ``1 == 1.0 == True`` in Python; here they all differ."""
    if type(a) is not type(b):
        return False
    cls: Any = type(a)
    if attrs.has(cls):
        return all(same_value(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(cls))
    if isinstance(a, dict):
        b_dict: dict[Any, Any] = b  # type: ignore[assignment]
        return list(a) == list(b_dict) and all(same_value(a[k], b_dict[k]) for k in a)
    if isinstance(a, list | tuple):
        b_seq: Sequence[Any] = b  # type: ignore[assignment]
        return len(a) == len(b_seq) and all(map(same_value, a, b_seq))
    if isinstance(a, set | frozenset):
        return bool(a == b)
    if isinstance(a, float):
        return a == b or (a != a and b != b)  # NaN is the same as NaN here
    return bool(a == b)


def call_unmutated(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)``, failing if the call changed any argument.

    Arguments are deep-copied before the call and compared with :func:`same_value`
    after it, in the manner of pyrsistent's ``verify_inputs_unmodified``.
    """
    before_args = copy.deepcopy(args)
    before_kwargs = copy.deepcopy(kwargs)
    result = function(*args, **kwargs)
    name = getattr(function, "__qualname__", repr(function))
    for i, (snapshot, arg) in enumerate(zip(before_args, args, strict=True)):
        _require(same_value(snapshot, arg), f"{name} mutated argument {i}: {snapshot!r} → {arg!r}")
    for key, snapshot in before_kwargs.items():
        arg = kwargs[key]
        _require(same_value(snapshot, arg), f"{name} mutated {key}=: {snapshot!r} → {arg!r}")
    return result


# -- helpers about secrets ----------------------------------------------------------------


def only_stars(secret: str) -> bool:
    """Whether ``secret`` is made of nothing but ``*``.

    Such a secret can survive masking: the token itself may spell it. It reveals nothing
    the token does not, so the masking laws exempt it (see ``domain/masking.py``).
    """
    return not secret.strip("*")


def surviving_secrets(text: str, secrets: SecretSet) -> list[str]:
    """The maskable secrets (``*``-only ones exempt) that occur in ``text``."""
    return [s for s in secrets.maskable if not only_stars(s) and s in text]


def _strings(value: object) -> Iterator[str]:
    """Every string in a JSON-like value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _require_no_secret(value: object, secrets: SecretSet, where: str) -> None:
    for text in _strings(value):
        found = surviving_secrets(text, secrets)
        _require(not found, f"secret(s) {found!r} survive in {where}: {text!r}")


# -- canonical JSON and structural equality -----------------------------------------------


def canonical_json_is_deterministic(value: JSONValue) -> None:
    """Equal inputs give one text, and the text is its own canonical form."""
    text = call_unmutated(canonical_json, value)
    _require(text == canonical_json(copy.deepcopy(value)), "copy encodes differently")
    _require(canonical_json(json.loads(text)) == text, f"{text!r} is not canonical")


def equal_variants_agree(value: JSONValue, variant: JSONValue) -> None:
    """A variant (int↔float for integral numbers, dict keys reordered) of ``value`` has
    the same canonical JSON and is structurally equal, both ways."""
    _require(canonical_json(value) == canonical_json(variant), f"{value!r} vs {variant!r}")
    _require(call_unmutated(structurally_equal, value, variant), "variant not equal")
    _require(structurally_equal(variant, value), "variant not equal (reversed)")


def structural_equality_matches_canonical_json(a: JSONValue, b: JSONValue) -> None:
    """``structurally_equal(a, b)`` iff the canonical JSON texts are identical."""
    expected = canonical_json(a) == canonical_json(b)
    _require(call_unmutated(structurally_equal, a, b) is expected, f"a={a!r} b={b!r}")
    _require(structurally_equal(b, a) is expected, f"not symmetric: a={a!r} b={b!r}")


def structural_equality_is_an_equivalence(a: JSONValue, b: JSONValue, c: JSONValue) -> None:
    """Reflexive (also against a deep copy), symmetric and transitive."""
    _require(structurally_equal(a, a), f"not reflexive: {a!r}")
    _require(structurally_equal(a, copy.deepcopy(a)), f"not equal to its copy: {a!r}")
    _require(structurally_equal(a, b) is structurally_equal(b, a), "not symmetric")
    if structurally_equal(a, b) and structurally_equal(b, c):
        _require(structurally_equal(a, c), f"not transitive: {a!r} {b!r} {c!r}")


def integral_float_equals_int(n: int) -> None:
    """``n`` and ``float(n)`` are equal wherever they sit (when the float is exact)."""
    if abs(n) > 2**53:  # beyond 2**53 not every int has an exact float
        return
    pairs: list[tuple[JSONValue, JSONValue]] = [(n, float(n)), ([n], [float(n)])]
    pairs.append(({"k": n}, {"k": float(n)}))
    for a, b in pairs:
        _require(structurally_equal(a, b), f"{a!r} should equal {b!r}")
        _require(canonical_json(a) == canonical_json(b), f"{a!r} encodes unlike {b!r}")


def bool_never_equals_number(flag: bool, number: int | float) -> None:
    """``true``/``false`` never equal a number, at any depth."""
    pairs: list[tuple[JSONValue, JSONValue]] = [(flag, number), ([flag], [number])]
    pairs.append(({"k": flag}, {"k": number}))
    for a, b in pairs:
        _require(not structurally_equal(a, b), f"{a!r} should differ from {b!r}")
        _require(not structurally_equal(b, a), f"{b!r} should differ from {a!r}")
        _require(canonical_json(a) != canonical_json(b), f"{a!r} encodes like {b!r}")


# -- diff ---------------------------------------------------------------------------------


def diff_of_equal_documents_is_empty(doc: Document, variant: Document) -> None:
    """``diff(a, a)`` is empty, and so is the diff against an equal variant."""
    _require(call_unmutated(diff, doc, doc) == ((), {}), f"diff(a, a) not empty for {doc!r}")
    _require(call_unmutated(diff, doc, variant) == ((), {}), f"{doc!r} vs {variant!r}")


def update_delta_turns_prev_into_next(prev: Document, next: Document) -> None:
    """For two documents with the same fields: ``changed_fields`` are sorted, name
    exactly the fields that are not structurally equal, and patching ``prev`` with the
    delta gives a document structurally equal to ``next``."""
    fields, delta = call_unmutated(diff, prev, next)
    _require(list(fields) == sorted(set(fields)), f"not sorted and unique: {fields!r}")
    # Canonical JSON is the oracle: the diff itself uses ``structurally_equal``.
    expected = tuple(sorted(f for f in next if canonical_json(prev[f]) != canonical_json(next[f])))
    _require(fields == expected, f"changed {fields!r}, expected {expected!r}")
    _require(tuple(sorted(delta)) == fields, f"delta keys {sorted(delta)!r} ≠ {fields!r}")
    patched = {**prev, **delta}
    _require(canonical_json(patched) == canonical_json(next), f"{prev!r} + {delta!r} ≠ {next!r}")


def create_and_remove_rules(doc: Document) -> None:
    """A create changes every field (nulls included) with the whole document as delta;
    a remove changes every field with an empty delta; None → None is no change."""
    fields, delta = call_unmutated(diff, None, doc)
    _require(fields == tuple(sorted(doc)), f"create changed {fields!r}")
    _require(same_value(delta, doc) and delta is not doc, "create delta is not a copy of next")
    _require(call_unmutated(diff, doc, None) == (tuple(sorted(doc)), {}), "remove rule")
    _require(diff(None, None) == ((), {}), "None → None must be no change")


# -- masking ------------------------------------------------------------------------------


def mask_text_leaves_no_secret(text: str, secrets: SecretSet) -> None:
    """No maskable secret (``*``-only ones exempt) occurs in the output; a text without
    any maskable secret comes back as the very same object, one with any is changed."""
    masked = call_unmutated(mask_text, text, secrets)
    found = surviving_secrets(masked, secrets)
    _require(not found, f"{found!r} survive: {text!r} → {masked!r}")
    if not any(s in text for s in secrets.maskable):
        _require(masked is text, f"clean text was rebuilt: {text!r}")
    if surviving_secrets(text, secrets):
        _require(masked != text, f"secret-bearing text unchanged: {text!r}")


def mask_text_is_idempotent(text: str, secrets: SecretSet) -> None:
    """Masking masked text changes nothing — when no secret is made of ``*`` alone (the
    token could otherwise spell, or be part of, such a secret)."""
    if any(only_stars(s) for s in secrets.maskable):
        return
    once = mask_text(text, secrets)
    twice = call_unmutated(mask_text, once, secrets)
    _require(twice is once, f"not idempotent: {once!r} → {twice!r}")


def _require_same_shape(raw: object, masked: object, path: str = "$") -> None:
    """Containers keep their kind and size (no entry lost); non-strings are untouched."""
    if isinstance(raw, dict):
        _require(isinstance(masked, dict) and len(masked) == len(raw), f"{path}: entry lost")
        masked_dict: dict[str, object] = masked  # type: ignore[assignment]
        for (key, item), masked_item in zip(raw.items(), masked_dict.values(), strict=True):
            _require_same_shape(item, masked_item, f"{path}.{key}")
    elif isinstance(raw, list):
        _require(isinstance(masked, list) and len(masked) == len(raw), f"{path}: item lost")
        masked_list: list[object] = masked  # type: ignore[assignment]
        for i, (item, masked_item) in enumerate(zip(raw, masked_list, strict=True)):
            _require_same_shape(item, masked_item, f"{path}[{i}]")
    elif isinstance(raw, str):
        _require(isinstance(masked, str), f"{path}: a string became {masked!r}")
    else:
        _require(masked is raw, f"{path}: {raw!r} became {masked!r}")


def secret_forms(secret: str) -> set[str]:
    """``secret`` and the forms a message may quote it in: ``repr`` (either quote
    style), JSON (with and without ``ensure_ascii``), backslash-doubled."""
    secret = str(secret)
    return {
        secret,
        repr(secret)[1:-1],
        repr("'\"" + secret)[4:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        secret.replace("\\", "\\\\"),
    }


def escaped_masking_leaves_no_form(text: str, secrets: SecretSet) -> None:
    """Masking a message with ``secrets.escaped()`` leaves no maskable secret in any of
    its :func:`secret_forms` (``*``-only secrets exempt)."""
    masked = call_unmutated(mask_text, text, secrets.escaped())
    for secret in secrets.maskable:
        if only_stars(secret):
            continue
        for form in secret_forms(secret):
            if len(form) >= 4 and not only_stars(form):
                _require(form not in masked, f"form {form!r} of a secret survives: {masked!r}")


def automaton_finds_what_brute_force_finds(text: str, values: Sequence[str]) -> None:
    """The Aho–Corasick automaton's merged ranges equal the union of every occurrence of
    every value, found one ``str.find`` at a time, merged when overlapping or touching."""
    expected = _brute_force_ranges(text, values)
    got = call_unmutated(Automaton(tuple(values)).ranges, text)
    _require(got == expected, f"automaton {got!r} != brute force {expected!r} in {text!r}")


def small_set_finds_what_brute_force_finds(text: str, values: Sequence[str]) -> None:
    """A small set's regex, searched again from one past each match's start, yields the
    same merged ranges as brute force (overlapping and touching occurrences merged)."""
    secrets = SecretSet.of(values)
    regex = secrets.regex
    _require(regex is not None, f"{len(values)} values should make a small set with a regex")
    assert regex is not None
    first = regex.search(text)
    got = [] if first is None else regex_ranges(text, first, secrets)
    expected = _brute_force_ranges(text, secrets.maskable)
    _require(got == expected, f"regex {got!r} != brute force {expected!r} in {text!r}")


def _brute_force_ranges(text: str, values: Sequence[str]) -> list[tuple[int, int]]:
    covered = [False] * len(text)
    for value in values:
        start = text.find(value)
        while start != -1:
            for i in range(start, start + len(value)):
                covered[i] = True
            start = text.find(value, start + 1)
    # Occurrences that touch (one ends where the next starts) merge into one range.
    expected: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        if not covered[i]:
            i += 1
            continue
        j = i
        while j < len(text) and covered[j]:
            j += 1
        expected.append((i, j))
        i = j
    return expected


def mask_deep_leaves_no_secret(value: JSONValue, secrets: SecretSet) -> None:
    """No maskable secret (``*``-only ones exempt) occurs in any string or key of the
    output, every entry survives (colliding keys included), and non-strings are kept."""
    masked = call_unmutated(mask_deep, value, secrets)
    _require_no_secret(masked, secrets, "mask_deep output")
    _require_same_shape(value, masked)


def mask_deep_returns_input_when_nothing_is_maskable(value: JSONValue, secrets: SecretSet) -> None:
    """With no maskable secret in any string or key, the very input object comes back;
    with a secret (not ``*``-only) somewhere, the output differs from the input."""
    masked = call_unmutated(mask_deep, value, secrets)
    texts = list(_strings(value))
    if not any(s in text for text in texts for s in secrets.maskable):
        _require(masked is value, f"nothing to mask, yet {value!r} was rebuilt")
    if any(surviving_secrets(text, secrets) for text in texts):
        _require(not same_value(masked, value), f"secret-bearing {value!r} unchanged")


# -- planning -----------------------------------------------------------------------------


@attrs.frozen
class PlanInputs:
    """Every argument of ``plan_change`` (``prev``/``next`` as documents or None)."""

    kind: str
    entity_id: str
    prev: Document | None
    next: Document | None
    actor: Actor
    run_id: str | None
    secrets: SecretSet
    sensitive: frozenset[str]
    change_id: str


def _plan(inputs: PlanInputs) -> Plan | None:
    return call_unmutated(
        plan_change,
        inputs.kind,
        inputs.entity_id,
        inputs.prev,
        inputs.next,
        actor=inputs.actor,
        run_id=inputs.run_id,
        secrets=inputs.secrets,
        sensitive=inputs.sensitive,
        change_id=inputs.change_id,
    )


def plan_change_leaves_no_secret(inputs: PlanInputs) -> None:
    """No run secret in the event (prev, next, delta, actor) or the rows' values, and
    every sensitive field reads ``****`` (or null, when it was null). Identifiers are not
    masked by design: draw them so they cannot hold a secret."""
    change = _plan(inputs)
    if change is None:
        return
    event = change
    for where, value in (("prev", event.prev), ("next", event.next), ("delta", event.delta)):
        _require_no_secret(value, inputs.secrets, f"event.{where}")
        for field in inputs.sensitive:
            if value is not None and field in value:
                _require(
                    value[field] in (TOKEN, None), f"sensitive {field} in {where}: {value[field]!r}"
                )
    _require_no_secret([event.actor.id, event.actor.name], inputs.secrets, "event.actor")
    for row in change.transitions:
        values = [row.to_value] if row.from_value is ABSENT else [row.from_value, row.to_value]
        _require_no_secret(values, inputs.secrets, f"row {row.field}")
        if row.field in inputs.sensitive:
            _require(
                all(v in (TOKEN, None) for v in values), f"sensitive row {row.field}: {values!r}"
            )


def plan_change_is_none_iff_diff_is_empty(inputs: PlanInputs) -> None:
    """``plan_change`` returns None exactly when the unmasked diff is empty."""
    change = _plan(inputs)
    fields, _ = diff(inputs.prev, inputs.next)
    _require((change is None) is (not fields), f"plan {change!r} for changed {fields!r}")


def _expected_op(prev: Document | None, next: Document | None) -> Op:
    return "create" if prev is None else ("remove" if next is None else "update")


def plan_change_rows_follow_changed_fields(inputs: PlanInputs) -> None:
    """The event carries the op, the diff's fields and the identifiers verbatim; rows
    come one per changed field in ``changed_fields`` order (none for a remove), with
    ``from_value`` ``ABSENT`` exactly for a create; the delta has the right keys."""
    change = _plan(inputs)
    if change is None:
        return
    event = change
    fields, _ = diff(inputs.prev, inputs.next)
    op = _expected_op(inputs.prev, inputs.next)
    _require(event.op == op, f"op {event.op!r}, expected {op!r}")
    _require(event.changed_fields == fields, f"{event.changed_fields!r} ≠ {fields!r}")
    identity = (event.kind, event.entity_id, event.run_id, event.change_id)
    expected_identity = (inputs.kind, inputs.entity_id, inputs.run_id, inputs.change_id)
    _require(identity == expected_identity, f"{identity!r} ≠ {expected_identity!r}")
    rows = change.transitions
    if op == "remove":
        _require(rows == () and event.delta == {} and event.next is None, "remove rule")
        return
    _require(tuple(r.field for r in rows) == fields, "rows not in changed_fields order")
    _require(all((r.from_value is ABSENT) is (op == "create") for r in rows), "ABSENT rule")
    delta_keys = tuple(sorted(event.delta))
    expected_keys = tuple(sorted(inputs.next or {})) if op == "create" else fields
    _require(delta_keys == expected_keys, f"delta keys {delta_keys!r}")


def _masked_value(raw: JSONValue, field: str, inputs: PlanInputs) -> JSONValue:
    if field in inputs.sensitive:
        return None if raw is None else TOKEN  # null stays null (SPEC §16.2)
    return mask_deep(raw, inputs.secrets)


def plan_change_masked_flag(inputs: PlanInputs) -> None:
    """Each row holds the masked raw values, and ``masked`` is true exactly when the
    field is sensitive (and not null on both sides) or masking changed its
    ``from_value`` or its ``to_value``."""
    change = _plan(inputs)
    if change is None or inputs.next is None:
        return
    for row in change.transitions:
        raw_to = inputs.next[row.field]
        to_value = _masked_value(raw_to, row.field, inputs)
        _require(same_value(row.to_value, to_value), f"{row.field}: to {row.to_value!r}")
        sensitive = row.field in inputs.sensitive
        changed = (sensitive and raw_to is not None) or canonical_json(raw_to) != canonical_json(
            to_value
        )
        if inputs.prev is not None:
            raw_from = inputs.prev[row.field]
            from_value = _masked_value(raw_from, row.field, inputs)
            _require(same_value(row.from_value, from_value), f"{row.field}: from")
            changed = (
                changed
                or (sensitive and raw_from is not None)
                or canonical_json(raw_from) != canonical_json(from_value)
            )
        _require(row.masked is changed, f"{row.field}: masked={row.masked}, want {changed}")


Before: TypeAlias = Literal["exists", "absent", "tombstoned"]
Action: TypeAlias = Literal["mutate-same", "mutate-different", "remove"]

#: What ``plan_change`` decides for each (entity before, action) pair. A tombstoned
#: entity was removed earlier: ``read`` no longer returns it, so it plans like an absent
#: one — a mutate re-creates it.
PLAN_TABLE: dict[tuple[Before, Action], Op | None] = {
    ("exists", "mutate-same"): None,
    ("exists", "mutate-different"): "update",
    ("exists", "remove"): "remove",
    ("absent", "mutate-same"): "create",
    ("absent", "mutate-different"): "create",
    ("absent", "remove"): None,
    ("tombstoned", "mutate-same"): "create",
    ("tombstoned", "mutate-different"): "create",
    ("tombstoned", "remove"): None,
}


def plan_change_follows_table(
    before: Before, action: Action, doc: Document, inputs: PlanInputs
) -> None:
    """``plan_change`` decides as :data:`PLAN_TABLE` says. ``doc`` (at least one field)
    is the stored state when it exists and the state written by ``mutate-same``;
    ``mutate-different`` writes ``doc`` with every value wrapped in a list. The other
    arguments come from ``inputs``."""
    _require(bool(doc), "the table needs a document with at least one field")
    prev = doc if before == "exists" else None
    if action == "remove":
        next_: Document | None = None
    elif action == "mutate-same":
        next_ = copy.deepcopy(doc)
    else:
        next_ = {field: [value] for field, value in doc.items()}
    change = _plan(attrs.evolve(inputs, prev=prev, next=next_))
    expected = PLAN_TABLE[before, action]
    got = None if change is None else change.op
    _require(got == expected, f"{before} × {action}: planned {got!r}, expected {expected!r}")


# -- documents and schemas ------------------------------------------------------------------


def _same_structure(a: object, b: object, path: str = "$") -> None:
    """``a == b`` with the same types at every level (an ``IntEnum`` member is not an
    int here, nor a ``StrEnum`` member a str)."""
    _require(type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}")
    cls: Any = type(a)
    if attrs.has(cls):
        for attribute in attrs.fields(cls):
            name = attribute.name
            _same_structure(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, dict):
        b_dict: dict[Any, Any] = b  # type: ignore[assignment]
        _require(a.keys() == b_dict.keys(), f"{path}: keys differ")
        for key in a:
            _same_structure(a[key], b_dict[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        b_seq: Sequence[Any] = b  # type: ignore[assignment]
        _require(len(a) == len(b_seq), f"{path}: lengths differ")
        for i, (x, y) in enumerate(zip(a, b_seq, strict=True)):
            _same_structure(x, y, f"{path}[{i}]")
    elif isinstance(a, set | frozenset):
        _require(a == b, f"{path}: {a!r} ≠ {b!r}")
        b_items = {item: item for item in b}  # type: ignore[attr-defined]
        for item in a:
            _same_structure(item, b_items[item], f"{path}{{{item!r}}}")
    else:
        _require(a == b, f"{path}: {a!r} ≠ {b!r}")


def structure_round_trip(converter: cattrs.Converter, state: Any) -> None:
    """A state's document holds only JSON values under exactly the attrs fields, and
    structuring it gives back an equal state with the same types at every level;
    unstructuring that again gives the same document."""
    cls = type(state)
    doc = call_unmutated(converter.unstructure, state)
    names = [a.name for a in attrs.fields(cls)]
    _require(isinstance(doc, dict) and list(doc) == names, f"document keys {list(doc)!r}")
    problems = document_problems(doc)
    _require(not problems, f"invalid document {doc!r}: {problems!r}")
    back = call_unmutated(converter.structure, doc, cls)
    _same_structure(back, state)
    again = converter.unstructure(back)
    _require(canonical_json(again) == canonical_json(doc), f"{doc!r} became {again!r}")


def validate_agrees_on_instance_and_document(schema: Schema, state: Any) -> None:
    """``Schema.validate`` of a state and of its document agree: both succeed with equal
    states and structurally equal documents, or both fail with the same problems."""
    from_instance = call_unmutated(schema.validate, state)
    try:
        doc: Any = schema.unstructure(state)
    except Exception:
        _require(isinstance(from_instance, Failure), "an unstructurable state validated")
        return
    from_document = call_unmutated(schema.validate, doc)
    match from_instance, from_document:
        case Success((state_a, doc_a)), Success((state_b, doc_b)):
            _same_structure(state_b, state_a)
            _require(structurally_equal(doc_a, doc_b), f"{doc_a!r} vs {doc_b!r}")
        case Failure(problems_a), Failure(problems_b):
            _require(problems_a == problems_b, f"{problems_a!r} vs {problems_b!r}")
        case _:
            raise AssertionError(f"instance: {from_instance!r}, document: {from_document!r}")


def validation_reveals_nothing(schema: Schema, raw: object, secrets: SecretSet) -> None:
    """When ``raw`` does not validate, no problem — nor the ``StateValidationError``
    built from them — holds a run secret (``*``-only ones exempt), its ``repr`` or JSON
    escape, or a sensitive field's value of four characters or more."""
    result = call_unmutated(schema.validate, raw, secrets)
    if not isinstance(result, Failure):
        return
    problems = result.failure()
    error = StateValidationError(schema.kind, "id", dict(problems), "state")
    texts = [str(error), *(part for problem in problems for part in problem)]
    forbidden = set()
    for secret in secrets.maskable:
        if not only_stars(secret):
            forbidden |= {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    for field in schema.sensitive:
        value = raw.get(field) if isinstance(raw, dict) else getattr(raw, field, None)
        if isinstance(value, str) and len(value) >= 4:
            forbidden |= {value, repr(value)[1:-1]}
    for text in texts:
        found = sorted(f for f in forbidden if f in text)
        _require(not found, f"{found!r} revealed in {text!r}")


# -- temporal -------------------------------------------------------------------------------


def _stamped(row: TransitionRecord) -> datetime:
    return row.transitioned_at


def transition_count_matches_brute_force(
    rows: Sequence[TransitionRecord], since: datetime, until: datetime
) -> None:
    """The count of rows with ``since ≤ stamp ≤ until`` (both inclusive), by bisection,
    equals a plain count; so does the count over a compact form of the rows."""
    expected = sum(1 for row in rows if since <= row.transitioned_at <= until)
    got = call_unmutated(transition_count, rows, since, until)
    _require(got == expected, f"counted {got}, expected {expected} in [{since}, {until}]")
    compact = [(row.transitioned_at, row.to_value) for row in rows]
    got_compact = transition_count(compact, since, until, stamp=lambda pair: pair[0])
    _require(got_compact == expected, f"compact: counted {got_compact}, expected {expected}")


def newest_at_or_before_matches_brute_force(
    rows: Sequence[TransitionRecord], at: datetime | None
) -> None:
    """The newest row at or before ``at`` (the last one when ``at`` is None) is the last
    such row in recording order, found by scanning."""
    candidates = [row for row in rows if at is None or _stamped(row) <= at]
    expected = candidates[-1] if candidates else None
    got = call_unmutated(newest_at_or_before, rows, at)
    _require(got is expected, f"got {got!r}, expected {expected!r} at {at}")


def first_at_or_after_matches_brute_force(
    rows: Sequence[TransitionRecord], since: datetime
) -> None:
    """The index of the first row at or after ``since`` is found by scanning too."""
    expected = next((i for i, row in enumerate(rows) if _stamped(row) >= since), len(rows))
    got = call_unmutated(first_at_or_after, rows, since)
    _require(got == expected, f"got {got}, expected {expected} since {since}")
