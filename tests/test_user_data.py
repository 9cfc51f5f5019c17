"""Your own data in every protocol: the dataset.json descriptor, the class map, several user folders at
once, the content-keyed cache, protocol variants (--sources / --targets), the CLI and the provenance."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.cli.main import main
from core.errors import BenchmarkError
from core.sample import CLASSES
from protocols.resolve import manifest_path, resolve_splits, select
from wbcdata.datasets import dataset_spec, list_datasets, load_dataset
from wbcdata.folder import FolderFormat, load_folder
from wbcdata.synthetic import render_smear
from wbcdata.user import ENV_VAR, folder_checksum, label_report, read_descriptor, register_user_datasets, user_dataset_spec

BUILTIN_SPLIT_HASHES = {
    "cross_stain_synthetic": {"synth_romanowsky": "bf3173cc4f65082e"},
    "cross_dataset_synthetic": {"synth_romanowsky": "a8d029ccc6b3a1c9", "synth_rapid": "e6d656eb12df71b2",
                                "synth_giemsa": "71fb09a4bc89f51e"},
    "within_dataset_synthetic": {"synth_romanowsky": "9941737b2e6bb67a"},
}
"""Seed-0 split hashes computed before user datasets existed: committed results resume on them."""

LABELS = ("band", "lymphocyte", "Monocyte", "smudge", "Eosinophil", "segmented neutrophil")


def make_folder(path: Path, n: int = 12, *, masks: str | None = "grey", labels: bool = True,
                descriptor: dict | None = None, stain: str = "synth_giemsa") -> Path:
    """A tiny user folder of procedural smears: masks as codes 0/1/2, grey 0/127/254 or whole-cell 0/255."""
    (path / "images").mkdir(parents=True)
    rows = ["id,class"]
    for i in range(n):
        image, mask = render_smear(500 + i, 48, i % len(CLASSES), stain)
        Image.fromarray(image).save(path / "images" / f"c{i:02d}.png")
        if masks:
            (path / "masks").mkdir(exist_ok=True)
            grey = {"codes": mask, "grey": mask * 127, "whole": (mask > 0) * 255}[masks].astype(np.uint8)
            Image.fromarray(grey).save(path / "masks" / f"c{i:02d}.png")
        rows.append(f"c{i:02d},{LABELS[i % len(LABELS)]}")
    if labels:
        (path / "labels.csv").write_text("\n".join(rows) + "\n")
    if descriptor is not None:
        (path / "dataset.json").write_text(json.dumps(descriptor))
    return path


LAB_DESCRIPTOR = {
    "name": "lab", "mask_encoding": {"background": 0, "cytoplasm": 127, "nucleus": 254},
    "class_map": {"Band": "neutrophil", "segmented-neutrophil": "Neutrophil", "smudge": None},
    "licence": "CC-BY-4.0", "citation": "Doe J. Our smears (2026)", "url": "https://example.org/lab",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test gets its own data root (caches) and an empty $WBC_DATASETS, restored afterwards even
    where the CLI's --dataset extended it (setenv, unlike delenv of an absent variable, records the undo)."""
    monkeypatch.setenv("WBC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(ENV_VAR, "")


# ---------------------------------------------------------------- descriptor


def test_descriptor_fields_and_defaults(tmp_path):
    folder = make_folder(tmp_path / "lab", descriptor=LAB_DESCRIPTOR)
    desc = read_descriptor(folder)
    assert (desc.name, desc.domain, desc.licence, desc.url) == ("lab", "lab", "CC-BY-4.0", "https://example.org/lab")
    assert desc.fmt.class_map == {"band": "neutrophil", "segmented neutrophil": "neutrophil", "smudge": None}
    assert read_descriptor(folder, "renamed").name == "renamed"  # NAME=PATH wins over the file's name
    bare = make_folder(tmp_path / "bare", masks=None, labels=False)
    assert read_descriptor(bare, "bare").fmt == FolderFormat()
    with pytest.raises(BenchmarkError, match=r"has no name: write it as --dataset NAME="):
        read_descriptor(bare)


@pytest.mark.parametrize("patch, message", [
    ({"colour": "blue"}, r"unknown field 'colour'"),
    ({"mask_encoding": {"background": 0, "cell": 255}}, r"field 'mask_encoding' must be an object with the keys"),
    ({"mask_encoding": {"background": 0, "wbc": 300}}, r"field 'mask_encoding': 'wbc' must be a grey level 0-255"),
    ({"mask_encoding": {"background": 0, "cytoplasm": 9, "nucleus": 9}}, r"two parts share one grey level"),
    ({"class_map": {"blast": "myeloblast"}}, r"field 'class_map': 'blast' maps to \"myeloblast\""),
    ({"class_map": {"Band": "neutrophil", "band": None}}, r"field 'class_map': labels 'band' and another"),
    ({"class_map": ["band"]}, r"field 'class_map' must be an object"),
    ({"licence": 4}, r"field 'licence' must be a string"),
    ({"domain": "a+b"}, r"field 'domain' 'a\+b' must be letters"),
])
def test_descriptor_errors_name_the_file_and_field(tmp_path, patch, message):
    folder = make_folder(tmp_path / "lab", n=2, descriptor={**LAB_DESCRIPTOR, **patch})
    with pytest.raises(BenchmarkError, match=rf"dataset\.json: .*{message}"):
        read_descriptor(folder)


def test_descriptor_that_is_not_json(tmp_path):
    folder = make_folder(tmp_path / "lab", n=2)
    (folder / "dataset.json").write_text("{name: lab")
    with pytest.raises(BenchmarkError, match=r"dataset\.json: not valid JSON"):
        read_descriptor(folder, "lab")


# ---------------------------------------------------------------- loading


def test_class_map_maps_drops_and_reports(tmp_path, caplog):
    desc = read_descriptor(make_folder(tmp_path / "lab", descriptor=LAB_DESCRIPTOR))
    with caplog.at_level(logging.WARNING, logger="wbcdata.folder"):
        samples = load_folder(desc.path, 32, desc.domain, dataset="lab", fmt=desc.fmt)
    assert "dropped by the class map: 2 'smudge'" in caplog.text
    assert len(samples) == 10 and {s.dataset for s in samples} == {"lab"}
    by_id = {s.id: s for s in samples}
    assert by_id["lab/c00"].label == CLASSES.index("neutrophil")  # "band"
    assert by_id["lab/c05"].label == CLASSES.index("neutrophil")  # "segmented neutrophil"
    assert set(np.unique(by_id["lab/c00"].mask)) == {0, 1, 2}  # grey 0/127/254 read by the descriptor
    report = label_report(desc)
    assert report["dropped"] == {"smudge": 2} and report["classes"]["neutrophil"] == 4
    assert report["mapped"] == {"band": "neutrophil", "segmented neutrophil": "neutrophil"}


def test_whole_cell_masks_have_no_nucleus(tmp_path):
    folder = make_folder(tmp_path / "w", n=3, masks="whole", labels=False,
                         descriptor={"mask_encoding": {"background": 0, "wbc": 255}})
    desc = read_descriptor(folder, "w")
    samples = load_folder(folder, 32, "w", fmt=desc.fmt)
    assert all(set(np.unique(s.mask)) == {0, 1} for s in samples)


def test_unknown_label_points_at_the_class_map(tmp_path):
    folder = make_folder(tmp_path / "lab", n=4)
    with pytest.raises(BenchmarkError, match=r"labels\.csv: line 2: unknown class 'band'.*dataset\.json class_map"):
        load_folder(folder, 32, "lab")


def test_two_user_datasets_at_once_and_name_clashes(tmp_path, monkeypatch):
    a = make_folder(tmp_path / "a", n=6, descriptor={**LAB_DESCRIPTOR, "name": "two_a"})
    b = make_folder(tmp_path / "b", n=4, masks=None, labels=False)
    monkeypatch.setenv(ENV_VAR, f"{a},two_b={b}")
    assert {"two_a", "two_b"} <= set(list_datasets())
    assert dataset_spec("two_a").licence == "CC-BY-4.0" and dataset_spec("two_b").domains == ("two_b",)
    assert len(load_dataset("two_a", size=32)) == 5 and len(load_dataset("two_b", size=32)) == 4
    for entry, message in [(f"zheng_d1={b}", r"'zheng_d1' .* is already a dataset of the harness"),
                           (f"two_a={b}", r"'two_a' names two folders"),
                           (f"two_c={tmp_path / 'nowhere'}", r"folder .*nowhere does not exist")]:
        monkeypatch.setenv(ENV_VAR, entry)
        with pytest.raises(BenchmarkError, match=message):
            register_user_datasets()
    monkeypatch.setenv(ENV_VAR, f"two_d={make_folder(tmp_path / 'd', n=2, descriptor={'domain': 'synth_rapid'})}")
    with pytest.raises(BenchmarkError, match=r"domain 'synth_rapid' is already a domain of dataset 'synthetic'"):
        register_user_datasets()


def test_cache_is_keyed_by_the_folder_content(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "lab", n=6, descriptor={**LAB_DESCRIPTOR, "name": "cached_lab"})
    monkeypatch.setenv(ENV_VAR, str(folder))
    version = dataset_spec("cached_lab").cache_version
    first = load_dataset("cached_lab", size=32)
    cache = tmp_path / "data" / "cache" / f"cached_lab-32px-{version}.npz"
    assert cache.exists() and [s.id for s in load_dataset("cached_lab", size=32)] == [s.id for s in first]
    seen = {folder_checksum(folder)}
    (folder / "labels.csv").write_text((folder / "labels.csv").read_text().replace("c01,lymphocyte", "c01,monocyte"))
    seen.add(folder_checksum(folder))
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(folder / "images" / "c00.png")
    seen.add(folder_checksum(folder))
    (folder / "dataset.json").write_text(json.dumps({**LAB_DESCRIPTOR, "citation": "v2"}))
    seen.add(folder_checksum(folder))
    assert len(seen) == 4
    assert user_dataset_spec(read_descriptor(folder)).cache_version != version


def test_bad_files_fail_as_for_builtins(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "bad", n=3, masks="codes", labels=False)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "masks" / "c01.png")
    monkeypatch.setenv(ENV_VAR, f"bad_masks={folder}")
    with pytest.raises(BenchmarkError, match=r"c01\.png: mask is 10x10 px but image .*c01\.png is 48x48 px"):
        load_dataset("bad_masks", size=32)
    (folder / "masks" / "c01.png").unlink()
    (folder / "images" / "c02.png").write_bytes(b"\x89PNG broken")
    monkeypatch.setenv(ENV_VAR, f"bad_image={folder}")
    with pytest.raises(BenchmarkError, match=r"c02\.png: unreadable image"):
        load_dataset("bad_image", size=32)


