"""Load a protocol's data and turn (protocol, seed) into splits, reusing manifests written before."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from wbcdata.datasets import dataset_spec, load_dataset
from core.sample import Sample
from core.errors import BenchmarkError
from protocols.registry import get_protocol
from protocols.split import Split, read_manifest, write_manifest


def load_by_domain(protocol: str, size: int) -> dict[str, list[Sample]]:
    """Every sample the protocol needs, at ``size`` px, grouped by domain."""
    by_domain: dict[str, list[Sample]] = defaultdict(list)
    for name in get_protocol(protocol).datasets:
        for s in load_dataset(name, size=size):
            by_domain[s.domain].append(s)
    return dict(by_domain)


def data_versions(protocol: str) -> dict[str, str]:
    """The crop-cache version of each dataset the protocol loads: it changes whenever a crop rule,
    a detector or the decoding changes, so a job id that carries it is never reused across such a change."""
    return {name: dataset_spec(name).cache_version for name in get_protocol(protocol).datasets}


def manifest_path(splits_dir: Path, split: Split) -> Path:
    """Keyed by protocol, source and seed: two protocols sharing one results folder never share a manifest."""
    return splits_dir / split.protocol / f"{split.source}_seed{split.seed}.json"


def resolve_splits(protocol: str, seed: int, by_domain: dict[str, list[Sample]],
                   splits_dir: Path | None = None) -> list[Split]:
    """Build the protocol's splits for ``seed``; with ``splits_dir``, each is written there once and a
    manifest already there must equal what the code builds now (a difference is an error naming both
    hashes, never a silent reuse of a stale split)."""
    splits = []
    for split in get_protocol(protocol).build(seed, by_domain):
        split.check_disjoint()
        if splits_dir is not None:
            path = manifest_path(splits_dir, split)
            if not path.exists():
                write_manifest(split, path)
            elif (old := read_manifest(path)) != split or old.hash != split.hash:
                raise BenchmarkError(
                    f"split manifest {path} (hash {old.hash}) differs from the split the code builds now "
                    f"(hash {split.hash}): the data, the protocol or its code changed; results in this "
                    f"folder were made with the old split, so use a new --out (or delete the folder's splits and jobs)")
        splits.append(split)
    return splits
