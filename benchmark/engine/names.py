"""Name checks that import no torch, so the CLI answers a misspelt name (with a suggestion) in well
under a second, before it loads the model zoo. A name these do not know may still be a plugin's:
when plugins are named, the registries decide, after the plugins load."""
from __future__ import annotations

from core.catalogue import BUILTIN_LAUNCHERS, BUILTIN_MODELS, BUILTIN_TREATMENTS
from core.errors import BenchmarkError
from core.plugins import plugin_modules
from core.suggest import did_you_mean
from models.registry import is_dotted_path
from wbcdata.datasets import list_datasets
from wbcdata.target_kinds import TARGET_KINDS


def check_target_names(names: list[str]) -> None:
    """Unknown or ambiguous target names fail before any job is loaded, listing the valid ones."""
    if not names:
        raise BenchmarkError("no targets named: pass --targets NAME[,NAME]")
    datasets, kinds = list_datasets(), TARGET_KINDS.names()
    unknown = [n for n in names if n not in datasets and n not in kinds]
    if unknown:
        hint = did_you_mean(unknown[0], [*datasets, *kinds])
        raise BenchmarkError(f"unknown target(s) {', '.join(unknown)}{hint}: a target is a dataset "
                             f"({', '.join(datasets)}; name a folder of your own with --dataset NAME=PATH) "
                             f"or a target kind ({', '.join(kinds)})")
    both = [n for n in names if n in datasets and n in kinds]
    if both:
        raise BenchmarkError(f"target(s) {', '.join(both)} name both a dataset and a target kind: rename the dataset")


def check_builtin_names(models: list[str], treatments: list[str], launcher: str) -> None:
    """Models, treatments and the launcher against the built-in catalogue, when no plugin could add
    names (none named by ``--plugin``, ``$WBC_PLUGINS`` or an entry point)."""
    if plugin_modules():
        return
    for kind, names, valid in (("model", [m for m in models if not is_dotted_path(m)], BUILTIN_MODELS),
                               ("treatment", treatments, BUILTIN_TREATMENTS),
                               ("launcher", [launcher], BUILTIN_LAUNCHERS)):
        for name in names:
            if name not in valid:
                raise BenchmarkError(f"unknown {kind} '{name}'{did_you_mean(name, valid)}; valid {kind}s: "
                                     f"{', '.join(valid)}" + (". A model of your own: --plugin MODULE or a dotted "
                                                              "path MODULE:FACTORY (docs/plugins.md)"
                                                              if kind == "model" else ""))
