"""Samples to tensors: a split held on the training device, batched and augmented there.

Crops are small and already resized to the budget size when loaded, so a whole split fits in
device memory as uint8 tensors (a few hundred 224 px crops are ~50 MB): each job uploads its
training and validation sets once, and every batch is gathered, converted and augmented on the
device (:mod:`benchmark.engine.augment`), so a GPU is never fed by a CPU core image by image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from benchmark.engine.augment import PaperAugment
from core.sample import Sample
from core.errors import BenchmarkError

ImageAugment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""An extra image-only augmentation (e.g. a stain treatment) applied before the geometric ones."""


@dataclass
class ArraySet:
    """A split as arrays: images (N,H,W,3) uint8, masks (N,H,W) uint8, mask_valid (N,), labels (N,) with -1."""

    ids: list[str]
    domains: list[str]
    images: np.ndarray
    masks: np.ndarray
    mask_valid: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: slice | np.ndarray) -> "ArraySet":
        ids = np.array(self.ids)[index].tolist()
        return ArraySet(ids, np.array(self.domains)[index].tolist(), self.images[index], self.masks[index],
                        self.mask_valid[index], self.labels[index])

    def map_images(self, fn: Callable[[np.ndarray], np.ndarray] | None) -> "ArraySet":
        """A copy with ``fn`` applied to every image (a stain normalization); itself when ``fn`` is None."""
        if fn is None:
            return self
        return ArraySet(self.ids, self.domains, np.stack([fn(im) for im in self.images]), self.masks,
                        self.mask_valid, self.labels)

    @classmethod
    def from_samples(cls, samples: list[Sample], where: str) -> "ArraySet":
        if not samples:
            raise BenchmarkError(f"{where}: no samples")
        shapes = {s.image.shape for s in samples}
        if len(shapes) != 1:
            raise BenchmarkError(f"{where}: images of different sizes {sorted(shapes)}; crops must share one size")
        h, w = samples[0].image.shape[:2]
        return cls(
            ids=[s.id for s in samples],
            domains=[s.domain for s in samples],
            images=np.stack([s.image for s in samples]),
            masks=np.stack([s.mask if s.mask is not None else np.zeros((h, w), np.uint8) for s in samples]),
            mask_valid=np.array([s.mask is not None for s in samples]),
            labels=np.array([-1 if s.label is None else s.label for s in samples], dtype=np.int64),
        )


@dataclass
class TensorSet:
    """An :class:`ArraySet` on a device: images (N,H,W,3) uint8, masks (N,H,W) uint8, mask_valid (N,)
    bool, labels (N,) int64. On a CPU the tensors share the arrays' memory (no copy)."""

    images: torch.Tensor
    masks: torch.Tensor
    mask_valid: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def upload(cls, data: ArraySet, device: torch.device) -> "TensorSet":
        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)
        return cls(put(data.images), put(data.masks), put(data.mask_valid), put(data.labels))

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor | slice, images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Rows ``index`` as the model's input: images float in [0, 1], channels-last (B,3,H,W);
        ``images`` (uint8, N,H,W,3) replaces the stored ones (a treatment's augmented copies)."""
        raw = self.images[index] if images is None else images
        return {"image": to_float_nchw(raw), "mask": self.masks[index].long(),
                "mask_valid": self.mask_valid[index], "label": self.labels[index]}


def to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [0, 1], channels-last (the layout the engine trains in)."""
    return images.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)


def paper_augmentation() -> PaperAugment:
    """SPEC recipe: rotation +-15 degrees, horizontal/vertical flips, contrast, Gaussian noise."""
    return PaperAugment()


def to_batch(images: np.ndarray, masks: np.ndarray, mask_valid: np.ndarray, labels: np.ndarray,
             device: torch.device) -> dict[str, torch.Tensor]:
    return TensorSet.upload(ArraySet([], [], images, masks, mask_valid, labels), device).batch(slice(None))


def train_batches(data: TensorSet, batch_size: int, seed: int, epoch: int, augment: PaperAugment | None,
                  extra: ImageAugment | None = None, max_samples: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled, augmented batches on ``data``'s device; order and augmentation are a function of
    (seed, epoch) only. ``extra`` (a stain treatment's per-image numpy augmentation) runs on the CPU
    before the batch's geometric augmentation."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(data))
    if max_samples is not None:
        order = order[:max_samples]
    params = torch.Generator().manual_seed(int(rng.integers(2**62)))
    noise = torch.Generator(device=data.images.device).manual_seed(int(rng.integers(2**62)))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < 2 and len(order) >= 2:
            continue  # BatchNorm cannot train on a batch of one
        index = torch.from_numpy(idx).to(data.images.device)
        treated = None
        if extra is not None:
            raw = data.images[index].cpu().numpy()
            treated = torch.from_numpy(np.stack([extra(img, rng) for img in raw])).to(data.images.device)
        batch = data.batch(index, treated)
        if augment is not None:
            image, mask = augment(batch["image"], batch["mask"], params, noise)
            batch["image"], batch["mask"] = image.contiguous(memory_format=torch.channels_last), mask
        yield batch


def eval_batches(data: TensorSet, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(data), batch_size):
        yield data.batch(slice(start, start + batch_size))
