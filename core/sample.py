"""The one sample type every dataset yields, and the fixed class list."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASSES: tuple[str, ...] = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")
"""Fixed label order for every dataset; ``label`` is an index into this tuple."""
NUM_CLASSES = len(CLASSES)
"""What every model's classifier head is built with."""

MASK_BACKGROUND, MASK_CYTOPLASM, MASK_NUCLEUS = 0, 1, 2
"""Mask encoding shared by all loaders: 0 background (incl. red cells), 1 cytoplasm, 2 nucleus."""


@dataclass
class Sample:
    """One WBC image with optional mask and label.

    ``image`` is HxWx3 uint8 RGB; ``mask`` HxW uint8 in {0,1,2} or None; ``label`` an index
    into :data:`CLASSES` or None. ``id`` is stable across runs ("zheng_d1/001") and is what
    split manifests store.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray | None
    label: int | None
    dataset: str
    domain: str
    source: str
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.dtype != np.uint8 or self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"{self.id}: image must be HxWx3 uint8, got {self.image.dtype} {self.image.shape}")
        if self.mask is not None and self.mask.shape != self.image.shape[:2]:
            raise ValueError(
                f"{self.id} ({self.source}): mask shape {self.mask.shape} does not match image {self.image.shape[:2]}"
            )
        if self.label is not None and not 0 <= self.label < len(CLASSES):
            raise ValueError(f"{self.id}: label {self.label} outside 0..{len(CLASSES) - 1}")
