"""A small schema language for the dashboard's contract: each type checks a Python value (raising
:class:`ProtocolError` that names what does not fit) and writes its TypeScript type, so the Python
side and the front end's types come from one declaration (``contract.py``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError


def _got(value: Any) -> str:
    return f"got {value!r:.60}"


class Schema:
    """A type: ``check(value, where)`` raises ProtocolError unless ``value`` fits; ``ts()`` is its TypeScript type."""

    def check(self, value: Any, where: str) -> None:
        raise NotImplementedError

    def ts(self) -> str:
        raise NotImplementedError

    def children(self) -> Iterator[Schema]:
        return iter(())


@dataclass(frozen=True)
class Num(Schema):
    """A finite number (``integer``: a whole one), within [low, high] when given."""

    low: float | None = None
    high: float | None = None
    integer: bool = False

    def check(self, value: Any, where: str) -> None:
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (isinstance(value, float) and math.isfinite(value))
        inside = number and (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if self.integer and not (whole and inside):
            bounds = f" in [{self.low}, {self.high}]" if self.low is not None and self.high is not None else ""
            raise ProtocolError(f"{where} must be a whole number{bounds}, {_got(value)}")
        if not inside:
            raise ProtocolError(f"{where} must be a number, {_got(value)}")

    def ts(self) -> str:
        return "number"


def Int(low: int | None = None, high: int | None = None) -> Num:  # noqa: N802 - reads as a type
    return Num(low, high, integer=True)


@dataclass(frozen=True)
class Str(Schema):
    low: int = 0
    high: int | None = None

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, str) or len(value) < self.low or (self.high is not None and len(value) > self.high):
            size = f" of {self.low} to {self.high} characters" if self.high is not None else ""
            raise ProtocolError(f"{where} must be a string{size}, {_got(value)}")

    def ts(self) -> str:
        return "string"


@dataclass(frozen=True)
class Bool(Schema):
    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise ProtocolError(f"{where} must be true or false, {_got(value)}")

    def ts(self) -> str:
        return "boolean"


@dataclass(frozen=True)
class Bytes(Schema):
    """A binary buffer of little-endian ``dtype`` values; a ``DataView`` in the browser."""

    dtype: str

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ProtocolError(f"{where} must be a binary buffer of {self.dtype}, got {type(value).__name__}")

    def ts(self) -> str:
        return "DataView"


@dataclass(frozen=True)
class Enum(Schema):
    """One of ``values`` (strings); ``noun`` names them in errors ("unknown command 'x'")."""

    values: tuple[str, ...]
    noun: str | None = None
    alias: str | None = None  # the TypeScript type that names these values

    def check(self, value: Any, where: str) -> None:
        if value in self.values:
            return
        if self.noun is not None:
            known = ", ".join(sorted(self.values))
            raise ProtocolError(f"unknown {self.noun} {value!r:.60}; the {self.noun}s are {known}")
        listed = " or ".join(map(repr, self.values)) if len(self.values) <= 2 else (
            "one of " + ", ".join(map(repr, self.values)))
        raise ProtocolError(f"{where} must be {listed}, {_got(value)}")

    def ts(self) -> str:
        return self.alias or " | ".join(f'"{v}"' for v in self.values)


def Lit(value: str) -> Enum:  # noqa: N802 - reads as a type
    return Enum((value,))


@dataclass(frozen=True)
class Opt(Schema):
    """``inner`` or None."""

    inner: Schema

    def check(self, value: Any, where: str) -> None:
        if value is not None:
            self.inner.check(value, where)

    def ts(self) -> str:
        return f"{self.inner.ts()} | null"

    def children(self) -> Iterator[Schema]:
        yield self.inner


@dataclass(frozen=True)
class Union(Schema):
    options: tuple[Schema, ...]

    def check(self, value: Any, where: str) -> None:
        problems = []
        for option in self.options:
            try:
                option.check(value, where)
                return
            except ProtocolError as exc:
                problems.append(str(exc))
        raise ProtocolError(" and ".join(problems))

    def ts(self) -> str:
        return " | ".join(_group(o.ts()) for o in self.options)

    def children(self) -> Iterator[Schema]:
        yield from self.options


@dataclass(frozen=True)
class Arr(Schema):
    item: Schema

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list | tuple):
            raise ProtocolError(f"{where} must be a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")

    def ts(self) -> str:
        return f"{_group(self.item.ts())}[]"

    def children(self) -> Iterator[Schema]:
        yield self.item


@dataclass(frozen=True)
class Tup(Schema):
    items: tuple[Schema, ...]

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list | tuple) or len(value) != len(self.items):
            raise ProtocolError(f"{where} must be a list of {len(self.items)} values, {_got(value)}")
        for i, (item, schema) in enumerate(zip(value, self.items)):
            schema.check(item, f"{where}[{i}]")

    def ts(self) -> str:
        return f"[{', '.join(i.ts() for i in self.items)}]"

    def children(self) -> Iterator[Schema]:
        yield from self.items


@dataclass(frozen=True)
class Map(Schema):
    """An object of any keys, each value ``item``; at most ``high`` entries when given."""

    item: Schema
    high: int | None = None

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, Mapping) or (self.high is not None and len(value) > self.high):
            size = f" of at most {self.high} entries" if self.high is not None else ""
            raise ProtocolError(f"{where} is an object{size}, got {type(value).__name__}")
        for key, item in value.items():
            Str(1, 200).check(key, f"a key of {where}")
            self.item.check(item, f"{where} {key!r}")

    def ts(self) -> str:
        return f"Record<string, {self.item.ts()}>"

    def children(self) -> Iterator[Schema]:
        yield self.item


@dataclass(frozen=True)
class Unknown(Schema):
    """Any JSON value."""

    def check(self, value: Any, where: str) -> None:
        return None

    def ts(self) -> str:
        return "unknown"


@dataclass(frozen=True)
class Obj(Schema):
    """An object with ``fields`` (those in ``optional`` may be left out); other keys are refused
    unless ``extra`` says what they hold. A ``name`` makes it a TypeScript interface."""

    fields: Mapping[str, Schema]
    name: str | None = None
    label: str | None = None  # how errors name it ("a command message")
    optional: frozenset[str] = field(default_factory=frozenset)
    extra: Schema | None = None

    def check(self, value: Any, where: str) -> None:
        label = self.label or where
        if not isinstance(value, Mapping):
            raise ProtocolError(f"{label} must be a JSON object, got {type(value).__name__}")
        for key, item in value.items():
            schema = self.fields.get(key, self.extra)
            if schema is None:
                raise ProtocolError(f"{label} has no field {str(key)!r:.60}")
            schema.check(item, f"{label}'s {key}")
        missing = [k for k in self.fields if k not in value and k not in self.optional]
        if missing:
            raise ProtocolError(f"{label} needs the field {missing[0]!r}")

    def ts(self) -> str:
        return self.name or self.body()

    def body(self) -> str:
        lines = [f"  {k}{'?' if k in self.optional else ''}: {v.ts()};" for k, v in self.fields.items()]
        if self.extra is not None:
            lines.append(f"  [key: string]: {self.extra.ts()};")
        return "{\n" + "\n".join(lines) + "\n}"

    def children(self) -> Iterator[Schema]:
        yield from self.fields.values()
        if self.extra is not None:
            yield self.extra


def _group(text: str) -> str:
    return f"({text})" if "|" in text else text


def named(schemas: Sequence[Schema]) -> list[Obj]:
    """Every named object reachable from ``schemas``, each once, dependencies first."""
    found: dict[str, Obj] = {}

    def visit(schema: Schema) -> None:
        for child in schema.children():
            visit(child)
        if isinstance(schema, Obj) and schema.name is not None and schema.name not in found:
            found[schema.name] = schema

    for schema in schemas:
        visit(schema)
    return list(found.values())
