"""Dataset fingerprint saved with every run (nnU-Net-style): class counts per split part, and
per-domain colour and optical-density statistics and cell size relative to the crop, so a result
can be traced to the data it saw."""
from __future__ import annotations

from collections import Counter

import numpy as np

from wbcdata.crops import span_summary
from core.sample import CLASSES, Sample
from protocols.split import Split


def colour_stats(samples: list[Sample]) -> dict:
    """Mean and SD of RGB (0-255) and mean optical density per channel over all pixels."""
    px = np.concatenate([s.image.reshape(-1, 3) for s in samples]).astype(np.float64)
    od = -np.log(np.maximum(px, 1.0) / 255.0)
    return {
        "n_images": len(samples),
        "rgb_mean": px.mean(0).round(2).tolist(),
        "rgb_sd": px.std(0).round(2).tolist(),
        "od_mean": od.mean(0).round(4).tolist(),
    }


def class_counts(samples: list[Sample]) -> dict[str, int]:
    c = Counter("unlabelled" if s.label is None else CLASSES[s.label] for s in samples)
    return {k: c[k] for k in [*CLASSES, "unlabelled"] if c[k]}


def split_fingerprint(split: Split, by_id: dict[str, Sample]) -> dict:
    parts = {"train": split.train, "val": split.val, **{f"test:{t.name}": t.ids for t in split.targets}}
    domains: dict[str, list[Sample]] = {}
    for i in sorted({i for ids in parts.values() for i in ids}):
        domains.setdefault(by_id[i].domain, []).append(by_id[i])
    return {
        "split_hash": split.hash,
        "class_counts": {k: class_counts([by_id[i] for i in ids]) for k, ids in parts.items()},
        "masks": {k: sum(by_id[i].mask is not None for i in ids) for k, ids in parts.items()},
        "colour": {d: colour_stats(s) for d, s in sorted(domains.items())},
        "cell_size": {d: span_summary([(x.image, x.mask) for x in s]).to_dict() for d, s in sorted(domains.items())},
    }
