"""Perceptual-hash check between training and test images: near-duplicates inflate test scores."""
from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from core.sample import Sample

MAX_HAMMING = 4
"""pHash bits (of 64) that may differ for two images to count as near-duplicates."""


def _hash_bits(samples: list[Sample]) -> np.ndarray:
    return np.stack([imagehash.phash(Image.fromarray(s.image)).hash.ravel() for s in samples])


def near_duplicates(train: list[Sample], test: list[Sample], max_hamming: int = MAX_HAMMING) -> list[tuple[str, str, int]]:
    """(train id, test id, distance) for every pair within ``max_hamming`` bits, closest first."""
    if not train or not test:
        return []
    a, b = _hash_bits(train).astype(np.int16), _hash_bits(test).astype(np.int16)
    dist = (a[:, None, :] != b[None, :, :]).sum(-1)
    ii, jj = np.nonzero(dist <= max_hamming)
    pairs = [(train[i].id, test[j].id, int(dist[i, j])) for i, j in zip(ii, jj)]
    return sorted(pairs, key=lambda p: (p[2], p[0], p[1]))
