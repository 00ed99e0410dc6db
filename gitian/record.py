"""A small value type for the modules gverify loads at start-up.

:class:`Record` gives a class whose fields are its ``__slots__`` the value
semantics of a ``NamedTuple`` - equality, hashing and a readable ``repr`` by
field - without importing :mod:`typing`, which alone costs gverify's
start-up about a tenth of its whole time budget (issue 2).  Subclasses write
their own typed ``__init__``; records are not changed after it.
"""

from __future__ import annotations


class Record:
    """Fields in ``__slots__``; compared, hashed and shown by value."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({fields})"
