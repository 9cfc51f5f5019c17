"""Job checkpoints: a finished job's selected weights and everything that rebuilds the model and its
test-time stain treatment, so that ``benchmark.engine.evaluate`` can score the job on new targets without
retraining.

Two files in the job directory, written before ``done``:

- ``weights.safetensors``: the model's ``state_dict`` (tensors only: safetensors cannot hold code,
  so loading it never runs anything, unlike a pickle);
- ``checkpoint.json``: the model's registry name (or dotted path) and options, class list, input
  size, engine version, the fitted treatment's test-time parameters (the Macenko template, not an
  object), and the SHA-256 and size of the weights.

A checkpoint is only written as restorable after a model rebuilt from it has given bit-identical
outputs to the trained one on a few validation images (on CPU). A model whose fitted state lives
outside its ``state_dict`` (``xincept_all`` keeps its XGBoost stage as a Python object) fails that
check: its ``checkpoint.json`` then says ``restorable: false`` with the reason, and no weights are
kept, so ``evaluate`` refuses it with that reason rather than scoring a different model.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from benchmark.record.atomic import write_json
from benchmark.engine.batches import ArraySet, to_batch
from benchmark.engine.treatments import FittedTreatment, _MacenkoNormalizer
from core.errors import BenchmarkError
from core.sample import CLASSES
from models import MODELS, create_model
from models.base import WBCModel
from models.registry import is_dotted_path
from wbcdata.stain import StainProfile

CHECKPOINT_FORMAT = 1
"""Bump when the layout of the two files changes; a checkpoint of another format is refused."""
WEIGHTS_FILE = "weights.safetensors"
CHECKPOINT_FILE = "checkpoint.json"
PROBE_IMAGES = 4
"""Validation images on which the rebuilt model must match the trained one before a checkpoint counts."""


class JobRefused(BenchmarkError):
    """A job that cannot be rebuilt, or scored on some target; the message is the reason, which
    ``evaluate`` prints beside the job's name."""


class ModelNotTrusted(JobRefused):
    """A job whose model this process may not build until the user says so on the command line: a
    dotted path (code a results folder would make us import) or a name no loaded plugin registers.
    ``evaluate`` scores the other jobs, then exits non-zero with the way to allow it."""


def check_model_name(name: object, allowed: frozenset[str]) -> str:
    """The model a checkpoint names, if this process may build it: a registered name (built-in, or a
    plugin the user loaded), or a dotted path the user allowed (``evaluate --allow-model``). A
    results folder is data: the names in it never choose what code is imported (docs/trust.md)."""
    if not isinstance(name, str) or not name:
        raise JobRefused(f"{CHECKPOINT_FILE} names no model ({name!r})")
    if is_dotted_path(name):
        if name not in allowed:
            raise ModelNotTrusted(
                f"its model is the dotted path '{name}': importing it would run code named inside the results "
                f"folder, which evaluate never does on its own. If you trust that module, name it yourself: "
                f"--allow-model {name} (docs/trust.md)")
    elif name not in MODELS:
        raise ModelNotTrusted(f"its model '{name}' is not registered here: load the plugin that registers it "
                              f"(--plugin MODULE or $WBC_PLUGINS; docs/plugins.md)")
    return name


def weights_path(job_dir: Path, meta: dict) -> Path:
    """The weights file a checkpoint names, which must be a file inside ``job_dir`` (a name such as
    ``../../elsewhere`` or a link out of the folder is refused)."""
    name = (meta.get("weights") or {}).get("file") if isinstance(meta.get("weights"), dict) else None
    if not isinstance(name, str) or not name:
        raise JobRefused(f"{CHECKPOINT_FILE} names no weights file")
    path = (job_dir / name).resolve()
    if not path.is_relative_to(job_dir.resolve()) or path.parent != job_dir.resolve():
        raise JobRefused(f"its weights file '{name}' is not a file of the job folder (weights are only read from "
                         f"inside it)")
    return path


def treatment_state(fitted: FittedTreatment) -> dict:
    """The parameters the treatment applies to test images: none for a training-only treatment
    (``hed``, ``randstainna``) or no treatment, the template for ``macenko``. A treatment that
    preprocesses test images in a way not listed here cannot be restored (raises)."""
    if fitted.preprocess is None:
        return {"name": fitted.name, "test_preprocess": None}
    if fitted.name == "macenko":
        return {"name": fitted.name, "test_preprocess": {"macenko_template": fitted.info["template"]}}
    raise JobRefused(f"treatment '{fitted.name}' preprocesses test images and its fitted parameters "
                     "cannot be restored from a record")


def restore_treatment(state: dict) -> FittedTreatment:
    """The test-time part of a fitted treatment, from :func:`treatment_state`'s record."""
    pre = state.get("test_preprocess")
    if pre is None:
        return FittedTreatment(str(state["name"]))
    if "macenko_template" in pre:
        normalizer = _MacenkoNormalizer(StainProfile.from_dict(pre["macenko_template"]))
        return FittedTreatment(str(state["name"]), preprocess=normalizer, info={"per_image": normalizer.stats})
    raise JobRefused(f"treatment '{state['name']}': unknown test-time record {sorted(pre)}")


