"""``python -m benchmark data``: fetch, verify and extract the real datasets (:mod:`wbcdata.fetch`),
and report what each holds, ending with the cell size relative to the crop (:func:`framing_span`),
which decodes its 64 px crops once into the crop cache: the check that every domain is framed alike.
Datasets are fetched and cropped one at a time and failures caught per dataset: every dataset that
fetched is reported, a failed one is named with the reason, and the exit status is 1 if any dataset
failed to fetch/verify or to be cropped (a dataset that cannot be cropped is unusable here)."""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from core.errors import BenchmarkError
from core.sample import CLASSES
from wbcdata.crops import SpanSummary, span_summary
from wbcdata.datasets import dataset_spec, list_datasets, load_dataset
from wbcdata.fetch import (DATASET_ARCHIVES, MANIFEST_PATH, MIRROR_ENV, ArchiveStatus, DatasetReport, build_manifest,
                           archives_for, fetch_dataset, load_manifest)
from wbcdata.registry import data_dir
from wbcdata.user import add_datasets, label_report, read_descriptor, user_dataset_names


def _archive_lines(s: ArchiveStatus) -> list[str]:
    how = f"already extracted (from {s.origin})" if s.already_extracted else f"from {s.origin}"
    sha = "matches the manifest" if s.archive_sha256_matches else "differs from the manifest (re-zipped?); members verified one by one"
    lines = [
        f"  archive {s.key}: {s.file} {how}",
        f"    archive sha256 {sha}",
        f"    files: {s.verified} verified by sha256, {s.images_decoded} images decoded; "
        f"{len(s.missing)} listed files absent; {s.unlisted} archive files not used (not extracted)",
    ]
    if s.missing:
        lines.append(f"    absent: {', '.join(s.missing[:5])}{' ...' if len(s.missing) > 5 else ''}")
    return lines


FRAMING_SIZE = 64
"""Crop size at which the data summary measures cell size relative to the crop (the cpu budget's)."""


def framing_span(name: str, root: Path, size: int = FRAMING_SIZE) -> SpanSummary:
    """Cell size relative to the crop for one dataset, over its cached ``size`` px crops (built if absent)."""
    return span_summary([(s.image, s.mask) for s in load_dataset(name, size=size, root=root)])


def _why(e: BaseException) -> str:
    """An exception as one line: the message for a BenchmarkError, else its type and message."""
    return str(e) if isinstance(e, BenchmarkError) else f"{type(e).__name__}: {e}"


def print_report(
    reports: list[DatasetReport],
    out: TextIO | None = None,
    spans: dict[str, SpanSummary] | None = None,
    framing_errors: dict[str, str] | None = None,
) -> None:
    """Per dataset: archives, files verified, images, masks, samples, class counts, skips, and the
    cell size relative to the crop where ``spans`` has it (or why not, where ``framing_errors`` has it)."""
    out = out or sys.stdout
    framing_errors = framing_errors or {}
    for r in reports:
        inv = r.inventory
        print(f"== {r.name}", file=out)
        for s in r.archives:
            print("\n".join(_archive_lines(s)), file=out)
        print(f"  images {inv.images}, masks {inv.masks}, samples (WBC crops) {len(inv.records)}", file=out)
        counts = inv.class_counts()
        print("  classes: " + ", ".join(f"{c} {counts[c]}" for c in CLASSES), file=out)
        unlabelled = sum(inv.unlabelled.values())
        print(f"  label None (kept): {unlabelled}", file=out)
        for reason, n in sorted(inv.unlabelled.items()):
            print(f"    {n}: {reason}", file=out)
        print(f"  skipped: {sum(inv.skipped.values()) or 'none'}", file=out)
        for reason, n in sorted(inv.skipped.items()):
            print(f"    {n}: {reason}", file=out)
        for note in inv.notes:
            print(f"  note: {note}", file=out)
        if spans and r.name in spans:
            print(f"  cell size / crop side (sqrt of WBC pixels, {FRAMING_SIZE} px crops): {spans[r.name].line()}",
                  file=out)
        elif r.name in framing_errors:
            print(f"  cell size / crop side NOT computed ({FRAMING_SIZE} px crops of {r.name} failed): "
                  f"{framing_errors[r.name]}", file=out)


