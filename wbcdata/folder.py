"""User-held folders (LISC, ALL-IDB, Raabin-WBC, ... copies) in one of three layouts (docs/data.md),
detected in this order::

    1. <folder>/images/<id>.<png|jpg|jpeg|bmp|tif|tiff>   one WBC image each (RGB or grey)
       <folder>/masks/<id>.png                           optional, same size as the image
       <folder>/labels.csv                               optional, header "id,class" (or "image,label")
    2. <folder>/labels.csv                               header "image,label" (or "id,class"), and the
       <folder>/<image>.<ext>                            images beside it (or at the relative paths it names)
    3. <folder>/<class>/<file>.<ext>                     class sub-folders, as torchvision's ImageFolder
       <folder>/masks/<class>/<file stem>.png            optional

Ids are the image's path (relative to ``images/``, else to the folder) without its suffix, e.g.
``a1`` or ``neutrophil/a1``; sample ids are ``<domain>/<id>`` and masks are ``masks/<id>.png``. A
labels.csv image column (``image``, ``filename`` or ``file``) holds a file name or a relative path;
its label column is ``label`` or ``class``. A class sub-folder's name is its images' label.

Mask encoding: single-channel (RGB is read as grey). If its maximum is <= 2 the values are the
benchmark codes (0 background, 1 cytoplasm, 2 nucleus); otherwise grey levels, thresholded at
>= 64 WBC and >= 192 nucleus (0/128/255 as in Zheng; note a binary 0/255 mask reads as all
nucleus: write whole-cell masks as 0/128, or describe them in a ``dataset.json``). A label is one
of CLASSES (any case) or blank (label None). Images with a mask are cropped on the mask box; without
one, on the detector box (see :mod:`.crops`). A ``dataset.json`` at the folder's top
(:mod:`wbcdata.user`, named with ``--dataset NAME=PATH``) gives the mask encoding and a class map
(:class:`FolderFormat`); several such folders can be used at once. The ``folder`` dataset reads one
such folder from ``$WBC_FOLDER_DATASET``.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from core.errors import BenchmarkError
from core.sample import CLASSES, MASK_BACKGROUND, MASK_CYTOPLASM, MASK_NUCLEUS, Sample
from wbcdata.crops import mask_box
from wbcdata.reading import (DETECTED_CACHE_VERSION, IMAGE_SUFFIXES, Record, crop_sample, detected_box,
                             read_mask_codes, read_rgb)
from wbcdata.registry import register_dataset

log = logging.getLogger(__name__)

LABEL_FILE = "labels.csv"
IMAGE_COLUMNS = ("image", "filename", "file")
"""labels.csv columns naming an image file (a name or a relative path), in order of preference; they
win over an ``id`` column unless the header has ``id`` and ``class`` (the original format, read as is)."""
LABEL_COLUMNS = ("label", "class")
LAYOUTS = ("images", "flat", "class_folders")
"""Layout names, in detection order (recorded by :func:`wbcdata.user.label_report`)."""
NO_LAYOUT = (
    "no images/ folder, no labels.csv and no class sub-folders holding images; use one of the three layouts: "
    "images/<id>.<ext> (optional masks/<id>.png, labels.csv 'id,class'); labels.csv 'image,label' naming "
    "image files beside it or in images/; or class sub-folders <class>/<file>.<ext> (optional "
    "masks/<class>/<file stem>.png); see docs/data.md"
)


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
        """(class index or None, dropped user label or None) of one user label: a labels.csv cell or a
        class sub-folder's name, so both follow the same class map."""
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


@dataclass(frozen=True)
class LabelRow:
    """One labels.csv row: the id or image path as written, its raw label and its line (for messages)."""

    key: str
    label: str
    where: str


@dataclass(frozen=True)
class FolderImage:
    """One image of a user folder before decoding: what every layout reduces to."""

    id: str
    """Unique in the folder: its path (relative to images/, else to the folder) without the suffix."""
    image: Path
    mask: Path | None
    label: str
    """The raw user label ('' = unlabelled), mapped by :meth:`FolderFormat.label`."""
    where: str
    """Where the label comes from (a labels.csv line, a class sub-folder), for error messages."""


@dataclass(frozen=True)
class FolderIndex:
    """What a user folder holds, found once by :func:`folder_index`, so that loading, the cache
    checksum and the label report all read the same files."""

    path: Path
    layout: str
    images: tuple[FolderImage, ...]
    label_file: Path | None = None
    rows: tuple[LabelRow, ...] = ()
    unmatched: tuple[LabelRow, ...] = ()
    """labels.csv rows that name no image (a warning, as a partial copy of a dataset is common)."""

    def files(self) -> set[Path]:
        """Every file the loader reads (images, masks, labels.csv)."""
        out = {i.image for i in self.images} | {i.mask for i in self.images if i.mask is not None}
        return out | ({self.label_file} if self.label_file is not None else set())

    def labels(self, fmt: FolderFormat) -> list[tuple[int | None, str | None]]:
        """:meth:`FolderFormat.label` of each image; every labels.csv row is checked first, also those
        naming no image, so a bad label fails before any decoding."""
        for row in self.rows:
            fmt.label(row.label, row.where)
        return [fmt.label(i.label, i.where) for i in self.images]


