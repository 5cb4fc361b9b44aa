"""One registry type for every pluggable family (models, augmentations, CAM methods, metrics, datasets).

A registry is a plain dict filled by a decorator, so users add entries in a few lines without
touching augcam. Registering a name twice warns and keeps the newest entry, so a notebook cell
can be re-run.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from typing import Generic, TypeVar

from augcam.errors import ConfigError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self:
                warnings.warn(f"{self.kind} {name!r} is registered twice; the newest definition wins", stacklevel=2)
            self[name] = entry
            return entry

        return decorator

    def lookup(self, name: str, where: str = "") -> T:
        """The entry called `name`, or a ConfigError that lists the valid names."""
        if name in self:
            return self[name]
        near = difflib.get_close_matches(name, list(self), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        place = f"{where}: " if where else ""
        raise ConfigError(f"{place}unknown {self.kind} {name!r}{hint} (valid: {', '.join(sorted(self))})")
