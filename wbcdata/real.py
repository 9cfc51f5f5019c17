"""Loaders of the real WBC datasets, all cropped by :mod:`.crops`.

Fetched datasets live under the data root as extracted by :mod:`wbcdata.fetch`
(``<root>/<archive>/...``, paths inside the archive without GitHub's top folder):

* ``zheng_d1`` / ``zheng_d2`` (Zheng et al. 2018): ``zheng/Dataset N/NNN.bmp`` + ``NNN.png``
  (mask 0/128/255, thresholded at >= 64 WBC, >= 192 nucleus), labels from
  ``zheng/Class Labels of Dataset N.csv`` (1..5 -> CLASSES 0..4). One crop per image. An image
  without a mask or a mask without WBC pixels is skipped and counted; an image without a label
  row is kept with label None and counted.
* ``bccd`` (BCCD with Banik's masks): ``bccd_masks/Input/BCCD/BloodImage_NNNNN.jpg``, mask
  ``bccd_masks/Ground Truth/BCCD/BloodImage_Mask_NNNNN.png`` (RGB, JPEG-noisy; read as grey and
  thresholded like Zheng). One crop per mask component >= 1000 px (id ``bccd/NNNNN#k``, k in
  raster order). Labels from ``labels.csv`` (ids without zero padding, ``Category`` may be blank
  or name two cells): a component gets the class only when every class the row names is the
  same and the row names at least as many cells as the mask has components; otherwise the crop
  is **kept for segmentation with label None** and counted by reason (blank row, two different
  classes, more cells than named, no row). The Shenggan VOC annotations
  (``bccd_voc/BCCD/Annotations``) serve as a cross-check only: how many mask components overlap
  a VOC ``WBC`` box (IoU >= 0.3) and how many VOC WBC boxes have no mask component.
* ``pbc`` (Acevedo et al. 2020, subset): ``pbc/wbc/<class>/*.jpg`` and
  ``pbc/other_types/<class>/*.jpg``; folders that are not one of CLASSES (the full PBC's
  erythroblast, ig, platelet) and hidden files (macOS ``.DS_*``) are skipped and counted.
  Classification only (mask None); the crop box comes from the training-free detector.

User-held folders are read by :mod:`wbcdata.folder`; decoding and cropping are :mod:`wbcdata.reading`.
"""
from __future__ import annotations

import csv
import logging
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from core.errors import BenchmarkError
from core.sample import CLASSES, MASK_BACKGROUND, Sample
from wbcdata.crops import MIN_COMPONENT_PX, Box, mask_box, wbc_components
from wbcdata.reading import (CACHE_VERSION, DETECTED_CACHE_VERSION, IMAGE_SUFFIXES, Record, crop_sample, detected_box,
                             read_mask_codes, read_rgb, relative)
from wbcdata.registry import register_dataset

log = logging.getLogger(__name__)

ZHENG_DIR, BCCD_MASKS_DIR, BCCD_VOC_DIR, PBC_DIR = "zheng", "bccd_masks", "bccd_voc", "pbc"
"""Folder of each archive under the data root; the fetcher extracts into these names."""

VOC_MATCH_IOU = 0.3
ZHENG_LICENCE = "GPL-3.0 (acknowledge Jiangxi Tecom and the CellaVision blog)"
ZHENG_CITATION = ("Zheng X, Wang Y, Wang G, Liu J. Fast and robust segmentation of white blood cell images by "
                  "self-supervised learning. Micron 107:55-71 (2018)")


@dataclass
class Inventory:
    """What a dataset folder holds, and everything left out or left unlabelled, with reasons."""

    dataset: str
    records: list[Record]
    images: int
    masks: int
    skipped: Counter = field(default_factory=Counter)
    unlabelled: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(CLASSES[r.label] for r in self.records if r.label is not None)
        return {name: counts.get(name, 0) for name in CLASSES}


def _require_dir(path: Path, dataset: str) -> None:
    if not path.is_dir():
        raise BenchmarkError(
            f"{dataset}: folder {path} is missing; run `python -m benchmark data` (with WBC_DATA_MIRROR set "
            "where there is no internet) to fetch it"
        )


def _require_records(inv: Inventory, where: Path) -> Inventory:
    if not inv.records:
        raise BenchmarkError(f"{inv.dataset}: no usable images under {where} (skipped: {dict(inv.skipped) or 'none'})")
    return inv


def _log_inventory(inv: Inventory, n_samples: int) -> None:
    """Say what was loaded and, as warnings, everything skipped or left unlabelled."""
    log.info("%s: %d samples from %d images, %d masks", inv.dataset, n_samples, inv.images, inv.masks)
    for reason, n in sorted(inv.skipped.items()):
        log.warning("%s: skipped %d: %s", inv.dataset, n, reason)
    for reason, n in sorted(inv.unlabelled.items()):
        log.warning("%s: %d kept with label None: %s", inv.dataset, n, reason)