def read_label_rows(path: Path) -> tuple[bool, list[LabelRow]]:
    """(whether the rows name image files rather than ids, the rows) of a labels.csv; the header
    names are matched in any case."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        names = [h.strip().lower() for h in header]
        original = {"id", "class"} <= set(names)  # 'id,class' files read exactly as they always were
        key = next((names.index(c) for c in (("id",) if original else (*IMAGE_COLUMNS, "id")) if c in names), None)
        label = next((names.index(c) for c in (("class",) if original else LABEL_COLUMNS) if c in names), None)
        if key is None or label is None:
            raise BenchmarkError(f"{path}: expected a header naming the image ({', '.join(IMAGE_COLUMNS)} or id) "
                                 f"and its class ({' or '.join(LABEL_COLUMNS)}), e.g. 'image,label' or 'id,class'; "
                                 f"found {header}; see docs/data.md")
        rows = [LabelRow((row[key] if key < len(row) else "").strip(), row[label] if label < len(row) else "",
                         f"{path}: line {reader.line_num}") for row in reader if row]
    return names[key] != "id", rows


def folder_labels(path: Path, fmt: FolderFormat = FolderFormat()) -> tuple[dict[str, int | None], dict[str, str]]:
    """A labels.csv: key (id, or image path as written) -> class index or None, and key -> user label
    for the keys whose class the class map drops."""
    labels: dict[str, int | None] = {}
    dropped: dict[str, str] = {}
    for row in read_label_rows(path)[1]:
        labels[row.key], drop = fmt.label(row.label, row.where)
        if drop is not None:
            dropped[row.key] = drop
    return labels, dropped


def folder_index(path: Path) -> FolderIndex:
    """The images of a user folder in whichever layout it has (module docstring; docs/data.md), or a
    BenchmarkError naming the folder and the layouts when it has none."""
    path = Path(path)
    if not path.is_dir():
        raise BenchmarkError(f"folder dataset {path}: the folder does not exist ({NO_LAYOUT})")
    label_file = path / LABEL_FILE
    if (path / "images").is_dir():
        index = _listed_index(path, path / "images", label_file if label_file.exists() else None)
    elif label_file.is_file():
        index = _listed_index(path, path, label_file)
    elif classes := _class_folders(path):
        index = _class_index(path, classes)
    else:
        raise BenchmarkError(f"folder dataset {path}: {NO_LAYOUT}")
    ids = [i.id for i in index.images]
    if len(set(ids)) != len(ids):
        dup = next(s for s in ids if ids.count(s) > 1)
        raise BenchmarkError(f"folder dataset {path}: two images share the id {dup!r} "
                             f"({', '.join(str(i.image) for i in index.images if i.id == dup)})")
    return index


def _image_files(folder: Path, *, recursive: bool = False, hidden: bool = False) -> list[Path]:
    """Image files of ``folder`` sorted by path; hidden files and folders (``.x``, macOS ``._x``) left out
    unless ``hidden`` (the images/ layout always read them)."""
    out: list[Path] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") and not hidden:
            continue
        if p.is_dir() and recursive:
            out += _image_files(p, recursive=True)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            out.append(p)
    return out


def _mask_of(root: Path, image_id: str) -> Path | None:
    mask = root / "masks" / f"{image_id}.png"
    return mask if mask.exists() else None


def _listed_index(root: Path, base: Path, label_file: Path | None) -> FolderIndex:
    """Layouts 1 and 2: the images in ``base`` (images/ or the folder itself) plus those the labels.csv
    names by path; labels by id or by image path."""
    files = {p: p.relative_to(base).with_suffix("").as_posix() for p in _image_files(base, hidden=base != root)}
    by_path, rows = read_label_rows(label_file) if label_file is not None else (False, [])
    labels: dict[str, LabelRow] = {}
    unmatched = []
    ids = set(files.values())
    for row in rows:
        image = _row_image(root, base, row) if by_path else None
        if image is not None:
            labels[files.setdefault(image, _image_id(image, root, base))] = row
        elif not by_path and row.key in ids:
            labels[row.key] = row
        else:
            unmatched.append(row)
    if not files:
        where = "images/ holds" if base != root else f"the folder holds, and {LABEL_FILE} names,"
        hint = " (a folder of class sub-folders must not have a labels.csv)" \
            if base == root and _class_folders(root) else ""
        raise BenchmarkError(f"folder dataset {root}: {where} no {'/'.join(IMAGE_SUFFIXES)} files{hint}; "
                             "see docs/data.md")
    images = tuple(FolderImage(i, p, _mask_of(root, i), labels[i].label if i in labels else "",
                               labels[i].where if i in labels else str(p)) for p, i in sorted(files.items()))
    return FolderIndex(root, "images" if base != root else "flat", images, label_file, tuple(rows), tuple(unmatched))


def _image_id(image: Path, root: Path, base: Path) -> str:
    inside = base if image.is_relative_to(base) else root
    return image.relative_to(inside).with_suffix("").as_posix()


def _row_image(root: Path, base: Path, row: LabelRow) -> Path | None:
    """The image file a labels.csv row names (relative to images/, else to the folder), None if none;
    a path that leaves the folder, or a file that is not an image, is an error."""
    text = row.key.replace("\\", "/")
    rel = PurePosixPath(text)
    if rel.is_absolute() or ".." in rel.parts or re.match(r"[A-Za-z]:", text):
        raise BenchmarkError(f"{row.where}: image path {row.key!r} leaves the folder {root}; write it relative "
                             "to the folder (or to images/), e.g. 'a1.png' or 'neutrophil/a1.png'")
    if not rel.parts:
        return None
    for folder in dict.fromkeys((base, root)):
        image = folder / rel
        if image.is_file():
            if image.suffix.lower() not in IMAGE_SUFFIXES:
                raise BenchmarkError(f"{row.where}: {row.key!r} is not a {'/'.join(IMAGE_SUFFIXES)} image")
            return image
    return None


def _class_folders(root: Path) -> list[str]:
    """Sub-folders holding images at any depth, but not hidden ones nor masks/: layout 3's classes."""
    return [d.name for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
            and d.name.lower() != "masks" and _image_files(d, recursive=True)]


