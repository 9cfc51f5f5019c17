"""Fetch, verify and extract the public WBC archives, and take stock of what each dataset holds.

Why this shape: the datasets are public but may not be redistributed by this project, and CI
machines have no internet. So each archive has a public source URL (a GitHub archive zip at a
pinned commit) and may instead be taken from a local mirror folder (``$WBC_DATA_MIRROR`` or
``--mirror``) holding the same zip names. ``manifest.json`` (next to this module) records, per
archive, the zip's SHA-256 and a SHA-256 for every member file the loaders use:

* the archive checksum is informational (GitHub may re-zip an archive, changing its bytes);
* member checksums are authoritative: every extracted file is hashed while it is written and a
  mismatch is an error. Members the manifest does not list are not extracted (counted); listed
  members an archive lacks are reported, so a partial copy still works and says what it lacks.

Extraction goes to a temporary folder next to the target, images are decoded (JPEG at 1/8 scale)
and image/mask sizes compared, a ``.done`` file with the verification summary is written, and
only then is the folder renamed into place: a dataset folder is complete or absent, never half
there. ``<root>/<archive>/.done`` present means nothing to do.

GitHub archives put everything under ``<repo>-<commit>/``; that folder and the manifest's
``anchor`` (the sub-folder holding the data) are stripped, so the extracted layout is the same
whichever source was used (see :mod:`wbcdata.real` for the layout).

What each dataset holds is reported by ``python -m benchmark data`` (:mod:`benchmark.cli.data`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError

from wbcdata.real import (
    BCCD_MASKS_DIR,
    BCCD_VOC_DIR,
    PBC_DIR,
    ZHENG_DIR,
    Inventory,
    bccd_inventory,
    pbc_inventory,
    zheng_inventory,
)
from core.errors import BenchmarkError

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
MIRROR_ENV = "WBC_DATA_MIRROR"
DONE_MARKER = ".done"
_IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveSource:
    """What a maintainer states about an archive; :func:`build_manifest` adds the checksums."""

    key: str
    file: str
    url: str
    commit: str
    anchor: str
    members: str
    """Regex (full match) of the member paths, relative to ``anchor``, that the loaders use."""
    image_mask_pair: tuple[str, str] | None = None
    """(image regex, mask template) so extraction can check that each mask matches its image."""


ARCHIVE_SOURCES: tuple[ArchiveSource, ...] = (
    ArchiveSource(
        ZHENG_DIR,
        "segmentation_WBC-fa9c01622f52bccb9aeb8a6f2628f564e377767d.zip",
        "https://github.com/zxaoyou/segmentation_WBC/archive/fa9c01622f52bccb9aeb8a6f2628f564e377767d.zip",
        "fa9c01622f52bccb9aeb8a6f2628f564e377767d",
        "",
        r"Dataset [12]/\d+\.(bmp|png)|Class Labels of Dataset [12]\.csv",
        (r"(Dataset [12]/\d+)\.bmp", r"\1.png"),
    ),
    ArchiveSource(
        BCCD_MASKS_DIR,
        "bccd_wbc_masks-Banik-d8ee339ad22dc30d3acdc2d653ab5768eae10ab3.zip",
        "https://github.com/ParthaPratimBanik/An-Automatic-Nucleus-Segmentation-and-CNN-Model-based-"
        "Classification-Method-of-White-Blood-Cell/archive/d8ee339ad22dc30d3acdc2d653ab5768eae10ab3.zip",
        "d8ee339ad22dc30d3acdc2d653ab5768eae10ab3",
        "wbc_nucleus_seg_localz/Datasets/",
        r"Input/BCCD/BloodImage_\d+\.jpg|Input/BCCD/labels\.csv|Ground Truth/BCCD/BloodImage_Mask_\d+\.png",
        (r"Input/BCCD/BloodImage_(\d+)\.jpg", r"Ground Truth/BCCD/BloodImage_Mask_\1.png"),
    ),
    ArchiveSource(
        BCCD_VOC_DIR,
        "BCCD_Dataset-d272fb14cdff6e473fafeeeba32aba5f560e9e43.zip",
        "https://github.com/Shenggan/BCCD_Dataset/archive/d272fb14cdff6e473fafeeeba32aba5f560e9e43.zip",
        "d272fb14cdff6e473fafeeeba32aba5f560e9e43",
        "",
        r"BCCD/Annotations/BloodImage_\d+\.xml",
    ),
    ArchiveSource(
        PBC_DIR,
        "pbc_subset400-kylewang1999-c3c0681e2937577a26532c4c63411557fcd0fb29.zip",
        "https://github.com/kylewang1999/PBC_dataset/archive/c3c0681e2937577a26532c4c63411557fcd0fb29.zip",
        "c3c0681e2937577a26532c4c63411557fcd0fb29",
        "",
        r"(wbc|other_types)/[a-z_]+/[^./][^/]*\.jpg",
    ),
)

DATASET_ARCHIVES: dict[str, tuple[str, ...]] = {
    "zheng_d1": (ZHENG_DIR,),
    "zheng_d2": (ZHENG_DIR,),
    "bccd": (BCCD_MASKS_DIR, BCCD_VOC_DIR),
    "pbc": (PBC_DIR,),
}
"""Which archives each fetched dataset needs (Zheng D1 and D2 share one)."""

INVENTORIES: dict[str, Callable[[Path], Inventory]] = {
    "zheng_d1": lambda root: zheng_inventory(root, 1),
    "zheng_d2": lambda root: zheng_inventory(root, 2),
    "bccd": bccd_inventory,
    "pbc": pbc_inventory,
}


@dataclass
class ArchiveStatus:
    """How one archive got (or already was) in place, and what its verification found."""

    key: str
    file: str
    origin: str
    archive_sha256_matches: bool
    verified: int
    missing: list[str] = field(default_factory=list)
    unlisted: int = 0
    images_decoded: int = 0
    members_digest: str = ""
    already_extracted: bool = False


@dataclass
class DatasetReport:
    """Per dataset: its archives' status and what the loader will find."""

    name: str
    archives: list[ArchiveStatus]
    inventory: Inventory


