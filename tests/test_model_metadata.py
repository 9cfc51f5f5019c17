"""Registry metadata (heads, input sizes) agrees with what every registered model reports when built,
so the runner can trust it without building the model (``Sweep.can_learn``)."""
from __future__ import annotations

import pytest
import torch

from core.errors import BenchmarkError
from core.sample import CLASSES
from models.contract import check_output_contract
from models.registry import ModelInfo, create_model, list_models, model_info


def _build_and_check(name: str, size: int, info: ModelInfo) -> None:
    torch.manual_seed(0)
    check_output_contract(create_model(name, num_classes=len(CLASSES), img_size=size), name, size, info)


@pytest.mark.parametrize("name", list_models())
def test_metadata_matches_the_built_model(name: str) -> None:
    info = model_info(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(CLASSES), img_size=info.min_size)
    assert (info.has_classifier, info.has_segmenter) == (model.has_classifier, model.has_segmenter)
    check_output_contract(model, name, info.min_size, info)  # the declared minimum works, heads and all
    if info.size_multiple > 1:  # the declared grid is a real constraint: off it, and one step below the minimum
        with pytest.raises(BenchmarkError):
            _build_and_check(name, info.min_size + info.size_multiple // 2, info)
        if info.min_size > info.size_multiple:
            with pytest.raises(BenchmarkError):
                _build_and_check(name, info.min_size - info.size_multiple, info)


def test_metadata_is_validated_at_registration() -> None:
    with pytest.raises(BenchmarkError, match="heads must be a non-empty subset"):
        ModelInfo(("classifier", "detector"))
    with pytest.raises(BenchmarkError, match="positive ints"):
        ModelInfo(("segmenter",), min_size=0)
    assert ModelInfo(("segmenter",), 32, 16).size_problem(40) == "needs input sides that are multiples of 16 px, got 40"
    assert ModelInfo(("segmenter",), 32, 16).size_problem(16) == "needs inputs of at least 32 px, got 16"
