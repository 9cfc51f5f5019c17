"""SG-CLDFF's decoder options: the local high-resolution path is in every variant, so each
ablation still changes one thing, and the first implementation stays available by name."""
from __future__ import annotations

import pytest
import torch

from core.errors import BenchmarkError
from models import create_model
from core.study import SG_CLDFF_VARIANTS


@pytest.mark.parametrize("name", SG_CLDFF_VARIANTS)
def test_every_variant_has_the_local_path_by_default(name):
    model = create_model(name, img_size=64)
    assert model.decoder == "local" and model.local is not None
    out = model(torch.rand(2, 3, 64, 64))
    assert out.mask_logits.shape == (2, 2, 64, 64)


def test_fused_decoder_is_the_first_implementation_without_the_local_path():
    local, fused = create_model("sg_cldff", img_size=64), create_model("sg_cldff", img_size=64, decoder="fused")
    assert fused.local is None
    extra = sum(p.numel() for p in local.parameters()) - sum(p.numel() for p in fused.parameters())
    assert extra == sum(p.numel() for p in local.local.parameters()) + 16 * 9 * (32 + 16)  # + the stages' wider inputs


def test_the_local_path_reaches_the_mask_but_not_the_class_logits():
    torch.manual_seed(0)
    model = create_model("sg_cldff", img_size=64).eval()
    x = torch.rand(1, 3, 64, 64)
    out = model(x)
    with torch.no_grad():
        for p in model.local.parameters():
            p.add_(0.5)
    changed = model(x)
    assert torch.equal(out.class_logits, changed.class_logits)
    assert not torch.allclose(out.mask_logits, changed.mask_logits)


def test_unknown_decoder_is_a_clear_error():
    with pytest.raises(BenchmarkError, match="unknown decoder 'unet'.*valid: local, fused"):
        create_model("sg_cldff", img_size=64, decoder="unet")
