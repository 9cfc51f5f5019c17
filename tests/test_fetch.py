"""Fetching: verification, atomic extraction, idempotency and clear errors, on tiny zips built here."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wbcdata import fetch
from benchmark.cli import data as data_command
from benchmark.cli.data import main_data
from wbcdata.fetch import ArchiveSource, build_manifest, ensure_archive, ensure_dataset
from core.errors import BenchmarkError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOP = f"segmentation_WBC-{COMMIT}/"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _bmp(h: int = 12, w: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(buf, format="BMP")
    return buf.getvalue()


def _jpeg(h: int = 64, w: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _good_members() -> dict[str, bytes]:
    mask = np.zeros((12, 12), np.uint8)
    mask[3:9, 3:9] = 128
    mask[5:7, 5:7] = 255
    return {
        "Dataset 1/001.bmp": _bmp(),
        "Dataset 1/001.png": _png(mask),
        "Class Labels of Dataset 1.csv": b"image ID,class label\n1,2\n",
        "README.rst": b"not used by the loaders\n",
    }


def _make_mirror(tmp_path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> tuple[Path, dict]:
    """A mirror folder with one GitHub-style zip and the manifest built from it."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "toy.zip", "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(TOP + name, data)
    source = ArchiveSource(
        "zheng", "toy.zip", "http://127.0.0.1:9/toy.zip", COMMIT, "",
        r"Dataset 1/\d+\.(bmp|png)|Class Labels of Dataset 1\.csv", (r"(Dataset 1/\d+)\.bmp", r"\1.png"),
    )
    manifest = build_manifest(mirror, tmp_path / "manifest.json", (source,))
    return mirror, manifest


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_extracts_verified_members_without_github_top_folder(tmp_path):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    root = tmp_path / "data"
    status = ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    assert (root / "zheng" / "Dataset 1" / "001.bmp").read_bytes() == _good_members()["Dataset 1/001.bmp"]
    assert not (root / "zheng" / "README.rst").exists()  # not listed in the manifest
    assert (status.verified, status.unlisted, status.images_decoded, status.missing) == (3, 1, 2, [])
    assert status.archive_sha256_matches
    assert _leftovers(root) == ["zheng"]  # no partial folder left beside it


def test_second_call_does_nothing(tmp_path):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    root = tmp_path / "data"
    ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    before = (root / "zheng" / "Dataset 1" / "001.bmp").stat().st_mtime_ns
    (mirror / "toy.zip").unlink()  # a second extraction would now fail
    status = ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    assert status.already_extracted and status.verified == 3
    assert (root / "zheng" / "Dataset 1" / "001.bmp").stat().st_mtime_ns == before


