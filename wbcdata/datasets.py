"""Dataset registry and the cached loader every protocol goes through.

A dataset loader is ``fn(data_dir: Path, size: int) -> list[Sample]`` and returns
WBC-centred square crops of ``size`` x ``size`` pixels (crop rules live with each loader and in
docs/data.md). ``load_dataset`` caches the result as ``.npz`` under ``<data_dir>/cache`` so that a
benchmark run decodes each JPEG once, not once per job.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.sample import Sample
from core.registry import Registry

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


DATASETS: Registry[DatasetSpec] = Registry("dataset")

_DATASET_MODULES = ("wbcdata.real", "wbcdata.synthetic")


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


def _load_all() -> None:
    """Import the built-in loaders, then register the user folders named in ``$WBC_DATASETS``
    (imported here, not at the top: :mod:`wbcdata.user` registers through this module)."""
    for mod in _DATASET_MODULES:
        importlib.import_module(mod)
    from wbcdata.user import register_user_datasets

    register_user_datasets()


def list_datasets() -> list[str]:
    _load_all()
    return DATASETS.names()


def dataset_spec(name: str) -> DatasetSpec:
    _load_all()
    return DATASETS.get(name)


def dataset_domains(name: str) -> tuple[str, ...]:
    return dataset_spec(name).domains


def data_dir() -> Path:
    """Where datasets are extracted: ``$WBC_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("WBC_DATA_DIR", "data")).resolve()


def _cache_path(spec: DatasetSpec, size: int, root: Path) -> Path:
    return root / "cache" / f"{spec.name}-{size}px-{spec.cache_version}.npz"


def _save_cache(path: Path, samples: list[Sample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    has_mask = np.array([s.mask is not None for s in samples])
    masks = np.stack([s.mask if s.mask is not None else np.zeros(s.image.shape[:2], np.uint8) for s in samples])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        images=np.stack([s.image for s in samples]),
        masks=masks,
        has_mask=has_mask,
        labels=np.array([-1 if s.label is None else s.label for s in samples]),
        ids=np.array([s.id for s in samples]),
        datasets=np.array([s.dataset for s in samples]),
        domains=np.array([s.domain for s in samples]),
        sources=np.array([s.source for s in samples]),
    )
    os.replace(tmp, path)


def _read_cache(path: Path) -> list[Sample]:
    with np.load(path, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}  # each z[k] access re-reads the file: load every array once
    return [
        Sample(
            id=str(a["ids"][i]),
            image=a["images"][i],
            mask=a["masks"][i] if a["has_mask"][i] else None,
            label=None if a["labels"][i] < 0 else int(a["labels"][i]),
            dataset=str(a["datasets"][i]),
            domain=str(a["domains"][i]),
            source=str(a["sources"][i]),
        )
        for i in range(len(a["ids"]))
    ]


def load_dataset(name: str, *, size: int = 128, root: Path | None = None, cache: bool = True) -> list[Sample]:
    """All samples of a dataset as WBC-centred ``size`` px crops, fetching the dataset first if needed."""
    spec = dataset_spec(name)
    root = root or data_dir()
    path = _cache_path(spec, size, root)
    if cache and spec.cached and path.exists():
        return _read_cache(path)
    if spec.fetched:
        from wbcdata.fetch import ensure_dataset

        ensure_dataset(name, root)
    samples = spec.loader(root, size)
    if cache and spec.cached:
        _save_cache(path, samples)
    return samples
