"""Protocol registry: ``@register_protocol`` on a builder ``(seed, samples_by_domain) -> list[Split]``."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from core.sample import Sample
from core.registry import Registry
from protocols.split import Split

Builder = Callable[[int, dict[str, list[Sample]]], list[Split]]


@dataclass(frozen=True)
class ProtocolSpec:
    """``datasets`` are loaded and grouped by domain before ``build`` is called."""

    name: str
    datasets: tuple[str, ...]
    build: Builder
    description: str


PROTOCOLS: Registry[ProtocolSpec] = Registry("protocol")


def register_protocol(name: str, *, datasets: tuple[str, ...], description: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        PROTOCOLS.register(name, description)(ProtocolSpec(name, datasets, fn, description))
        return fn

    return wrap


def get_protocol(name: str) -> ProtocolSpec:
    importlib.import_module("protocols.definitions")
    return PROTOCOLS.get(name)


def list_protocols() -> list[str]:
    importlib.import_module("protocols.definitions")
    return PROTOCOLS.names()
