"""Load a protocol's data and turn (protocol, seed) into splits, reusing manifests written before."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from wbcdata.datasets import dataset_domains, dataset_spec, list_datasets, load_dataset
from core.sample import Sample
from core.errors import BenchmarkError
from core.suggest import did_you_mean
from protocols.designs import build_splits
from protocols.registry import Extension, get_protocol
from protocols.split import Split, read_manifest, write_manifest


def _dataset_of(protocol: str, name: str, role: str) -> tuple[str, tuple[str, ...]]:
    """(dataset, domains) that a ``--sources`` / ``--targets`` name means: a dataset (all its domains),
    or one domain of the protocol's datasets."""
    if name in list_datasets():
        return name, dataset_domains(name)
    spec = get_protocol(protocol)
    for dataset in spec.datasets:
        if name in dataset_domains(dataset):
            return dataset, (name,)
    domains = tuple(d for dataset in spec.datasets for d in dataset_domains(dataset))
    own = (spec.own_sources() or domains) if role == "source" else domains
    raise BenchmarkError(f"protocol '{protocol}' has no {role} {name}{did_you_mean(name, [*own, *list_datasets()])}; "
                         f"its {role}s: {', '.join(own)}; any dataset "
                         f"({', '.join(list_datasets())}) can be added, and your own folder with --dataset NAME=PATH")


def select(protocol: str, sources: list[str] | None = None,
           targets: list[str] | None = None) -> tuple[Extension | None, tuple[str, ...] | None]:
    """What ``--sources`` / ``--targets`` ask of a protocol: the :class:`Extension` (None when they name
    only its own sources, so its own splits and hashes are used) and the source domains to run (None: all).

    A source the protocol does not train on and every target join the extension: each is loaded and
    tested as is by every other split (``--targets`` adds targets); the sources among them are trained on."""
    spec = get_protocol(protocol)
    named_sources = [(d, dom) for n in sources or [] for d, doms in [_dataset_of(protocol, n, "source")] for dom in doms]
    named_targets = [(d, dom) for n in targets or [] for d, doms in [_dataset_of(protocol, n, "target")] for dom in doms]
    wanted = tuple(dict.fromkeys(dom for _, dom in named_sources)) or None
    own = spec.own_sources()
    if own is None:
        if named_targets:
            raise BenchmarkError(f"protocol '{protocol}' takes no --targets (it was registered without its sources, "
                                 "so it cannot be extended)")
        return None, wanted
    added = [(d, dom) for d, dom in named_sources if dom not in own] + named_targets
    if not added:
        return None, wanted
    domains = tuple(dict.fromkeys(dom for _, dom in added))
    datasets = tuple(dict.fromkeys([*spec.datasets, *(d for d, _ in added)]))
    new_sources = tuple(dict.fromkeys(dom for _, dom in named_sources if dom not in own))
    return Extension(f"{protocol}+{'+'.join(sorted(domains))}", datasets, domains, new_sources), wanted


def _datasets(protocol: str, extension: Extension | None) -> tuple[str, ...]:
    return get_protocol(protocol).datasets if extension is None else extension.datasets


def load_by_domain(protocol: str, size: int, extension: Extension | None = None) -> dict[str, list[Sample]]:
    """Every sample the protocol (with its extension) needs, at ``size`` px, grouped by domain."""
    by_domain: dict[str, list[Sample]] = defaultdict(list)
    for name in _datasets(protocol, extension):
        for s in load_dataset(name, size=size):
            by_domain[s.domain].append(s)
    return dict(by_domain)


def data_versions(protocol: str, extension: Extension | None = None) -> dict[str, str]:
    """The crop-cache version of each dataset the protocol loads: it changes whenever a crop rule,
    a detector, the decoding or a user folder's files change, so a job id that carries it is never
    reused across such a change."""
    return {name: dataset_spec(name).cache_version for name in _datasets(protocol, extension)}


def manifest_path(splits_dir: Path, split: Split) -> Path:
    """Keyed by protocol, source and seed: two protocols sharing one results folder never share a manifest."""
    return splits_dir / split.protocol / f"{split.source}_seed{split.seed}.json"


def resolve_splits(protocol: str, seed: int, by_domain: dict[str, list[Sample]],
                   splits_dir: Path | None = None, extension: Extension | None = None,
                   sources: tuple[str, ...] | None = None) -> list[Split]:
    """Build the protocol's splits for ``seed`` (with ``extension``, its variant's); with ``splits_dir``,
    each is written there once and a manifest already there must equal what the code builds now (a
    difference is an error naming both hashes, never a silent reuse of a stale split). ``sources``
    keeps the splits of those source domains only, after every manifest is written."""
    spec = get_protocol(protocol)
    built = build_splits(spec, seed, by_domain, extension)
    if sources is not None:
        unknown = sorted(set(sources) - {s.source for s in built})
        if unknown:
            raise BenchmarkError(f"protocol '{protocol}' has no source {', '.join(unknown)}; "
                                 f"its sources: {', '.join(s.source for s in built)}")
    splits = []
    for split in built:
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
    return splits if sources is None else [s for s in splits if s.source in sources]
