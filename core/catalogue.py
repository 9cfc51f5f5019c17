"""Built-in names of the registries whose modules load torch (models, stain treatments, launchers)
and of the protocols,
so the CLI checks a name and answers a misspelt one in well under a second, before torch is
imported. A name not here may still be a plugin's: then the registry itself decides.
``tests/test_registry.py`` checks that these equal what the registries hold."""
from __future__ import annotations

BUILTIN_MODELS: tuple[str, ...] = (
    "classical", "constant_mask", "efficientswin", "linear_probe", "majority_class", "resnext_cc",
    "resnext_cc_small", "saliency_unet", "sg_cldff", "sg_cldff_no_align", "sg_cldff_no_cldff",
    "sg_cldff_no_saliency", "unet", "xincept_all",
)
BUILTIN_TREATMENTS: tuple[str, ...] = ("hed", "macenko", "none", "randstainna")
BUILTIN_LAUNCHERS: tuple[str, ...] = ("local", "ray")
BUILTIN_PROTOCOLS: tuple[str, ...] = (
    "cross_dataset", "cross_dataset_synthetic", "cross_scanner", "cross_scanner_synthetic", "cross_stain",
    "cross_stain_synthetic", "within_dataset", "within_dataset_synthetic",
)
"""Importable without torch, but listing them in ``--help`` must not load the data layer either."""