def report_lines(name: str, size: int) -> list[str]:
    """The data report of a user dataset (``python -m benchmark data --dataset``): decodes and caches its
    crops, so a bad file fails here, and says what the class map did."""
    spec = dataset_spec(name)
    desc = read_descriptor(Path(spec.path), name)
    samples = load_dataset(name, size=size)
    counts = Counter(CLASSES[s.label] for s in samples if s.label is not None)
    labels = label_report(desc)
    dropped = ", ".join(f"{n} '{k}'" for k, n in labels["dropped"].items()) or "none"
    mapped = ", ".join(f"'{k}' -> {v}" for k, v in labels["mapped"].items()) or "none"
    return [
        f"== {name} (user folder {spec.path}, domain {desc.domain}, version {spec.cache_version})",
        f"  samples (WBC crops) {len(samples)}, with a mask {sum(s.mask is not None for s in samples)}",
        "  classes: " + ", ".join(f"{c} {counts[c]}" for c in CLASSES)
        + f"; label None {sum(s.label is None for s in samples)}",
        f"  class map: {mapped}; dropped: {dropped}",
        f"  licence: {desc.licence or 'not given'}; citation: {desc.citation or 'not given'}",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark data", description="Fetch, verify, extract and report the real WBC datasets."
    )
    parser.add_argument("--root", type=Path, default=None, help="where to extract (default: $WBC_DATA_DIR or ./data)")
    parser.add_argument("--mirror", type=Path, default=None, help=f"folder holding the archives (default: ${MIRROR_ENV})")
    parser.add_argument("--datasets", default=None, help=f"comma-separated subset of {','.join(DATASET_ARCHIVES)}")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH",
                        help="also check and report a folder of your own (repeatable; alone, without --datasets, "
                        "only these are checked); see docs/data.md")
    parser.add_argument(
        "--build-manifest", action="store_true", help="maintainers: rewrite manifest.json from the archives in --mirror"
    )
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, so the datasets it registers are fetched and reported too "
                        "(repeatable; also $WBC_PLUGINS); see docs/plugins.md")
    return parser


def _requested(args: argparse.Namespace) -> tuple[list[str], list[str], Path, dict]:
    """The fetched datasets and user folders to report, the data root and the manifest; a bad name, folder or
    descriptor fails here, before anything is fetched."""
    names = [n.strip() for n in args.datasets.split(",") if n.strip()] if args.datasets else list(DATASET_ARCHIVES)
    if args.dataset and not args.datasets:
        names = []
    for name in names:
        archives_for(name)  # an unknown name fails before anything is fetched
    root = Path(args.root or data_dir())
    manifest = load_manifest()
    add_datasets(args.dataset)
    list_datasets()  # registers the user folders
    return names, user_dataset_names(), root, manifest


def _fetch_and_frame(names: list[str], root: Path, mirror: Path | None, manifest: dict, failed: list[str]) -> None:
    """One dataset at a time, each failure caught and named, so one bad dataset cannot hide the others'
    report. Both kinds of failure go to ``failed``: a dataset that did not fetch or verify, and one whose
    framing figure could not be computed (its crops cannot be built, so the benchmark cannot use it).
    Fetch failures are BenchmarkErrors (anything else is a bug: traceback); the crop step decodes every
    image, so any exception there is caught and reported with its type."""
    reports: list[DatasetReport] = []
    spans: dict[str, SpanSummary] = {}
    framing_errors: dict[str, str] = {}
    for name in names:
        try:
            report = fetch_dataset(name, root, mirror=mirror, manifest=manifest)
        except BenchmarkError as e:
            print(f"error: {e} (dataset {name} not fetched)", file=sys.stderr)
            failed.append(f"{name} (not fetched)")
            continue
        reports.append(report)
        try:
            spans[name] = framing_span(name, root)
        except Exception as e:  # noqa: BLE001 - reported per dataset, exit status 1
            framing_errors[name] = _why(e)
            print(f"error: dataset {name}: cell size / crop side not computed: {_why(e)}", file=sys.stderr)
            failed.append(f"{name} (crops failed)")
    print_report(reports, spans=spans, framing_errors=framing_errors)


def _report_user_folders(users: list[str], root: Path, bad: list[str]) -> None:
    for name in users:
        try:
            print("\n".join(report_lines(name, FRAMING_SIZE)))
            print(f"  cell size / crop side (sqrt of WBC pixels, {FRAMING_SIZE} px crops): "
                  f"{framing_span(name, root).line()}")
        except BenchmarkError as e:
            print(f"error: {e} (dataset {name})", file=sys.stderr)
            bad.append(f"{name} (user folder)")


def main_data(argv: list[str] | None = None) -> int:
    """``python -m benchmark data``: fetch, verify, extract and report the real datasets. Exit status 2
    for bad input (a name, a folder, a descriptor, a bad file in a user's folder), 1 when a public
    dataset failed to fetch, verify or crop."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.build_manifest:
            if args.mirror is None:
                raise BenchmarkError("--build-manifest needs --mirror")
            manifest = build_manifest(args.mirror)
            print(f"wrote {MANIFEST_PATH}: " + ", ".join(f"{k} {len(e['members'])} files"
                                                        for k, e in manifest["archives"].items()))
            return 0
        names, users, root, manifest = _requested(args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed: list[str] = []
    bad: list[str] = []
    _fetch_and_frame(names, root, args.mirror, manifest, failed)
    _report_user_folders(users, root, bad)
    print(f"data root {root.resolve()}; done in {time.perf_counter() - start:.1f} s")
    if failed or bad:
        print(f"error: {len(failed) + len(bad)} of {len(names) + len(users)} datasets failed: "
              f"{', '.join(failed + bad)}", file=sys.stderr)
    return 2 if bad else 1 if failed else 0
