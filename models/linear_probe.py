"""Frozen-encoder linear probe (eva / THUNDER style): a foundation model's embedding, judged by the
best linear classifier on it.

The encoder (``models.frozen_encoder``) never trains: it has no trainable parameters, so the engine
gives the model ``after_training`` in place of training. That embeds the labelled training images
once (cached on disk, ``models.embedding_cache``) and fits a class-weighted multinomial logistic
regression with an L2 penalty on the standardised embeddings, by full-batch L-BFGS in float64 on
the CPU. The objective is strictly convex and the fit starts from zero, so it has one answer and no
randomness: the job's seed acts through its split only. Classifier only (docs/decisions.md says why).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import BenchmarkError
from models.base import ModelOutput, WBCModel
from models.embedding_cache import EmbeddingKey, cached_embeddings, image_digest
from models.frozen_encoder import EncoderSpec, build_encoder, resolve_source
from models.registry import register_model

DEFAULT_ENCODER = "vit_small_patch14_dinov2.lvd142m"
"""DINOv2 ViT-S/14, DinoBloom-S's architecture: random init unless ``pretrained`` or ``weights``."""
DEFAULT_L2 = 1e-3
"""L2 weight on the head's weights, against the class-weighted mean cross-entropy (see decisions.md)."""
EMBED_BATCH = 64
STD_FLOOR = 1e-6
"""Embedding dimensions that barely vary in training are divided by this instead of ~0."""
LBFGS_ITERATIONS = 500
MIN_SIZE = 32


@dataclass(frozen=True)
class ProbeFit:
    """A fitted head in float64: standardisation (``mean``, ``std``, (D,)), then logits = z W^T + b."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray


def fit_probe(features: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray, num_classes: int,
              l2: float) -> ProbeFit:
    """Minimise sum_i w_i CE(z_i W^T + b, y_i) / sum_i w_i + l2/2 ||W||^2 over W (K, D) and b (K,), with
    z the embeddings standardised by their training mean and SD; the bias is not penalised."""
    x = torch.from_numpy(np.asarray(features, np.float64))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    w = torch.from_numpy(np.asarray(sample_weight, np.float64))
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(STD_FLOOR)
    z, w = (x - mean) / std, w / w.sum()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=LBFGS_ITERATIONS, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        ce = F.cross_entropy(z @ weight.T + bias, y, reduction="none")
        loss = (w * ce).sum() + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(objective)
    return ProbeFit(mean.numpy(), std.numpy(), weight.detach().numpy(), bias.detach().numpy())


class LinearProbe(WBCModel):
    """A frozen encoder's pooled embedding, then a linear head fitted by ``after_training``.

    Before fitting the head is zero (uniform probabilities). The head and its standardisation are
    buffers, so the state_dict (which also holds the frozen encoder) restores the scored model;
    the encoder's identity rides along as extra state, so a restored model's cache key is the
    weights it really holds."""

    has_segmenter = False

    def __init__(self, encoder: torch.nn.Module, spec: EncoderSpec, num_classes: int, l2: float) -> None:
        super().__init__()
        self.encoder, self.spec, self.l2, self.num_classes = encoder, spec, l2, num_classes
        self.identity = spec.source.identity
        self.register_buffer("pixel_mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("feature_mean", torch.zeros(spec.width))
        self.register_buffer("feature_std", torch.ones(spec.width))
        self.register_buffer("head_weight", torch.zeros(num_classes, spec.width))
        self.register_buffer("head_bias", torch.zeros(num_classes))

    def train(self, mode: bool = True) -> LinearProbe:
        """The encoder stays in eval mode (dropout, stochastic depth, batch statistics off) always."""
        super().train(mode)
        self.encoder.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) float32 pooled embeddings of RGB [0, 1] images, at the encoder's input side. Always in
        float32, autocast off: a frozen model's output does not depend on the engine's bf16 policy,
        and the fit and the predictions see the same arithmetic."""
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            side = self.spec.input_size
            x = x.float()
            if tuple(x.shape[-2:]) != (side, side):
                x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
            return self.encoder((x - self.pixel_mean) / self.pixel_std).float()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        features = self.embed(x)
        with torch.autocast(x.device.type, enabled=False):
            logits = ((features - self.feature_mean) / self.feature_std) @ self.head_weight.T + self.head_bias
        return ModelOutput(class_logits=logits, mask_logits=None, features=features)

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Nothing trains by gradient: a zero loss."""
        return torch.zeros((), device=out.class_logits.device), {"total": 0.0}

    def extract(self, images: np.ndarray, device: torch.device) -> np.ndarray:
        """(N, D) float32 embeddings of uint8 (N, H, W, 3) images, in batches, on ``device``."""
        self.to(device).eval()
        out = []
        for start in range(0, len(images), EMBED_BATCH):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + EMBED_BATCH])).to(device)
            out.append(self.embed(x.permute(0, 3, 1, 2).float().div_(255.0)).cpu().numpy())
        return np.concatenate(out)

    def embedding_key(self, images: np.ndarray, device: torch.device) -> EmbeddingKey:
        return EmbeddingKey(self.spec.source.encoder, self.identity, self.spec.input_size, f"{device.type}-float32",
                            image_digest(images))

    def after_training(self, images: np.ndarray, labels: np.ndarray, seed: int, device: torch.device,
                       masks: np.ndarray | None = None, mask_valid: np.ndarray | None = None) -> None:
        """Fit the head on the (cached) embeddings of the labelled training images, each weighted by the
        engine's class weight for its label (uniform if the engine set none)."""
        labelled = np.asarray(labels) >= 0
        if not labelled.any():
            raise BenchmarkError(f"linear_probe: none of the {len(labels)} training images has a label; "
                                 f"a probe needs labelled training images (a classification source)")
        y, kept = np.asarray(labels)[labelled], np.ascontiguousarray(images[labelled])
        if y.max() >= self.num_classes:
            raise BenchmarkError(f"linear_probe: training label {int(y.max())} outside 0..{self.num_classes - 1}")
        features = cached_embeddings(self.embedding_key(kept, device), len(kept), lambda: self.extract(kept, device))
        class_weights = getattr(self, "class_weights", None)
        weights = np.ones(len(y)) if class_weights is None else class_weights.detach().cpu().double().numpy()[y]
        fit = fit_probe(features, y, weights, self.num_classes, self.l2)
        for name, value in (("feature_mean", fit.mean), ("feature_std", fit.std),
                            ("head_weight", fit.weight), ("head_bias", fit.bias)):
            getattr(self, name).copy_(torch.from_numpy(value))

    def get_extra_state(self) -> torch.Tensor:
        """The encoder's weights identity, as UTF-8 bytes in a uint8 tensor (the checkpoint holds tensors only)."""
        return torch.frombuffer(bytearray(json.dumps({"identity": self.identity}).encode()), dtype=torch.uint8).clone()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.identity = json.loads(state.cpu().numpy().tobytes().decode())["identity"]


