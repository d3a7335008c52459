"""Immutable records: ``typing.NamedTuple`` classes that are equal only to their own kind.

The client's messages, actions and snapshots are small immutable records made by the
thousand on the hot path. A ``NamedTuple`` is cheaper than a frozen dataclass in memory (a
frozen dataclass generates six methods per class, about 25 KB; a NamedTuple costs about 4 KB)
and in time (no ``object.__setattr__`` per field). But tuples compare by value alone,
so ``Open(1) == Drain(1)`` would be true; :func:`record` makes a record equal only to a record
of the same class with the same fields. Hashing stays the tuple's (equal records hash alike).
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["record"]

T = TypeVar("T", bound=type)


def _eq(self: tuple[Any, ...], other: object) -> bool:
    return type(other) is type(self) and tuple.__eq__(self, other)


def _ne(self: tuple[Any, ...], other: object) -> bool:
    return not _eq(self, other)


def record(cls: T) -> T:
    """Class decorator for a ``NamedTuple``: equal only to instances of exactly its class."""
    setattr(cls, "__eq__", _eq)  # noqa: B010 -- assigned after the class is made: NamedTuple allows no mixins
    setattr(cls, "__ne__", _ne)  # noqa: B010
    setattr(cls, "__hash__", tuple.__hash__)  # noqa: B010
    return cls
