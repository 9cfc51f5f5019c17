"""Human-readable split summaries for ``python -m benchmark protocols show``."""
from __future__ import annotations

from collections import Counter

from core.sample import CLASSES, Sample
from protocols.near_duplicates import near_duplicates
from protocols.split import Split

_SHORT = {c: c[:4] for c in CLASSES}


def _counts(ids: tuple[str, ...], by_id: dict[str, Sample]) -> str:
    samples = [by_id[i] for i in ids]
    dom = Counter(s.domain for s in samples)
    cls = Counter("unlabelled" if s.label is None else _SHORT[CLASSES[s.label]] for s in samples)
    masks = sum(s.mask is not None for s in samples)
    d = ", ".join(f"{k} {v}" for k, v in sorted(dom.items()))
    c = " ".join(f"{k}={cls[k]}" for k in [*_SHORT.values(), "unlabelled"] if cls[k])
    return f"{len(ids):5d}  masks {masks:4d}  [{d}]  {c}"


def describe_split(split: Split, by_id: dict[str, Sample]) -> str:
    lines = [f"split {split.key}  task={split.task}  hash={split.hash}"]
    lines.append(f"  {'train':<22}{_counts(split.train, by_id)}")
    lines.append(f"  {'val':<22}{_counts(split.val, by_id)}")
    for t in split.targets:
        how = "" if t.transform is None else "  <- " + ", ".join(f"{k}={v}" for k, v in t.transform.items())
        lines.append(f"  {'test ' + t.name:<22}{_counts(t.ids, by_id)}{how}")
    test_ids = sorted({i for t in split.targets for i in t.ids})
    dups = near_duplicates([by_id[i] for i in split.train], [by_id[i] for i in test_ids])
    lines.append(f"  near-duplicates train/test (pHash <= 4 bits): {len(dups)}"
                 + (f", e.g. {dups[:3]}" if dups else ""))
    return "\n".join(lines)
