"""User datasets: folders a user names, loaded, cached and used by every protocol like the built-ins.

A folder is named with ``--dataset NAME=PATH`` (any CLI command that loads data) or ``$WBC_DATASETS``
(``NAME=PATH,NAME2=PATH2``), which ``--dataset`` extends; spawned worker processes inherit the
environment, so every process registers the same datasets (as :mod:`core.plugins` does for plugins).
``--dataset PATH`` alone takes the name from the folder's ``dataset.json``.

The folder has one of the layouts of :func:`wbcdata.folder.folder_index` (``images/`` with optional
``masks/`` and ``labels.csv``; a ``labels.csv`` naming its images; or class sub-folders) and optionally
a ``dataset.json`` (in the spirit of nnU-Net's), every field optional::

    {"name": "mylab", "domain": "mylab_wright", "description": "...",
     "mask_encoding": {"background": 0, "cytoplasm": 128, "nucleus": 255},   # or {"background": 0, "wbc": 255}
     "class_map": {"band": "neutrophil", "segmented neutrophil": "neutrophil", "smudge": null},
     "licence": "CC-BY-4.0", "citation": "...", "url": "https://..."}

The crop cache is keyed by a SHA-256 of the folder's files (every image and mask the loader reads,
labels.csv, dataset.json) and the crop rule, so an edit to any of them makes the next load rebuild
the crops, and a job id, which carries the cache version, never reuses results of other data.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from core.errors import BenchmarkError
from core.sample import CLASSES, Sample
from wbcdata.folder import FolderFormat, folder_index, load_folder, normalise_label
from wbcdata.reading import DETECTED_CACHE_VERSION
from wbcdata.registry import DATASETS, DatasetSpec

DESCRIPTOR = "dataset.json"
ENV_VAR = "WBC_DATASETS"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""Dataset and domain names: they appear in file names, job names and protocol variants (``a+b``)."""
FIELDS = ("name", "domain", "description", "mask_encoding", "class_map", "licence", "citation", "url")
MASK_PARTS = ({"background", "cytoplasm", "nucleus"}, {"background", "wbc"})

_registered: dict[str, Path] = {}
"""User datasets registered in this process: name -> resolved folder."""


@dataclass(frozen=True)
class Descriptor:
    """A user folder and what its ``dataset.json`` says (defaults where it says nothing or is absent)."""

    name: str
    path: Path
    domain: str
    fmt: FolderFormat
    description: str = ""
    licence: str = ""
    citation: str = ""
    url: str = ""


def _text(raw: dict, key: str, where: Path) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise BenchmarkError(f"{where}: field '{key}' must be a string, got {json.dumps(value)}")
    return value.strip()


def _check_name(value: str, what: str, where: object) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise BenchmarkError(f"{where}: {what} {value!r} must be letters, digits, '_', '.' or '-' "
                             "(it names files, jobs and protocol variants)")
    return value


def _mask_values(raw: object, where: Path) -> dict[str, int] | None:
    if raw is None:
        return None
    field = f"{where}: field 'mask_encoding'"
    if not isinstance(raw, dict) or set(raw) not in MASK_PARTS:
        raise BenchmarkError(f"{field} must be an object with the keys background, cytoplasm, nucleus (grey levels "
                             f"of a three-part mask) or background, wbc (a whole-cell mask), got {json.dumps(raw)}")
    for part, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
            raise BenchmarkError(f"{field}: '{part}' must be a grey level 0-255, got {json.dumps(value)}")
    if len(set(raw.values())) != len(raw):
        raise BenchmarkError(f"{field}: two parts share one grey level ({json.dumps(raw)})")
    return dict(raw)


def _class_map(raw: object, where: Path) -> dict[str, str | None]:
    field = f"{where}: field 'class_map'"
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{field} must be an object mapping your labels to one of {', '.join(CLASSES)} "
                             f"or null (drop), got {json.dumps(raw)}")
    out: dict[str, str | None] = {}
    for label, target in raw.items():
        key = normalise_label(label)
        if not key:
            raise BenchmarkError(f"{field}: an empty label")
        if key in out:
            raise BenchmarkError(f"{field}: labels {label!r} and another one both read {key!r} "
                                 "(case, spaces, '-' and '_' do not count)")
        if target is not None and (not isinstance(target, str) or target.strip().lower() not in CLASSES):
            raise BenchmarkError(f"{field}: {label!r} maps to {json.dumps(target)}; use one of "
                                 f"{', '.join(CLASSES)}, or null to drop its images")
        out[key] = None if target is None else target.strip().lower()
    return out


