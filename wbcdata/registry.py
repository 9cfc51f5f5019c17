"""The dataset registry: what a dataset is (:class:`DatasetSpec`), how a loader registers, and where
data lives. The bottom of ``wbcdata``: fetching, the loaders and the user folders register here, and
``wbcdata.datasets`` looks datasets up and loads them.

A dataset loader is ``fn(data_dir: Path, size: int) -> list[Sample]`` and returns WBC-centred square
crops of ``size`` x ``size`` pixels (crop rules live with each loader and in docs/data.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.paths import data_dir  # noqa: F401 (re-exported: wbcdata's callers name it here)
from core.registry import Registry
from core.sample import Sample

Loader = Callable[[Path, int], list[Sample]]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loader, its domains (stain/scanner), whether it is fetched, and what a
    report must say about where it came from (licence, citation, public source)."""

    name: str
    loader: Loader
    domains: tuple[str, ...]
    fetched: bool
    cache_version: str
    description: str
    licence: str = ""
    citation: str = ""
    url: str = ""
    cached: bool = False
    """Whether ``load_dataset`` keeps its crops as .npz: fetched datasets and user folders, whose
    ``cache_version`` then names the data as well as the crop rule."""
    path: str = ""
    """The folder of a user dataset (empty for the built-ins)."""


DATASETS: Registry[DatasetSpec] = Registry("dataset", builtins=("wbcdata.real", "wbcdata.folder", "wbcdata.synthetic"))


def register_dataset(
    name: str, *, domains: tuple[str, ...], fetched: bool, cache_version: str, description: str,
    licence: str = "", citation: str = "", url: str = "",
) -> Callable[[Loader], Loader]:
    """Register a loader. ``cache_version`` must change whenever the crop rule or decoding changes."""

    def wrap(fn: Loader) -> Loader:
        spec = DatasetSpec(name, fn, domains, fetched, cache_version, description, licence, citation, url,
                           cached=fetched)
        DATASETS.register(name, description)(spec)
        return fn

    return wrap
