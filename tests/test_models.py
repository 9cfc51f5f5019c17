"""Model contract tests (registry-driven, so every registered model is covered) and SG-CLDFF claims.

Everything runs on CPU at 64 px with tiny batches; toy smears (pink background, pink red cells,
one WBC with pale cytoplasm and a dark purple nucleus) stand in for real images.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.errors import BenchmarkError
from models.base import WBCModel
from models.efficientswin_hybrid import EfficientSwinHybrid, window_for
from models.registry import create_model, list_models
from models.saliency_prior import saliency_prior
from models.sg_cldff import CrossLayerFusion

SIZE = 64
K = 5
BACKGROUND = (0.93, 0.80, 0.82)
RED_CELL = (0.85, 0.55, 0.60)
CYTOPLASM = (0.80, 0.70, 0.85)
NUCLEUS = (0.35, 0.20, 0.55)


def _disc(size: int, cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def toy_batch(n: int, size: int = SIZE, seed: int = 0) -> dict[str, torch.Tensor]:
    """Toy smears with masks and labels: red cells around one WBC (cytoplasm 1, nucleus 2)."""
    g = torch.Generator().manual_seed(seed)
    images, masks = [], []
    for _ in range(n):
        img = torch.tensor(BACKGROUND).view(3, 1, 1).repeat(1, size, size)
        for _ in range(4):
            cy, cx = (torch.rand(2, generator=g) * size).tolist()
            img[:, _disc(size, cy, cx, size * 0.1)] = torch.tensor(RED_CELL)[:, None]
        cy, cx = (size * (0.35 + 0.3 * torch.rand(2, generator=g))).tolist()
        cell, nucleus = _disc(size, cy, cx, size * 0.22), _disc(size, cy, cx, size * 0.12)
        img[:, cell] = torch.tensor(CYTOPLASM)[:, None]
        img[:, nucleus] = torch.tensor(NUCLEUS)[:, None]
        images.append((img + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1))
        masks.append(cell.long() + nucleus.long())
    return {
        "image": torch.stack(images),
        "mask": torch.stack(masks),
        "mask_valid": torch.ones(n, dtype=torch.bool),
        "label": torch.randint(0, K, (n,), generator=g),
    }


def _build(name: str, seed: int = 0) -> WBCModel:
    torch.manual_seed(seed)
    return create_model(name, num_classes=K, img_size=SIZE)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_contract(name: str) -> None:
    model = _build(name)
    batch = toy_batch(2)
    batch["mask_valid"][1] = False
    batch["label"][0] = -1
    out = model(batch["image"])
    if model.has_classifier:
        assert out.class_logits.shape == (2, K)
        assert torch.isfinite(out.class_logits).all()
    else:
        assert out.class_logits is None
    if model.has_segmenter:
        assert out.mask_logits.shape[0] == 2 and out.mask_logits.shape[1] in (1, 2)
        assert out.mask_logits.shape[2:] == (SIZE, SIZE)
        assert torch.isfinite(out.mask_logits).all()
    else:
        assert out.mask_logits is None
    if out.saliency is not None:
        assert out.saliency.shape == (2, 1, SIZE // 4, SIZE // 4)
        assert out.saliency.min() >= 0 and out.saliency.max() <= 1
    total, parts = model.loss(out, batch)
    assert torch.isfinite(total) and all(isinstance(v, float) for v in parts.values())
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trainable:
        total.backward()
        grads = [p.grad for p in trainable if p.grad is not None]
        assert grads and all(torch.isfinite(gr).all() for gr in grads)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("missing", ["masks", "labels"])
def test_loss_finite_when_a_target_is_missing(name: str, missing: str) -> None:
    model = _build(name)
    batch = toy_batch(2)
    if missing == "masks":
        batch["mask_valid"][:] = False
    else:
        batch["label"][:] = -1
    total, parts = model.loss(model(batch["image"]), batch)
    assert torch.isfinite(total) and all(v == v for v in parts.values())  # v == v: not NaN
    if any(p.requires_grad for p in model.parameters()) and total.requires_grad:
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", list_models())
def test_same_seed_same_model(name: str) -> None:
    x = toy_batch(2)["image"]
    with torch.no_grad():
        a, b = _build(name, seed=7).eval()(x), _build(name, seed=7).eval()(x)
    for ta, tb in zip((a.class_logits, a.mask_logits), (b.class_logits, b.mask_logits)):
        assert (ta is None and tb is None) or torch.equal(ta, tb)


def test_unknown_model_error_lists_valid_names() -> None:
    with pytest.raises(BenchmarkError) as err:
        create_model("nope")
    assert "nope" in str(err.value)
    assert all(name in str(err.value) for name in list_models())


@pytest.mark.parametrize("name, lr, steps", [("sg_cldff", 2e-3, 30), ("unet", 1e-2, 25), ("saliency_unet", 1e-2, 25)])
def test_loss_decreases_when_overfitting_a_tiny_batch(name: str, lr: float, steps: int) -> None:
    model = _build(name)
    batch = toy_batch(4)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        total, _ = model.loss(model(batch["image"]), batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses


def _no_targets(n: int = 2) -> dict[str, torch.Tensor]:
    batch = toy_batch(n)
    batch["mask_valid"][:] = False
    batch["label"][:] = -1
    return batch


@pytest.mark.parametrize("name, expect_grad", [("sg_cldff", True), ("sg_cldff_no_align", False)])
def test_alignment_is_the_only_saliency_signal_without_targets(name: str, expect_grad: bool) -> None:
    """With no mask and no label the only loss left is lambda*|S - A|: full model trains S, no_align does not."""
    model = _build(name)
    batch = _no_targets()
    total, parts = model.loss(model(batch["image"]), batch)
    assert (parts["align"] > 0) == expect_grad and parts["align_l1"] > 0
    total.backward()
    grads = [p.grad for p in model.saliency.parameters()]
    got_grad = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert got_grad == expect_grad


@pytest.mark.parametrize("name, changes", [("sg_cldff", True), ("sg_cldff_no_cldff", False)])
def test_no_cldff_heads_ignore_f1_f2(name: str, changes: bool) -> None:
    """Perturb F1 and F2 after the backbone computed F3 from them: only the fusing model notices."""
    model = _build(name).eval()
    x = toy_batch(2)["image"]
    with torch.no_grad():
        base = model(x)
        handle = model.backbone.register_forward_hook(lambda m, i, o: (o[0] + 1.0, o[1] - 1.0, o[2]))
        perturbed = model(x)
        handle.remove()
    same = torch.allclose(base.class_logits, perturbed.class_logits) and torch.allclose(
        base.mask_logits, perturbed.mask_logits
    )
    assert same != changes
    if name == "sg_cldff_no_cldff":
        assert len(model.fusion.projections) == 1


@pytest.mark.parametrize("gating, expected", [("multiply", lambda f, s: f * s), ("residual", lambda f, s: f * (1 + s))])
def test_gating_forms(gating: str, expected) -> None:
    model = create_model("sg_cldff", img_size=SIZE, gating=gating)
    s = torch.rand(2, 1, 16, 16)
    f1, f2 = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 8, 8)
    gate = model._gate(s)
    assert torch.allclose(gate(f1), expected(f1, s))
    assert torch.allclose(gate(f2), expected(f2, F.avg_pool2d(s, 2)))


def test_no_saliency_has_no_saliency_parameters() -> None:
    model = _build("sg_cldff_no_saliency")
    assert model.saliency is None
    assert not any("saliency" in n for n, _ in model.named_parameters())
    out = model(toy_batch(2)["image"])
    assert out.saliency is None


@pytest.mark.parametrize(
    "name, expected",
    [
        # no_saliency also zeroes lambda, which has no meaning without a saliency map
        ("sg_cldff_no_saliency", {"use_saliency", "align_weight"}),
        ("sg_cldff_no_align", {"align_weight"}),
        ("sg_cldff_no_cldff", {"cross_layer_fusion"}),
    ],
)
def test_each_ablation_flips_one_flag(name: str, expected: set[str]) -> None:
    def flags(m: WBCModel) -> dict[str, object]:
        return {
            "use_saliency": m.saliency is not None,
            "align_weight": m.align_weight,
            "cross_layer_fusion": m.cross_layer_fusion,
            "gating": m.gating,
            "prior": m.prior,
        }

    full, variant = flags(_build("sg_cldff")), flags(_build(name))
    assert {k for k in full if full[k] != variant[k]} == expected


def test_fused_layer_output_is_what_the_classifier_pools() -> None:
    model = _build("sg_cldff").eval()
    seen = {}
    model.fused_layer.register_forward_hook(lambda m, i, o: seen.setdefault("fused", o))
    with torch.no_grad():
        out = model(toy_batch(2)["image"])
    fused = seen["fused"]
    assert fused.shape[2:] == (SIZE // 4, SIZE // 4)
    assert torch.allclose(model.classifier(fused.mean(dim=(2, 3))), out.class_logits, atol=1e-5)


def test_fusion_equals_concat_then_1x1_conv() -> None:
    """The project-then-resize implementation is the paper's Conv1x1(concat(resize(F_i)))."""
    torch.manual_seed(0)
    fusion = CrossLayerFusion((4, 6, 8), 5).eval()
    feats = (torch.randn(2, 4, 16, 16), torch.randn(2, 6, 8, 8), torch.randn(2, 8, 4, 4))
    resized = [F.interpolate(f, size=(16, 16), mode="bilinear", align_corners=False) for f in feats]
    weight = torch.cat([p.weight for p in fusion.projections], dim=1)
    reference = fusion.norm_act(F.conv2d(torch.cat(resized, dim=1), weight) + fusion.bias)
    assert torch.allclose(fusion(feats, (16, 16)), reference, atol=1e-5)


