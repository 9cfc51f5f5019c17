"""Stain profiles (Macenko via torchstain), re-staining, HED perturbation, failure fallback."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from wbcdata import stain
from core.sample import Sample
from wbcdata.synthetic import STAINS, SYNTHETIC_DOMAINS, domain_plan, make_geometry, render, render_smear
from core.errors import BenchmarkError

SIZE = 64
N_PER_DOMAIN = 30


@pytest.fixture(scope="module")
def domain_samples() -> dict[str, list[Sample]]:
    out = {}
    for domain in SYNTHETIC_DOMAINS:
        out[domain] = []
        for i, (seed, label) in enumerate(domain_plan(domain)[:N_PER_DOMAIN]):
            image, mask = render_smear(seed, SIZE, label, domain)
            sample_id = f"synthetic/{domain}/{i:04d}"
            out[domain].append(Sample(sample_id, image, mask, label, "synthetic", domain, "procedural"))
    return out


@pytest.fixture(scope="module")
def profiles(domain_samples: dict[str, list[Sample]]) -> dict[str, stain.StainProfile]:
    return {d: stain.estimate_profile([s.image for s in ss], d, stain.StainStats()) for d, ss in domain_samples.items()}


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def test_macenko_recovers_the_generator_stains(profiles: dict[str, stain.StainProfile]) -> None:
    for domain, profile in profiles.items():
        truth = STAINS[domain]
        assert not profile.fallback, profile.reason
        assert angle_deg(profile.stain_matrix[:, 0], truth.stain_matrix[:, 0]) < 10
        assert angle_deg(profile.stain_matrix[:, 1], truth.stain_matrix[:, 1]) < 10
        # background estimated, not assumed white: the rapid stain's yellow glass is found
        assert np.abs(profile.background - np.asarray(truth.background)).max() < 10
    assert profiles["synth_rapid"].background[2] < 170


def test_mixed_background_domain_keeps_the_majority_background() -> None:
    """Like Zheng D1 (200 images on yellow glass, 100 on white): I0 is the majority's and the
    vectors are still found, because each image's OD is taken against its own background."""
    rapid = STAINS["synth_rapid"]
    white = replace(rapid, background=(255.0, 255.0, 255.0))
    plan = domain_plan("synth_rapid")[:30]
    stains = [white if i % 3 == 0 else rapid for i in range(len(plan))]
    images = [render(make_geometry(seed, SIZE, label), st) for (seed, label), st in zip(plan, stains)]
    profile = stain.estimate_profile(images, "mixed", stain.StainStats())
    assert not profile.fallback, profile.reason
    assert np.abs(profile.background - np.asarray(rapid.background)).max() < 10
    for k in range(2):
        assert angle_deg(profile.stain_matrix[:, k], rapid.stain_matrix[:, k]) < 10


def test_restain_keeps_geometry(
    domain_samples: dict[str, list[Sample]], profiles: dict[str, stain.StainProfile]
) -> None:
    src, dst = "synth_romanowsky", "synth_rapid"
    moved = [replace(s, image=stain.restain(s.image, profiles[src], profiles[dst])) for s in domain_samples[src]]
    for before, after in zip(domain_samples[src], moved):
        assert after.image.shape == before.image.shape and after.image.dtype == np.uint8
        assert np.array_equal(after.mask, before.mask)
        # the mask still fits the image: nuclei stay where the (target-profile) hematoxylin is dense
        hema = stain.concentrations(after.image, profiles[dst])[..., 0]
        assert np.median(hema[after.mask == 2]) > 3 * np.median(hema[after.mask == 0])


@pytest.mark.parametrize("src,dst", [(a, b) for a in SYNTHETIC_DOMAINS for b in SYNTHETIC_DOMAINS if a != b])
def test_restain_moves_colour_toward_target(
    src: str, dst: str, domain_samples: dict[str, list[Sample]], profiles: dict[str, stain.StainProfile]
) -> None:
    target_mean = np.mean([s.image.reshape(-1, 3).mean(0) for s in domain_samples[dst]], axis=0)
    before = np.mean([s.image.reshape(-1, 3).mean(0) for s in domain_samples[src]], axis=0)
    restained = [stain.restain(s.image, profiles[src], profiles[dst]) for s in domain_samples[src]]
    after = np.mean([im.reshape(-1, 3).mean(0) for im in restained], axis=0)
    assert np.linalg.norm(after - target_mean) < 0.2 * np.linalg.norm(before - target_mean)
    # and per image toward the same cell truly rendered in the target stain
    geometry = make_geometry(domain_plan(src)[0][0], SIZE, domain_plan(src)[0][1])
    original, truth = render(geometry, src).astype(float), render(geometry, dst).astype(float)
    restained = stain.restain(render(geometry, src), profiles[src], profiles[dst]).astype(float)
    assert np.abs(restained - truth).mean() < 0.3 * np.abs(original - truth).mean()