# ---------------------------------------------------------------- Zheng et al. 2018


def _zheng_labels(path: Path) -> dict[int, int]:
    """``image ID,class label`` rows, 1..5 -> CLASSES index."""
    labels: dict[int, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            image_id, value = int(row[0]), int(row[1])
        except (ValueError, IndexError) as e:
            raise BenchmarkError(f"{path}: line {line_no} is not 'image ID,class label': {row}") from e
        if not 1 <= value <= len(CLASSES):
            raise BenchmarkError(f"{path}: line {line_no}: class label {value} outside 1..{len(CLASSES)}")
        labels[image_id] = value - 1
    return labels


def zheng_inventory(root: Path, which: int) -> Inventory:
    """Records of Zheng Dataset ``which`` (1 or 2) found under ``root``."""
    name = f"zheng_d{which}"
    folder = root / ZHENG_DIR / f"Dataset {which}"
    _require_dir(folder, name)
    label_file = root / ZHENG_DIR / f"Class Labels of Dataset {which}.csv"
    inv = Inventory(name, [], 0, 0)
    if label_file.exists():
        labels = _zheng_labels(label_file)
    else:
        labels = {}
        inv.notes.append(f"{relative(label_file, root)} missing: every sample unlabelled")
    images = {p.stem: p for p in folder.glob("*.bmp")}
    masks = {p.stem: p for p in folder.glob("*.png")}
    if masks.keys() - images.keys():
        inv.skipped["mask without image"] = len(masks.keys() - images.keys())
    for stem in sorted(images):
        if stem not in masks:
            inv.skipped["image without mask"] += 1
            continue
        label = labels.get(int(stem)) if stem.isdigit() else None
        if label is None:
            inv.unlabelled[f"no row in {label_file.name}"] += 1
        inv.records.append(Record(f"{name}/{stem}", images[stem], masks[stem], label))
    inv.images, inv.masks = len(images), len(masks)
    return _require_records(inv, folder)


def _load_zheng(root: Path, size: int, which: int) -> list[Sample]:
    inv = zheng_inventory(root, which)
    samples = []
    for rec in inv.records:
        image = read_rgb(rec.image)
        codes = read_mask_codes(rec.mask, image.shape, rec.image)
        box = mask_box(codes != MASK_BACKGROUND)
        if box is None:
            inv.skipped["mask without WBC pixels"] += 1
            continue
        samples.append(crop_sample(rec, root, size, inv.dataset, inv.dataset, image, codes, box, "mask"))
    _log_inventory(inv, len(samples))
    return samples


@register_dataset(
    "zheng_d1", domains=("zheng_d1",), fetched=True, cache_version=CACHE_VERSION,
    licence=ZHENG_LICENCE, citation=ZHENG_CITATION,
    description="Zheng 2018 Dataset 1: 300 WBC images, rapid-stain reagent (Jiangxi Tecom), masks + labels",
)
def load_zheng_d1(root: Path, size: int) -> list[Sample]:
    return _load_zheng(root, size, 1)


@register_dataset(
    "zheng_d2", domains=("zheng_d2",), fetched=True, cache_version=CACHE_VERSION,
    licence=ZHENG_LICENCE, citation=ZHENG_CITATION,
    description="Zheng 2018 Dataset 2: 100 WBC images, CellaVision, Romanowsky stain, masks + labels",
)
def load_zheng_d2(root: Path, size: int) -> list[Sample]:
    return _load_zheng(root, size, 2)


# ---------------------------------------------------------------- BCCD + Banik masks


def _bccd_labels(path: Path) -> dict[int, list[str]]:
    """``labels.csv``: image number -> class names it lists (empty for a blank row)."""
    out: dict[int, list[str]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"Image", "Category"} <= set(reader.fieldnames or ()):
            raise BenchmarkError(f"{path}: expected columns Image and Category, found {reader.fieldnames}")
        for line_no, row in enumerate(reader, start=2):
            try:
                number = int(row["Image"])
            except (TypeError, ValueError) as e:
                raise BenchmarkError(f"{path}: line {line_no}: Image {row['Image']!r} is not a number") from e
            names = [n.strip().lower() for n in (row["Category"] or "").split(",") if n.strip()]
            unknown = [n for n in names if n not in CLASSES]
            if unknown:
                raise BenchmarkError(f"{path}: line {line_no}: unknown class {unknown[0]!r}; known: {', '.join(CLASSES)}")
            out[number] = names
    return out


def _bccd_label(names: list[str] | None, n_components: int) -> tuple[int | None, str | None]:
    """The class for every component of an image, or None with the reason (see module docstring)."""
    if names is None:
        return None, "no row in labels.csv"
    if not names:
        return None, "blank row in labels.csv"
    if len(set(names)) > 1:
        return None, "row names different classes (cannot tell which cell is which)"
    if n_components > len(names):
        return None, "mask has more WBCs than the row names"
    return CLASSES.index(names[0]), None


def bccd_mask(path: Path, image_shape: tuple[int, ...], image_path: Path) -> tuple[np.ndarray, list[Box], int]:
    """Mask codes with specks removed, the boxes of the kept WBC components, and the speck count."""
    codes = read_mask_codes(path, image_shape, image_path)
    boxes, kept, specks = wbc_components(codes != MASK_BACKGROUND)
    codes[~kept] = MASK_BACKGROUND
    return codes, boxes, specks


def _voc_wbc_boxes(path: Path) -> list[Box]:
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise BenchmarkError(f"{path}: unreadable VOC annotation ({e})") from e
    boxes = []
    for obj in tree.getroot().iter("object"):
        if (obj.findtext("name") or "").strip() != "WBC":
            continue
        bb = obj.find("bndbox")
        x0, y0, x1, y1 = (int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append(Box(y0, x0, y1, x1))
    return boxes


def _iou(a: Box, b: Box) -> float:
    ih = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    iw = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    inter = ih * iw
    union = (a.y1 - a.y0) * (a.x1 - a.x0) + (b.y1 - b.y0) * (b.x1 - b.x0) - inter
    return inter / union if union else 0.0


def bccd_inventory(
    root: Path,
    on_image: Callable[[Path, np.ndarray, list[Record]], None] | None = None,
    cross_check: bool = True,
) -> Inventory:
    """One record per WBC component of every BCCD image with a mask (decodes the masks only).

    ``on_image(image_path, mask_codes, records)`` lets the loader crop in the same pass, so each
    mask is decoded once; ``cross_check`` compares the components with the VOC WBC boxes."""
    img_dir = root / BCCD_MASKS_DIR / "Input" / "BCCD"
    gt_dir = root / BCCD_MASKS_DIR / "Ground Truth" / "BCCD"
    _require_dir(img_dir, "bccd")
    label_file = img_dir / "labels.csv"
    labels = _bccd_labels(label_file) if label_file.exists() else {}
    inv = Inventory("bccd", [], 0, 0)
    if not label_file.exists():
        inv.notes.append(f"{relative(label_file, root)} missing: every crop unlabelled")
    voc_dir = root / BCCD_VOC_DIR / "BCCD" / "Annotations"
    voc = Counter()
    specks = 0
    numbers_seen: set[int] = set()
    pattern = re.compile(r"BloodImage_(\d+)$")
    for image_path in sorted(img_dir.glob("BloodImage_*.jpg")):
        match = pattern.match(image_path.stem)
        if not match:
            inv.skipped["image name not BloodImage_<number>.jpg"] += 1
            continue
        number = match.group(1)
        mask_path = gt_dir / f"BloodImage_Mask_{number}.png"
        if not mask_path.exists():
            inv.skipped["image without mask"] += 1
            continue
        with Image.open(image_path) as im:
            shape = (im.height, im.width)
        codes, boxes, n_specks = bccd_mask(mask_path, shape, image_path)
        specks += n_specks
        numbers_seen.add(int(number))
        inv.images += 1
        inv.masks += 1
        if not boxes:
            inv.skipped[f"mask without a WBC component >= {MIN_COMPONENT_PX} px"] += 1
            continue
        label, reason = _bccd_label(labels.get(int(number)), len(boxes))
        if reason:
            inv.unlabelled[reason] += len(boxes)
        records = [Record(f"bccd/{number}#{k}", image_path, mask_path, label, box) for k, box in enumerate(boxes)]
        inv.records += records
        if on_image is not None:
            on_image(image_path, codes, records)
        if cross_check:
            _count_voc_matches(voc, voc_dir / f"BloodImage_{number}.xml", boxes)
    _bccd_notes(inv, sorted(set(labels) - numbers_seen), specks)
    if cross_check:
        inv.notes.append(_voc_note(voc, voc_dir, root))
    return _require_records(inv, img_dir)


def _bccd_notes(inv: Inventory, absent: list[int], specks: int) -> None:
    """Label rows naming no image, WBC components per image, and the specks the masks lost."""
    if absent:
        inv.notes.append(f"{len(absent)} rows of labels.csv name no image present (e.g. {absent[0]})")
    per_image = Counter(Counter(r.image for r in inv.records).values())
    inv.notes.append(
        "WBC components per image: " + ", ".join(f"{n} WBC: {c} images" for n, c in sorted(per_image.items()))
        + f"; {specks} mask specks < {MIN_COMPONENT_PX} px removed"
    )


def _count_voc_matches(voc: Counter, voc_path: Path, boxes: list[Box]) -> None:
    """Add one image's mask components and VOC WBC boxes to the cross-check counts."""
    if not voc_path.exists():
        voc["images without VOC annotation"] += 1
        return
    voc_boxes = _voc_wbc_boxes(voc_path)
    voc["components matching a VOC WBC box"] += sum(any(_iou(b, v) >= VOC_MATCH_IOU for v in voc_boxes) for b in boxes)
    voc["components"] += len(boxes)
    voc["VOC WBC boxes without a mask component"] += sum(
        not any(_iou(b, v) >= VOC_MATCH_IOU for b in boxes) for v in voc_boxes
    )


def _voc_note(voc: Counter, voc_dir: Path, root: Path) -> str:
    if not voc_dir.is_dir():
        return f"{relative(voc_dir, root)} missing: VOC cross-check not done"
    return (f"VOC cross-check (IoU >= {VOC_MATCH_IOU}): {voc['components matching a VOC WBC box']} of "
            f"{voc['components']} components match a VOC WBC box; {voc['VOC WBC boxes without a mask component']} "
            f"VOC WBC boxes have no mask component; {voc['images without VOC annotation']} images have no VOC file")


@register_dataset(
    "bccd", domains=("bccd",), fetched=True, cache_version=CACHE_VERSION,
    licence="MIT (BCCD, Shenggan/BCCD_Dataset; masks, Banik 2020)",
    citation=("BCCD Dataset, github.com/Shenggan/BCCD_Dataset; Banik PP, Saha R, Kim KD. An automatic nucleus "
              "segmentation and CNN model based classification method of white blood cell. Expert Systems with "
              "Applications 149:113211 (2020)"),
    description="BCCD smartphone-microscope smears with Banik's WBC masks: one crop per WBC, labels where unambiguous",
)
def load_bccd(root: Path, size: int) -> list[Sample]:
    samples: list[Sample] = []

    def crop_wbcs(image_path: Path, codes: np.ndarray, records: list[Record]) -> None:
        image = read_rgb(image_path)
        for rec in records:
            samples.append(crop_sample(rec, root, size, "bccd", "bccd", image, codes, rec.box, "mask_component"))

    _log_inventory(bccd_inventory(root, on_image=crop_wbcs, cross_check=False), len(samples))
    return samples


# ---------------------------------------------------------------- PBC (Acevedo et al. 2020)


def pbc_inventory(root: Path) -> Inventory:
    """Records of every PBC image in a class folder that is one of CLASSES."""
    base = root / PBC_DIR
    _require_dir(base, "pbc")
    inv = Inventory("pbc", [], 0, 0)
    seen: set[str] = set()
    for group in ("wbc", "other_types"):
        if not (base / group).is_dir():
            inv.notes.append(f"{PBC_DIR}/{group} missing")
            continue
        for folder in sorted(p for p in (base / group).iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.is_file())
            if folder.name not in CLASSES:
                inv.skipped[f"{group}/{folder.name}: not one of the benchmark classes"] += len(files)
                continue
            for path in files:
                if path.name.startswith("."):
                    inv.skipped["hidden files (macOS .DS_*)"] += 1
                elif path.suffix.lower() not in IMAGE_SUFFIXES:
                    inv.skipped["not an image file"] += 1
                else:
                    rid = f"pbc/{folder.name}/{path.stem}"
                    if rid in seen:
                        raise BenchmarkError(f"pbc: two images named {folder.name}/{path.stem} under {base}")
                    seen.add(rid)
                    inv.records.append(Record(rid, path, None, CLASSES.index(folder.name)))
    inv.images = len(inv.records)
    return _require_records(inv, base)


@register_dataset(
    "pbc", domains=("pbc",), fetched=True, cache_version=DETECTED_CACHE_VERSION,
    licence="CC-BY-4.0",
    citation=("Acevedo A, Merino A, Alferez S, Molina A, Boldu L, Rodellar J. A dataset of microscopic peripheral "
              "blood cell images for development of automatic recognition systems. Data in Brief 30:105474 (2020)"),
    description="PBC (Acevedo 2020) subset, CellaVision MGG, 5 classes, classification only (no masks)",
)
def load_pbc(root: Path, size: int) -> list[Sample]:
    inv = pbc_inventory(root)
    samples = []
    for rec in inv.records:
        image = read_rgb(rec.image)
        box, how = detected_box(image)
        samples.append(crop_sample(rec, root, size, "pbc", "pbc", image, None, box, how))
    _log_inventory(inv, len(samples))
    fallbacks = sum(s.meta["box"] == "centre_fallback" for s in samples)
    if fallbacks:
        log.warning("pbc: %d of %d images had no detectable WBC; cropped the frame centre", fallbacks, len(samples))
    return samples