# ---------------------------------------------------------------- protocols


@pytest.mark.parametrize("protocol", sorted(BUILTIN_SPLIT_HASHES))
def test_builtin_split_hashes_are_unchanged(protocol, by_domain):
    hashes = {s.source: s.hash for s in resolve_splits(protocol, 0, by_domain)}
    assert {k: hashes[k] for k in BUILTIN_SPLIT_HASHES[protocol]} == BUILTIN_SPLIT_HASHES[protocol]


def test_sources_and_targets_make_a_variant_beside_the_protocol(tmp_path, monkeypatch, by_domain):
    monkeypatch.setenv(ENV_VAR, f"var_lab={make_folder(tmp_path / 'lab', n=4, masks=None, labels=False)}")
    assert select("cross_stain_synthetic", ["synth_romanowsky"], []) == (None, ("synth_romanowsky",))
    ext, wanted = select("cross_stain_synthetic", None, ["var_lab"])
    assert ext.name == "cross_stain_synthetic+var_lab" and ext.sources == () and wanted is None
    pool = {**by_domain, "var_lab": load_dataset("var_lab", size=64)}
    (own,) = resolve_splits("cross_stain_synthetic", 0, by_domain, tmp_path / "splits")
    (variant,) = resolve_splits("cross_stain_synthetic", 0, pool, tmp_path / "splits", ext)  # a target-only folder is not split
    assert (variant.train, variant.val) == (own.train, own.val) and variant.hash != own.hash
    assert [t.name for t in variant.targets if t.name.endswith("var_lab")] == ["restain:var_lab", "var_lab"]
    assert manifest_path(tmp_path / "splits", variant) != manifest_path(tmp_path / "splits", own)
    assert own.hash == BUILTIN_SPLIT_HASHES["cross_stain_synthetic"]["synth_romanowsky"]
    with pytest.raises(BenchmarkError, match=r"has no target mylab2; its targets: .* --dataset NAME=PATH"):
        select("cross_dataset_synthetic", None, ["mylab2"])


