"""scripts/carry_sweep.py: a packed and unpacked sweep reads back as the same summary (less the jobs
left for the rerun), counts as done for the runner, drops the weights, and an archive cannot write
outside its run folder."""
from __future__ import annotations

import gzip
import importlib.util
import io
import lzma
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from benchmark.record.jobs import JobConfig, completed_job_dirs
from benchmark.record.summary import build_summary

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("carry_sweep", ROOT / "scripts" / "carry_sweep.py")
carry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(carry)
TINY_JOBS = ROOT / "tests" / "fixtures" / "results_tiny" / "jobs"


@pytest.fixture()
def run(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(TINY_JOBS, run / "jobs")
    (run / "splits").mkdir()
    (run / "splits" / "a.json").write_text('{"train": ["x"]}\n')
    for job in completed_job_dirs(run):
        (job / "weights.safetensors").write_bytes(b"w" * 1000)
        (job / "explain_examples.npz").write_bytes(b"e" * 1000)
    assert list((run / "jobs").glob(".*.tmp-*"))  # the fixture's unfinished temporary: never packed
    return run


def test_round_trip_gives_the_same_summary_and_done_jobs(run, tmp_path) -> None:
    archive = tmp_path / "carry" / "sweep.tar.xz"
    assert carry.main(["pack", str(run), str(archive)]) == 0
    back = tmp_path / "back"
    assert carry.main(["unpack", str(archive), str(back)]) == 0
    left_out = carry.explained_jobs(completed_job_dirs(run))
    assert sorted(j.name for j in left_out) == ["sg_cldff__alt__seed0__227ba8cdd115",
                                                "sg_cldff__bccd__seed0__0689f2096c6b",
                                                *(f"sg_cldff__src__seed0__{h}" for h in  # three protocols
                                                  ("1f23356233b2", "21c84bd48494", "5e98f7160de1"))]
    kept = [p for p in completed_job_dirs(run) if p not in left_out]
    assert [p.name for p in completed_job_dirs(back)] == [p.name for p in kept]
    pd.testing.assert_frame_equal(build_summary(back), _without(build_summary(run), left_out))
    for job in kept:
        twin = back / "jobs" / job.name
        assert not (twin / "weights.safetensors").exists() and not (twin / "explain_examples.npz").exists()
        assert (twin / "metrics.json").read_bytes() == (job / "metrics.json").read_bytes()
        with gzip.open(job / "predictions.jsonl.gz") as a, gzip.open(twin / "predictions.jsonl.gz") as b:
            assert a.read() == b.read()
    assert (back / "splits" / "a.json").read_text() == '{"train": ["x"]}\n'
    assert not list((back / "jobs").glob(".*"))
    # unpacking again adds nothing and keeps what is there
    assert carry.main(["unpack", str(archive), str(back)]) == 0
    assert len(completed_job_dirs(back)) == len(kept)


def _without(df: pd.DataFrame, jobs: set[Path]) -> pd.DataFrame:
    ids = {JobConfig.read(j).job_id for j in jobs}
    return df[~df["job_id"].isin(ids)].reset_index(drop=True)


def test_a_second_archive_holds_only_the_jobs_done_since(run, tmp_path) -> None:
    jobs = completed_job_dirs(run)
    later = tmp_path / "later"
    later.mkdir()
    for job in jobs[len(jobs) // 2:]:  # not finished yet when the first archive is packed
        shutil.move(job, later / job.name)
    first, second = tmp_path / "one.tar.xz", tmp_path / "two.tar.xz"
    carry.main(["pack", str(run), str(first)])
    for job in later.iterdir():
        shutil.move(job, run / "jobs" / job.name)
    carry.main(["pack", str(run), str(second), "--skip", str(first)])
    left_out = {j.name for j in carry.explained_jobs(jobs)}
    assert carry.carried_jobs(first) | carry.carried_jobs(second) == {j.name for j in jobs} - left_out
    assert not carry.carried_jobs(first) & carry.carried_jobs(second)
    back = tmp_path / "back"
    for archive in (first, second):
        carry.main(["unpack", str(archive), str(back)])
    pd.testing.assert_frame_equal(build_summary(back), _without(build_summary(run), carry.explained_jobs(jobs)))
    with pytest.raises(SystemExit, match="no completed job folders to pack beyond"):
        carry.main(["pack", str(run), str(tmp_path / "three.tar.xz"), "--skip", str(first), "--skip", str(second)])


def test_differing_splits_are_refused(run, tmp_path) -> None:
    archive = tmp_path / "sweep.tar.xz"
    carry.main(["pack", str(run), str(archive)])
    other = tmp_path / "other"
    (other / "splits").mkdir(parents=True)
    (other / "splits" / "a.json").write_text('{"train": ["y"]}\n')
    with pytest.raises(SystemExit, match="differs from the archive"):
        carry.main(["unpack", str(archive), str(other)])
    assert not (other / "jobs").exists()


@pytest.mark.parametrize("name", ["../escaped.txt", "jobs/a/../../../escaped.txt", "/tmp/abs.txt", "jobs/onlyfile", "code/payload.py"])
def test_members_outside_the_three_folders_are_refused(tmp_path, name) -> None:
    archive = tmp_path / "evil.tar.xz"
    with lzma.open(archive, "wb") as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(SystemExit, match="refused member"):
        carry.main(["unpack", str(archive), str(tmp_path / "run")])
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "run").exists()


def test_a_corrupt_archive_is_a_clear_error(tmp_path) -> None:
    archive = tmp_path / "broken.tar.xz"
    archive.write_bytes(b"not xz")
    with pytest.raises(SystemExit, match="not a readable sweep archive"):
        carry.main(["unpack", str(archive), str(tmp_path / "run")])
