"""Test targets as data: the target-kind registry, the production target builder, the split hashes
that must not move, and the reports reading a target's kind from columns, never from its name.

A kind changes pixels only, never masks, labels or ids; every model of a seed is scored on the
very same transformed images; a stronger severity moves the image further."""
from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.record.jobs import completed_job_dirs
from benchmark.record.summary import build_summary, read_summary, write_summary
from benchmark.reports.tables import build_tables
from benchmark.engine.targets import TargetBuilder
from core.errors import BenchmarkError
from protocols.resolve import resolve_splits
from protocols.split import Split, targets_for_kind
from wbcdata import acquisition
from wbcdata.target_kinds import ACQUISITION_KINDS, TARGET_KINDS, get_target_kind, register_target_kind

PROTOCOL = "cross_stain_synthetic"
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "results_tiny"
N_IMAGES = 8
"""Images per kind in the registry-wide tests: enough to see an effect, few enough to stay fast."""


@pytest.fixture(scope="module")
def by_id(by_domain):
    return {s.id: s for ss in by_domain.values() for s in ss}


@pytest.fixture(scope="module")
def split(by_domain):
    (split,) = resolve_splits(PROTOCOL, 0, by_domain)
    return split


def _kind_split(split: Split, kind: str, domains: list[str]) -> Split:
    """``split`` with only ``kind``'s targets, over the first test images."""
    ids = split.targets[0].ids[:N_IMAGES]
    return dataclasses.replace(split, targets=tuple(targets_for_kind(kind, ids, split.source, domains)))


def _moved(builder: TargetBuilder, target, by_id) -> float:
    """Mean absolute pixel change of a target's images against the originals."""
    return float(np.mean([np.abs(s.image.astype(np.int16) - by_id[s.id].image).mean() for s in builder.samples(target)]))


# ---- the hash of existing splits ----------------------------------------------------------

def test_existing_split_hash_is_pinned(by_domain):
    """Computed with the code before targets became data (commit 19f9cd2): committed results and job
    ids carry split hashes, so building cross_stain's targets through the registry must not move them."""
    (s0,) = resolve_splits(PROTOCOL, 0, by_domain)
    assert s0.hash == "bf3173cc4f65082e"
    assert [t.name for t in s0.targets] == ["in_domain", "restain:synth_giemsa", "restain:synth_rapid",
                                            "hed:0.05", "hed:0.1", "hed:0.2", "hed:0.3"]


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("WBC_DATA_MIRROR"), reason="set WBC_DATA_MIRROR to build the real splits")
def test_real_cross_stain_splits_equal_the_committed_manifests():
    """The committed cross_stain results were made on these manifests; the code must still build them."""
    from protocols.resolve import load_by_domain
    from protocols.split import read_manifest

    splits = resolve_splits("cross_stain", 0, load_by_domain("cross_stain", 64))
    for split in splits:
        committed = read_manifest(ROOT / "results" / "cross_stain" / "splits" / "cross_stain" / f"{split.source}_seed0.json")
        assert split == committed and split.hash == committed.hash, split.source
    assert [s.source for s in splits] == ["zheng_d1", "zheng_d2", "bccd"]


def test_kind_and_params_do_not_enter_the_manifest(split):
    target = next(t for t in split.targets if t.kind == "hed")
    assert (target.kind, target.params, target.severity) == ("hed", {"severity": 0.05}, 0.05)
    assert set(split.to_dict()["targets"][0]) == {"name", "domain", "ids", "transform", "severity"}
    assert Split.from_dict(json.loads(json.dumps(split.to_dict()))).hash == split.hash


def test_cross_scanner_trains_as_cross_stain_and_tests_every_acquisition_kind(by_domain, split):
    (scanner,) = resolve_splits("cross_scanner_synthetic", 0, by_domain)
    assert (scanner.train, scanner.val, scanner.targets[0].ids) == (split.train, split.val, split.targets[0].ids)
    assert [(t.kind, t.severity) for t in scanner.targets] == [(None, 0.0)] + [
        (k, s) for k in ACQUISITION_KINDS for s in (1.0, 2.0, 3.0, 4.0, 5.0)]
    assert all(t.ids == split.targets[0].ids for t in scanner.targets)


# ---- every registered kind ------------------------------------------------------------------

@pytest.mark.parametrize("kind", TARGET_KINDS.names())
def test_every_kind_keeps_masks_labels_ids_and_is_deterministic(kind, split, by_id, by_domain):
    """Jobs of one seed may build their targets independently (a builder without the disk cache), so
    a transform must be a function of the split alone, in whatever order targets are built."""
    ks = _kind_split(split, kind, sorted(by_domain))
    assert ks.targets
    a, b = TargetBuilder(ks, by_id, cache=False), TargetBuilder(ks, by_id, cache=False)
    for target in reversed(ks.targets):
        b.samples(target)
    for target in ks.targets:
        built = a.samples(target)
        assert [s.id for s in built] == list(target.ids)
        for s, again in zip(built, b.samples(target)):
            original = by_id[s.id]
            assert s.label == original.label and s.domain == target.domain
            np.testing.assert_array_equal(s.mask, original.mask)
            assert s.image.shape == original.image.shape and s.image.dtype == np.uint8
            np.testing.assert_array_equal(s.image, again.image)
        assert _moved(a, target, by_id) > 0, target.name  # a transform that changes nothing would test nothing


