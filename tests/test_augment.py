"""The batched tensor augmentation (benchmark.engine.augment) and the device-held batcher (benchmark.engine.batches):
each transform does what the paper's recipe says, masks follow the images, and the stream is a
function of (seed, epoch) alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.engine.augment import PaperAugment
from benchmark.engine.batches import ArraySet, TensorSet, train_batches

OFF = dict(p_rotate=0.0, p_hflip=0.0, p_vflip=0.0, p_contrast=0.0, p_noise=0.0)


def _gens(seed: int = 0) -> tuple[torch.Generator, torch.Generator]:
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)


def _batch(n: int = 6, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose first channel encodes the mask (a disc of cytoplasm with a nucleus off-centre)."""
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.int64)
    mask[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = 1
    mask[(yy - size / 2.5) ** 2 + (xx - size / 1.8) ** 2 < (size / 8) ** 2] = 2
    masks = torch.from_numpy(np.stack([mask] * n))
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(9))
    images[:, 0] = masks.float() / 2
    return images, masks


def test_all_off_leaves_the_batch_bit_identical():
    images, masks = _batch()
    out, out_masks = PaperAugment(**OFF)(images, masks, *_gens())
    assert torch.equal(out, images) and torch.equal(out_masks, masks)


@pytest.mark.parametrize("flag, dim", [("p_hflip", -1), ("p_vflip", -2)])
def test_flips_move_images_and_masks_together(flag, dim):
    images, masks = _batch()
    out, out_masks = PaperAugment(**{**OFF, flag: 1.0})(images, masks, *_gens())
    assert torch.equal(out, images.flip(dim)) and torch.equal(out_masks, masks.flip(dim))


def test_rotation_keeps_masks_on_their_pixels_and_labels_in_the_label_set():
    images, masks = _batch(n=16)
    out, out_masks = PaperAugment(**{**OFF, "p_rotate": 1.0})(images, masks, *_gens())
    assert not torch.equal(out_masks, masks)  # something rotated
    assert set(out_masks.unique().tolist()) <= {0, 1, 2} and out_masks.dtype == masks.dtype
    agree = (out[:, 0] * 2).round().long() == out_masks  # the image's mask channel, resampled bilinearly
    assert agree.float().mean() > 0.97  # only edge pixels may blend


def test_rotation_is_at_most_the_recipes_angle():
    """A 15-degree rotation moves a corner-to-corner diagonal's far pixel by at most ~sin(15) of the side."""
    size = 64
    images, masks = torch.zeros(8, 3, size, size), torch.zeros(8, size, size, dtype=torch.long)
    masks[:, 28:36, 52:60] = 1  # a block right of centre
    _, out_masks = PaperAugment(**{**OFF, "p_rotate": 1.0})(images, masks, *_gens())
    ys = [torch.nonzero(m)[:, 0].float().mean().item() for m in out_masks]
    assert max(abs(y - 31.5) for y in ys) < 24 * np.sin(np.radians(15)) + 1.5


def test_contrast_and_noise_stay_in_their_ranges():
    images = torch.full((32, 3, 16, 16), 0.5)
    masks = torch.zeros(32, 16, 16, dtype=torch.long)
    out, _ = PaperAugment(**{**OFF, "p_contrast": 1.0})(images, masks, *_gens())
    factors = out.flatten(1).mean(1) / 0.5
    assert factors.min() >= 0.8 - 1e-6 and factors.max() <= 1.2 + 1e-6 and factors.std() > 0.05
    out, _ = PaperAugment(**{**OFF, "p_noise": 1.0})(images, masks, *_gens())
    stds = (out - 0.5).flatten(1).std(1)
    assert stds.min() > 0.008 and stds.max() < 0.055


def _arrays(n: int = 10, size: int = 16) -> ArraySet:
    rng = np.random.default_rng(0)
    return ArraySet([str(i) for i in range(n)], ["d"] * n, rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                    rng.integers(0, 3, (n, size, size), dtype=np.uint8), np.ones(n, bool), np.arange(n) % 5)


def test_the_batch_stream_is_a_function_of_seed_and_epoch():
    data = TensorSet.upload(_arrays(), torch.device("cpu"))

    def stream(seed, epoch):
        return [b["image"] for b in train_batches(data, 4, seed, epoch, PaperAugment())]

    assert all(torch.equal(a, b) for a, b in zip(stream(3, 1), stream(3, 1)))
    assert not all(torch.equal(a, b) for a, b in zip(stream(3, 1), stream(3, 2)))


def test_batches_never_write_into_the_held_set():
    arrays = _arrays()
    before = arrays.images.copy()
    data = TensorSet.upload(arrays, torch.device("cpu"))
    for _ in train_batches(data, 4, 0, 0, PaperAugment(p_rotate=1.0, p_hflip=1.0, p_contrast=1.0, p_noise=1.0)):
        pass
    assert np.array_equal(arrays.images, before)


def test_a_treatments_numpy_augmentation_runs_before_the_batch_transforms():
    data = TensorSet.upload(_arrays(), torch.device("cpu"))
    calls = []

    def extra(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        calls.append(img.shape)
        return np.zeros_like(img)

    batches = list(train_batches(data, 4, 0, 0, PaperAugment(**OFF), extra))
    assert len(calls) == 10 and all(float(b["image"].abs().max()) == 0.0 for b in batches)
    assert all(b["image"].is_contiguous(memory_format=torch.channels_last) for b in batches)
