"""Regular expressions compiled on first use.

Compiling a pattern costs a fraction of a millisecond; a module that compiles
a dozen at import makes every command that loads it slower, although most
runs use few of them.  gverify's start-up is part of its speed goal (issue
2), so the modules it loads keep their patterns as :class:`LazyPattern`.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The real one, even while gitian.safeyaml makes ``re.compile`` lazy for the
# length of PyYAML's import.
_compile = re.compile


class LazyPattern:
    """Stands for ``re.compile(pattern, flags)``; compiles on first use.

    The usual methods are typed here; any other attribute of the compiled
    pattern is passed on."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = _compile(*self._args)
        return self._compiled

    @property
    def pattern(self) -> str:
        return self._args[0]

    def fullmatch(self, string: str) -> re.Match[str] | None:
        return self.compiled.fullmatch(string)

    def match(self, string: str) -> re.Match[str] | None:
        return self.compiled.match(string)

    def search(self, string: str) -> re.Match[str] | None:
        return self.compiled.search(string)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.compiled, name)
