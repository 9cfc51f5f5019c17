"""Realize a split's test targets as samples: untouched, or transformed by their registered target
kind (:mod:`wbcdata.target_kinds`: re-staining, HED jitter, the scanner's acquisition shifts).
Kinds never touch masks or labels, and the builder refuses an image whose shape or type changed,
so masks stay valid.

Stain profiles: the source profile is estimated from the *training* images of the source domain,
a target domain's from all of its images (it never trains the model). Each image's random stream
is seeded by (split seed, sample id, severity), so every model of a seed sees the same test images.

A split's transformed images, the stain profiles they used and its dataset fingerprint are the same
for every model of the split, so they are built once and cached on disk (``<data dir>/target_cache``,
one ``.npz`` per split, keyed by :meth:`TargetBuilder.cache_key`) for every later job, worker
process and run: one process builds while the others wait for its file (:mod:`benchmark.engine.lockfile`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import time
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmark.engine.fingerprint import split_fingerprint
from benchmark.engine.lockfile import try_lock, unlock
from core.errors import BenchmarkError
from core.sample import Sample
from protocols.split import Split, TestTarget
from wbcdata import stain
from wbcdata.datasets import data_dir, dataset_spec
from wbcdata.target_kinds import TARGET_KINDS, get_target_kind

CACHE_VERSION = "1"
"""Bump when the cache's layout changes, or when cached images or fingerprints would change through
code the key does not hash (:func:`_code_digest`)."""

POLL_S = 0.2
"""How often a process waiting for another one's cache file looks for it."""

CODE_MODULES = ("benchmark.engine.targets", "benchmark.engine.fingerprint", "wbcdata.stain", "wbcdata.acquisition", "wbcdata.crops")
"""What builds the cached images and fingerprint besides the kinds' own modules: an edit to them makes
a new cache file rather than reusing one built by the old code."""


