"""Grad-CAM explanations, saliency consistency, and the explanation panel figure."""
from __future__ import annotations

import numpy as np
import torch

from benchmark.engine.batches import ArraySet
from benchmark.engine.explain import can_explain, explain, saliency_consistency
from benchmark.reports.figures import explain_panel_figure
from wbcdata.synthetic import load_synthetic
from models import create_model


def test_saliency_consistency_is_the_share_of_energy_inside_the_mask():
    cam = np.zeros((3, 4, 4))
    cam[0, :2, :] = 1.0  # top half
    cam[1, :, :] = 1.0   # uniform
    masks = np.zeros((3, 4, 4), np.uint8)
    masks[:, :2, :2] = 1  # top-left quarter (cytoplasm)
    masks[:, 0, 0] = 2    # nucleus counts as WBC too
    out = saliency_consistency(cam, masks, np.array([True, True, True]))
    assert out[0] == 0.5 and out[1] == 0.25
    assert np.isnan(out[2])  # an all-zero map has no energy to share
    assert np.isnan(saliency_consistency(cam[:1], masks[:1], np.array([False]))[0])


def test_explain_gives_normalized_cams_and_saliency_for_sg_cldff():
    torch.manual_seed(0)
    samples = load_synthetic(None, 64)[:4]
    data = ArraySet.from_samples(samples, "toy")
    model = create_model("sg_cldff", num_classes=5, img_size=64)
    assert can_explain(model)
    ex = explain(model, data, torch.device("cpu"))
    assert ex.cam.shape == (4, 64, 64) and ex.saliency.shape == (4, 64, 64)
    assert ex.cam.min() >= 0 and ex.cam.max() <= 1 + 1e-6
    assert ex.consistency.shape == (4,) and np.all((ex.consistency >= 0) & (ex.consistency <= 1))
    no_sal = explain(create_model("sg_cldff_no_saliency", num_classes=5, img_size=64), data, torch.device("cpu"))
    assert no_sal.saliency is None


def test_explain_panel_figure_draws_rows_per_target_and_skips_without_data():
    rng = np.random.default_rng(0)
    ex = {}
    for t in ("in_domain", "restain:b"):
        ex.update({f"{t}|image": rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8),
                   f"{t}|mask": np.ones((3, 8, 8), np.uint8), f"{t}|cam": rng.random((3, 8, 8)),
                   f"{t}|predicted": np.array([0, 1, 2]), f"{t}|label": np.array([0, -1, 2])})
    fig = explain_panel_figure(ex, ["in_domain", "restain:b", "hed:0.3"], "t")
    assert fig is not None and len(fig.axes) == 2 * 2 * 3
    assert explain_panel_figure({}, ["in_domain"], "t") is None