def read_descriptor(path: Path, name: str | None = None) -> Descriptor:
    """The descriptor of the folder ``path`` (defaults without a ``dataset.json``); ``name`` (from
    ``NAME=PATH``) overrides the file's. Every error names the file and the field."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise BenchmarkError(f"dataset {name or path}: folder {path} does not exist; --dataset (and $WBC_DATASETS) "
                             f"takes NAME=PATH or PATH, a folder of your images; see docs/data.md")
    file = path / DESCRIPTOR
    raw: dict = {}
    if file.exists():
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BenchmarkError(f"{file}: not valid JSON ({e})") from e
        if not isinstance(raw, dict):
            raise BenchmarkError(f"{file}: expected a JSON object, got {type(raw).__name__}")
        if "license" in raw and "licence" not in raw:
            raw["licence"] = raw.pop("license")
        unknown = sorted(set(raw) - set(FIELDS))
        if unknown:
            raise BenchmarkError(f"{file}: unknown field {', '.join(map(repr, unknown))}; fields: {', '.join(FIELDS)}")
    name = name or _text(raw, "name", file)
    if not name:
        raise BenchmarkError(f"dataset folder {path} has no name: write it as --dataset NAME={path} "
                             f"(or $WBC_DATASETS), or give {DESCRIPTOR} a 'name'")
    _check_name(name, "dataset name", file if file.exists() else f"--dataset {name}={path}")
    domain = _check_name(_text(raw, "domain", file) or name, "field 'domain'", file)
    fmt = FolderFormat(_mask_values(raw.get("mask_encoding"), file), _class_map(raw.get("class_map", {}), file))
    return Descriptor(name, path, domain, fmt, *(_text(raw, k, file) for k in ("description", "licence", "citation", "url")))


def folder_checksum(path: Path) -> str:
    """SHA-256 (first 12 hex) of every file the loader reads, with its relative path: any edit changes it.
    Everything under images/ and masks/ counts too, as it always did, so a folder in the images/ layout
    keeps its checksum (and its cache and job ids)."""
    path = Path(path)
    h = hashlib.sha256()
    files = {p for sub in ("images", "masks") if (path / sub).is_dir() for p in (path / sub).rglob("*") if p.is_file()}
    files |= {path / f for f in ("labels.csv", DESCRIPTOR) if (path / f).is_file()}
    files |= folder_index(path).files()
    for p in sorted(files):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:12]


def user_dataset_spec(desc: Descriptor) -> DatasetSpec:
    """A registry entry for a user folder: cached, its cache version the crop rule plus the content checksum."""

    def load_user_folder(root: Path, size: int) -> list[Sample]:
        return load_folder(desc.path, size, desc.domain, dataset=desc.name, fmt=desc.fmt)

    return DatasetSpec(
        desc.name, load_user_folder, (desc.domain,), False, f"{DETECTED_CACHE_VERSION}-{folder_checksum(desc.path)}",
        desc.description or f"user folder {desc.path}", desc.licence, desc.citation, desc.url, cached=True,
        path=str(desc.path),
    )


def parse_entries(text: str) -> list[tuple[str | None, Path]]:
    """``NAME=PATH,PATH2`` -> [(name or None, path)]."""
    out = []
    for entry in (e.strip() for e in text.split(",")):
        if entry:
            name, sep, where = entry.partition("=")
            out.append((name.strip(), Path(where.strip())) if sep else (None, Path(entry)))
    return out


def add_datasets(entries: list[str]) -> None:
    """Name user folders for this process and every worker it spawns (``--dataset``): appended to
    ``$WBC_DATASETS``, registered at the next registry lookup."""
    current = os.environ.get(ENV_VAR, "")
    os.environ[ENV_VAR] = ",".join(e for e in [current, *entries] if e.strip())


def register_user_datasets() -> None:
    """Register every folder of ``$WBC_DATASETS`` not yet registered in this process. A name used by a
    built-in or plugin dataset, one name for two folders, or a domain another dataset has is an error."""
    for name, where in parse_entries(os.environ.get(ENV_VAR, "")):
        path = where.expanduser().resolve()
        if name and _registered.get(name) == path:
            continue
        desc = read_descriptor(path, name or None)
        if desc.name in _registered:
            if _registered[desc.name] == path:
                continue
            raise BenchmarkError(f"dataset name '{desc.name}' names two folders, {_registered[desc.name]} and {path} "
                                 f"(--dataset / ${ENV_VAR}): give each its own name")
        if desc.name in DATASETS:
            raise BenchmarkError(f"dataset name '{desc.name}' (--dataset / ${ENV_VAR}, folder {path}) is already a "
                                 f"dataset of the harness or a plugin: choose another name")
        taken = {d: n for n in DATASETS.names() for d in DATASETS.get(n).domains}
        if desc.domain in taken:
            raise BenchmarkError(f"dataset '{desc.name}' ({path}): domain '{desc.domain}' is already a domain of "
                                 f"dataset '{taken[desc.domain]}'; set another 'domain' in {path / DESCRIPTOR}")
        DATASETS.register(desc.name, desc.description or f"user folder {path}")(user_dataset_spec(desc))
        _registered[desc.name] = path


def user_dataset_names() -> list[str]:
    """The user datasets ``$WBC_DATASETS`` names now, in its order (registered by the next registry lookup)."""
    names = [name or read_descriptor(where).name for name, where in parse_entries(os.environ.get(ENV_VAR, ""))]
    return list(dict.fromkeys(names))


def label_report(desc: Descriptor) -> dict:
    """What the class map did to the folder's labels (its labels.csv or class sub-folders): labelled
    images per benchmark class, the user labels mapped onto another name, and the images dropped per
    user label (for the data report and provenance)."""
    index = folder_index(desc.path)
    has_csv = index.label_file is not None
    if not has_csv and index.layout != "class_folders":
        return {"labels_csv": False, "layout": index.layout, "classes": {}, "mapped": {}, "dropped": {}}
    labels = index.labels(desc.fmt)
    kept = Counter(CLASSES[v] for v, _ in labels if v is not None)
    drops = Counter(d for _, d in labels if d is not None)
    mapped = {k: v for k, v in desc.fmt.class_map.items() if v is not None and k != v}
    return {"labels_csv": has_csv, "layout": index.layout, "classes": {c: kept[c] for c in CLASSES if kept[c]},
            "mapped": mapped, "dropped": dict(sorted(drops.items()))}