def _check_options(encoder: object, pretrained: object, weights: object, l2: object, init_seed: object) -> None:
    """Option types, as --model-kwargs' JSON can get them wrong, before any file is read."""
    number = isinstance(l2, (int, float)) and not isinstance(l2, bool)
    checks = (
        (isinstance(encoder, str) and bool(encoder),
         f"encoder must be a timm model name or hf-hub:ORG/NAME, got {encoder!r}"),
        (isinstance(pretrained, bool), f"pretrained must be true or false, got {pretrained!r}"),
        (weights is None or isinstance(weights, str), f"weights must be a file path, got {weights!r}"),
        (number and l2 > 0, f"l2 must be a positive number, got {l2!r} (default {DEFAULT_L2})"),
        (isinstance(init_seed, int) and not isinstance(init_seed, bool),
         f"init_seed must be an integer, got {init_seed!r}"),
    )
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise BenchmarkError(f"linear_probe: {'; '.join(problems)} (in --model-kwargs; see docs/models.md)")


@register_model("linear_probe", heads=("classifier",), min_size=MIN_SIZE, features=True)
def linear_probe(num_classes: int = 5, img_size: int = 224, *, encoder: str = DEFAULT_ENCODER,
                 pretrained: bool = False, weights: str | None = None, l2: float = DEFAULT_L2,
                 init_seed: int = 0) -> LinearProbe:
    """Frozen timm / hub encoder + linear probe fitted on cached embeddings; classifier only."""
    _check_options(encoder, pretrained, weights, l2, init_seed)
    source = resolve_source(encoder, pretrained, weights, init_seed)
    module, spec = build_encoder(source, img_size, init_seed)
    return LinearProbe(module, spec, num_classes, float(l2))
