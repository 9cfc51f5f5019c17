"""The disk cache of a split's transformed test images, stain profiles and fingerprint: what it
gives equals what the in-memory builder gives, bit for bit; a second builder, job or process reads
it instead of rebuilding; a corrupt file is rebuilt and a lock left by a dead process taken over."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.engine import targets as targets_module
from benchmark.engine.budgets import get_budget
from benchmark.engine.fingerprint import split_fingerprint
from benchmark.engine.lockfile import STALE_LOCK_S
from benchmark.engine.job import run_job
from benchmark.engine.plan import Sweep
from benchmark.engine.targets import TargetBuilder
from protocols.resolve import resolve_splits
from protocols.split import Split
from wbcdata import stain

PROTOCOL = "cross_stain_synthetic"
N_IMAGES = 6
"""Test images per target of the small split: the tests build it many times."""


@pytest.fixture(scope="module")
def by_id(by_domain):
    return {s.id: s for ss in by_domain.values() for s in ss}


@pytest.fixture(scope="module")
def full_split(by_domain) -> Split:
    (split,) = resolve_splits(PROTOCOL, 0, by_domain)
    return split


@pytest.fixture(scope="module")
def split(full_split) -> Split:
    """Every target of the protocol (untouched, re-stained, HED), over a few test images."""
    return dataclasses.replace(full_split, targets=tuple(dataclasses.replace(t, ids=t.ids[:N_IMAGES])
                                                         for t in full_split.targets))


@pytest.fixture
def calls(monkeypatch) -> dict[str, int]:
    """Counts of the per-split work: profile estimates, images transformed, fingerprints."""
    counts = {"profile": 0, "transform": 0, "fingerprint": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(stain, "estimate_profile", counting("profile", stain.estimate_profile))
    monkeypatch.setattr(targets_module, "split_fingerprint", counting("fingerprint", split_fingerprint))
    build = TargetBuilder._build
    monkeypatch.setattr(TargetBuilder, "_build", lambda self, t: (
        counts.__setitem__("transform", counts["transform"] + (t.kind is not None)), build(self, t))[1])
    return counts


def _all(builder: TargetBuilder, split: Split) -> dict:
    return {t.name: builder.samples(t) for t in split.targets}


def _json(obj: object) -> object:
    return json.loads(json.dumps(obj))


def test_cached_samples_profiles_and_fingerprint_equal_the_in_memory_ones(split, by_id, tmp_path):
    memory = TargetBuilder(split, by_id, cache=False)
    expected = _all(memory, split)
    for builder in (TargetBuilder(split, by_id, cache=tmp_path), TargetBuilder(split, by_id, cache=tmp_path)):
        got = _all(builder, split)  # the first builds and writes the file, the second reads it
        for target in split.targets:
            assert [s.id for s in got[target.name]] == list(target.ids)
            for s, e in zip(got[target.name], expected[target.name]):
                assert (s.id, s.domain, s.label, s.dataset, s.source) == (e.id, e.domain, e.label, e.dataset, e.source)
                assert s.image.dtype == np.uint8 and s.image.shape == e.image.shape
                np.testing.assert_array_equal(s.image, e.image)
                assert s.mask is by_id[s.id].mask  # masks are the loaded ones, never copies
        assert builder.profiles_used() == memory.profiles_used() and builder.profiles_used()
        assert _json(builder.fingerprint()) == _json(split_fingerprint(split, by_id))
    assert [p.name for p in tmp_path.iterdir()] == [builder.cache_path(builder.cache_key()).name]  # no lock, no temporary


def test_a_second_builder_reads_the_cache_instead_of_rebuilding(split, by_id, tmp_path, calls):
    TargetBuilder(split, by_id, cache=tmp_path).fingerprint()
    assert calls["profile"] > 0 and calls["transform"] == sum(t.kind is not None for t in split.targets)
    calls.update(profile=0, transform=0, fingerprint=0)
    second = TargetBuilder(split, by_id, cache=tmp_path)
    _all(second, split)
    second.fingerprint()
    assert calls == {"profile": 0, "transform": 0, "fingerprint": 0}


def test_a_second_job_on_the_split_reads_the_cache(by_domain, tmp_path, monkeypatch, calls):
    """Two floor jobs (no training) through ``run_job``, each with its own builder, as two worker
    processes would run them: the second builds nothing and writes the same fingerprint.json."""
    monkeypatch.setenv("WBC_DATA_DIR", str(tmp_path / "data"))
    by_id = {s.id: s for ss in by_domain.values() for s in ss}
    dirs, counts = [], []
    for run in ("a", "b"):
        (job, split), = Sweep(PROTOCOL, ["constant_mask"], [0], get_budget("smoke"), tmp_path / run).plan().jobs
        dirs.append(run_job(job, split, by_id, tmp_path / run, device=torch.device("cpu"), progress=False))
        counts.append(dict(calls))
        calls.update(profile=0, transform=0, fingerprint=0)
    assert counts[0]["profile"] > 0 and counts[0]["transform"] > 0 and counts[0]["fingerprint"] == 1
    assert counts[1] == {"profile": 0, "transform": 0, "fingerprint": 0}
    assert (dirs[0] / "fingerprint.json").read_text() == (dirs[1] / "fingerprint.json").read_text()
    metrics = [json.loads((d / "metrics.json").read_text())["targets"] for d in dirs]
    assert metrics[0] == metrics[1]
    (cached,) = (tmp_path / "data" / "target_cache").iterdir()
    assert cached.name.startswith(f"{PROTOCOL}__{split.source}__seed0__")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "another key"])
def test_a_corrupt_cache_file_is_rebuilt_with_a_warning(split, by_id, tmp_path, capsys, damage):
    first = TargetBuilder(split, by_id, cache=tmp_path)
    expected = _all(first, split)
    path = first.cache_path(first.cache_key())
    if damage == "garbage":
        path.write_bytes(b"not an npz")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["meta"] = np.array(json.dumps({**json.loads(str(arrays["meta"])), "key": "0" * 64}))
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    again = _all(TargetBuilder(split, by_id, cache=tmp_path), split)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"target cache {path} is unreadable" in err and "rebuilding it" in err
    for name, samples in expected.items():
        for s, e in zip(again[name], samples):
            np.testing.assert_array_equal(s.image, e.image)
    _all(TargetBuilder(split, by_id, cache=tmp_path), split)
    assert capsys.readouterr().err == ""  # the rebuilt file reads


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _no_waiting(monkeypatch) -> None:
    def fail(seconds):
        raise AssertionError("the builder waited on a lock it should have taken over")
    monkeypatch.setattr(targets_module.time, "sleep", fail)


@pytest.mark.parametrize("holder", ["dead pid on this host", "a day old, on another host"])
def test_a_stale_lock_is_taken_over(split, by_id, tmp_path, monkeypatch, calls, holder):
    builder = TargetBuilder(split, by_id, cache=tmp_path)
    path = builder.cache_path(builder.cache_key())
    lock = path.with_name(path.name + ".lock")
    if holder.startswith("dead"):
        lock.write_text(f"{socket.gethostname()} {_dead_pid()}")
    else:
        lock.write_text("some-other-host 1")
        os.utime(lock, (time.time() - STALE_LOCK_S - 60,) * 2)
    _no_waiting(monkeypatch)
    _all(builder, split)
    assert calls["transform"] > 0 and path.exists() and not lock.exists()


def test_a_live_lock_is_waited_on_until_its_file_appears(split, by_id, tmp_path, monkeypatch, calls):
    """Another process holds the lock and writes the file: this one waits, then reads it, building nothing."""
    TargetBuilder(split, by_id, cache=tmp_path / "elsewhere").fingerprint()
    (built,) = (tmp_path / "elsewhere").iterdir()
    calls.update(profile=0, transform=0, fingerprint=0)
    builder = TargetBuilder(split, by_id, cache=tmp_path / "shared")
    path = builder.cache_path(builder.cache_key())
    path.parent.mkdir()
    lock = path.with_name(path.name + ".lock")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{socket.gethostname()} {holder.pid}")
        threading.Timer(0.5, os.replace, (built, path)).start()
        t0 = time.perf_counter()
        _all(builder, split)
        assert time.perf_counter() - t0 >= 0.4
    finally:
        holder.kill()
        holder.wait()
    assert calls == {"profile": 0, "transform": 0, "fingerprint": 0}
    assert lock.read_text() == f"{socket.gethostname()} {holder.pid}"  # not this process's to remove


def _build_in_process(args: tuple[Split, Path]) -> int:
    """Realize the split's targets in a fresh process; the number of images it transformed itself."""
    from protocols.resolve import load_by_domain

    split, cache = args
    by_id = {s.id: s for ss in load_by_domain(PROTOCOL, 64).values() for s in ss}
    builder, built = TargetBuilder(split, by_id, cache=cache), []
    build = builder._build
    builder._build = lambda t: (built.append(t.kind is not None), build(t))[1]  # type: ignore[method-assign]
    builder.fingerprint()
    return sum(built)