def test_truncated_archive_is_reported_and_leaves_nothing(tmp_path):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    data = (mirror / "toy.zip").read_bytes()
    (mirror / "toy.zip").write_bytes(data[: len(data) // 2])
    root = tmp_path / "data"
    with pytest.raises(BenchmarkError, match=r"toy\.zip: truncated or not a zip"):
        ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    assert _leftovers(root) == []


def test_corrupt_member_bytes_fail_the_crc(tmp_path):
    mirror, manifest = _make_mirror(tmp_path, _good_members(), zipfile.ZIP_STORED)
    data = bytearray((mirror / "toy.zip").read_bytes())
    payload = _good_members()["Dataset 1/001.bmp"]
    at = bytes(data).index(payload) + len(payload) // 2
    data[at] ^= 0xFF
    (mirror / "toy.zip").write_bytes(bytes(data))
    root = tmp_path / "data"
    with pytest.raises(BenchmarkError, match=r"001\.bmp is corrupt"):
        ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    assert _leftovers(root) == []


def test_checksum_mismatch_names_file_expected_and_got(tmp_path):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    manifest["archives"]["zheng"]["members"]["Dataset 1/001.png"] = "0" * 64
    root = tmp_path / "data"
    with pytest.raises(BenchmarkError, match=r"checksum mismatch for Dataset 1/001\.png: expected sha256 0{64}, got [0-9a-f]{64}"):
        ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    assert _leftovers(root) == []  # the members extracted before the bad one are gone too


def test_unreadable_image_is_named(tmp_path):
    members = _good_members()
    members["Dataset 1/002.bmp"] = b"BM this is not a bitmap"
    mirror, manifest = _make_mirror(tmp_path, members)
    root = tmp_path / "data"
    with pytest.raises(BenchmarkError, match=r"Dataset 1/002\.bmp is not a readable image"):
        ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    assert _leftovers(root) == []


def test_truncated_jpeg_is_caught_by_the_decode_check(tmp_path):
    members = _good_members()
    jpeg = _jpeg()
    members["Dataset 1/003.bmp"] = jpeg[: len(jpeg) // 2]  # name does not matter to PIL
    mirror, manifest = _make_mirror(tmp_path, members)
    with pytest.raises(BenchmarkError, match=r"003\.bmp is not a readable image"):
        ensure_archive("zheng", tmp_path / "data", mirror=mirror, manifest=manifest)


def test_mask_of_other_size_is_an_error(tmp_path):
    members = _good_members()
    members["Dataset 1/001.png"] = _png(np.zeros((10, 12), np.uint8))
    mirror, manifest = _make_mirror(tmp_path, members)
    with pytest.raises(BenchmarkError, match=r"mask Dataset 1/001\.png is 12x10 px but image Dataset 1/001\.bmp is 12x12"):
        ensure_archive("zheng", tmp_path / "data", mirror=mirror, manifest=manifest)


def test_listed_member_absent_from_archive_is_reported_not_fatal(tmp_path):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    manifest["archives"]["zheng"]["members"]["Dataset 1/002.bmp"] = "f" * 64
    status = ensure_archive("zheng", tmp_path / "data", mirror=mirror, manifest=manifest)
    assert status.missing == ["Dataset 1/002.bmp"]
    assert json.loads((tmp_path / "data" / "zheng" / ".done").read_text())["missing"] == ["Dataset 1/002.bmp"]


def test_archive_missing_from_mirror(tmp_path):
    _, manifest = _make_mirror(tmp_path, _good_members())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkError, match=r"archive toy\.zip is not in the mirror folder .*empty"):
        ensure_archive("zheng", tmp_path / "data", mirror=empty, manifest=manifest)


def test_failed_download_says_to_set_the_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv("WBC_DATA_MIRROR", raising=False)
    _, manifest = _make_mirror(tmp_path, _good_members())
    root = tmp_path / "data"
    with pytest.raises(BenchmarkError, match=r"could not download http://127\.0\.0\.1:9/toy\.zip .*WBC_DATA_MIRROR"):
        ensure_archive("zheng", root, manifest=manifest)
    assert _leftovers(root) == []


def test_mirror_taken_from_environment(tmp_path, monkeypatch):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    monkeypatch.setenv("WBC_DATA_MIRROR", str(mirror))
    status = ensure_archive("zheng", tmp_path / "data", manifest=manifest)
    assert status.origin == f"mirror {mirror}"


def test_unfinished_folder_without_marker_is_replaced(tmp_path):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    stale = tmp_path / "data" / "zheng"
    stale.mkdir(parents=True)
    (stale / "half.bmp").write_bytes(b"x")
    ensure_archive("zheng", tmp_path / "data", mirror=mirror, manifest=manifest)
    assert not (stale / "half.bmp").exists() and (stale / ".done").exists()


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(BenchmarkError, match=r"unknown fetched dataset 'lisc'; valid: zheng_d1, zheng_d2, bccd, pbc"):
        ensure_dataset("lisc", tmp_path)


def test_member_key_strips_github_folder_and_anchor():
    entry = {"commit": "d8ee339", "anchor": "wbc_nucleus_seg_localz/Datasets/"}
    github = "An-Automatic-Nucleus-Segmentation-d8ee339/wbc_nucleus_seg_localz/Datasets/Input/BCCD/x.jpg"
    assert fetch._member_key(github, entry) == "Input/BCCD/x.jpg"
    assert fetch._member_key("wbc_nucleus_seg_localz/Datasets/Input/BCCD/x.jpg", entry) == "Input/BCCD/x.jpg"
    assert fetch._member_key("LICENSE", entry) is None


def test_shipped_manifest_covers_every_dataset_archive():
    manifest = fetch.load_manifest()
    needed = {k for keys in fetch.DATASET_ARCHIVES.values() for k in keys}
    assert needed == set(manifest["archives"])
    counts = {k: len(e["members"]) for k, e in manifest["archives"].items()}
    assert counts == {"zheng": 802, "bccd_masks": 735, "bccd_voc": 364, "pbc": 2000}
    for entry in manifest["archives"].values():
        assert entry["url"].startswith("https://github.com/") and entry["commit"] in entry["url"]
        assert all(len(sha) == 64 for sha in entry["members"].values())


def test_cli_returns_nonzero_with_the_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WBC_DATA_MIRROR", str(tmp_path / "nowhere"))
    assert main_data(["--root", str(tmp_path / "data"), "--datasets", "zheng_d1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: archive segmentation_WBC-") and "nowhere" in err


def test_changed_manifest_invalidates_an_extraction(tmp_path):
    members = _good_members()
    mirror, manifest = _make_mirror(tmp_path, members)
    root = tmp_path / "data"
    ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    del manifest["archives"]["zheng"]["members"]["Dataset 1/001.png"]
    status = ensure_archive("zheng", root, mirror=mirror, manifest=manifest)
    assert not status.already_extracted and status.verified == 2
    assert not (root / "zheng" / "Dataset 1" / "001.png").exists()


def test_fetch_dataset_reports_counts_and_classes(tmp_path, capsys):
    mirror, manifest = _make_mirror(tmp_path, _good_members())
    reports = [fetch.fetch_dataset("zheng_d1", tmp_path / "data", mirror=mirror, manifest=manifest)]
    assert (reports[0].inventory.images, reports[0].inventory.masks) == (1, 1)
    data_command.print_report(reports)
    out = capsys.readouterr().out
    assert "== zheng_d1" in out and "3 verified by sha256" in out
    assert "classes: neutrophil 0, lymphocyte 1, monocyte 0, eosinophil 0, basophil 0" in out


def test_cli_reports_every_fetched_dataset_when_one_cannot_be_cropped(tmp_path, capsys, monkeypatch):
    """A failing cropper (or fetch) for one dataset names it and exits 1; the others are still reported."""
    members = _good_members()
    members.update({"Dataset 2/002.bmp": _bmp(), "Dataset 2/002.png": members["Dataset 1/001.png"],
                    "Class Labels of Dataset 2.csv": b"image ID,class label\n2,1\n"})
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "toy.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(TOP + name, data)
    source = ArchiveSource(
        "zheng", "toy.zip", "http://127.0.0.1:9/toy.zip", COMMIT, "",
        r"Dataset [12]/\d+\.(bmp|png)|Class Labels of Dataset [12]\.csv", (r"(Dataset [12]/\d+)\.bmp", r"\1.png"),
    )
    manifest = build_manifest(mirror, tmp_path / "manifest.json", (source,))
    monkeypatch.setattr(data_command, "load_manifest", lambda *a, **k: manifest)
    ok = data_command.SpanSummary(1, 0.5, 0.4, 0.6, 1, 0, 0)

    def cropper(name, root, size=data_command.FRAMING_SIZE):
        if name == "zheng_d2":
            raise ValueError("broken crop cache")
        return ok

    monkeypatch.setattr(data_command, "framing_span", cropper)
    args = ["--root", str(tmp_path / "data"), "--mirror", str(mirror)]
    # bccd's archives are not in the toy manifest: it fails to fetch; zheng_d2 fails to crop.
    assert main_data(args + ["--datasets", "zheng_d1,bccd,zheng_d2"]) == 1
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "== zheng_d1" in out and f"cell size / crop side (sqrt of WBC pixels, 64 px crops): {ok.line()}" in out
    assert "== zheng_d2" in out and "classes: neutrophil 1," in out and "data root" in out
    assert "cell size / crop side NOT computed (64 px crops of zheng_d2 failed): ValueError: broken crop cache" in out
    assert "== bccd" not in out
    assert "(dataset bccd not fetched)" in err
    assert "error: dataset zheng_d2: cell size / crop side not computed: ValueError: broken crop cache" in err
    assert "2 of 3 datasets failed: bccd (not fetched), zheng_d2 (crops failed)" in err
    # A framing failure alone is still an error: the dataset cannot be used by the benchmark.
    assert main_data(args + ["--datasets", "zheng_d2"]) == 1
    assert main_data(args + ["--datasets", "zheng_d1"]) == 0
