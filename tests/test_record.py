"""The typed job record: what the engine writes reads back the same, an older record without the
newer fields still reads, a newer schema or a broken field is refused with the file named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.record.jobs import RECORD_SCHEMA, JobConfig, TargetResult, read_job
from core.errors import BenchmarkError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results_tiny"


def _a_job(tmp_path: Path) -> Path:
    src = sorted(p for p in (FIXTURE / "jobs").iterdir() if (p / "done").exists())[0]
    return Path(shutil.copytree(src, tmp_path / src.name))


def _edit_config(job: Path, **changes) -> None:
    cfg = json.loads((job / "config.json").read_text())
    cfg.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del cfg[key]
    (job / "config.json").write_text(json.dumps(cfg))


def test_a_config_round_trips(tmp_path) -> None:
    cfg = JobConfig.read(_a_job(tmp_path))
    assert JobConfig.from_json(json.loads(json.dumps(cfg.to_json())), "here") == cfg
    assert cfg.to_json()["record_schema"] == RECORD_SCHEMA


def test_a_record_written_before_the_schema_was_versioned_reads_as_schema_1(tmp_path) -> None:
    job = _a_job(tmp_path)
    _edit_config(job, record_schema=None, treatment=None)
    cfg = JobConfig.read(job)
    assert cfg.record_schema == 1 and cfg.treatment == "none" and cfg.display == cfg.model


@pytest.mark.parametrize(("changes", "message"), [
    ({"record_schema": RECORD_SCHEMA + 1}, "newer than this code reads"),
    ({"model": None}, "missing field 'model'"),
    ({"budget": "cpu"}, "'budget' must be an object with a 'name'"),
    ({"data_versions": ["v1"]}, "'data_versions' must be an object"),
])
def test_a_broken_config_is_refused_naming_the_file(tmp_path, changes, message) -> None:
    job = _a_job(tmp_path)
    _edit_config(job, **changes)
    with pytest.raises(BenchmarkError, match=message) as e:
        read_job(job)
    assert str(job / "config.json") in str(e.value)


def test_a_target_reads_back_as_written() -> None:
    t = TargetResult("zheng_d2", 12, {"iou": 0.5, "macro_f1": None}, 0.1, {"kind": "hed", "severity": 0.1})
    assert TargetResult.from_json(t.to_json(), "here", "hed:0.1", "zheng_d1") == t


def test_a_target_recorded_without_a_transform_gets_the_legacy_one() -> None:
    old = {"domain": "zheng_d2", "n": 3, "metrics": {}}
    assert TargetResult.from_json(old, "here", "restain:zheng_d2", "zheng_d1").transform == \
        {"kind": "restain", "source": "zheng_d1", "target": "zheng_d2"}


def test_a_job_lists_its_targets_and_those_added_later(tmp_path) -> None:
    job = _a_job(tmp_path)
    record = read_job(job)
    assert record.targets and not record.evaluated
    name = next(iter(record.targets))
    (job / "evaluations").mkdir()
    added = {"target": "extra", "result": record.targets[name].to_json(), "data_versions": {}}
    (job / "evaluations" / "extra.json").write_text(json.dumps(added))
    again = read_job(job)
    assert again.evaluated == {"extra"} and again.targets["extra"] == record.targets[name]
