"""FLOPs of a model's step, counted by ``torch.utils.flop_counter`` with two corrections: the plan of
the paper budget (``scripts/plan_budget.py``) and the share of the chip a training run uses
(``scripts/bench_training.py``) both rest on these counts."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

Shape = Sequence[int]


def _conv_backward_flop(grad_out_shape: Shape, x_shape: Shape, w_shape: Shape, _bias: object, _stride: object,
                        _padding: object, _dilation: object, transposed: bool, _output_padding: object,
                        _groups: int, output_mask: Sequence[bool], out_shape: object = None, **kwargs: object) -> int:
    """Each of grad_input and grad_weight costs exactly what the forward convolution costs. Torch's own
    formula (2.14) ignores ``groups`` for grad_weight, counting a grouped or depthwise conv's weight
    gradient ``groups`` times over (tests/test_plan_budget.py checks a hand count): sg_cldff's training
    step came out 1.7x."""
    return conv_flop_count(x_shape, w_shape, grad_out_shape, transposed) * (int(output_mask[0]) + int(output_mask[1]))


def _sdpa_cpu_flop(query_shape: Shape, key_shape: Shape, value_shape: Shape, *args: object, out_shape: object = None,
                   **kwargs: object) -> int:
    """On CPU ``F.scaled_dot_product_attention`` runs a kernel torch's counter has no formula for (it
    counted 0); its FLOPs are those of the GPU kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape: Shape, query_shape: Shape, key_shape: Shape, value_shape: Shape,
                            *args: object, out_shape: object = None, **kwargs: object) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _formulas() -> dict:
    """The corrections, for the ops this torch has (the CPU attention kernels' names vary by release)."""
    ops = {"convolution_backward": _conv_backward_flop,
           "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu_flop,
           "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_cpu_backward_flop}
    return {getattr(torch.ops.aten, name): f for name, f in ops.items() if hasattr(torch.ops.aten, name)}


FLOP_FORMULAS = _formulas()


def flop_counter() -> FlopCounterMode:
    """Torch's counter (matmuls, convolutions, attention; 2 FLOPs per multiply-add; elementwise ops,
    norms and pooling are not counted) with the corrections above."""
    return FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