def build_model(record: dict) -> WBCModel:
    """The model ``record`` names, in the memory format training used (channels-last convolutions can
    round differently from contiguous ones, and predictions must match the trained model's bit for bit).
    ``pretrained`` is dropped: it only picks the initial weights, which the saved ones replace, so
    scoring needs no ImageNet cache (the check in :func:`write_checkpoint` builds the same way)."""
    options = {k: v for k, v in record["model_kwargs"].items() if k != "pretrained"}
    model = create_model(record["model"], num_classes=len(record["classes"]), img_size=record["img_size"], **options)
    return model.to(memory_format=torch.channels_last)


def _outputs(model: WBCModel, x: torch.Tensor) -> list[torch.Tensor | None]:
    model.eval()
    with torch.no_grad():
        out = model(x)
    return [out.class_logits, out.mask_logits, out.saliency]


def _identical(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> bool:
    return all((u is None and v is None) or (u is not None and v is not None and torch.equal(u, v))
               for u, v in zip(a, b))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checkpoint(job_dir: Path, model: WBCModel, record: dict, treatment: FittedTreatment,
                     probe: ArraySet) -> dict:
    """Save ``model``'s weights and ``record`` (model, model_kwargs, img_size, engine_version, job_id)
    into ``job_dir`` after checking that a rebuilt model and treatment reproduce its outputs on
    ``probe`` (untreated images). Moves ``model`` to the CPU: call it last. Returns what was written
    to ``checkpoint.json``."""
    meta = {"format": CHECKPOINT_FORMAT, **record, "classes": list(CLASSES)}
    try:
        meta["treatment"] = treatment_state(treatment)
        state = model.state_dict()
        not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
        if not_tensors:
            raise JobRefused(f"state_dict entries that are not tensors: {', '.join(not_tensors)}")
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
        rebuilt = build_model(meta)
        try:
            rebuilt.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            raise JobRefused(f"its state_dict does not fit a freshly built model ({str(e).splitlines()[0]})") from e
        probe = probe.subset(slice(0, PROBE_IMAGES))
        images = probe.map_images(treatment.preprocess)
        again = probe.map_images(restore_treatment(meta["treatment"]).preprocess)
        if not np.array_equal(images.images, again.images):
            raise JobRefused(f"treatment '{treatment.name}' restored from its record changes test images "
                             "differently from the fitted one")
        x = to_batch(images.images, images.masks, images.mask_valid, images.labels, torch.device("cpu"))["image"]
        if not _identical(_outputs(model.cpu(), x), _outputs(rebuilt, x)):
            raise JobRefused("a model rebuilt from its state_dict predicts differently from the trained one "
                             "(it keeps fitted state outside the state_dict)")
    except JobRefused as e:
        meta.update(restorable=False, reason=str(e))
        write_json(job_dir / CHECKPOINT_FILE, meta)
        return meta
    path = job_dir / WEIGHTS_FILE
    save_file(tensors, str(path))
    meta.update(restorable=True, weights={"file": WEIGHTS_FILE, "sha256": sha256_file(path),
                                          "bytes": path.stat().st_size, "tensors": len(tensors)})
    write_json(job_dir / CHECKPOINT_FILE, meta)
    return meta


def read_checkpoint(job_dir: Path) -> dict:
    """``checkpoint.json`` of a job, or :class:`JobRefused` saying why there is none to use."""
    path = job_dir / CHECKPOINT_FILE
    if not path.exists():
        raise JobRefused("no saved weights (checkpoint.json is missing: the job was trained before "
                         "checkpoints were saved); delete its folder and rerun the sweep to retrain it")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise JobRefused(f"{CHECKPOINT_FILE} is not valid JSON ({e})") from e
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise JobRefused(f"checkpoint format {meta.get('format')} is not this code's ({CHECKPOINT_FORMAT})")
    if not meta.get("restorable"):
        raise JobRefused(f"its weights were not kept: {meta.get('reason', 'no reason recorded')}")
    return meta


def load_checkpoint(job_dir: Path, engine_version: str,
                    allowed: frozenset[str] = frozenset()) -> tuple[WBCModel, FittedTreatment, dict]:
    """The job's model with its selected weights, its test-time treatment and its checkpoint record.

    Refused (:class:`JobRefused`, the reason in the message) when there is no usable
    checkpoint, when the job was trained under another engine version than ``engine_version`` (the
    code that trains or scores changed), when its model may not be built (:func:`check_model_name`;
    ``allowed``: the dotted paths the user allowed), or when the weights fail their checksum or do
    not fit the model the code builds now."""
    meta = read_checkpoint(job_dir)
    check_model_name(meta.get("model"), allowed)
    if str(meta.get("engine_version")) != str(engine_version):
        raise JobRefused(f"trained under engine version {meta.get('engine_version')}, this code is "
                         f"version {engine_version}: its results would mix two versions of the code; retrain it")
    if meta.get("classes") != list(CLASSES):
        raise JobRefused(f"trained on classes {meta.get('classes')}, this code has {list(CLASSES)}")
    path = weights_path(job_dir, meta)
    if not path.is_file():
        raise JobRefused(f"{path.name} is missing")
    if sha256_file(path) != meta["weights"]["sha256"]:
        raise JobRefused(f"{path.name} does not match its SHA-256 in {CHECKPOINT_FILE} (corrupt or replaced)")
    try:
        model = build_model(meta)
    except BenchmarkError as e:
        raise JobRefused(f"its model '{meta['model']}' cannot be built now ({e})") from e
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except (SafetensorError, RuntimeError) as e:
        raise JobRefused(f"its weights do not fit the model '{meta['model']}' this code builds "
                         f"({str(e).splitlines()[0]})") from e
    return model, restore_treatment(meta["treatment"]), meta
