"""Stain treatments: registry-driven contract tests, what each one does to colour, and the runner axis."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wbcdata import stain
from benchmark.engine.budgets import get_budget
from core.errors import BenchmarkError
from benchmark.engine.job import run_job
from benchmark.engine.plan import Job, Sweep
from benchmark.engine.treatments import RANDSTAINNA_STD_HYPER, TREATMENTS, fit_treatment, lab_channel_stats, list_treatments, reinhard_lab
from benchmark.record.vocabulary import NO_TREATMENT

PROTOCOL = "cross_stain_synthetic"
SMOKE = get_budget("smoke")



@pytest.fixture(scope="module")
def domains(by_domain):
    names = sorted(by_domain)
    return names[0], names[1], by_domain


def _images(by_domain, domain, n=24):
    return [s.image for s in by_domain[domain][:n]]


def test_registry_lists_the_four_treatments_none_first():
    assert list_treatments() == ["none", "hed", "macenko", "randstainna"]
    with pytest.raises(BenchmarkError, match="unknown treatment 'reinhard'.*valid treatments: .*macenko"):
        fit_treatment("reinhard", [np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(BenchmarkError, match="no training images"):
        fit_treatment("hed", [])


@pytest.mark.parametrize("name", TREATMENTS.names())
def test_every_treatment_keeps_shape_and_dtype_and_is_seeded(name, domains):
    """Registry-driven contract: uint8 HxWx3 in and out; augmentation is a function of the rng only."""
    src, other, by_domain = domains
    fitted = fit_treatment(name, _images(by_domain, src))
    image = by_domain[other][0].image
    assert fitted.name == name
    if fitted.preprocess is not None:
        out = fitted.preprocess(image)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out, fitted.preprocess(image))
    if fitted.augment is not None:
        a = fitted.augment(image, np.random.default_rng(3))
        b = fitted.augment(image, np.random.default_rng(3))
        c = fitted.augment(image, np.random.default_rng(4))
        assert a.shape == image.shape and a.dtype == np.uint8
        assert np.array_equal(a, b) and not np.array_equal(a, c)
    json.dumps(fitted.info, default=lambda o: None)  # the fingerprint record is JSON-ready


def test_none_changes_nothing(domains):
    src, _, by_domain = domains
    fitted = fit_treatment(NO_TREATMENT, _images(by_domain, src))
    assert fitted.preprocess is None and fitted.augment is None


def _od_mean(images: list[np.ndarray]) -> np.ndarray:
    px = np.concatenate([im.reshape(-1, 3) for im in images]).astype(float)
    return -np.log((px + 1) / 256).mean(0)


def test_macenko_moves_another_domain_towards_the_training_stain(domains):
    src, other, by_domain = domains
    train, foreign = _images(by_domain, src), _images(by_domain, other)
    fitted = fit_treatment("macenko", train)
    before = np.abs(_od_mean(foreign) - _od_mean(train)).sum()
    after = np.abs(_od_mean([fitted.preprocess(im) for im in foreign]) - _od_mean(train)).sum()
    assert after < 0.5 * before
    assert fitted.preprocess.stats.attempts == len(foreign)  # one Macenko estimate per image, counted


def test_macenko_template_failure_is_a_clear_error():
    blank = [np.full((32, 32, 3), 250, np.uint8)] * 4
    with pytest.raises(BenchmarkError, match="no Macenko template could be estimated from the 4 training images"):
        fit_treatment("macenko", blank)


def test_hed_jitter_matches_the_stain_module(domains):
    src, _, by_domain = domains
    image = by_domain[src][0].image
    fitted = fit_treatment("hed", _images(by_domain, src))
    expected = stain.hed_perturb(image, fitted.info["severity"], np.random.default_rng(7))
    assert np.array_equal(fitted.augment(image, np.random.default_rng(7)), expected)


def test_reinhard_gives_the_requested_lab_statistics(domains):
    src, _, by_domain = domains
    image = by_domain[src][0].image
    mean, sd = np.array([150.0, 140.0, 120.0]), np.array([20.0, 6.0, 8.0])
    got_mean, got_sd = lab_channel_stats(reinhard_lab(image, mean, sd))
    assert np.allclose(got_mean, mean, atol=2.0) and np.allclose(got_sd, sd, atol=2.0)


def test_randstainna_templates_follow_the_training_statistics(domains):
    src, _, by_domain = domains
    train = _images(by_domain, src)
    fitted = fit_treatment("randstainna", train)
    rng = np.random.default_rng(0)
    drawn = np.array([lab_channel_stats(fitted.augment(train[i % len(train)], rng))[0] for i in range(60)])
    assert np.allclose(drawn.mean(0), fitted.info["mean_of_means"], atol=3.0)
    # spread of the augmented images' means ~ (1 + std_hyper) x the training spread (loose: 60 draws)
    ratio = drawn.std(0) / np.maximum(fitted.info["sd_of_means"], 1e-6)
    assert np.all(ratio < 1.6 * (1 + RANDSTAINNA_STD_HYPER) + 0.3)


# ---- the runner axis ----------------------------------------------------------------------------

def test_treatment_is_in_the_job_id_and_name():
    a = Job(PROTOCOL, "sg_cldff", "synth_a", 0, SMOKE, "abc")
    b = Job(PROTOCOL, "sg_cldff", "synth_a", 0, SMOKE, "abc", treatment="hed")
    assert a.id != b.id
    assert a.dirname.startswith("sg_cldff__synth_a__seed0__")
    assert b.dirname.startswith("sg_cldff+hed__synth_a__seed0__")
    assert b.config()["treatment"] == "hed"


def test_sweep_crosses_models_with_treatments_and_checks_names(tmp_path):
    sweep = Sweep(PROTOCOL, ["sg_cldff", "unet"], [0], SMOKE, tmp_path, treatments=["none", "macenko"])
    jobs = sweep.plan().jobs
    assert sorted((j.model, j.treatment) for j, _ in jobs) == [
        ("sg_cldff", "macenko"), ("sg_cldff", "none"), ("unet", "macenko"), ("unet", "none")]
    with pytest.raises(BenchmarkError, match="unknown treatment 'stainnet'"):
        Sweep(PROTOCOL, ["sg_cldff"], [0], SMOKE, tmp_path, treatments=["stainnet"]).plan()
    with pytest.raises(BenchmarkError, match="model 'sg_cldff' does not take option\\(s\\) pretrained"):
        Sweep(PROTOCOL, ["sg_cldff"], [0], SMOKE, tmp_path, model_kwargs={"pretrained": True}).plan()


def test_sources_filter_and_unknown_source(tmp_path):
    sweep = Sweep("cross_dataset_synthetic", ["unet"], [0], SMOKE, tmp_path, sources=["synth_rapid"])
    assert {j.source for j, _ in sweep.plan().jobs} == {"synth_rapid"}
    with pytest.raises(BenchmarkError, match="has no source synth_x \\(did you mean 'synth_\\w+'\\?\\); its sources: "):
        Sweep("cross_dataset_synthetic", ["unet"], [0], SMOKE, tmp_path, sources=["synth_x"]).plan()


def test_models_without_a_head_for_the_source_task_are_not_planned(tmp_path):
    sweep = Sweep(PROTOCOL, ["unet", "efficientswin"], [0], SMOKE, tmp_path)
    assert sweep.can_learn("unet", "segmentation") and not sweep.can_learn("unet", "classification")
    assert sweep.can_learn("efficientswin", "classification") and not sweep.can_learn("efficientswin", "segmentation")
    assert sweep.can_learn("unet", "multitask") and sweep.can_learn("efficientswin", "multitask")


@pytest.mark.parametrize("name", TREATMENTS.names())
def test_every_treatment_runs_as_a_job_and_is_recorded(name, tmp_path, by_domain):
    """Registry-driven: each treatment through the real runner (smoke budget, one U-Net job)."""
    by_id = {s.id: s for ss in by_domain.values() for s in ss}
    (job, split), = Sweep(PROTOCOL, ["unet"], [0], SMOKE, tmp_path, treatments=[name]).plan().jobs
    job_dir = run_job(job, split, by_id, tmp_path, device=torch.device("cpu"), progress=False)
    assert job_dir.name.startswith("unet__" if name == NO_TREATMENT else f"unet+{name}__")
    assert json.loads((job_dir / "config.json").read_text())["treatment"] == name
    record = json.loads((job_dir / "fingerprint.json").read_text())["treatment"]
    assert record["name"] == name
    if name == "macenko":
        n_images = len(split.train) + len(split.val) + sum(len(t.ids) for t in split.targets)
        assert record["per_image"]["estimates"] == n_images
        assert record["template"]["fallback"] is False
    if name == "randstainna":
        assert record["colour_space"] == "LAB"