@pytest.mark.parametrize("size, window", [(64, 4), (96, 6), (128, 4), (224, 7)])
def test_backbone_shapes_and_window_per_input_size(size: int, window: int) -> None:
    backbone = EfficientSwinHybrid(size).eval()
    assert backbone.window_size == window == window_for(size // 16)
    with torch.no_grad():
        f1, f2, f3 = backbone(torch.rand(1, 3, size, size))
    assert f1.shape == (1, 64, size // 4, size // 4)
    assert f2.shape == (1, 128, size // 8, size // 8)
    assert f3.shape == (1, 256, size // 16, size // 16)


def test_backbone_rejects_wrong_input_size() -> None:
    with pytest.raises(BenchmarkError, match="img_size=96"):
        EfficientSwinHybrid(64)(torch.rand(1, 3, 96, 96))
    with pytest.raises(BenchmarkError, match="multiple of 16"):
        EfficientSwinHybrid(72)


def test_prior_highlights_the_wbc_without_the_mask() -> None:
    batch = toy_batch(6, seed=3)
    prior = saliency_prior(batch["image"], (SIZE // 4, SIZE // 4))
    assert prior.shape == (6, 1, SIZE // 4, SIZE // 4)
    assert prior.min() >= 0 and prior.amax(dim=(1, 2, 3)).allclose(torch.ones(6))
    wbc = F.adaptive_avg_pool2d((batch["mask"] > 0).float().unsqueeze(1), (SIZE // 4, SIZE // 4))
    share = (prior * wbc).sum(dim=(1, 2, 3)) / prior.sum(dim=(1, 2, 3))
    assert (share > 0.8).all() and (share > 3 * wbc.mean(dim=(1, 2, 3))).all(), share


def test_prior_mask_variant_and_bad_names() -> None:
    batch = toy_batch(2)
    mask_prior = saliency_prior(batch["image"], (16, 16), "mask", batch["mask"])
    assert torch.allclose(mask_prior, F.adaptive_avg_pool2d((batch["mask"] > 0).float().unsqueeze(1), (16, 16)))
    with pytest.raises(BenchmarkError, match="needs the batch's ground-truth mask"):
        saliency_prior(batch["image"], (16, 16), "mask")
    with pytest.raises(BenchmarkError, match="valid priors: hematoxylin, mask"):
        saliency_prior(batch["image"], (16, 16), "lab")


def test_bad_options_raise_benchmark_errors() -> None:
    with pytest.raises(BenchmarkError, match="gating"):
        create_model("sg_cldff", img_size=SIZE, gating="add")
    with pytest.raises(BenchmarkError, match="align_weight must be 0"):
        create_model("sg_cldff", img_size=SIZE, use_saliency=False)
    with pytest.raises(BenchmarkError, match="class weights"):
        create_model("sg_cldff", img_size=SIZE).set_class_weights(torch.ones(3))


def test_class_weights_change_the_classification_loss() -> None:
    model = _build("sg_cldff").eval()
    batch = toy_batch(4)
    batch["mask_valid"][:] = False
    with torch.no_grad():
        out = model(batch["image"])
        model.set_class_weights(torch.arange(1.0, K + 1))
        _, parts = model.loss(out, batch)
    expected = F.cross_entropy(out.class_logits, batch["label"], weight=torch.arange(1.0, K + 1))
    assert parts["ce"] == pytest.approx(expected.item(), rel=1e-5)


def test_swin_stage_is_one_global_window_at_the_cpu_size_and_shifted_windows_at_cpu128():
    """The regime question of the cpu budget: at 64 px F3 is 4x4, one window, no shift; the
    cpu128 budget gives F3 8x8 with 2x2 windows, the second block shifted."""
    from benchmark.engine.budgets import get_budget

    def windows(size: int) -> list[tuple]:
        blocks = create_model("sg_cldff", img_size=size).backbone.stage3.blocks
        return [(tuple(b.window_size), tuple(b.shift_size)) for b in blocks]

    assert windows(get_budget("cpu").img_size) == [((4, 4), (0, 0)), ((4, 4), (0, 0))]
    assert windows(get_budget("cpu128").img_size) == [((4, 4), (0, 0)), ((4, 4), (2, 2))]
