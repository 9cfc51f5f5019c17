"""Protocol registry. A protocol is data, a :class:`ProtocolSpec`: its name, the datasets it loads, its
design (which of :data:`DESIGNS` turns a seed into splits), its own source domains and a description.
The built-ins are the rows of ``protocols/definitions.py``; a plugin registers a row the same way
(:func:`register_spec`), or, for a design of its own, a builder with :func:`register_protocol`.

A protocol with sources is *extensible*: an :class:`Extension` names domains a user adds with
``--sources`` / ``--targets``, so any dataset, built-in or user-held, can be a source or a target of it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.registry import Registry
from protocols.split import Split
from wbcdata.datasets import dataset_domains

Builder = Callable[..., list[Split]]
"""A plugin's own design: ``(seed, by_domain)``, or ``(seed, by_domain, extension=None)`` when registered
with sources."""

DESIGNS: tuple[str, ...] = ("within", "cross_dataset", "cross_stain", "cross_scanner")
"""The built-in designs (``protocols.designs``): train/val/test inside each source; test on every other
domain; test the held-out images re-stained and HED-perturbed; test them under every acquisition kind."""

ALL_DOMAINS, FIRST_DOMAIN = "all", "first"
"""``sources`` of a spec that takes its source domains from its datasets when first asked (not at
import): every domain, or the first one."""


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
    """One protocol. ``datasets`` are loaded and grouped by domain before the splits are built; the
    splits come from ``design`` (one of :data:`DESIGNS`) or, for a plugin's own design, ``build``.
    ``sources``: its own source domains (a tuple, :data:`ALL_DOMAINS` or :data:`FIRST_DOMAIN`); None
    only for a ``build`` that takes no :class:`Extension`."""

    name: str
    datasets: tuple[str, ...]
    description: str
    design: str | None = None
    sources: tuple[str, ...] | str | None = None
    build: Builder | None = None

    def __post_init__(self) -> None:
        if (self.design is None) == (self.build is None):
            raise ValueError(f"protocol '{self.name}': give a design ({', '.join(DESIGNS)}) or a builder, not both")
        if self.design is not None and self.design not in DESIGNS:
            raise ValueError(f"protocol '{self.name}': unknown design '{self.design}'; designs: {', '.join(DESIGNS)}")
        if self.design is not None and self.sources is None:
            raise ValueError(f"protocol '{self.name}': a design needs its sources (a tuple, 'all' or 'first')")

    def own_sources(self) -> tuple[str, ...] | None:
        """The protocol's own source domains (None: it takes no extension)."""
        if self.sources in (ALL_DOMAINS, FIRST_DOMAIN):
            domains = tuple(d for dataset in self.datasets for d in dataset_domains(dataset))
            return domains if self.sources == ALL_DOMAINS else domains[:1]
        return self.sources


PROTOCOLS: Registry[ProtocolSpec] = Registry("protocol", builtins=("protocols.definitions",))


def register_spec(spec: ProtocolSpec) -> ProtocolSpec:
    """Register a protocol row (built-in or a plugin's)."""
    return PROTOCOLS.register(spec.name, spec.description)(spec)


def register_protocol(name: str, *, datasets: tuple[str, ...], description: str,
                      sources: tuple[str, ...] | None = None) -> Callable[[Builder], Builder]:
    """Decorator for a plugin's own design: ``@register_protocol(name, datasets=..., description=...)``
    on a builder ``(seed, by_domain[, extension]) -> list[Split]``."""
    def wrap(fn: Builder) -> Builder:
        register_spec(ProtocolSpec(name, datasets, description, sources=sources, build=fn))
        return fn

    return wrap


def get_protocol(name: str) -> ProtocolSpec:
    return PROTOCOLS.get(name)


def list_protocols() -> list[str]:
    return PROTOCOLS.names()
