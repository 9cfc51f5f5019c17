"""A tiny decorator registry, one instance per kind (datasets, models, protocols, treatments).

Modelled on timm's ``@register_model`` / ``create_model``: registering twice is an error,
and asking for an unknown name lists the valid choices. Every lookup first loads the plugins
(:mod:`core.plugins`), so a user's registrations are there in every process.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from core.errors import BenchmarkError
from core.plugins import load_plugins
from core.suggest import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a factory; ``kind`` appears in error messages ("unknown model 'x'").

    ``metadata`` kept beside a factory (timm keeps its pretrained configs so) answers questions
    about an entry without building it, e.g. which heads a model has."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._builtins = builtins
        """Modules whose import registers the built-in entries: imported once, before the plugins."""
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._metadata: dict[str, object] = {}

    def register(self, name: str | None = None, description: str | None = None,
                 metadata: object = None) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            if _origin_module(obj) not in self._builtins:  # a plugin's entry: the built-ins are there first
                self._load_builtins()
            key = name or getattr(obj, "__name__")
            if key in self._entries:
                first, second = _origin(self._entries[key]), _origin(obj)
                raise BenchmarkError(f"{self.kind} '{key}' is registered twice, by {first} and by {second}: "
                                     f"rename one (a plugin may not reuse a built-in name)")
            self._entries[key] = obj
            self._metadata[key] = metadata
            doc = description or (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._descriptions[key] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return obj

        return wrap

    def _load_builtins(self) -> None:
        for module in self._builtins:
            importlib.import_module(module)

    def _load(self) -> None:
        """Built-ins first, then plugins, so a plugin reusing a built-in name is the one refused."""
        self._load_builtins()
        load_plugins()

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise BenchmarkError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                                 f"valid {self.kind}s: {valid}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def description(self, name: str) -> str:
        self.get(name)
        return self._descriptions[name]

    def metadata(self, name: str) -> object:
        """What was registered with ``name`` beside its factory (None if nothing)."""
        self.get(name)
        return self._metadata[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries


def _origin_module(obj: object) -> str:
    return getattr(getattr(obj, "loader", obj), "__module__", "?")


def _origin(obj: object) -> str:
    """The module that registered ``obj`` (a dataset spec names its loader's module)."""
    target = getattr(obj, "loader", obj)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
