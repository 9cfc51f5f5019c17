"""Loss pieces shared by the segmenting models (SG-CLDFF and the U-Nets), so they train on one objective."""
from __future__ import annotations

import torch
import torch.nn.functional as F

NUCLEUS_WEIGHT = 0.5
"""Weight of the auxiliary nucleus channel's BCE + Dice relative to the WBC channel's."""


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per sample (smoothed by 1 so empty masks give a finite value), averaged."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def wbc_nucleus_loss(
    mask_logits: torch.Tensor, batch: dict[str, torch.Tensor], nucleus_weight: float = NUCLEUS_WEIGHT
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SG-CLDFF's segmentation loss: (BCE + Dice)(WBC) + nucleus_weight (BCE + Dice)(nucleus) over the
    samples with a mask; exactly 0 (still on the graph) when the batch has none."""
    valid = batch["mask_valid"]
    if not valid.any():
        zero = mask_logits.sum() * 0
        return zero, {"seg_wbc": zero, "seg_nucleus": zero}
    logits, mask = mask_logits[valid].float(), batch["mask"][valid]
    wbc, nucleus = (mask > 0).float(), (mask == 2).float()
    seg_wbc = F.binary_cross_entropy_with_logits(logits[:, 0], wbc) + soft_dice_loss(logits[:, 0], wbc)
    seg_nuc = F.binary_cross_entropy_with_logits(logits[:, 1], nucleus) + soft_dice_loss(logits[:, 1], nucleus)
    return seg_wbc + nucleus_weight * seg_nuc, {"seg_wbc": seg_wbc, "seg_nucleus": seg_nuc}


def loss_parts_as_floats(named: dict[str, torch.Tensor]) -> dict[str, float]:
    """Named loss tensors -> floats for logging, with one device sync for all of them."""
    values = torch.stack([v.detach().float() for v in named.values()]).tolist()
    return dict(zip(named, values))
