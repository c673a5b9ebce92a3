"""Checking an instance of a state class against its annotations (SPEC §16.1).

attrs does not check types when an instance is built: ``Order(status="closed",
total_cents="100")`` is a valid ``Order`` to attrs even though ``status`` is a
``Literal["open", "paid"]`` and ``total_cents`` an ``int``. The same values in a mapping
are rejected by the strict converter. This module gives instances the same rules.

Theory of operation. ``instance_checker(cls, converter)`` generates, once per class (at
``define_entity``), the source of one function that walks the fields with inline
``type(...) is ...`` tests and early returns, as attrs and cattrs generate their
``__init__`` and hooks: the common case of every write costs a few hundred nanoseconds.
Annotations it does not know (a ``TypeVar``, a custom generic) are checked the slow,
exact way: structured back from their unstructured form by the engine's converter.
The rules are the converter's: ``str`` only for ``str``, ``int`` never a ``bool``,
``float`` any non-bool number, a ``Literal`` only its values (of their own type), a
``date`` never a ``datetime``.

>>> import attrs, typing
>>> from reactive_entities.domain.documents import make_converter
>>> @attrs.frozen
... class Order:
...     status: typing.Literal["open", "paid"]
...     total_cents: int
>>> checker = instance_checker(Order, make_converter())
>>> checker.check(Order("open", 100)), checker.check(Order("closed", "100"))
(True, False)
>>> dict(checker.problems(Order("closed", "100")))["total_cents"]
'expected int (got str)'
>>> [field for field, _ in checker.problems(Order("closed", "100"))]
['status', 'total_cents']
"""

from __future__ import annotations

import enum
import itertools
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import attrs
import cattrs

__all__ = ["InstanceChecker", "instance_checker"]

_SKIP = (Any, object)


@attrs.frozen
class InstanceChecker:
    """``check(instance) -> bool`` (fast) and ``problems(instance)`` (which fields fail)."""

    check: Callable[[Any], bool]
    field_checks: tuple[tuple[str, Any, Callable[[Any], bool]], ...] = attrs.field(repr=False)

    def problems(self, instance: object) -> list[tuple[str, str]]:
        """``(field, reason)`` for each field whose value does not fit its annotation.
        Reasons name the expected type and the value's type, never the value."""
        out = []
        for name, annotation, check in self.field_checks:
            value = getattr(instance, name)
            if not check(value):
                out.append((name, f"expected {_describe(annotation)} (got {type(value).__name__})"))
        return out


def instance_checker(cls: type[Any], converter: cattrs.Converter) -> InstanceChecker:
    """Generate the checker of attrs class ``cls`` (nested attrs classes get theirs)."""
    return _Generator(converter).checker(cls)


