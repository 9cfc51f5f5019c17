"""Samples to tensors: the in-memory batcher with seeded albumentations augmentation.

Crops are small and already resized to the budget size when loaded, so the whole split lives
in memory as uint8 arrays; a worker pool would cost more than it saves on 2 cores and would
make the augmentation stream harder to keep deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import albumentations as A
import cv2
import numpy as np
import torch

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


def paper_augmentation() -> A.Compose:
    """SPEC recipe: rotation +-15 degrees, horizontal/vertical flips, contrast, Gaussian noise."""
    return A.Compose([
        A.Rotate(limit=15, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.2, p=0.5),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.3),
    ])


def to_batch(images: np.ndarray, masks: np.ndarray, mask_valid: np.ndarray, labels: np.ndarray,
             device: torch.device) -> dict[str, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return {
        "image": x.contiguous(memory_format=torch.channels_last),
        "mask": torch.from_numpy(masks.astype(np.int64)).to(device),
        "mask_valid": torch.from_numpy(mask_valid).to(device),
        "label": torch.from_numpy(labels).to(device),
    }


def train_batches(data: ArraySet, batch_size: int, seed: int, epoch: int, device: torch.device,
                  augment: A.Compose | None, extra: ImageAugment | None = None,
                  max_samples: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled, augmented batches; order and augmentation are a function of (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(data))
    if max_samples is not None:
        order = order[:max_samples]
    if augment is not None:
        augment.set_random_seed(int(rng.integers(2**31)))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < 2 and len(order) >= 2:
            continue  # BatchNorm cannot train on a batch of one
        imgs, msks = [], []
        for i in idx:
            img, msk = data.images[i], data.masks[i]
            if extra is not None:
                img = extra(img, rng)
            if augment is not None:
                out = augment(image=img, mask=msk)
                img, msk = out["image"], out["mask"]
            imgs.append(img)
            msks.append(msk)
        yield to_batch(np.stack(imgs), np.stack(msks), data.mask_valid[idx], data.labels[idx], device)


def eval_batches(data: ArraySet, batch_size: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        yield to_batch(data.images[sl], data.masks[sl], data.mask_valid[sl], data.labels[sl], device)
