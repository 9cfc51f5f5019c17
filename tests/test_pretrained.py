"""The ``pretrained`` switch: offline with an empty cache it fails at once and says why; with the
weights in the local cache (faked here: a random efficientnet_b0's tensors) it loads exactly them."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from core.errors import BenchmarkError
from models.pretrained import create_timm_backbone, hf_hub_cache
from models.registry import create_model

NAME = "efficientnet_b0"
SHA = "0" * 40


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF and torch hub caches pointed at an empty tmp dir, network refused, after import time."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _random_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return {k: v.contiguous() for k, v in timm.create_model(NAME).state_dict().items()}


def _assert_loaded(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert set(weights) - set(own) == {"classifier.weight", "classifier.bias"}  # head dropped: num_classes=0
    assert set(own) <= set(weights)
    assert all(torch.equal(own[k], weights[k]) for k in own)


def test_missing_weights_fail_fast_and_say_where_they_looked(empty_caches: Path) -> None:
    t = time.perf_counter()
    with pytest.raises(BenchmarkError) as err:
        create_timm_backbone(NAME, pretrained=True, num_classes=0)
    assert time.perf_counter() - t < 1.0
    msg = str(err.value)
    assert f"'{NAME}'" in msg and str(empty_caches / "hf" / "hub") in msg and str(empty_caches / "torch") in msg
    assert "network access" in msg and "drop `pretrained`" in msg
    with pytest.raises(BenchmarkError, match=NAME):
        create_model("efficientswin", img_size=64, pretrained=True)


def test_cached_hf_weights_are_loaded_exactly(empty_caches: Path) -> None:
    weights = _random_weights()
    repo = hf_hub_cache() / ("models--" + timm.models.get_pretrained_cfg(NAME).hf_hub_id.replace("/", "--"))
    assert repo.is_relative_to(empty_caches)  # the env set by the fixture is read at call time
    (repo / "snapshots" / SHA).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    save_file(weights, str(repo / "snapshots" / SHA / "model.safetensors"))
    _assert_loaded(create_timm_backbone(NAME, pretrained=True, num_classes=0), weights)
    torch.manual_seed(123)
    scratch = create_timm_backbone(NAME, pretrained=False, num_classes=0).state_dict()
    assert not torch.equal(scratch["conv_stem.weight"], weights["conv_stem.weight"])


def test_cached_torch_hub_weights_are_loaded_exactly(empty_caches: Path) -> None:
    """Weights timm would fetch by URL (legacy_xception has no hub id) are found in torch's hub cache."""
    weights = _random_weights()
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(timm.models.get_pretrained_cfg(NAME).url)
    path.parent.mkdir(parents=True)
    torch.save(weights, path)
    _assert_loaded(create_timm_backbone(NAME, pretrained=True, num_classes=0), weights)


@pytest.mark.parametrize("name", ["sg_cldff", "unet", "classical"])
def test_models_without_a_timm_backbone_do_not_take_pretrained(name: str) -> None:
    with pytest.raises(BenchmarkError, match=f"model '{name}' does not take option\\(s\\) pretrained"):
        create_model(name, img_size=64, pretrained=True)