class _Generator:
    def __init__(self, converter: cattrs.Converter) -> None:
        self._converter = converter
        self._globals: dict[str, Any] = {"isinstance": isinstance, "type": type, "len": len}
        self._names = itertools.count()
        self._classes: dict[type[Any], str] = {}  # nested attrs class → its check function

    def checker(self, cls: type[Any]) -> InstanceChecker:
        hints = _field_types(cls)
        main = self._class_function(cls, hints)
        field_checks = []
        for name, annotation in hints:
            function = self._function(annotation)
            field_checks.append((name, annotation, function))
        return InstanceChecker(self._globals[main], tuple(field_checks))

    def _const(self, value: object) -> str:
        name = f"_k{next(self._names)}"
        self._globals[name] = value
        return name

    def _class_function(self, cls: type[Any], hints: list[tuple[str, Any]]) -> str:
        existing = self._classes.get(cls)
        if existing is not None:
            return existing
        name = f"_check_{cls.__name__}_{next(self._names)}"
        self._classes[cls] = name  # before generating: a class may contain itself
        lines = [f"def {name}(o):"]
        for field, annotation in hints:
            var = f"v{next(self._names)}"
            lines.append(f"    {var} = o.{field}")
            lines.extend(self._statements(annotation, var, "    "))
        lines.append("    return True")
        self._define(name, lines)
        return name

    def _function(self, annotation: Any) -> Callable[[Any], bool]:
        name = f"_f{next(self._names)}"
        lines = [f"def {name}(v):", *self._statements(annotation, "v", "    "), "    return True"]
        self._define(name, lines)
        function: Callable[[Any], bool] = self._globals[name]
        return function

    def _define(self, name: str, lines: list[str]) -> None:
        source = "\n".join(lines) + "\n"
        exec(compile(source, f"<instance check {name}>", "exec"), self._globals)

    def _statements(self, tp: Any, var: str, indent: str) -> list[str]:
        """Lines that ``return False`` when ``var`` does not fit ``tp``."""
        fail = f"{indent}    return False"
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp in _SKIP:
            return []
        if origin is typing.Annotated:
            return self._statements(args[0], var, indent)
        if isinstance(tp, typing.NewType):
            return self._statements(tp.__supertype__, var, indent)
        if tp is None or tp is type(None):
            return [f"{indent}if {var} is not None:", fail]
        if tp is bool:
            return [f"{indent}if type({var}) is not bool:", fail]
        if tp is str:
            return [f"{indent}if type({var}) is not str and not isinstance({var}, str):", fail]
        if tp is int:
            return [
                f"{indent}if type({var}) is not int and "
                f"(not isinstance({var}, int) or isinstance({var}, bool)):",
                fail,
            ]
        if tp is float:
            return [
                f"{indent}if type({var}) is not float and type({var}) is not int and "
                f"(not isinstance({var}, (int, float)) or isinstance({var}, bool)):",
                fail,
            ]
        if origin is typing.Literal:
            kinds = self._const(frozenset(type(a) for a in args))  # hashable, all of them
            allowed = self._const(frozenset((type(a), a) for a in args))
            return [
                f"{indent}if type({var}) not in {kinds} or (type({var}), {var}) not in {allowed}:",
                fail,
            ]
        if origin is typing.Union or origin is types.UnionType:
            others = [a for a in args if a is not type(None)]
            if len(others) == 1 and len(args) == 2:  # Optional[X]: no function call
                return [
                    f"{indent}if {var} is not None:",
                    *self._statements(others[0], var, indent + "    "),
                ]
            checks = " or ".join(f"{self._const(self._function(a))}({var})" for a in args)
            return [f"{indent}if not ({checks}):", fail]
        if tp is datetime:
            return [f"{indent}if not isinstance({var}, {self._const(datetime)}):", fail]
        if tp is date:
            d, dt = self._const(date), self._const(datetime)
            return [f"{indent}if not isinstance({var}, {d}) or isinstance({var}, {dt}):", fail]
        if isinstance(tp, type) and attrs.has(tp):
            nested = self._class_function(tp, _field_types(tp))
            cls = self._const(tp)
            return [
                f"{indent}if not isinstance({var}, {cls}) or not {nested}({var}):",
                fail,
            ]
        if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
            return self._collection(tp, origin or tp, args, var, indent)
        if origin in (dict, Mapping) or tp in (dict, Mapping):
            return self._mapping(args, var, indent)
        if isinstance(tp, type) and (issubclass(tp, enum.Enum) or origin is None):
            return [f"{indent}if not isinstance({var}, {self._const(tp)}):", fail]
        exact = self._const(self._exact(tp))
        return [f"{indent}if not {exact}({var}):", fail]

    def _collection(
        self, tp: Any, container: type[Any], args: tuple[Any, ...], var: str, indent: str
    ) -> list[str]:
        fail = f"{indent}    return False"
        if container in (set, frozenset):
            kinds = self._const((set, frozenset))
            lines = [f"{indent}if not isinstance({var}, {kinds}):", fail]
        else:
            kind = self._const(container)
            lines = [f"{indent}if not isinstance({var}, {kind}):", fail]
        if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if args == ((),):  # tuple[()]
                return [*lines, f"{indent}if len({var}) != 0:", fail]
            lines += [f"{indent}if len({var}) != {len(args)}:", fail]
            for i, item_type in enumerate(args):
                item = f"i{next(self._names)}"
                lines.append(f"{indent}{item} = {var}[{i}]")
                lines += self._statements(item_type, item, indent)
            return lines
        item_type = args[0] if args else Any
        body = self._statements(item_type, (item := f"i{next(self._names)}"), indent + "    ")
        if body:
            lines += [f"{indent}for {item} in {var}:", *body]
        return lines

    def _mapping(self, args: tuple[Any, ...], var: str, indent: str) -> list[str]:
        fail = f"{indent}    return False"
        dict_, mapping = self._const(dict), self._const(Mapping)
        lines = [f"{indent}if not isinstance({var}, {dict_}) and not isinstance({var}, {mapping}):"]
        lines.append(fail)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        key, item = f"k{next(self._names)}", f"i{next(self._names)}"
        body = self._statements(key_type, key, indent + "    ") + self._statements(
            value_type, item, indent + "    "
        )
        if body:
            lines += [f"{indent}for {key}, {item} in {var}.items():", *body]
        return lines

    def _exact(self, tp: Any) -> Callable[[Any], bool]:
        converter = self._converter

        def exact(value: Any) -> bool:
            try:
                converter.structure(converter.unstructure(value, tp), tp)
            except Exception:
                return False
            return True

        return exact


def _field_types(cls: type[Any]) -> list[tuple[str, Any]]:
    """``(name, annotation)`` of each field; unresolvable annotations check as ``Any``."""
    try:
        attrs.resolve_types(cls)
    except Exception:  # a forward reference that cannot be resolved: skip those fields
        return [(a.name, a.type if not isinstance(a.type, str) else Any) for a in attrs.fields(cls)]
    return [(a.name, Any if a.type is None else a.type) for a in attrs.fields(cls)]


def _describe(annotation: Any) -> str:
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return repr(annotation).replace("typing.", "")
