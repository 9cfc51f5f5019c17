"""A frozen timm encoder for probing, from what is on this machine only.

The encoder is a timm model name (``vit_small_patch14_dinov2.lvd142m``) or a Hugging Face hub id
(``hf-hub:1aurent/vit_small_patch14_224.dinobloom``), built without its classifier (``num_classes=0``:
its forward returns the pooled embedding). Weights come from, in order: a ``weights=`` local file,
the local cache (``pretrained``), or a seeded random init. Nothing is downloaded: a missing hub
config or missing weights fail at once, naming the place looked in and the command that fetches
them on a machine with internet. The encoder's identity (which weights, exactly) keys the
embedding cache (``models.embedding_cache``).
"""
from __future__ import annotations

import difflib
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from timm.data import resolve_data_config
from timm.models import load_state_dict, split_model_name_tag
from timm.models._hub import hf_split, load_model_config_from_path
from torch import nn

from core.errors import BenchmarkError
from models.pretrained import HF_DEFAULT_FILES, cached_weights, hf_hub_cache

HUB_PREFIX = "hf-hub:"
SUGGESTIONS = 5
"""Close timm names offered for an unknown encoder."""


@dataclass(frozen=True)
class EncoderSource:
    """Where an encoder comes from: the timm name to build (tag included) and its build arguments, the
    pretrained config that carries its normalisation (None: timm's own for that name), the weights
    file (None: random init) and a string that names those weights exactly (the embedding cache's key)."""

    encoder: str
    architecture: str
    pretrained_cfg: dict[str, Any] | None
    model_args: dict[str, Any]
    weights: Path | None
    identity: str


@dataclass(frozen=True)
class EncoderSpec:
    """A built encoder's description: its source, the input side it runs at (the job's size rounded up
    to a whole number of patches), its embedding width and its own normalisation."""

    source: EncoderSource
    input_size: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _fetch_hint(hub_id: str) -> str:
    repo, _ = hf_split(hub_id)
    return (f"fetch it on a machine with internet with `hf download {repo}` (older huggingface_hub: "
            f"`huggingface-cli download {repo}`) and copy that machine's Hugging Face cache here (or point "
            f"$HF_HOME / $HF_HUB_CACHE at a copy)")


def _hub_file(hub_id: str, filenames: tuple[str, ...], what: str) -> Path:
    """The first of ``filenames`` of hub repo ``hub_id`` found in the local cache, or an error."""
    repo, revision = hf_split(hub_id)
    cache = hf_hub_cache()
    for name in filenames:
        found = try_to_load_from_cache(repo, name, cache_dir=cache, revision=revision)
        if isinstance(found, str):
            return Path(found)
    raise BenchmarkError(
        f"linear_probe: encoder '{HUB_PREFIX}{hub_id}': its {what} ({' or '.join(filenames)}) is not in the "
        f"Hugging Face cache {cache} ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), and "
        f"nothing is downloaded here; {_fetch_hint(hub_id)}; or pass weights=<a local file> with the "
        f"architecture's timm name as encoder")


def hub_identity(path: Path) -> str | None:
    """``hf:<repo>@<commit>/<file>`` for a file inside the hub cache (a snapshot folder is named by its
    commit, which fixes the file's bytes); None for any other file."""
    parts = path.parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            repo = part.removeprefix("models--").replace("--", "/")
            return f"hf:{repo}@{parts[i + 2]}/{'/'.join(parts[i + 3:])}"
    return None


_file_hashes: dict[tuple[str, int, int], str] = {}


def file_identity(path: Path) -> str:
    """A weights file's identity: its hub commit when it is in the hub cache, else the SHA-256 of its
    bytes (computed once per process and file version)."""
    hub = hub_identity(path)
    if hub is not None:
        return hub
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _file_hashes[key] = h.hexdigest()
    return f"file:sha256:{_file_hashes[key]}"


