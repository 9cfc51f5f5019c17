"""A split is data, not code (WILDS-style): ids per split, test targets with their transforms, metadata.

Manifests are JSON, written once, reused, and identified by the SHA-256 of their canonical JSON
(nnU-Net-style), which is stamped into every result row.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from pathlib import Path

from core.errors import BenchmarkError
from wbcdata.target_kinds import get_target_kind


@dataclass(frozen=True)
class TestTarget:
    """One evaluation target of a trained model.

    ``transform`` is None (images as they are) or ``{"kind": k, **params}``: a registered target
    kind (:mod:`wbcdata.target_kinds`) applied at evaluation time, geometry untouched, e.g.
    ``{"kind": "restain", "source": d, "target": d2}``, ``{"kind": "hed", "severity": s}`` or
    ``{"kind": "defocus", "radius_frac": r}``. ``severity`` is set for graded kinds (0 for the
    untouched in-domain target of a shift protocol) so tables can plot metric against severity.
    Kind and parameters are read from ``transform`` (:attr:`kind`, :attr:`params`), never from the
    name, and are not separate fields, so the manifests and hashes of existing splits stay as they were.
    """

    name: str
    domain: str
    ids: tuple[str, ...]
    transform: dict | None = None
    severity: float | None = None

    @property
    def kind(self) -> str | None:
        """The target kind, None for images as they are."""
        return None if self.transform is None else str(self.transform["kind"])

    @property
    def params(self) -> dict:
        """The kind's parameters (the transform less its kind); empty for images as they are."""
        return {k: v for k, v in (self.transform or {}).items() if k != "kind"}


def targets_for_kind(kind: str, ids: Sequence[str], source: str, domains: Sequence[str] = ()) -> list[TestTarget]:
    """The test targets of one registered kind over ``ids`` (a split's in-domain test images).

    A graded kind gives one target per severity, named and with domain ``<kind>:<severity>``; a
    per-domain kind (``restain``) one per domain of ``domains`` other than ``source``, named
    ``<kind>:<domain>`` with that domain. Unknown kinds list the registered ones."""
    spec = get_target_kind(kind)
    ids = tuple(ids)
    if spec.graded:
        return [TestTarget(f"{kind}:{s:g}", f"{kind}:{s:g}", ids, {"kind": kind, **params}, s)
                for s, params in spec.grades]
    return [TestTarget(f"{kind}:{d}", d, ids, {"kind": kind, "source": source, "target": d}, None)
            for d in domains if d != source]


@dataclass(frozen=True)
class Split:
    """Train/val ids from one source, and every target the trained model is evaluated on."""

    protocol: str
    source: str
    seed: int
    datasets: tuple[str, ...]
    train: tuple[str, ...]
    val: tuple[str, ...]
    targets: tuple[TestTarget, ...]
    task: str = "multitask"
    meta: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = [asdict(t) for t in self.targets]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        targets = tuple(
            TestTarget(t["name"], t["domain"], tuple(t["ids"]), t["transform"], t["severity"]) for t in d["targets"]
        )
        return cls(
            protocol=d["protocol"], source=d["source"], seed=d["seed"], datasets=tuple(d["datasets"]),
            train=tuple(d["train"]), val=tuple(d["val"]), targets=targets, task=d["task"], meta=d.get("meta", {}),
        )

    @property
    def hash(self) -> str:
        """SHA-256 (first 16 hex) of the canonical manifest: what identifies the split in results."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def key(self) -> str:
        return f"{self.protocol}/{self.source}/seed{self.seed}"

    def check_disjoint(self) -> None:
        """No id may appear in two of train / val / the in-domain test targets."""
        train, val = set(self.train), set(self.val)
        if not train:
            raise BenchmarkError(f"split {self.key}: the training split is empty")
        if not val:
            raise BenchmarkError(f"split {self.key}: the validation split is empty")
        if train & val:
            raise BenchmarkError(f"split {self.key}: {len(train & val)} ids in both train and val")
        for t in self.targets:
            if not t.ids:
                raise BenchmarkError(f"split {self.key}: test target '{t.name}' is empty")
            leak = (train | val) & set(t.ids)
            if leak:
                raise BenchmarkError(f"split {self.key}: target '{t.name}' shares {len(leak)} ids with train/val")


def write_manifest(split: Split, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a half manifest to be reused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(split.to_dict(), indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_manifest(path: Path) -> Split:
    try:
        return Split.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BenchmarkError(f"split manifest {path} is corrupt ({e}); delete it to regenerate") from e
