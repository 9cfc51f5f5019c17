"""The three user-folder layouts (docs/data.md): images/ with labels.csv 'id,class', a labels.csv
'image,label' naming its images, and class sub-folders. Each must give the same samples as the same
images in the images/ layout, with the same checks, class map, checksum and label report."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli.main import main
from core.errors import BenchmarkError
from core.sample import CLASSES
from wbcdata.folder import FolderFormat, folder_index, load_folder
from wbcdata.synthetic import render_smear
from wbcdata.user import ENV_VAR, folder_checksum, label_report, read_descriptor

LABELS = ("Neutrophil", "lymphocyte", "Monocyte", "Eosinophil", "basophil", "Monocyte")
"""One label per cell, any case; two cells share the Monocyte class folder."""

LAYOUTS = ("class_folders", "flat", "flat_paths", "images_image_label")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("WBC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(ENV_VAR, "")


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_layout(path: Path, layout: str, labels: tuple[str, ...] = LABELS, *, masks: bool = True) -> Path:
    """The same procedural smears (a mask on every other one) in one layout: 'images' (today's,
    labels.csv 'id,class'), 'images_image_label' (images/ and 'filename,class'), 'flat' (images beside
    labels.csv 'image,label'), 'flat_paths' (images in batch1/, named by path) or 'class_folders'."""
    rows = []
    for i, label in enumerate(labels):
        image, mask = render_smear(500 + i, 48, i % len(CLASSES), "synth_giemsa")
        stem = f"c{i:02d}"
        rel = {"images": f"images/{stem}", "images_image_label": f"images/{stem}", "flat": stem,
               "flat_paths": f"batch1/{stem}", "class_folders": f"{label}/{stem}"}[layout]
        _save(path / f"{rel}.png", image)
        if masks and i % 2 == 0:
            _save(path / "masks" / f"{rel.removeprefix('images/')}.png", mask.astype(np.uint8))
        rows.append(f"{stem if layout == 'images' else rel.removeprefix('images/') + '.png'},{label}")
    header = {"images": "id,class", "images_image_label": "filename,class", "flat": "image,label",
              "flat_paths": "file,label"}.get(layout)
    if header:
        (path / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return path


def by_stem(samples) -> dict:
    return {s.id.rsplit("/", 1)[-1]: s for s in samples}


# ---------------------------------------------------------------- same samples in every layout


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_loads_the_same_samples_as_the_images_layout(tmp_path, layout):
    reference = by_stem(load_folder(write_layout(tmp_path / "ref", "images"), 32, "lab"))
    folder = write_layout(tmp_path / layout, layout)
    assert folder_index(folder).layout == layout.removesuffix("_paths").removesuffix("_image_label")
    samples = by_stem(load_folder(folder, 32, "lab"))
    assert samples.keys() == reference.keys() and len(samples) == len(LABELS)
    for stem, want in reference.items():
        got = samples[stem]
        assert (got.label, got.meta, got.domain) == (want.label, want.meta, want.domain)
        assert np.array_equal(got.image, want.image)
        assert (got.mask is None) == (want.mask is None) and (got.mask is None or np.array_equal(got.mask, want.mask))
    assert {s.meta["box"] for s in samples.values()} == {"mask", "detected"}
    ids = {s.id for s in samples.values()}
    expected = {"class_folders": {f"lab/{LABELS[0]}/c00", f"lab/{LABELS[5]}/c05"}, "flat": {"lab/c00"},
                "flat_paths": {"lab/batch1/c00"}, "images_image_label": {"lab/c00"}}[layout]
    assert expected <= ids
    assert samples["c00"].source == {"class_folders": f"{LABELS[0]}/c00.png", "flat": "c00.png",
                                     "flat_paths": "batch1/c00.png", "images_image_label": "images/c00.png"}[layout]


def test_class_map_applies_to_class_folder_names(tmp_path, caplog):
    labels = ("band", "Lymphocyte", "smudge", "segmented-neutrophil", "smudge")
    folder = write_layout(tmp_path / "lab", "class_folders", labels)
    (folder / "dataset.json").write_text(json.dumps(
        {"class_map": {"Band": "neutrophil", "segmented neutrophil": "neutrophil", "smudge": None}}))
    desc = read_descriptor(folder, "lab")
    with caplog.at_level(logging.WARNING, logger="wbcdata.folder"):
        samples = {s.id: s for s in load_folder(folder, 32, "lab", fmt=desc.fmt)}
    assert "dropped by the class map: 2 'smudge'" in caplog.text
    assert set(samples) == {"lab/band/c00", "lab/Lymphocyte/c01", "lab/segmented-neutrophil/c03"}
    assert samples["lab/band/c00"].label == samples["lab/segmented-neutrophil/c03"].label == CLASSES.index("neutrophil")
    assert samples["lab/Lymphocyte/c01"].label == CLASSES.index("lymphocyte")
    report = label_report(desc)
    assert report["layout"] == "class_folders" and report["labels_csv"] is False
    assert report["classes"] == {"neutrophil": 2, "lymphocyte": 1} and report["dropped"] == {"smudge": 2}
    assert report["mapped"] == {"band": "neutrophil", "segmented neutrophil": "neutrophil"}


def test_label_report_counts_per_class_in_class_folders(tmp_path):
    folder = write_layout(tmp_path / "lab", "class_folders", masks=False)
    report = label_report(read_descriptor(folder, "lab"))
    assert report["classes"] == {"neutrophil": 1, "lymphocyte": 1, "monocyte": 2, "eosinophil": 1, "basophil": 1}
    assert report["dropped"] == {} and report["mapped"] == {}


def test_same_file_name_in_two_class_folders_gets_two_ids_and_their_own_masks(tmp_path):
    folder = tmp_path / "lab"
    for k, name in enumerate(("neutrophil", "Lymphocyte")):
        image, mask = render_smear(600 + k, 48, k, "synth_giemsa")
        _save(folder / name / "a.png", image)
        _save(folder / "masks" / name / "a.png", (mask > 0).astype(np.uint8) * (k + 1))
    samples = {s.id: s for s in load_folder(folder, 32, "lab")}
    assert set(samples) == {"lab/neutrophil/a", "lab/Lymphocyte/a"}
    assert samples["lab/neutrophil/a"].label == CLASSES.index("neutrophil")
    assert set(np.unique(samples["lab/neutrophil/a"].mask)) == {0, 1}
    assert set(np.unique(samples["lab/Lymphocyte/a"].mask)) == {0, 2}


def test_hidden_folders_hidden_files_and_masks_are_not_classes(tmp_path):
    folder = write_layout(tmp_path / "lab", "class_folders", LABELS[:2])
    _save(folder / ".thumbnails" / "x.png", np.zeros((8, 8, 3), np.uint8))
    (folder / LABELS[0] / "._c00.png").write_bytes(b"macOS resource fork, not an image")
    index = folder_index(folder)
    assert [i.id for i in index.images] == [f"{LABELS[0]}/c00", f"{LABELS[1]}/c01"]
    assert index.images[0].mask == folder / "masks" / LABELS[0] / "c00.png" and index.images[1].mask is None


@pytest.mark.parametrize("header, rows", [
    ("Image,Label", ["c00.png,neutrophil", "c01.png,monocyte"]),
    ("filename,class", ["c00.png,neutrophil", "c01.png,monocyte"]),
    ("file,label,notes", ["./c00.png,neutrophil,x", "c01.png,monocyte"]),
    ("id,label", ["c00,neutrophil", "c01,monocyte"]),
    ("id,file,class", ["c00,other.png,neutrophil", "c01,,monocyte"]),  # 'id,class' files read as always
])
def test_csv_header_variants(tmp_path, header, rows):
    folder = write_layout(tmp_path / "lab", "flat", LABELS[:2], masks=False)
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    labels = {s.id: s.label for s in load_folder(folder, 32, "lab")}
    assert labels == {"lab/c00": CLASSES.index("neutrophil"), "lab/c01": CLASSES.index("monocyte")}


def test_a_row_naming_no_image_is_a_warning(tmp_path, caplog):
    folder = write_layout(tmp_path / "lab", "flat", LABELS[:3], masks=False)
    (folder / "labels.csv").write_text((folder / "labels.csv").read_text() + "missing.png,monocyte\n")
    with caplog.at_level(logging.WARNING, logger="wbcdata.folder"):
        assert len(load_folder(folder, 32, "lab")) == 3
    assert "1 rows of" in caplog.text and "labels.csv name no image (e.g. missing.png)" in caplog.text


# ---------------------------------------------------------------- errors name the file or folder


def test_unknown_class_folder_names_the_folder_and_the_class_map(tmp_path):
    folder = write_layout(tmp_path / "lab", "class_folders", ("neutrophil", "blast"), masks=False)
    with pytest.raises(BenchmarkError, match=r"lab/blast/ \(class sub-folder\): unknown class 'blast'.*dataset\.json class_map"):
        load_folder(folder, 32, "lab")
    fmt = FolderFormat(class_map={"blast": None})
    assert [s.id for s in load_folder(folder, 32, "lab", fmt=fmt)] == ["lab/neutrophil/c00"]


@pytest.mark.parametrize("header", ["image,diagnosis", "name,label", ""])
def test_csv_header_without_an_image_or_label_column(tmp_path, header):
    folder = write_layout(tmp_path / "lab", "flat", LABELS[:2], masks=False)
    (folder / "labels.csv").write_text(f"{header}\nc00.png,neutrophil\n")
    with pytest.raises(BenchmarkError, match=r"lab/labels\.csv: expected a header naming the image .*'image,label'"):
        load_folder(folder, 32, "lab")


@pytest.mark.parametrize("path", ["../outside.png", "batch1/../../outside.png", "/etc/outside.png", "C:\\outside.png"])
def test_a_path_that_leaves_the_folder_is_an_error(tmp_path, path):
    _save(tmp_path / "outside.png", np.zeros((8, 8, 3), np.uint8))
    folder = write_layout(tmp_path / "lab", "flat", LABELS[:2], masks=False)
    (folder / "labels.csv").write_text(f"image,label\nc00.png,neutrophil\n{path},monocyte\n")
    with pytest.raises(BenchmarkError, match=r"lab/labels\.csv: line 3: image path .* leaves the folder"):
        load_folder(folder, 32, "lab")


def test_an_empty_folder_lists_the_layouts(tmp_path):
    (tmp_path / "lab" / "notes").mkdir(parents=True)
    with pytest.raises(BenchmarkError, match=r"folder dataset .*lab: no images/ folder, .*class sub-folders .*docs/data\.md"):
        load_folder(tmp_path / "lab", 32, "lab")
    with pytest.raises(BenchmarkError, match=r"lab: no images/ folder"):
        folder_checksum(tmp_path / "lab")


def test_class_folders_with_a_labels_csv_say_why_nothing_was_found(tmp_path):
    folder = write_layout(tmp_path / "lab", "class_folders", LABELS[:2], masks=False)
    (folder / "labels.csv").write_text("id,class\nc00,neutrophil\n")
    with pytest.raises(BenchmarkError, match=r"labels\.csv names, no .* files \(a folder of class sub-folders must not"):
        load_folder(folder, 32, "lab")


# ---------------------------------------------------------------- cache key, CLI


def test_checksum_covers_every_file_of_a_class_folder_layout(tmp_path):
    folder = write_layout(tmp_path / "lab", "class_folders", LABELS[:3])
    seen = {folder_checksum(folder)}
    assert folder_checksum(folder) in seen  # stable
    _save(folder / LABELS[1] / "c01.png", np.zeros((48, 48, 3), np.uint8))
    seen.add(folder_checksum(folder))
    _save(folder / "masks" / LABELS[0] / "c00.png", np.zeros((48, 48), np.uint8))
    seen.add(folder_checksum(folder))
    (folder / LABELS[2] / "c02.png").rename(folder / LABELS[0] / "c02.png")  # relabelled by moving it
    seen.add(folder_checksum(folder))
    assert len(seen) == 4


def test_checksum_covers_images_a_labels_csv_names_by_path(tmp_path):
    folder = write_layout(tmp_path / "lab", "flat_paths", LABELS[:2], masks=False)
    before = folder_checksum(folder)
    _save(folder / "batch1" / "c01.png", np.zeros((48, 48, 3), np.uint8))
    assert folder_checksum(folder) != before


def test_data_command_reports_a_class_folder_layout(tmp_path, capsys):
    folder = write_layout(tmp_path / "lab", "class_folders")
    assert main(["data", "--root", str(tmp_path / "data"), "--dataset", f"mylab={folder}"]) == 0
    out = capsys.readouterr().out
    assert "== mylab (user folder" in out and f"samples (WBC crops) {len(LABELS)}, with a mask 3" in out
    assert "neutrophil 1, lymphocyte 1, monocyte 2, eosinophil 1, basophil 1; label None 0" in out
