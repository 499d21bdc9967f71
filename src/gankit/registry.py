"""Name -> factory registries, filled by decorators and read by the CLI and the tests.

The tests are parametrised over `list_models()`, so a newly registered model is tested for free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

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