@pytest.mark.parametrize("kind", [k for k in TARGET_KINDS.names() if get_target_kind(k).graded])
def test_a_stronger_severity_moves_the_image_further(kind, split, by_id):
    ks = _kind_split(split, kind, [])
    builder = TargetBuilder(ks, by_id)
    moved = [_moved(builder, t, by_id) for t in ks.targets]
    assert [t.severity for t in ks.targets] == sorted(t.severity for t in ks.targets)
    assert all(x < y for x, y in zip(moved, moved[1:])), dict(zip([t.name for t in ks.targets], moved))


def test_hed_perturbation_depends_on_the_split_seed(by_domain, by_id):
    (s0,), (s1,) = (resolve_splits(PROTOCOL, seed, by_domain) for seed in (0, 1))
    hed0 = next(t for t in s0.targets if t.kind == "hed" and t.severity == 0.3)
    hed1 = next(t for t in s1.targets if t.kind == "hed" and t.severity == 0.3)
    common = sorted(set(hed0.ids) & set(hed1.ids))
    assert common, "the two seeds' test sets share no image; pick other seeds"
    img0 = {s.id: s.image for s in TargetBuilder(s0, by_id).samples(hed0)}
    img1 = {s.id: s.image for s in TargetBuilder(s1, by_id).samples(hed1)}
    assert any(not np.array_equal(img0[i], img1[i]) for i in common)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it (as a plugin's would with its process)."""
    for attr in ("_entries", "_descriptions", "_metadata"):
        if hasattr(TARGET_KINDS, attr):
            monkeypatch.setattr(TARGET_KINDS, attr, dict(getattr(TARGET_KINDS, attr)))


def test_a_plugin_kind_is_built_like_a_built_in_one(scratch_registry, split, by_id):
    @register_target_kind("invert_test", family="acquisition", severity_text="inversion level",
                          description="test kind", grades=((1.0, {"share": 0.5}), (2.0, {"share": 1.0})))
    def _invert(image, params, rng, context):
        return np.where(rng.random(image.shape[:2])[..., None] < params["share"], 255 - image, image).astype(np.uint8)

    ks = _kind_split(split, "invert_test", [])
    assert [(t.name, t.transform, t.severity) for t in ks.targets] == [
        ("invert_test:1", {"kind": "invert_test", "share": 0.5}, 1.0),
        ("invert_test:2", {"kind": "invert_test", "share": 1.0}, 2.0)]
    builder = TargetBuilder(ks, by_id)
    assert _moved(builder, ks.targets[0], by_id) < _moved(builder, ks.targets[1], by_id)


def test_a_kind_that_changes_geometry_is_unknown_or_clashes_is_refused(scratch_registry, split, by_id):
    @register_target_kind("crop_test", family="acquisition", severity_text="-", description="-",
                          grades=((1.0, {}),))
    def _crop(image, params, rng, context):
        return image[1:]

    ks = _kind_split(split, "crop_test", [])
    with pytest.raises(BenchmarkError, match="a kind may change pixel values only"):
        TargetBuilder(ks, by_id).samples(ks.targets[0])
    with pytest.raises(BenchmarkError, match="unknown target kind 'sepia'; valid target kinds: .*defocus"):
        targets_for_kind("sepia", ("a",), "src")
    with pytest.raises(BenchmarkError, match=r"target kind 'hed' is registered twice, by wbcdata\.target_kinds\._hed "
                                             r"and by (tests\.)?test_targets\..*_hed"):
        @register_target_kind("hed", family="stain", severity_text="-", description="-")
        def _hed(image, params, rng, context):
            return image
    with pytest.raises(ValueError, match="strictly increasing"):
        register_target_kind("bad_test", family="acquisition", severity_text="-", description="-",
                             grades=((2.0, {}), (1.0, {})))


def test_acquisition_operations_reject_bad_parameters():
    image = np.zeros((8, 8, 3), np.uint8)
    assert acquisition.disk_kernel(2.5).sum() == pytest.approx(1.0)
    for call, message in [(lambda: acquisition.jpeg(image, 0), "quality"),
                          (lambda: acquisition.resample(image, 1.0), "factor"),
                          (lambda: acquisition.defocus(image, -0.1), "radius_frac"),
                          (lambda: acquisition.gamma_curve(image[..., 0], 1.2), "HxWx3")]:
        with pytest.raises(BenchmarkError, match=message):
            call()


# ---- the reports read kinds from columns ----------------------------------------------------

def _prefix_literals(path: Path) -> list[str]:
    """String constants of a module's code (docstrings aside) that spell a target-name prefix."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and re.match(r"(restain|hed):", node.value)]


def test_no_module_reads_or_spells_a_kind_in_a_target_name():
    """Target names are labels: kind, parameters and severity live in ``transform`` and in the
    summary's columns, and names are made in one place (``protocols.split.targets_for_kind``). The
    one reader of old names, ``benchmark.record.jobs.legacy_transform``, never spells a prefix out."""
    found = [hit for pkg in ("core", "wbcdata", "models", "protocols", "benchmark")
             for p in sorted((ROOT / pkg).rglob("*.py")) for hit in _prefix_literals(p)]
    assert found == []


def test_the_prefix_check_catches_a_planted_parser(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('"""Names like hed:0.1 in a docstring are fine."""\nx = name.startswith("hed:")\ny = f"restain:{d}"\n')
    assert _prefix_literals(planted) == ["planted.py:2", "planted.py:3"]


@pytest.fixture(scope="module")
def fixture_summary() -> pd.DataFrame:
    return build_summary(FIXTURE)


def test_summary_carries_kind_params_and_severity(fixture_summary):
    def described(protocol: str, target: str) -> set[tuple]:
        rows = fixture_summary[(fixture_summary["protocol"] == protocol) & (fixture_summary["target"] == target)]
        return set(rows[["target_kind", "target_params", "severity"]].fillna(-1.0).itertuples(index=False, name=None))

    assert described("cross_stain", "hed:0.3") == {("hed", '{"severity":0.3}', 0.3)}
    assert described("cross_stain", "restain:a") == {("restain", '{"source":"alt","target":"a"}', -1.0),
                                                     ("restain", '{"source":"src","target":"a"}', -1.0)}
    assert described("cross_scanner", "jpeg:2") == {("jpeg", '{"quality":70}', 2.0)}
    assert described("cross_scanner", "in_domain") == {("none", "{}", 0.0)}


def test_old_results_without_target_fields_still_build(fixture_summary, tmp_path):
    """Jobs whose metrics.json lacks ``transform`` and a summary.csv without the target columns give
    the same rows as today's files (cross_stain's two kinds; scanner kinds never lacked them)."""
    for job in completed_job_dirs(FIXTURE):
        if json.loads((job / "config.json").read_text())["protocol"] == "cross_stain":
            shutil.copytree(job, tmp_path / "jobs" / job.name)
            metrics = json.loads((job / "metrics.json").read_text())
            for t in metrics["targets"].values():
                del t["transform"]
            (tmp_path / "jobs" / job.name / "metrics.json").write_text(json.dumps(metrics))
    expected = fixture_summary[fixture_summary["protocol"] == "cross_stain"].reset_index(drop=True)
    pd.testing.assert_frame_equal(build_summary(tmp_path), expected)
    write_summary(expected.drop(columns=["target_kind", "target_params"]), tmp_path / "old.csv")
    pd.testing.assert_frame_equal(read_summary(tmp_path / "old.csv"), expected)


def test_targets_command_lists_every_kind_with_its_severities(capsys):
    from benchmark.cli.main import main

    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in TARGET_KINDS.names():
        assert re.search(rf"^{name} ", out, re.M), name
    assert "1: quality=90; 2: quality=70" in out and "one target per other domain" in out


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in (ROOT / "results").glob("*/summary.csv")))
def test_committed_tables_rebuild_from_their_summary(folder):
    """Committed results are golden files of themselves: their summary.csv gives every committed
    table byte for byte (Markdown and LaTeX), so no table was edited by hand or left stale."""
    out = ROOT / "results" / folder
    tables = build_tables(read_summary(out / "summary.csv"))
    committed = sorted(p.name for p in (out / "tables").iterdir())
    built = sorted(f"{name}.{ext}" for name, pair in tables.items() if isinstance(pair, tuple) for ext in ("md", "tex"))
    assert built == committed
    for name, pair in tables.items():
        if isinstance(pair, tuple):
            md, tex = pair
            assert md == (out / "tables" / f"{name}.md").read_text(), name
            assert tex == (out / "tables" / f"{name}.tex").read_text(), name


def test_the_explanation_panel_keeps_the_strongest_severity_of_each_kind(fixture_summary):
    from benchmark.reports.figures import panel_targets

    of = lambda protocol: fixture_summary[fixture_summary["protocol"] == protocol]  # noqa: E731
    assert panel_targets(of("cross_stain")) == ["in_domain", "restain:a", "hed:0.3"]
    assert panel_targets(of("cross_scanner")) == ["in_domain", "defocus:5", "jpeg:5"]