def test_hed_perturb_identity_and_monotone(domain_samples: dict[str, list[Sample]]) -> None:
    i, j = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    every_value = np.stack([i, j, (i + j) % 256], axis=-1).astype(np.uint8)  # each channel takes all 256 values
    assert np.array_equal(stain.hed_perturb(every_value, 0.0, np.random.default_rng(1)), every_value)
    image = domain_samples["synth_romanowsky"][0].image
    assert np.array_equal(stain.hed_perturb(image, 0.0, np.random.default_rng(2)), image)
    distances = []
    for severity in (0.05, 0.1, 0.2, 0.3):
        moved = [stain.hed_perturb(image, severity, np.random.default_rng(seed)) for seed in range(8)]
        distances.append(np.mean([np.abs(m.astype(int) - image.astype(int)).mean() for m in moved]))
    assert distances[0] > 0.3 and all(a < b for a, b in zip(distances, distances[1:])), distances
    a = stain.hed_perturb(image, 0.2, np.random.default_rng(5))
    assert np.array_equal(a, stain.hed_perturb(image, 0.2, np.random.default_rng(5)))
    with pytest.raises(BenchmarkError, match="severity"):
        stain.hed_perturb(image, -0.1, np.random.default_rng(0))


def test_blank_images_fall_back_and_are_counted() -> None:
    stats = stain.StainStats()
    blank = [np.full((32, 32, 3), 240, np.uint8) for _ in range(3)]
    profile = stain.estimate_profile(blank, "blank", stats)
    assert profile.fallback and "too few" in profile.reason
    assert np.allclose(profile.stain_matrix, stain.FALLBACK_STAIN_MATRIX)
    assert (stats.attempts, stats.failures) == (1, 1)
    assert "failed on 1 of 1" in stats.summary()
    out = stain.restain(blank[0], profile, profile)
    assert out.shape == blank[0].shape and out.dtype == np.uint8


def test_single_stain_images_fail_as_collinear() -> None:
    """One dye only: every stained pixel's OD lies on one line, so Macenko's two vectors coincide."""
    stats = stain.StainStats()
    rng = np.random.default_rng(0)
    conc = rng.uniform(0.0, 1.5, (4, 48, 48, 1))
    images = list(np.clip(250 * np.exp(-conc * np.array([0.6, 0.75, 0.28])), 0, 255).astype(np.uint8))
    profile = stain.estimate_profile(images, "one-dye", stats)
    assert profile.fallback, "a single-stain domain must not pass as a two-stain Macenko estimate"
    assert stats.failures == 1 and profile.reason
    assert np.all(profile.max_concentration > 0)


def _raises(od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    raise np.linalg.LinAlgError("SVD did not converge")


@pytest.mark.parametrize(
    "broken, reason",
    [
        (_raises, "raised LinAlgError"),
        (lambda od: (np.full((3, 2), np.nan), np.ones(2)), "non-finite"),
        (lambda od: (np.array([[0.6, -0.5], [0.7, 0.8], [0.3, 0.3]]), np.ones(2)), "negative component"),
    ],
)
def test_macenko_failures_use_the_fallback(
    broken, reason: str, domain_samples: dict[str, list[Sample]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stain, "_macenko", broken)
    stats = stain.StainStats()
    profile = stain.estimate_profile([s.image for s in domain_samples["synth_rapid"]], "synth_rapid", stats)
    assert profile.fallback and reason in profile.reason
    assert np.allclose(profile.stain_matrix, stain.FALLBACK_STAIN_MATRIX) and np.all(profile.max_concentration > 0)
    assert (stats.attempts, stats.failures) == (1, 1)


def test_default_counter_records(domain_samples: dict[str, list[Sample]]) -> None:
    before = (stain.STATS.attempts, stain.STATS.failures)
    stain.estimate_profile([s.image for s in domain_samples["synth_giemsa"]], "synth_giemsa")
    assert (stain.STATS.attempts, stain.STATS.failures) == (before[0] + 1, before[1])


def test_profile_json_round_trip(profiles: dict[str, stain.StainProfile]) -> None:
    dark = stain.estimate_profile([np.zeros((8, 8, 3), np.uint8)], "dark", stain.StainStats())
    for profile in [*profiles.values(), dark]:
        back = stain.StainProfile.from_dict(json.loads(json.dumps(profile.to_dict(), allow_nan=False)))
        assert back.domain == profile.domain and back.fallback == profile.fallback and back.reason == profile.reason
        assert np.allclose(back.stain_matrix, profile.stain_matrix)
        assert np.allclose(back.max_concentration, profile.max_concentration)
        assert np.allclose(back.background, profile.background)
    with pytest.raises(BenchmarkError, match="malformed"):
        stain.StainProfile.from_dict({"domain": "x"})
    bad = profiles["synth_rapid"].to_dict() | {"stain_matrix": [[1.0, 0.0, 0.0]]}
    with pytest.raises(BenchmarkError, match="shapes"):
        stain.StainProfile.from_dict(bad)


def test_bad_inputs_raise() -> None:
    with pytest.raises(BenchmarkError, match="no images.*empty-domain"):
        stain.estimate_profile([], "empty-domain")
    with pytest.raises(BenchmarkError, match="image 1"):
        stain.estimate_profile([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], "d")
    with pytest.raises(BenchmarkError, match="uint8"):
        profile = stain.StainProfile("d", stain.FALLBACK_STAIN_MATRIX, np.ones(2), np.full(3, 255.0))
        stain.restain(np.zeros((8, 8, 3), np.float32), profile, profile)