def check_timm_name(name: str) -> None:
    """Fail on a name timm does not know, offering the closest names it does."""
    architecture, tag = split_model_name_tag(name)
    if timm.is_model(architecture) and (not tag or name in timm.list_pretrained(name)):
        return
    close = difflib.get_close_matches(name, timm.list_models() + timm.list_pretrained(), n=SUGGESTIONS, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "no timm name is close"
    raise BenchmarkError(
        f"linear_probe: timm does not know encoder '{name}' ({hint}); list names with "
        f"`python -c \"import timm; print(timm.list_models('*vit*'))\"`, or name a hub model as "
        f"{HUB_PREFIX}ORG/NAME")


def _local_weights(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"linear_probe: weights file '{weights}' does not exist (resolved: {path.resolve()}); "
                             f"give the path of a local checkpoint (.safetensors, .pth or .bin), or drop weights=")
    return path


def resolve_source(encoder: str, pretrained: bool, weights: str | None, init_seed: int) -> EncoderSource:
    """Where ``encoder``'s architecture and weights come from, checked on disk, before anything is built."""
    local = _local_weights(weights) if weights is not None else None
    if encoder.startswith(HUB_PREFIX):
        hub_id = encoder.removeprefix(HUB_PREFIX)
        config = _hub_file(hub_id, ("config.json",), "config")
        cfg, architecture, model_args = load_model_config_from_path(config.parent)
        cfg = {**cfg, "source": None, "file": None}  # weights come from the file chosen below, never the network
        if local is None and pretrained:
            local = _hub_file(hub_id, HF_DEFAULT_FILES, "weights")
    else:
        check_timm_name(encoder)
        architecture, cfg, model_args = encoder, None, {}  # timm reads the tag itself
        if local is None and pretrained:
            try:
                local = cached_weights(encoder)
            except BenchmarkError as e:
                raise BenchmarkError(f"linear_probe: encoder '{encoder}': {e}; or pass weights=<a local file>") from e
    identity = file_identity(local) if local is not None else f"random-init:{init_seed}"
    return EncoderSource(encoder, architecture, cfg, dict(model_args), local, identity)


def _input_size(source: EncoderSource, img_size: int) -> int | None:
    """``img_size`` rounded up to whole patches for a patch-based encoder, which is built at that size
    (timm resamples pretrained position embeddings to it); None for a CNN, which takes any size as it
    is. The architecture is read on the meta device, so nothing is allocated."""
    with torch.device("meta"):
        probe = timm.create_model(source.architecture, pretrained=False, num_classes=0, **source.model_args)
    patch = getattr(getattr(probe, "patch_embed", None), "patch_size", None)
    if patch is None:
        return None
    side = max(int(p) for p in (patch if isinstance(patch, (tuple, list)) else (patch,)))
    return -(-img_size // side) * side


def _load_weights(module: nn.Module, source: EncoderSource) -> None:
    """Load ``source.weights`` into ``module`` strictly, through the architecture's own checkpoint
    filter (timm's per-model fixes: position embeddings resampled to the input side, original DINOv2
    key names). timm's loader is not used: building without a classifier makes it load non-strictly,
    and a file of another architecture would leave the encoder random with only a log line."""
    path = source.weights
    if path.suffix == ".npz":  # timm's JAX-format ViT checkpoints have their own loader
        module.load_pretrained(str(path))
        return
    state = load_state_dict(str(path))
    filter_fn = getattr(sys.modules[type(module).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, module)
    classifier = module.pretrained_cfg.get("classifier")
    for name in (classifier,) if isinstance(classifier, str) else classifier or ():  # the encoder has none
        for part in ("weight", "bias"):
            state.pop(f"{name}.{part}", None)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"{len(result.missing_keys)} missing key(s) {result.missing_keys[:3]}, "
                           f"{len(result.unexpected_keys)} unexpected key(s) {result.unexpected_keys[:3]}")


def build_encoder(source: EncoderSource, img_size: int, init_seed: int) -> tuple[nn.Module, EncoderSpec]:
    """The frozen encoder (eval mode, no gradients) and its spec. A random init is drawn from
    ``init_seed`` alone, so the same options give the same encoder whatever the global RNG holds."""
    size = _input_size(source, img_size)
    kwargs: dict[str, Any] = {**source.model_args, "num_classes": 0, **({"img_size": size} if size else {})}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        try:
            module = timm.create_model(source.architecture, pretrained=False, pretrained_cfg=source.pretrained_cfg,
                                       **kwargs)
        except Exception as e:
            raise BenchmarkError(f"linear_probe: encoder '{source.encoder}' cannot be built at {size or img_size} px: "
                                 f"{type(e).__name__}: {_first_line(e)}; pick another encoder or budget") from e
    if source.weights is not None:
        try:
            _load_weights(module, source)
        except Exception as e:
            raise BenchmarkError(
                f"linear_probe: weights file {source.weights} does not fit encoder '{source.encoder}' "
                f"(architecture {source.architecture}): {type(e).__name__}: {_first_line(e)}; give a checkpoint of "
                f"that architecture, or name the encoder the file was saved from") from e
    module.eval().requires_grad_(False)
    data = resolve_data_config({}, model=module)
    spec = EncoderSpec(source, size or img_size, int(module.num_features), tuple(data["mean"]), tuple(data["std"]))
    return module, spec


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""
