"""Embeddings of a frozen encoder, computed once per image set and kept on disk.

A probe's training embeddings depend on the encoder, its exact weights, the input side, the
arithmetic (the device: CPU and GPU float32 round differently) and the image bytes, so
the file is keyed by all of them: a job gives the same numbers whether the cache was warm or cold.
Files live under ``<data dir>/embedding_cache/<encoder>/`` beside the crop and target caches;
each is written atomically (a temporary sibling, then ``os.replace``), and one that cannot be read
or does not match its key is rebuilt with a warning. Hits and misses are counted (``STATS``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.paths import data_dir

CACHE_FORMAT = 1
"""Bump when what a file holds, or how a key is made, changes: old files then stop matching."""
KEY_CHARS = 32
log = logging.getLogger(__name__)


@dataclass
class CacheStats:
    """Lookups in this process: ``hits`` read from disk, ``misses`` computed (``rebuilt`` of them
    replaced a file that could not be used)."""

    hits: int = 0
    misses: int = 0
    rebuilt: int = 0


STATS = CacheStats()


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything an embedding set depends on: encoder name, weights identity, input side, arithmetic
    (``cpu-float32``, ``cuda-float32``) and the digest of the image bytes (which also names the crop
    cache version and any stain treatment the images went through)."""

    encoder: str
    weights: str
    input_size: int
    arithmetic: str
    images: str

    def text(self) -> str:
        return json.dumps({"format": CACHE_FORMAT, **asdict(self)}, sort_keys=True)

    def path(self, root: Path) -> Path:
        folder = re.sub(r"[^A-Za-z0-9._-]+", "_", self.encoder).strip("_") or "encoder"
        return root / folder / f"{hashlib.sha256(self.text().encode()).hexdigest()[:KEY_CHARS]}.npz"


def cache_root() -> Path:
    """``<data dir>/embedding_cache`` (``$WBC_DATA_DIR``), read now."""
    return data_dir() / "embedding_cache"


def image_digest(images: np.ndarray) -> str:
    """SHA-256 of an image set's shape, dtype and bytes."""
    arr = np.ascontiguousarray(images)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def cached_embeddings(key: EmbeddingKey, count: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The (count, D) float32 embeddings stored under ``key``, or ``compute()``'s, then stored."""
    path = key.path(cache_root())
    if path.exists():
        found = _read(path, key, count)
        if found is not None:
            STATS.hits += 1
            return found
        STATS.rebuilt += 1
    STATS.misses += 1
    embeddings = np.ascontiguousarray(compute(), dtype=np.float32)
    _write(path, key, embeddings)
    return embeddings


def _read(path: Path, key: EmbeddingKey, count: int) -> np.ndarray | None:
    """The file's embeddings, or None (with a warning saying why) when they cannot be used."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored, embeddings = str(data["key"]), np.asarray(data["embeddings"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        problem = f"cannot be read ({type(e).__name__}: {e})"
    else:
        problem = _mismatch(stored, key, embeddings, count)
        if problem is None:
            return embeddings
    log.warning("embedding cache file %s %s; computing the embeddings again and replacing it", path, problem)
    return None


def _mismatch(stored: str, key: EmbeddingKey, embeddings: np.ndarray, count: int) -> str | None:
    if stored != key.text():
        return "holds another key"
    if embeddings.dtype != np.float32 or embeddings.ndim != 2 or len(embeddings) != count:
        return f"holds {embeddings.dtype} {embeddings.shape}, expected float32 ({count}, D)"
    if not np.isfinite(embeddings).all():
        return "holds non-finite values"
    return None


def _write(path: Path, key: EmbeddingKey, embeddings: np.ndarray) -> None:
    """Atomic: readers see the old file or the whole new one. A cache that cannot be written (a
    read-only data dir) only costs the next job the computation, so it warns and goes on."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(f, embeddings=embeddings, key=np.array(key.text()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        log.warning("embedding cache: cannot write %s (%s: %s); the embeddings are not kept", path, type(e).__name__, e)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
