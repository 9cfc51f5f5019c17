"""The frozen-encoder linear probe, offline end to end with timm's random-initialised
``test_vit`` (a 0.3 M-parameter ViT, patch 16) at 64 px:
registration, the frozen encoder and its normalisation, the fit, the embedding cache (reuse, keys,
a corrupt file), weights from a local file or a hub cache, the errors, and one engine job."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import models.embedding_cache as embedding_cache
from benchmark.engine.budgets import get_budget
from benchmark.engine.job import run_job
from benchmark.engine.plan import Sweep
from core.errors import BenchmarkError
from models import create_model
from models.contract import check_output_contract
from models.embedding_cache import STATS
from models.linear_probe import fit_probe
from models.registry import model_info

TINY = "test_vit"
SIZE = 64
CPU = torch.device("cpu")
COLOURS = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [60, 200, 200]], np.uint8)


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    """Each test's embedding cache is its own empty folder."""
    root = tmp_path / "embedding_cache"
    monkeypatch.setattr(embedding_cache, "cache_root", lambda: root)
    return root


def _probe(**options) -> torch.nn.Module:
    return create_model("linear_probe", num_classes=5, img_size=options.pop("img_size", SIZE),
                        **{"encoder": TINY, **options})


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose colour is their class, with pixel noise: what any encoder separates linearly."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 5
    noise = rng.integers(-40, 40, (n, SIZE, SIZE, 3))
    return np.clip(COLOURS[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8), labels


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _fitted(images, labels, **options):
    model = _probe(**options)
    model.after_training(images, labels, seed=0, device=CPU)
    return model.eval()


def test_registered_classifier_only_with_a_frozen_encoder_in_eval_mode():
    assert model_info("linear_probe").heads == ("classifier",)
    model = _probe()
    check_output_contract(model, "linear_probe", SIZE, model_info("linear_probe"))
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert model.training and not model.encoder.training
    out = model(torch.rand(3, 3, SIZE, SIZE))
    assert out.mask_logits is None and out.class_logits.shape == (3, 5)
    assert out.features.shape == (3, model.encoder.num_features)


def test_normalisation_is_the_encoders_own():
    vit = _probe()  # timm's config for test_vit: mean = std = 0.5
    assert vit.pixel_mean.flatten().tolist() == [0.5] * 3 and vit.pixel_std.flatten().tolist() == [0.5] * 3
    resnet = _probe(encoder="resnet18")  # ImageNet's
    assert resnet.pixel_mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_fit_predicts_held_out_images_and_is_deterministic():
    images, labels = _images(50)
    test_images, test_labels = _images(25, seed=1)
    torch.manual_seed(123)  # the global RNG must not matter: the encoder's init has its own seed
    a = _fitted(images, labels)
    torch.manual_seed(456)
    b = _fitted(images, labels)
    with torch.no_grad():
        la, lb = a(_tensor(test_images)).class_logits, b(_tensor(test_images)).class_logits
    assert torch.equal(la, lb)
    assert (la.argmax(1).numpy() == test_labels).mean() >= 0.9


def test_the_head_is_the_penalised_logistic_regression_sklearn_finds():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 40)
    x = rng.normal(size=(200, 16)) + 0.5 * rng.normal(size=(5, 16))[y]
    weights = rng.uniform(0.5, 2.0, 200)
    fit = fit_probe(x, y, weights, 5, l2=1e-2)
    z = (x - fit.mean) / fit.std
    ref = LogisticRegression(C=1 / 1e-2, tol=1e-12, max_iter=10_000).fit(z, y, sample_weight=weights / weights.sum())
    assert np.abs(ref.coef_ - fit.weight).max() < 1e-4
    assert np.abs((ref.intercept_ - ref.intercept_.mean()) - (fit.bias - fit.bias.mean())).max() < 1e-4


def test_a_second_fit_reads_the_cached_embeddings(cache_root):
    images, labels = _images(20)
    before = (STATS.hits, STATS.misses)
    a = _fitted(images, labels)
    b = _fitted(images, labels)
    assert (STATS.hits - before[0], STATS.misses - before[1]) == (1, 1)
    assert len(list(cache_root.rglob("*.npz"))) == 1 and not list(cache_root.rglob("*.tmp"))
    assert torch.equal(a.head_weight, b.head_weight)


def test_the_cache_key_changes_with_encoder_weights_size_and_images(tmp_path):
    images, _ = _images(4)
    other = images.copy()
    other[0, 0, 0, 0] ^= 1
    key = _probe().embedding_key(images, CPU)
    assert key == _probe().embedding_key(images, CPU)
    weights = tmp_path / "w.safetensors"
    save_file(_probe(init_seed=7).encoder.state_dict(), str(weights))
    changed = [
        _probe().embedding_key(other, CPU),
        _probe(init_seed=1).embedding_key(images, CPU),
        _probe(weights=str(weights)).embedding_key(images, CPU),
        _probe(encoder="resnet18").embedding_key(images, CPU),
        _probe(img_size=96).embedding_key(images, CPU),
        _probe().embedding_key(images, torch.device("meta")),
    ]
    paths = {k.path(tmp_path) for k in [key, *changed]}
    assert len(paths) == 1 + len(changed)


