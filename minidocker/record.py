"""Records: plain classes with named fields, compared and printed by those fields.

What this teaches
-----------------
The chapters' small records (a mount, a device, a cgroup layout, a recorded kernel call…) are
what ``@dataclass`` makes, but written out: each class lists its ``_fields`` and has an explicit
``__init__``; this base class gives the rest from ``_fields`` — ``repr`` as a dataclass prints it
(``Mount(source='proc', target='/proc', …)``), ``==`` field by field between records of the same
class, ``as_dict()`` (what ``dataclasses.asdict`` gave; nested lists of records are converted
too). :class:`Frozen` records are immutable and hashable (``@dataclass(frozen=True)``).

Why not ``dataclasses``: importing it imports ``inspect`` and with it ``ast``, ``dis``,
``tokenize``… — 10–15 ms of every ``minidocker-runtime`` start on this machine, more than a
container's mounts, for classes whose methods are a few lines each (bench/README.md, ``runtime``).
"""
from __future__ import annotations


class Record:
    _fields: tuple[str, ...] = ()
    __hash__ = None   # mutable and compared by value: unhashable, as a dataclass with eq=True

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def as_dict(self) -> dict:
        """The fields as a dict, records inside lists, tuples and dicts converted too."""
        return {name: _plain(getattr(self, name)) for name in self._fields}


class Frozen(Record):
    """A record that cannot change once made: hashable, and assigning a field raises."""

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def _set(self, **values) -> None:
        """For ``__init__`` only."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __hash__(self):
        return hash(self._values())


def _plain(v):
    if isinstance(v, Record):
        return v.as_dict()
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
