"""User-held folders (LISC, ALL-IDB, Raabin-WBC, ... copies) in the documented layout::

    <folder>/images/<id>.<png|jpg|jpeg|bmp|tif|tiff>   one WBC image each (RGB or grey)
    <folder>/masks/<id>.png                           optional, same size as the image
    <folder>/labels.csv                               optional, header "id,class"

Mask encoding: single-channel (RGB is read as grey). If its maximum is <= 2 the values are the
benchmark codes (0 background, 1 cytoplasm, 2 nucleus); otherwise grey levels, thresholded at
>= 64 WBC and >= 192 nucleus (0/128/255 as in Zheng; note a binary 0/255 mask reads as all
nucleus: write whole-cell masks as 0/128, or describe them in a ``dataset.json``). ``class`` is one
of CLASSES (any case) or blank (label None). Images with a mask are cropped on the mask box; without
one, on the detector box (see :mod:`.crops`). Sample ids are ``<domain>/<id>``. A ``dataset.json``
beside ``images/`` (:mod:`wbcdata.user`, named with ``--dataset NAME=PATH``) gives the mask encoding and
a class map (:class:`FolderFormat`); several such folders can be used at once. The ``folder`` dataset
reads one such folder from ``$WBC_FOLDER_DATASET``.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import BenchmarkError
from core.sample import CLASSES, MASK_BACKGROUND, MASK_CYTOPLASM, MASK_NUCLEUS, Sample
from wbcdata.crops import mask_box
from wbcdata.reading import (DETECTED_CACHE_VERSION, IMAGE_SUFFIXES, Record, crop_sample, detected_box,
                             read_mask_codes, read_rgb)
from wbcdata.registry import register_dataset

log = logging.getLogger(__name__)

def normalise_label(text: str) -> str:
    """How a user label is compared: case and runs of spaces, dashes or underscores do not matter."""
    return re.sub(r"[\s_-]+", " ", text.strip().lower())


@dataclass(frozen=True)
class FolderFormat:
    """How a user folder encodes its masks and labels (its ``dataset.json``; the defaults are the
    documented layout), so one loader serves every lab's conventions.

    ``mask_values`` maps ``background``/``cytoplasm``/``nucleus`` (or ``background``/``wbc`` for a
    whole-cell mask) to grey levels; each pixel takes the part of the nearest listed level (JPEG noise
    and edge interpolation do not matter). None: codes 0/1/2 as is, else grey 0/128/255 thresholded.
    ``class_map`` maps a normalised user label to one of CLASSES, or to None to drop its images."""

    mask_values: dict[str, int] | None = None
    class_map: dict[str, str | None] = field(default_factory=dict)

    def codes(self, grey: np.ndarray) -> np.ndarray:
        """Benchmark mask codes {0,1,2} of a grey mask (a whole-cell mask gives 0/1: no nucleus)."""
        parts = {"background": MASK_BACKGROUND, "cytoplasm": MASK_CYTOPLASM, "wbc": MASK_CYTOPLASM, "nucleus": MASK_NUCLEUS}
        levels = sorted(self.mask_values.items(), key=lambda kv: kv[1])
        nearest = np.abs(grey[..., None].astype(np.int16) - np.array([v for _, v in levels], np.int16)).argmin(-1)
        return np.array([parts[k] for k, _ in levels], np.uint8)[nearest]

    def label(self, raw: str, where: str) -> tuple[int | None, str | None]:
        """(class index or None, dropped user label or None) of one labels.csv cell."""
        name = normalise_label(raw)
        if not name:
            return None, None
        if name in self.class_map:
            target = self.class_map[name]
            return (None, name) if target is None else (CLASSES.index(target), None)
        if name in CLASSES:
            return CLASSES.index(name), None
        mapped = f", or map it in dataset.json's class_map ({', '.join(sorted(self.class_map))})" if self.class_map else \
            "; map it onto one (or to null to drop it) in a dataset.json class_map"
        raise BenchmarkError(f"{where}: unknown class {name!r}; known: {', '.join(CLASSES)}{mapped}")


def folder_labels(path: Path, fmt: FolderFormat = FolderFormat()) -> tuple[dict[str, int | None], dict[str, str]]:
    """``labels.csv`` (``id,class``): id -> class index or None, and id -> user label for the ids whose
    class the class map drops."""
    labels: dict[str, int | None] = {}
    dropped: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"id", "class"} <= set(reader.fieldnames or ()):
            raise BenchmarkError(f"{path}: expected a header 'id,class', found {reader.fieldnames}")
        for line_no, row in enumerate(reader, start=2):
            rid = (row["id"] or "").strip()
            labels[rid], drop = fmt.label(row["class"] or "", f"{path}: line {line_no}")
            if drop is not None:
                dropped[rid] = drop
    return labels, dropped


def load_folder(path: Path, size: int, domain: str, *, dataset: str = "folder",
                fmt: FolderFormat = FolderFormat()) -> list[Sample]:
    """Samples from a user-held folder in the layout of the module docstring; images whose class the
    class map drops are left out and counted per user label in the log."""
    path = Path(path)
    images_dir = path / "images"
    if not images_dir.is_dir():
        raise BenchmarkError(f"folder dataset {path}: no images/ folder (layout: images/, optional masks/, labels.csv)")
    label_file = path / "labels.csv"
    labels, dropped = folder_labels(label_file, fmt) if label_file.exists() else ({}, {})
    images = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise BenchmarkError(f"folder dataset {path}: images/ holds no {'/'.join(IMAGE_SUFFIXES)} files")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise BenchmarkError(f"folder dataset {path}: two images share the id {dup!r}")
    unmatched = labels.keys() - set(stems)
    if unmatched:
        log.warning("%s: %d rows of %s name no image (e.g. %s)", domain, len(unmatched), label_file, sorted(unmatched)[0])
    samples, stats, drops = [], Counter(), Counter()
    for image_path in images:
        if image_path.stem in dropped:
            drops[dropped[image_path.stem]] += 1
            continue
        image = read_rgb(image_path)
        mask_path = path / "masks" / f"{image_path.stem}.png"
        codes = _folder_mask(mask_path, image.shape, image_path, fmt) if mask_path.exists() else None
        if codes is not None:
            box, how = mask_box(codes != MASK_BACKGROUND), "mask"
            if box is None:
                stats["skipped: mask without WBC pixels"] += 1
                continue
        else:
            box, how = detected_box(image)
        label = labels.get(image_path.stem)
        stats[f"box from {how}"] += 1
        stats["unlabelled"] += label is None
        rec = Record(f"{domain}/{image_path.stem}", image_path, mask_path if codes is not None else None, label)
        samples.append(crop_sample(rec, path, size, dataset, domain, image, codes, box, how))
    log.info("%s (%s): %d samples; %s", domain, path, len(samples), dict(stats))
    if drops:
        log.warning("%s: dropped by the class map: %s", domain, ", ".join(f"{n} {k!r}" for k, n in sorted(drops.items())))
    if not samples:
        raise BenchmarkError(f"folder dataset {path}: no usable images ({dict(stats)}; dropped by the class map: {dict(drops)})")
    return samples


def _folder_mask(path: Path, image_shape: tuple[int, ...], image_path: Path, fmt: FolderFormat) -> np.ndarray:
    if fmt.mask_values is None:
        return read_mask_codes(path, image_shape, image_path, codes_ok=True)
    return fmt.codes(read_mask_codes(path, image_shape, image_path, raw=True))


@register_dataset(
    "folder", domains=("folder",), fetched=False, cache_version=DETECTED_CACHE_VERSION,
    description="user-held data (LISC, ALL-IDB, Raabin, ...) in the documented folder layout at $WBC_FOLDER_DATASET",
)
def load_folder_dataset(root: Path, size: int) -> list[Sample]:
    where = os.environ.get("WBC_FOLDER_DATASET")
    if not where:
        raise BenchmarkError(
            "dataset 'folder' reads its path from $WBC_FOLDER_DATASET, which is not set; point it at a folder "
            "with images/, optional masks/ and labels.csv (see wbcdata/folder.py), or name it with "
            "--dataset NAME=PATH (wbcdata/user.py)"
        )
    return load_folder(Path(where), size, "folder")