def test_an_unreadable_cache_file_is_rebuilt_with_a_warning(cache_root, caplog):
    images, labels = _images(10)
    model = _probe()
    path = model.embedding_key(images, CPU).path(cache_root)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    rebuilt = STATS.rebuilt
    with caplog.at_level(logging.WARNING, logger="models.embedding_cache"):
        model.after_training(images, labels, seed=0, device=CPU)
    assert STATS.rebuilt == rebuilt + 1
    assert "cannot be read" in caplog.text and str(path) in caplog.text
    with np.load(path) as data:
        assert data["embeddings"].shape == (10, model.encoder.num_features)


def test_weights_from_a_local_file_and_from_the_hub_cache(tmp_path, monkeypatch):
    state = _probe(init_seed=7).encoder.state_dict()
    weights = tmp_path / "encoder.safetensors"
    save_file(state, str(weights))
    loaded = _probe(weights=str(weights))
    assert all(torch.equal(v, loaded.encoder.state_dict()[k]) for k, v in state.items())
    assert loaded.identity.startswith("file:sha256:")

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lab--tiny-wbc"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "config.json").write_text(json.dumps({
        "architecture": TINY, "num_classes": 0, "num_features": 64,
        "pretrained_cfg": {"input_size": [3, 224, 224], "fixed_input_size": True, "mean": [0.1, 0.2, 0.3],
                           "std": [0.3, 0.2, 0.1], "num_classes": 0}}))
    save_file(state, str(snapshot / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = _probe(encoder="hf-hub:lab/tiny-wbc", pretrained=True)
    assert all(torch.equal(v, hub.encoder.state_dict()[k]) for k, v in state.items())
    assert hub.identity == f"hf:lab/tiny-wbc@{commit}/model.safetensors"
    assert hub.pixel_mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_an_unknown_encoder_suggests_close_names_and_writes_nothing(tmp_path, cache_root):
    with pytest.raises(BenchmarkError, match=r"timm does not know encoder 'vit_tiny_patch16_22'.*did you mean "
                                             r"vit_tiny_patch16_224"):
        _probe(encoder="vit_tiny_patch16_22")
    sweep = Sweep("cross_stain_synthetic", ["linear_probe"], [0], get_budget("smoke"), tmp_path / "run",
                  model_kwargs={"encoder": "vit_tinny_patch16_224"})
    with pytest.raises(BenchmarkError, match="did you mean"):
        sweep.plan()  # the factory fails in the contract check, before data or jobs
    assert not (tmp_path / "run").exists() and not cache_root.exists()


def test_uncached_pretrained_weights_name_the_hub_the_cache_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    dinobloom = "1aurent/vit_small_patch14_224.dinobloom"
    with pytest.raises(BenchmarkError) as err:
        _probe(encoder=f"hf-hub:{dinobloom}", pretrained=True)
    for part in (dinobloom, str(tmp_path / "empty-hub"), f"hf download {dinobloom}", "weights="):
        assert part in str(err.value)
    with pytest.raises(BenchmarkError, match=rf"not cached locally.*timm/{TINY}.*weights=<a local file>"):
        _probe(pretrained=True)


def test_a_weights_file_that_is_missing_or_does_not_fit_is_a_clear_error(tmp_path):
    with pytest.raises(BenchmarkError, match=r"weights file '.*nowhere.pth' does not exist"):
        _probe(weights=str(tmp_path / "nowhere.pth"))
    wrong = tmp_path / "resnet.safetensors"
    save_file(_probe(encoder="resnet18").encoder.state_dict(), str(wrong))
    with pytest.raises(BenchmarkError, match=rf"weights file .*resnet.safetensors does not fit encoder '{TINY}'"):
        _probe(weights=str(wrong))


def test_one_engine_job_scores_a_restorable_probe_and_a_second_job_reuses_its_embeddings(tmp_path, by_domain):
    by_id = {s.id: s for ss in by_domain.values() for s in ss}
    sweep = Sweep("cross_stain_synthetic", ["linear_probe"], [0], get_budget("smoke"), tmp_path / "run",
                  model_kwargs={"encoder": TINY})
    (job, split), = sweep.plan().jobs
    hits = STATS.hits
    first = run_job(job, split, by_id, tmp_path / "a", device=CPU, progress=False)
    second = run_job(job, split, by_id, tmp_path / "b", device=CPU, progress=False)
    assert STATS.hits == hits + 1
    metrics = [json.loads((d / "metrics.json").read_text())["targets"] for d in (first, second)]
    assert metrics[0] == metrics[1]
    in_domain = metrics[0]["in_domain"]["metrics"]
    assert in_domain["macro_f1"] is not None and in_domain["iou"] is None
    assert json.loads((first / "checkpoint.json").read_text())["restorable"] is True


def test_options_of_the_wrong_type_are_named_before_anything_is_read():
    with pytest.raises(BenchmarkError, match=r"pretrained must be true or false, got 'yes'; l2 must be a positive "
                                             r"number, got 0 .*--model-kwargs"):
        _probe(pretrained="yes", l2=0)