# ---------------------------------------------------------------- CLI end to end, provenance


def test_cli_runs_a_user_folder_as_target_and_as_source_and_reports_provenance(tmp_path, capsys):
    target = make_folder(tmp_path / "target", n=8, labels=False, descriptor={"name": "cli_lab", "licence": "CC0"})
    source = make_folder(tmp_path / "source", n=15, masks=None, descriptor={**LAB_DESCRIPTOR, "name": "cli_src"},
                         stain="synth_rapid")
    out = tmp_path / "out"
    common = ["--protocol", "cross_dataset_synthetic", "--budget", "smoke", "--seeds", "1", "--models", "constant_mask",
              "--jobs", "1", "--out", str(out)]
    assert main(["run", *common, "--sources", "synth_rapid", "--targets", "cli_lab", "--dataset", str(target)]) == 0
    assert main(["run", *common, "--sources", "cli_src", "--dataset", f"cli_src={source}"]) == 0
    assert main(["protocols", "show", "within_dataset_synthetic", "--sources", "cli_src", "--dataset", str(source)]) == 0
    assert "split within_dataset_synthetic+cli_src/cli_src/seed0" in capsys.readouterr().out
    assert main(["report", "--out", str(out)]) == 0
    df = pd.read_csv(out / "summary.csv")
    as_target = df[(df["protocol"] == "cross_dataset_synthetic+cli_lab") & (df["target"] == "cli_lab")]
    assert set(as_target["model"]) == {"constant_mask", "majority_class"}
    assert as_target["iou"].notna().sum() == 1 and as_target["macro_f1"].isna().all()  # masks, no labels: n/a, not 0
    as_source = df[df["protocol"] == "cross_dataset_synthetic+cli_src"]
    assert set(as_source["model"]) == {"majority_class"} and set(as_source["source"]) == {"cli_src"}
    assert as_source[as_source["target"] == "in_domain"]["iou"].isna().all()  # no masks: IoU n/a
    records = {r["name"]: r for r in json.loads((out / "datasets.json").read_text())}
    assert set(records) == {"synthetic", "cli_lab", "cli_src"}
    assert records["cli_lab"]["licence"] == "CC0" and records["cli_lab"]["path"] == str(target.resolve())
    assert records["cli_src"]["labels"]["dropped"] == {"smudge": 2} and records["cli_src"]["citation"].startswith("Doe")
    assert records["cli_src"]["version"].endswith(folder_checksum(source.resolve()))
    md = (out / "datasets.md").read_text()
    assert "| cli_src |" in md and "cli_src: dropped by its class map: 2 'smudge'" in md


def test_cli_rejects_a_user_name_that_clashes(tmp_path, capsys):
    folder = make_folder(tmp_path / "x", n=2)
    assert main(["protocols", "show", "cross_dataset_synthetic", "--dataset", f"synthetic={folder}"]) == 2
    assert "dataset name 'synthetic'" in capsys.readouterr().err


def test_the_example_descriptor_is_valid(tmp_path):
    folder = make_folder(tmp_path / "example", n=2)
    (folder / "dataset.json").write_bytes((Path(__file__).parents[1] / "examples" / "user_dataset" / "dataset.json").read_bytes())
    desc = read_descriptor(folder)
    assert (desc.name, desc.domain) == ("mylab", "mylab_wright") and desc.fmt.class_map["smudge cell"] is None


def test_data_command_reports_a_user_folder(tmp_path, capsys):
    folder = make_folder(tmp_path / "lab", n=6, descriptor={**LAB_DESCRIPTOR, "name": "data_lab"})
    assert main(["data", "--root", str(tmp_path / "data"), "--dataset", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "== data_lab (user folder" in out and "dropped: 1 'smudge'" in out and "samples (WBC crops) 5" in out
