"""Load a protocol's data and turn (protocol, seed) into splits, reusing manifests written before."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from benchmark.data.datasets import dataset_spec, load_dataset
from benchmark.data.sample import Sample
from benchmark.errors import BenchmarkError
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
    return splits_dir / f"{split.source}_seed{split.seed}.json"


def resolve_splits(protocol: str, seed: int, by_domain: dict[str, list[Sample]],
                   splits_dir: Path | None = None) -> list[Split]:
    """Build the protocol's splits for ``seed``; with ``splits_dir``, a manifest already there is reused
    (written once, never silently regenerated) after checking that its ids still exist."""
    built = get_protocol(protocol).build(seed, by_domain)
    known = {s.id for samples in by_domain.values() for s in samples}
    splits = []
    for split in built:
        if splits_dir is not None:
            path = manifest_path(splits_dir, split)
            if path.exists():
                split = read_manifest(path)
                missing = (set(split.train) | set(split.val) | {i for t in split.targets for i in t.ids}) - known
                if missing:
                    raise BenchmarkError(f"split manifest {path} names {len(missing)} ids not in the loaded data "
                                         f"(e.g. {sorted(missing)[:3]}); the dataset changed: delete the manifest")
            else:
                write_manifest(split, path)
        split.check_disjoint()
        splits.append(split)
    return splits
