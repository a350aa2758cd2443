"""``Registry``: the names of one concept (formats, tasks, methods) to their descriptors.

Filled by ``register`` in the module that defines each descriptor, never by scanning entry
points; a lookup of an unknown name says which exist and the closest one.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """Descriptors of one concept by ``name``, in registration order.

    Args:
        concept: What the descriptors are, for messages (``"format"``).
        error: Builds the exception an unknown name raises, from its message and its fix.
    """

    def __init__(self, concept: str, error: Callable[[str, str], Exception]):
        super().__init__()
        self.concept, self._error = concept, error

    def register(self, item: T) -> T:
        """Make ``item`` known by ``item.name``; a name is registered once."""
        if item.name in self:
            raise ValueError(f"a {self.concept} named {item.name!r} is registered already")
        self[item.name] = item
        return item

    def lookup(self, name: str) -> T:
        """The descriptor called ``name``; an unknown name raises the registry's error."""
        if name in self:
            return self[name]
        close = difflib.get_close_matches(str(name), list(self), n=1)
        raise self._error(f"unknown {self.concept} {name!r}.",
                          (f"Did you mean {close[0]!r}? " if close else "") + f"Known: {', '.join(self)}.")
