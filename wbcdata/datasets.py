"""Datasets as every protocol sees them: the registered ones with the user folders of
``$WBC_DATASETS`` added, and the cached loader (fetching first where needed). ``load_dataset`` caches
the crops as ``.npz`` under ``<data_dir>/cache`` so that a benchmark run decodes each JPEG once, not
once per job. The registry itself is :mod:`wbcdata.registry`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.sample import Sample
from wbcdata.fetch import ensure_dataset
from wbcdata.registry import DATASETS, DatasetSpec, data_dir
from wbcdata.user import register_user_datasets


def list_datasets() -> list[str]:
    register_user_datasets()
    return DATASETS.names()


def dataset_spec(name: str) -> DatasetSpec:
    register_user_datasets()
    return DATASETS.get(name)


def dataset_domains(name: str) -> tuple[str, ...]:
    return dataset_spec(name).domains


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
        ensure_dataset(name, root)
    samples = spec.loader(root, size)
    if cache and spec.cached:
        _save_cache(path, samples)
    return samples
