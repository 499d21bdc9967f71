"""Name -> factory registries, filled by decorators and read by the CLI and the tests.

The tests are parametrised over `list_models()`, so a newly registered model is tested for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered mapping from a public name to an entry, with a helpful error for typos."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register `obj` under `name` (names are unique)."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        """Register `obj` under `name` without a decorator."""
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        """Return the entry for `name`; a `UserError` listing the choices if there is none."""
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(self._entries) or "(none)"
            raise UserError(f"unknown {self.kind} {name!r}; choose one of: {choices}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())


class Configurable:
    """A registered piece (objective, regulariser) with named numeric options.

    Subclasses list their options and defaults in `options`; `spec` strings such as
    "r1:gamma=5" or "began:gamma=0.7:lambda_k=0.001" set them, strictly.
    """

    name: str = ""
    description: str = ""
    options: ClassVar[dict[str, float]] = {}
    # The scalars it logs beyond the losses and D's outputs, log key -> plot label: the loss
    # figure draws what the run's pieces declare, so a new piece needs no edit of the plots.
    curves: ClassVar[dict[str, str]] = {}

    def __init__(self, **values: float) -> None:
        for key, default in self.options.items():
            setattr(self, key, float(values.pop(key, default)))
        if values:
            valid = ", ".join(self.options) or "none"
            raise UserError(
                f"{self.name} has no option {', '.join(map(repr, values))}; valid: {valid}"
            )

    def spec(self) -> str:
        """The spec string that rebuilds this piece (every option spelled out)."""
        return ":".join([self.name] + [f"{k}={getattr(self, k):g}" for k in self.options])


def parse_spec(text: str) -> tuple[str, dict[str, float]]:
    """'name:key=value:key=value' -> (name, {key: float}); a UserError for a malformed one."""
    name, *parts = [p.strip() for p in text.strip().split(":")]
    if not name:
        raise UserError(f"empty name in {text!r}; use e.g. r1:gamma=10")
    values: dict[str, float] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            number = float(value)
            if not (math.isfinite(number) and number >= 0):
                raise UserError(
                    f"option {key.strip()}={value.strip()} in {text!r} must be a finite number "
                    ">= 0 (every option is a weight, a rate or a bound)"
                )
            values[key.strip()] = number
        except ValueError:
            raise UserError(
                f"bad option {part!r} in {text!r}; write name:key=number, e.g. r1:gamma=10"
            ) from None
    return name, values


def build_from_spec(registry: Registry[type[Any]], text: str) -> Any:
    """An instance of the registered class named in `text`, with its options applied."""
    name, values = parse_spec(text)
    return registry.get(name)(**values)
