"""Protocols return data: disjoint, deterministic, seed-dependent, hashed, written once and reused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import BenchmarkError
from protocols import get_protocol, list_protocols
from protocols.near_duplicates import near_duplicates
from protocols.registry import ALL_DOMAINS, FIRST_DOMAIN, PROTOCOLS, ProtocolSpec
from protocols.resolve import resolve_splits, select
from protocols.split import read_manifest
from protocols.stratify import stratified_split

SYNTHETIC = ["within_dataset_synthetic", "cross_dataset_synthetic", "cross_stain_synthetic"]
ROOT = Path(__file__).resolve().parents[1]

def test_registry_lists_real_and_synthetic_protocols():
    names = list_protocols()
    for n in ["within_dataset", "cross_dataset", "cross_stain", *SYNTHETIC]:
        assert n in names
    with pytest.raises(BenchmarkError, match="valid protocols: .*cross_stain"):
        get_protocol("cross_stian")


@pytest.mark.parametrize("name", SYNTHETIC)
def test_splits_are_disjoint_and_deterministic(name, by_domain):
    a = resolve_splits(name, 0, by_domain)
    b = resolve_splits(name, 0, by_domain)
    c = resolve_splits(name, 1, by_domain)
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    assert [s.hash for s in a] == [s.hash for s in b]
    assert [s.hash for s in a] != [s.hash for s in c]
    assert any(set(x.train) != set(y.train) for x, y in zip(a, c))
    for s in a:
        train, val = set(s.train), set(s.val)
        assert not train & val
        for t in s.targets:
            assert not (train | val) & set(t.ids), t.name


def test_cross_stain_targets_are_transforms_of_the_held_out_test(by_domain):
    (split,) = resolve_splits("cross_stain_synthetic", 0, by_domain)
    in_domain = split.targets[0]
    assert in_domain.name == "in_domain" and in_domain.transform is None and in_domain.severity == 0.0
    restains = [t for t in split.targets if t.transform and t.transform["kind"] == "restain"]
    heds = [t for t in split.targets if t.transform and t.transform["kind"] == "hed"]
    assert {t.domain for t in restains} == set(by_domain) - {split.source}
    assert len(heds) >= 3 and sorted(t.severity for t in heds) == [t.severity for t in heds]
    assert all(t.ids == in_domain.ids for t in restains + heds)


def test_stratified_split_keeps_class_shares_and_rare_classes_in_train():
    ids = [f"x{i:03d}" for i in range(101)]
    strata = ["a"] * 60 + ["b"] * 40 + ["rare"]
    train, val, test = stratified_split(ids, strata, (0.2, 0.2), seed=3)
    assert sorted(train + val + test) == ids
    assert "x100" in train
    assert sum(i in test for i in ids[:60]) == 12 and sum(i in test for i in ids[60:100]) == 8


def test_manifest_is_written_once_and_checked_against_the_build(tmp_path, by_domain):
    (split,) = resolve_splits("cross_stain_synthetic", 0, by_domain, tmp_path)
    path = tmp_path / "cross_stain_synthetic" / f"{split.source}_seed0.json"
    assert read_manifest(path).hash == split.hash
    written = path.stat().st_mtime_ns
    (again,) = resolve_splits("cross_stain_synthetic", 0, by_domain, tmp_path)
    assert again == split and path.stat().st_mtime_ns == written  # reused, not rewritten
    # a manifest that no longer matches the build is an error naming both hashes, never reused
    d = json.loads(path.read_text())
    d["train"].append(d["val"].pop())
    path.write_text(json.dumps(d))
    with pytest.raises(BenchmarkError, match=f"hash {read_manifest(path).hash}.*differs.*hash {split.hash}"):
        resolve_splits("cross_stain_synthetic", 0, by_domain, tmp_path)


def test_two_protocols_in_one_folder_keep_their_own_manifests(tmp_path, by_domain):
    (a,) = resolve_splits("cross_stain_synthetic", 0, by_domain, tmp_path)
    b = next(s for s in resolve_splits("within_dataset_synthetic", 0, by_domain, tmp_path) if s.source == a.source)
    assert a.hash != b.hash
    for split in (a, b):
        assert read_manifest(tmp_path / split.protocol / f"{split.source}_seed0.json") == split


def test_corrupt_manifest_is_a_clear_error(tmp_path, by_domain):
    (split,) = resolve_splits("cross_stain_synthetic", 0, by_domain, tmp_path)
    path = tmp_path / "cross_stain_synthetic" / f"{split.source}_seed0.json"
    path.write_text("{not json")
    with pytest.raises(BenchmarkError, match="corrupt"):
        resolve_splits("cross_stain_synthetic", 0, by_domain, tmp_path)


def test_near_duplicate_check_finds_a_copied_image(by_domain):
    samples = next(iter(by_domain.values()))
    train = samples[:20]
    dups = near_duplicates(train, [train[3]])
    assert (train[3].id, train[3].id, 0) in dups
    assert all(d <= 4 for *_, d in dups)
    assert near_duplicates(train, []) == []


def _register(monkeypatch, spec: ProtocolSpec) -> None:
    """Register ``spec`` for this test only (the registry is global to the process)."""
    PROTOCOLS.names()  # the built-ins first
    monkeypatch.setitem(PROTOCOLS._entries, spec.name, spec)
    monkeypatch.setitem(PROTOCOLS._descriptions, spec.name, spec.description)
    monkeypatch.setitem(PROTOCOLS._metadata, spec.name, None)


def test_a_plugin_row_goes_through_the_one_builder(monkeypatch, by_domain):
    """A plugin's protocol is a row like the built-ins: same design, same sources, same splits but its name."""
    builtin = get_protocol("cross_stain_synthetic")
    _register(monkeypatch, ProtocolSpec("mylab_stain", builtin.datasets, "a plugin's row", "cross_stain", FIRST_DOMAIN))
    mine = resolve_splits("mylab_stain", 0, by_domain)
    ref = resolve_splits("cross_stain_synthetic", 0, by_domain)
    assert [s.protocol for s in mine] == ["mylab_stain"]
    assert [(s.train, s.val, s.targets) for s in mine] == [(s.train, s.val, s.targets) for s in ref]


def test_a_plugin_builder_with_sources_takes_an_extension(monkeypatch, by_domain):
    calls = []

    def build(seed, by_domain, extension=None):
        calls.append(extension)
        return []

    _register(monkeypatch, ProtocolSpec("mylab_custom", ("synthetic",), "own design", sources=("synth_rapid",),
                                        build=build))
    assert resolve_splits("mylab_custom", 0, by_domain) == [] and calls == [None]
    ext, _ = select("mylab_custom", None, ["synth_giemsa"])
    resolve_splits("mylab_custom", 0, by_domain, extension=ext)
    assert calls[-1].name == "mylab_custom+synth_giemsa"


@pytest.mark.parametrize(("fields", "message"), [
    ({"design": "cross_stain", "build": lambda seed, by_domain: []}, "not both"),
    ({"design": "cross_stian", "sources": ALL_DOMAINS}, "unknown design 'cross_stian'"),
    ({"design": "within"}, "needs its sources"),
])
def test_a_malformed_row_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ProtocolSpec("bad", ("synthetic",), "bad", **fields)


def test_the_table_looks_up_no_dataset():
    """The rows name their sources lazily: importing them computes no domain, so the dataset registry's
    built-ins (the procedural smears among them) are not even loaded."""
    code = "import sys, protocols.definitions\nprint('wbcdata.synthetic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
