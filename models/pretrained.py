"""The ``pretrained`` switch: timm ImageNet weights, from the local cache only.

All models train from scratch by default. With ``pretrained=True`` a timm backbone is loaded
from weights the user already has: the Hugging Face hub cache (where timm's ``hf_hub_id``
weights land) or the torch hub checkpoint folder (where timm's ``url`` weights land). Nothing is
downloaded here, so the switch fails at once with a ``BenchmarkError`` instead of hanging on
network retries when offline. The file found is handed to timm's own loader
(``pretrained_cfg_overlay={"file": ...}``), so timm's per-model fixes apply as they would online:
the ImageNet classifier is dropped when ``num_classes`` differs, Swin's relative-position tables
are resized to the window used, and a missing layer is reported by timm, never silently invented.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from timm.models import get_pretrained_cfg
from timm.models._hub import hf_split
from torch import nn

from core.errors import BenchmarkError

HF_DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin")
"""What timm's ``load_state_dict_from_hf`` fetches for a hub id without a file override, in order."""


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, resolved from the environment *now* (huggingface_hub
    reads it once at import, which would ignore a later HF_HOME / HF_HUB_CACHE change)."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def _hf_candidates(hub_id: str, filename: str | None) -> tuple[str, str | None, tuple[str, ...]]:
    repo, revision = hf_split(hub_id)
    if filename is None:
        return repo, revision, HF_DEFAULT_FILES
    if filename.endswith(".bin"):  # timm prefers a safetensors twin where the hub has one
        return repo, revision, (filename[: -len(".bin")] + ".safetensors", filename)
    return repo, revision, (filename,)


def cached_weights(name: str) -> Path:
    """The local file holding timm ``name``'s default pretrained weights, or a BenchmarkError that
    names the model, every place looked in, and the fix. Reads the disk only, never the network."""
    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise BenchmarkError(f"pretrained: timm has no pretrained weights for '{name}'; drop `pretrained`")
    looked: list[str] = []
    if cfg.hf_hub_id:
        cache = hf_hub_cache()
        repo, revision, files = _hf_candidates(cfg.hf_hub_id, cfg.hf_hub_filename)
        for filename in files:
            found = try_to_load_from_cache(repo, filename, cache_dir=cache, revision=revision)
            if isinstance(found, str):
                return Path(found)
        looked.append(f"{' or '.join(files)} of hub repo '{cfg.hf_hub_id}' in the Hugging Face cache {cache}")
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if path.is_file():
            return path
        looked.append(f"{path} (torch hub cache, from {cfg.url})")
    raise BenchmarkError(
        f"pretrained: weights for timm model '{name}' are not cached locally; looked for "
        + "; and for ".join(looked)
        + f". Fix: download them once with network access, e.g. python -c \"import timm; "
        f"timm.create_model('{name}', pretrained=True)\" (HF_HUB_OFFLINE unset), or drop `pretrained`."
    )


def create_timm_backbone(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, **kwargs)``; with ``pretrained`` the default weights are loaded by
    timm from the locally cached file (see ``cached_weights``), random init otherwise."""
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    path = cached_weights(name)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