# ---------------------------------------------------------------- manifest


def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"dataset manifest {path} is missing or unreadable ({e})") from e


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _member_key(name: str, entry: dict) -> str | None:
    """Path of a zip member relative to the archive's data folder, or None if outside it."""
    top, _, rest = name.partition("/")
    if entry["commit"] and rest and top.endswith("-" + entry["commit"]):
        name = rest
    anchor = entry["anchor"]
    return name[len(anchor) :] if name.startswith(anchor) and name != anchor else None


def build_manifest(mirror: Path, out: Path = MANIFEST_PATH, sources: tuple[ArchiveSource, ...] = ARCHIVE_SOURCES) -> dict:
    """(Maintainers) Checksum the archives in ``mirror`` and write the manifest atomically."""
    archives = {}
    for src in sources:
        path = Path(mirror) / src.file
        if not path.is_file():
            raise BenchmarkError(f"build_manifest: {path} not found")
        entry = {
            "file": src.file,
            "url": src.url,
            "commit": src.commit,
            "anchor": src.anchor,
            "image_mask_pair": list(src.image_mask_pair) if src.image_mask_pair else None,
            "sha256": _sha256_file(path),
            "bytes": path.stat().st_size,
        }
        pattern = re.compile(src.members)
        members = {}
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = _member_key(info.filename, entry)
                if info.is_dir() or key is None or not pattern.fullmatch(key):
                    continue
                h = hashlib.sha256()
                with zf.open(info) as f:
                    for chunk in iter(lambda: f.read(_CHUNK), b""):
                        h.update(chunk)
                members[key] = h.hexdigest()
        if not members:
            raise BenchmarkError(f"build_manifest: no member of {path} matches {src.members!r}")
        entry["members"] = dict(sorted(members.items()))
        archives[src.key] = entry
    manifest = {"format": 1, "archives": archives}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out)
    return manifest


# ---------------------------------------------------------------- obtaining and extracting


