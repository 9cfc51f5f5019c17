"""Claims of the reimplemented baselines (the registry-driven contract tests cover them too).

CPU, 64 px, toy smears from tests/test_models.py.
"""
from __future__ import annotations

import colorsys

import pytest
import torch

from models.baselines_cls import eca_kernel_size, rgb_to_hsv
from models.baselines_seg import _component_nearest_centre, _fill_holes, multi_otsu_thresholds
from models.registry import create_model
from test_models import K, SIZE, toy_batch  # pytest puts tests/ on sys.path (no __init__.py)


def _build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return create_model(name, num_classes=K, img_size=SIZE)


def test_saliency_unet_reads_a_fourth_channel_and_nothing_else_changes() -> None:
    plain, salient = _build("unet"), _build("saliency_unet")
    assert plain.first_conv.in_channels == 3 and salient.first_conv.in_channels == 4
    extra = sum(p.numel() for p in salient.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == salient.first_conv.out_channels * 9  # one more input channel of 3x3 weights
    assert not plain.has_classifier and plain(toy_batch(1)["image"]).class_logits is None


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a & b).sum(dim=(1, 2)).float() / (a | b).sum(dim=(1, 2)).float()


def test_classical_segments_toy_smears_without_parameters() -> None:
    model = _build("classical")
    assert not list(model.parameters())
    batch = toy_batch(6, seed=1)
    out = model(batch["image"])
    assert out.class_logits is None and out.mask_logits.shape == (6, 2, SIZE, SIZE)
    wbc_iou = _iou(out.mask_logits[:, 0] > 0, batch["mask"] > 0)
    nucleus_iou = _iou(out.mask_logits[:, 1] > 0, batch["mask"] == 2)
    assert (wbc_iou > 0.8).all() and (nucleus_iou > 0.8).all(), (wbc_iou, nucleus_iou)
    total, parts = model.loss(out, batch)
    assert total.item() == 0 and not total.requires_grad and parts == {"total": 0.0}


def test_classical_returns_empty_masks_for_a_blank_image() -> None:
    out = _build("classical")(torch.full((1, 3, SIZE, SIZE), 0.9))
    assert (out.mask_logits < 0).all()


def test_multi_otsu_separates_three_levels() -> None:
    values = torch.cat([torch.full((50,), 0.1), torch.full((30,), 0.5), torch.full((20,), 0.9)])[None]
    t1, t2 = multi_otsu_thresholds(values)[0].tolist()
    assert 0.1 < t1 < 0.5 < t2 < 0.9


def test_hsv_matches_colorsys() -> None:
    pixels = [(0.8, 0.2, 0.3), (0.1, 0.7, 0.4), (0.2, 0.3, 0.9), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0), (0.93, 0.80, 0.82)]
    hsv = rgb_to_hsv(torch.tensor(pixels).T.reshape(1, 3, 1, len(pixels)))
    expected = torch.tensor([colorsys.rgb_to_hsv(*p) for p in pixels]).T.reshape(1, 3, 1, len(pixels))
    assert torch.allclose(hsv, expected, atol=1e-6)
    assert hsv.min() >= 0 and hsv.max() <= 1


@pytest.mark.parametrize("channels, k", [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_size_formula(channels: int, k: int) -> None:
    assert eca_kernel_size(channels) == k


def test_resnext_cc_uses_eca_after_strided_stem_conv() -> None:
    model = _build("resnext_cc_small")
    stem_pool = model.stem[-1]
    assert isinstance(stem_pool[0][0], torch.nn.Conv2d) and stem_pool[0][0].stride == (2, 2)
    assert stem_pool[1].conv.kernel_size == (3,)
    assert model.conv5[0][1].conv.kernel_size == (7,)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_center_loss_centres_move_toward_batch_features() -> None:
    model = _build("resnext_cc_small").train()
    batch = toy_batch(4)
    batch["label"] = torch.tensor([0, 0, 1, -1])
    out = model(batch["image"])
    feats = out.features.detach()
    means = torch.stack([feats[:2].mean(0), feats[2]])
    before = (model.centers[:2] - means).norm(dim=1)
    untouched = model.centers[2:].clone()
    _, parts = model.loss(out, batch)
    after = (model.centers[:2] - means).norm(dim=1)
    assert (after < before).all() and torch.equal(model.centers[2:], untouched)
    assert parts["center"] > 0
    # alpha 0.5, two samples: c <- c - 0.5 * (2c - sum x) / 3
    assert torch.allclose(model.centers[0], 0.5 * feats[:2].sum(0) / 3, atol=1e-5)
    model.eval()
    frozen = model.centers.clone()
    model.loss(out, batch)
    assert torch.equal(model.centers, frozen)


def test_center_loss_is_not_trained_by_the_optimizer() -> None:
    model = _build("resnext_cc_small")
    assert "centers" not in dict(model.named_parameters()) and "centers" in model.state_dict()


def test_classifiers_have_no_mask_head() -> None:
    for name in ("efficientswin", "resnext_cc_small"):
        model = _build(name)
        assert model.has_classifier and not model.has_segmenter


def test_fill_holes_fills_a_ring_and_leaves_the_line_of_sight_out_of_a_bay() -> None:
    ring = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    ring[..., 2:7, 2:7] = True
    ring[..., 3:6, 3:6] = False
    assert _fill_holes(ring)[..., 2:7, 2:7].all()
    bay = ring.clone()
    bay[..., 4, 6] = False  # opens the hole to the right
    filled = _fill_holes(bay)
    assert not filled[..., 4, 3:6].any()  # row 4 sees the border through the opening
    assert filled[..., 3, 3:6].all()  # the documented approximation: enclosed along all 4 axes


def test_component_nearest_centre_drops_off_centre_blobs() -> None:
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., 6:10, 6:10] = True
    mask[..., 0:3, 0:3] = True
    kept = _component_nearest_centre(mask)
    assert kept[..., 6:10, 6:10].all() and kept.sum() == 16