class TargetBuilder:
    def __init__(self, split: Split, by_id: dict[str, Sample], data_versions: dict[str, str] | None = None,
                 cache: Path | bool = True) -> None:
        """``data_versions``: crop-cache version of each dataset ``by_id`` holds (a job's
        ``data_versions``; None reads the split's datasets' from the registry). ``cache``: the folder
        of cached targets, True for ``<data dir>/target_cache``, False to build in memory only."""
        self.split, self.by_id = split, by_id
        self.data_versions = data_versions
        self.cache_dir = data_dir() / "target_cache" if cache is True else cache or None
        self._profiles: dict[str, stain.StainProfile] = {}
        self._samples: dict[str, list[Sample]] = {}
        self._fingerprint: dict | None = None
        self._realized = False

    def profile(self, domain: str) -> stain.StainProfile:
        if domain not in self._profiles:
            if domain == self.split.source:
                ids = self.split.train
            else:
                ids = tuple(i for i, s in self.by_id.items() if s.domain == domain)
            if not ids:
                raise BenchmarkError(f"split {self.split.key}: no images of domain '{domain}' to estimate its stain")
            self._profiles[domain] = stain.estimate_profile([self.by_id[i].image for i in ids], domain)
        return self._profiles[domain]

    def samples(self, target: TestTarget) -> list[Sample]:
        """The target's samples, transformed once and then reused (the builder is per split); with a
        cache, every target of the split is loaded or built at the first call. A target the split does
        not hold (``evaluate`` adding one) is built in memory."""
        if self._cached() and target in self.split.targets:
            self._realize()
        if target.name not in self._samples:
            self._samples[target.name] = self._build(target)
        return self._samples[target.name]

    def fingerprint(self) -> dict:
        """The split's dataset fingerprint (:func:`benchmark.engine.fingerprint.split_fingerprint`), cached with its targets."""
        if self._cached():
            self._realize()
        if self._fingerprint is None:
            self._fingerprint = split_fingerprint(self.split, self.by_id)
        return self._fingerprint

    def _build(self, target: TestTarget) -> list[Sample]:
        base = [self.by_id[i] for i in target.ids]
        if target.kind is None:
            return base
        if target.kind not in TARGET_KINDS:
            raise BenchmarkError(f"split {self.split.key}: unknown transform kind '{target.kind}' in target "
                                 f"'{target.name}'; registered target kinds: {', '.join(TARGET_KINDS.names())}")
        kind, params, severity = get_target_kind(target.kind), target.params, target.severity or 0.0
        out = []
        for s in base:
            image = kind.apply(s.image, params, self._rng(s.id, severity), self)
            if image.shape != s.image.shape or image.dtype != np.uint8:
                raise BenchmarkError(f"target kind '{target.kind}' turned {s.id} from {s.image.shape} uint8 into "
                                     f"{image.shape} {image.dtype}: a kind may change pixel values only")
            out.append(replace(s, image=image, domain=target.domain))
        return out

    def _rng(self, sample_id: str, severity: float) -> np.random.Generator:
        return np.random.default_rng([self.split.seed, zlib.crc32(sample_id.encode()), int(round(severity * 1e4))])

    def profiles_used(self) -> dict[str, dict]:
        return {d: p.to_dict() for d, p in sorted(self._profiles.items())}

    # ---- the disk cache ---------------------------------------------------------------------------

    def _cached(self) -> bool:
        """Whether the split's targets go through the cache: not without a folder, nor when a target's
        kind is not registered now (``evaluate`` may score one target of such a split, in memory)."""
        return self.cache_dir is not None and all(t.kind is None or t.kind in TARGET_KINDS for t in self.split.targets)

    def cache_key(self) -> str:
        """SHA-256 of what the cached arrays depend on: the split (its hash names every id and target),
        the image shape, the crop versions of the data, each target and the code that transforms it."""
        versions = self.data_versions
        if versions is None:
            versions = {d: dataset_spec(d).cache_version for d in self.split.datasets}
        kinds = sorted({t.kind for t in self.split.targets if t.kind is not None})
        record = {
            "cache_version": CACHE_VERSION, "split_hash": self.split.hash,
            "image_shape": list(self.by_id[self.split.train[0]].image.shape),
            "data_versions": versions,
            "targets": [[t.name, t.transform, t.severity] for t in self.split.targets],
            "code": _code_digest([*CODE_MODULES, *(get_target_kind(k).apply.__module__ for k in kinds)]),
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def cache_path(self, key: str) -> Path:
        assert self.cache_dir is not None
        name = re.sub(r"[^A-Za-z0-9._+=,-]", "-", f"{self.split.protocol}__{self.split.source}__seed{self.split.seed}")
        return self.cache_dir / f"{name}__{key[:16]}.npz"

    def _realize(self) -> None:
        """Load every target of the split, its profiles and fingerprint from the cache, or build and
        write them: one process builds at a time, the others wait for its file. An unreadable file
        is rebuilt."""
        if self._realized:
            return
        key = self.cache_key()
        path = self.cache_path(key)
        lock = path.with_name(path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        while not self._load(path, key, warn=False):
            if try_lock(lock):
                try:
                    if not self._load(path, key, warn=True):  # written while this process waited, or unreadable
                        for target in self.split.targets:
                            self._samples[target.name] = self._build(target)
                        self._fingerprint = split_fingerprint(self.split, self.by_id)
                        self._write(path, key)
                finally:
                    unlock(lock)
                break
            time.sleep(POLL_S)
        self._realized = True

    def _write(self, path: Path, key: str) -> None:
        """Written to a temporary file renamed into place: a reader sees no file or a whole one. Compressed:
        a cross_stain split at 224 px takes 25 MB rather than 63, for 0.2 s more to load."""
        meta = {"key": key, "split": self.split.key, "targets": [t.name for t in self.split.targets],
                "profiles": self.profiles_used(), "fingerprint": self._fingerprint}
        stacks = {f"target{i}": np.stack([s.image for s in self._samples[t.name]])
                  for i, t in enumerate(self.split.targets) if t.kind is not None}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **stacks)
        os.replace(tmp, path)

    def _load(self, path: Path, key: str, warn: bool) -> bool:
        """Whether the cache file at ``path`` was read (its samples, profiles and fingerprint now this
        builder's); a missing file gives False, so does an unreadable one (with a warning if ``warn``)."""
        if not path.exists():
            return False
        shape = self.by_id[self.split.train[0]].image.shape
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                stacks = {i: z[f"target{i}"] for i, t in enumerate(self.split.targets) if t.kind is not None}
            if meta["key"] != key:
                raise ValueError(f"key {meta['key'][:16]}, expected {key[:16]}")
            for i, stack in stacks.items():
                if stack.dtype != np.uint8 or stack.shape != (len(self.split.targets[i].ids), *shape):
                    raise ValueError(f"target{i} is {stack.dtype} {stack.shape}")
            profiles = {d: stain.StainProfile.from_dict(p) for d, p in meta["profiles"].items()}
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, BenchmarkError) as e:
            if warn:
                print(f"warning: target cache {path} is unreadable ({e}); rebuilding it", file=sys.stderr)
            return False
        self._profiles.update(profiles)
        self._fingerprint = meta["fingerprint"]
        for i, t in enumerate(self.split.targets):
            base = [self.by_id[sid] for sid in t.ids]
            self._samples[t.name] = base if t.kind is None else [
                replace(s, image=image, domain=t.domain) for s, image in zip(base, stacks[i])]
        return True


def _code_digest(modules: list[str]) -> str:
    """SHA-256 of the source files of ``modules`` (a module without one, by its name), found without
    importing them, so every process computes the same key whatever it has imported so far."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # e.g. a kind defined in __main__
            spec = None
        file = spec.origin if spec is not None and spec.has_location else None
        h.update(name.encode() + (Path(file).read_bytes() if file else b""))
    return h.hexdigest()