def _download(url: str, file: str, dest_dir: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{file}.", suffix=".download", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out, _CHUNK)
    except (urllib.error.URLError, OSError, ValueError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise BenchmarkError(
            f"could not download {url} ({e}). Without internet access set {MIRROR_ENV} to a folder holding "
            f"{file}, e.g. the shared mirror ../shared/datasets (`python -m benchmark data` also takes --mirror DIR)"
        ) from e
    return Path(tmp)


def _obtain(entry: dict, mirror: Path | None, dest_dir: Path) -> tuple[Path, str, bool]:
    """The archive's local path, where it came from, and whether it is a temporary download."""
    if mirror is not None:
        path = Path(mirror) / entry["file"]
        if not path.is_file():
            raise BenchmarkError(
                f"archive {entry['file']} is not in the mirror folder {mirror} ({MIRROR_ENV}); "
                f"its public source is {entry['url']}"
            )
        return path, f"mirror {mirror}", False
    return _download(entry["url"], entry["file"], dest_dir), f"download {entry['url']}", True


def _extract_verified(archive: Path, entry: dict, dest: Path) -> tuple[list[str], int]:
    """Extract the manifest's members into ``dest``, hashing as they are written.

    Returns the keys written and the number of archive files the manifest does not list."""
    members: dict[str, str] = entry["members"]
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise BenchmarkError(f"{archive}: truncated or not a zip archive ({e}); delete it and fetch again") from e
    written, unlisted = [], 0
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            key = _member_key(info.filename, entry)
            if key not in members:
                unlisted += 1
                continue
            target = dest / key
            target.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            try:
                with zf.open(info) as src, target.open("wb") as out:
                    for chunk in iter(lambda: src.read(_CHUNK), b""):
                        h.update(chunk)
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise BenchmarkError(f"{archive}: member {info.filename} is corrupt ({e})") from e
            if h.hexdigest() != members[key]:
                raise BenchmarkError(
                    f"{archive}: checksum mismatch for {key}: expected sha256 {members[key]}, got {h.hexdigest()}"
                )
            written.append(key)
    return written, unlisted


def _check_images(archive: Path, entry: dict, dest: Path, keys: list[str]) -> int:
    """Decode every extracted image (JPEG at 1/8 scale: enough to find truncation) and compare
    each mask's size with its image's. Returns the number of images decoded."""
    sizes: dict[str, tuple[int, int]] = {}
    for key in keys:
        if not key.lower().endswith(_IMAGE_SUFFIXES):
            continue
        try:
            with Image.open(dest / key) as im:
                sizes[key] = im.size
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise BenchmarkError(f"{archive}: {key} is not a readable image ({e})") from e
    pair = entry.get("image_mask_pair")
    if pair:
        image_re = re.compile(pair[0])
        for key, size in sizes.items():
            if image_re.fullmatch(key):
                mask_key = image_re.sub(pair[1], key)
                if mask_key in sizes and sizes[mask_key] != size:
                    raise BenchmarkError(
                        f"{archive}: mask {mask_key} is {sizes[mask_key][0]}x{sizes[mask_key][1]} px "
                        f"but image {key} is {size[0]}x{size[1]} px"
                    )
    return len(sizes)


def _members_digest(entry: dict) -> str:
    """Fingerprint of an archive's manifest entry: a changed manifest invalidates an extraction."""
    return hashlib.sha256(json.dumps(entry["members"], sort_keys=True).encode()).hexdigest()


def _read_done(folder: Path, digest: str) -> ArchiveStatus | None:
    """The status stored by a finished extraction for this manifest; None if absent or stale."""
    try:
        status = ArchiveStatus(**json.loads((folder / DONE_MARKER).read_text()))
    except (OSError, json.JSONDecodeError, TypeError):
        return None
    if status.members_digest != digest:
        return None
    status.already_extracted = True
    return status


def ensure_archive(key: str, root: Path, *, mirror: Path | None = None, manifest: dict | None = None) -> ArchiveStatus:
    """Make ``root/key`` a complete, verified extraction of archive ``key`` (idempotent)."""
    root = Path(root)
    final = root / key
    manifest = manifest if manifest is not None else load_manifest()
    if key not in manifest["archives"]:
        raise BenchmarkError(f"archive '{key}' is not in the dataset manifest; known: {', '.join(manifest['archives'])}")
    entry = manifest["archives"][key]
    digest = _members_digest(entry)
    done = _read_done(final, digest)
    if done is not None:
        return done
    root.mkdir(parents=True, exist_ok=True)
    if mirror is None and os.environ.get(MIRROR_ENV):
        mirror = Path(os.environ[MIRROR_ENV])
    archive, origin, downloaded = _obtain(entry, mirror, root)
    partial = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=root))
    try:
        archive_ok = _sha256_file(archive) == entry["sha256"]
        written, unlisted = _extract_verified(archive, entry, partial)
        if not written:
            raise BenchmarkError(f"{archive}: holds none of the {len(entry['members'])} files the manifest lists")
        missing = sorted(set(entry["members"]) - set(written))
        decoded = _check_images(archive, entry, partial, written)
        status = ArchiveStatus(key, entry["file"], origin, archive_ok, len(written), missing, unlisted, decoded, digest)
        (partial / DONE_MARKER).write_text(json.dumps(asdict(status), indent=1))
        partial.chmod(0o755)  # mkdtemp makes it owner-only; the data are meant to be shared
        finished_meanwhile = _read_done(final, digest)  # another process (a parallel job) won the race
        if finished_meanwhile is not None:
            shutil.rmtree(partial)
            return finished_meanwhile
        if final.exists():
            shutil.rmtree(final)  # an extraction without a valid .done marker: incomplete or outdated
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if downloaded:
            archive.unlink(missing_ok=True)
    return status


def archives_for(name: str) -> tuple[str, ...]:
    """The archives a fetched dataset needs; an unknown name is an error listing the valid ones."""
    if name not in DATASET_ARCHIVES:
        raise BenchmarkError(f"unknown fetched dataset '{name}'; valid: {', '.join(DATASET_ARCHIVES)}")
    return DATASET_ARCHIVES[name]


def ensure_dataset(name: str, root: Path, *, mirror: Path | None = None, manifest: dict | None = None) -> None:
    """Make sure every archive dataset ``name`` needs is extracted and verified under ``root``."""
    for key in archives_for(name):
        ensure_archive(key, root, mirror=mirror, manifest=manifest)


def fetch_dataset(name: str, root: Path, *, mirror: Path | None = None, manifest: dict | None = None) -> DatasetReport:
    """Fetch one dataset's archives and take stock of it."""
    statuses = [ensure_archive(k, root, mirror=mirror, manifest=manifest) for k in archives_for(name)]
    return DatasetReport(name, statuses, INVENTORIES[name](Path(root)))