def test_processes_starting_together_build_the_split_once(split, tmp_path):
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        counts = pool.map(_build_in_process, [(split, tmp_path)] * 3)
    assert sorted(counts) == [0, 0, sum(t.kind is not None for t in split.targets)]


def test_the_key_names_the_split_the_data_versions_and_the_image_size(split, full_split, by_id, by_domain, tmp_path):
    key = TargetBuilder(split, by_id).cache_key()
    (seed1,) = resolve_splits(PROTOCOL, 1, by_domain)
    small = {i: dataclasses.replace(s, image=s.image[:32, :32], mask=None) for i, s in by_id.items()}
    others = [TargetBuilder(full_split, by_id).cache_key(), TargetBuilder(seed1, by_id).cache_key(),
              TargetBuilder(split, by_id, {"synthetic": "another crop version"}).cache_key(),
              TargetBuilder(split, small).cache_key()]
    assert len({key, *others}) == 5
    (job, planned), = Sweep(PROTOCOL, ["constant_mask"], [0], get_budget("smoke"), tmp_path).plan().jobs
    assert TargetBuilder(planned, by_id, job.data_versions).cache_key() == TargetBuilder(planned, by_id).cache_key(), \
        "a builder made without the job's data_versions (launch_local's) must share the job's cache file"


def test_the_default_folder_is_the_data_dir_and_false_means_none(split, by_id, tmp_path, monkeypatch):
    monkeypatch.setenv("WBC_DATA_DIR", str(tmp_path))
    assert TargetBuilder(split, by_id).cache_dir == tmp_path / "target_cache"
    assert TargetBuilder(split, by_id, cache=False).cache_dir is None
