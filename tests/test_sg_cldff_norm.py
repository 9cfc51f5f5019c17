"""SG-CLDFF's investigation switches (issue 9): GroupNorm instead of BatchNorm, no squeeze-excite.
They must replace every such layer (a half-switched model would measure nothing) and leave the
default model exactly as it was."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import BenchmarkError
from models.registry import create_model


def _count(model: nn.Module, kind: str) -> int:
    return sum(kind in type(m).__name__ for m in model.modules())


@pytest.mark.parametrize("name", ["sg_cldff", "sg_cldff_no_saliency", "sg_cldff_no_cldff"])
def test_group_norm_replaces_every_batch_norm(name: str) -> None:
    bn, gn = create_model(name, img_size=64), create_model(name, img_size=64, norm="group")
    assert _count(bn, "BatchNorm") > 0 and _count(bn, "GroupNorm") == 0
    assert _count(gn, "BatchNorm") == 0 and _count(gn, "GroupNorm") == _count(bn, "BatchNorm")
    gn.train()
    out = gn(torch.rand(1, 3, 64, 64))  # GroupNorm trains on a batch of one, BatchNorm cannot
    assert torch.isfinite(out.mask_logits).all() and out.mask_logits.shape == (1, 2, 64, 64)


def test_no_squeeze_excite_removes_every_se_block_and_nothing_else() -> None:
    se, plain = create_model("sg_cldff", img_size=64), create_model("sg_cldff", img_size=64, squeeze_excite=False)
    assert _count(se, "SqueezeExcite") == 4 and _count(plain, "SqueezeExcite") == 0
    assert _count(plain, "BatchNorm") == _count(se, "BatchNorm")


def test_defaults_are_batch_norm_with_squeeze_excite() -> None:
    torch.manual_seed(0)
    default = create_model("sg_cldff", img_size=64)
    torch.manual_seed(0)
    explicit = create_model("sg_cldff", img_size=64, norm="batch", squeeze_excite=True)
    for (k, a), (k2, b) in zip(default.state_dict().items(), explicit.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_bad_norm_options_are_clear_errors() -> None:
    with pytest.raises(BenchmarkError, match="unknown norm 'layer'; valid: batch, group"):
        create_model("sg_cldff", img_size=64, norm="layer")
    with pytest.raises(BenchmarkError, match="divisible by 8"):
        create_model("sg_cldff", img_size=64, norm="group", decoder_channels=(64, 32, 12))
