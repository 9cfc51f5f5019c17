"""Protocol registry: ``@register_protocol`` on a builder ``(seed, samples_by_domain) -> list[Split]``.

A protocol registered with ``sources`` (its own source domains) is *extensible*: its builder also
takes ``extension=``, an :class:`Extension` naming domains a user adds with ``--sources`` /
``--targets``, so any dataset, built-in or user-held, can be a source or a target of it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from core.sample import Sample
from core.registry import Registry
from protocols.split import Split

Builder = Callable[..., list[Split]]
"""``(seed, by_domain)``, or ``(seed, by_domain, extension=None)`` for an extensible protocol."""


@dataclass(frozen=True)
class Extension:
    """Domains added to a protocol beyond its own (``--sources`` / ``--targets``): each is a test
    target, its images as they are, of every split whose source it is not, and those in ``sources``
    are trained on as well.

    The splits form a variant of the protocol named ``name`` (``<protocol>+<domain>+...``), their
    ``protocol`` field: another hash and another manifest folder, so the protocol's own splits, and
    the results made on them, are untouched."""

    name: str
    datasets: tuple[str, ...]
    """The protocol's datasets, then those the added domains come from (what is loaded)."""
    domains: tuple[str, ...]
    sources: tuple[str, ...] = ()
    """The added domains that are also sources (``--sources``); a split of the others is not built, so a
    dataset too small to split can still be a target. Splits do not depend on it, so the name omits it."""


@dataclass(frozen=True)
class ProtocolSpec:
    """``datasets`` are loaded and grouped by domain before ``build`` is called."""

    name: str
    datasets: tuple[str, ...]
    build: Builder
    description: str
    sources: tuple[str, ...] | None = None
    """Its own source domains, for an extensible protocol (None: it takes no :class:`Extension`)."""


PROTOCOLS: Registry[ProtocolSpec] = Registry("protocol")


def register_protocol(name: str, *, datasets: tuple[str, ...], description: str,
                      sources: tuple[str, ...] | None = None) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        PROTOCOLS.register(name, description)(ProtocolSpec(name, datasets, fn, description, sources))
        return fn

    return wrap


def get_protocol(name: str) -> ProtocolSpec:
    importlib.import_module("protocols.definitions")
    return PROTOCOLS.get(name)


def list_protocols() -> list[str]:
    importlib.import_module("protocols.definitions")
    return PROTOCOLS.names()