def _class_index(root: Path, classes: list[str]) -> FolderIndex:
    """Layout 3: each sub-folder's name labels the images under it; ids keep the sub-folder
    (``neutrophil/a1``) so the same file name in two classes stays two images."""
    images = []
    for name in classes:
        where = f"{root / name}/ (class sub-folder)"
        for p in _image_files(root / name, recursive=True):
            image_id = p.relative_to(root).with_suffix("").as_posix()
            images.append(FolderImage(image_id, p, _mask_of(root, image_id), name, where))
    return FolderIndex(root, "class_folders", tuple(images))


def load_folder(path: Path, size: int, domain: str, *, dataset: str = "folder",
                fmt: FolderFormat = FolderFormat()) -> list[Sample]:
    """Samples from a user-held folder in any layout of the module docstring; images whose class the
    class map drops are left out and counted per user label in the log."""
    path = Path(path)
    index = folder_index(path)
    labels = index.labels(fmt)
    if index.unmatched:
        keys = sorted({r.key for r in index.unmatched})
        log.warning("%s: %d rows of %s name no image (e.g. %s)", domain, len(keys), index.label_file, keys[0])
    samples, stats, drops = [], Counter(), Counter()
    for item, (label, drop) in zip(index.images, labels):
        if drop is not None:
            drops[drop] += 1
            continue
        sample = _folder_sample(item, label, path, size, dataset, domain, fmt, stats)
        if sample is not None:
            samples.append(sample)
    log.info("%s (%s): %d samples; %s", domain, path, len(samples), dict(stats))
    if drops:
        log.warning("%s: dropped by the class map: %s", domain, ", ".join(f"{n} {k!r}" for k, n in sorted(drops.items())))
    if not samples:
        raise BenchmarkError(f"folder dataset {path}: no usable images ({dict(stats)}; dropped by the class map: {dict(drops)})")
    return samples


def _folder_sample(item: FolderImage, label: int | None, root: Path, size: int, dataset: str, domain: str,
                   fmt: FolderFormat, stats: Counter) -> Sample | None:
    """One image cropped on its mask box, else its detector box; None (counted) for a mask without WBC."""
    image = read_rgb(item.image)
    codes = _folder_mask(item.mask, image.shape, item.image, fmt) if item.mask is not None else None
    if codes is not None:
        box, how = mask_box(codes != MASK_BACKGROUND), "mask"
        if box is None:
            stats["skipped: mask without WBC pixels"] += 1
            return None
    else:
        box, how = detected_box(image)
    stats[f"box from {how}"] += 1
    stats["unlabelled"] += label is None
    rec = Record(f"{domain}/{item.id}", item.image, item.mask, label)
    return crop_sample(rec, root, size, dataset, domain, image, codes, box, how)


def _folder_mask(path: Path, image_shape: tuple[int, ...], image_path: Path, fmt: FolderFormat) -> np.ndarray:
    if fmt.mask_values is None:
        return read_mask_codes(path, image_shape, image_path, codes_ok=True)
    return fmt.codes(read_mask_codes(path, image_shape, image_path, raw=True))


@register_dataset(
    "folder", domains=("folder",), fetched=False, cache_version=DETECTED_CACHE_VERSION,
    description="user-held data (LISC, ALL-IDB, Raabin, ...) in a documented folder layout at $WBC_FOLDER_DATASET",
)
def load_folder_dataset(root: Path, size: int) -> list[Sample]:
    where = os.environ.get("WBC_FOLDER_DATASET")
    if not where:
        raise BenchmarkError(
            "dataset 'folder' reads its path from $WBC_FOLDER_DATASET, which is not set; point it at a folder "
            "in one of the layouts of docs/data.md (images/ with optional masks/ and labels.csv, a labels.csv "
            "naming its images, or class sub-folders), or name it with --dataset NAME=PATH (wbcdata/user.py)"
        )
    return load_folder(Path(where), size, "folder")
