"""The study's model names (the SG-CLDFF ablation family, the training-free floors): shared
vocabulary of the CLI, the runner and the reports, importable without torch or the model zoo."""

SG_CLDFF_VARIANTS: tuple[str, ...] = ("sg_cldff", "sg_cldff_no_saliency", "sg_cldff_no_align", "sg_cldff_no_cldff")
"""The full model first, then one variant per ablated component (SPEC "Ablations")."""

REFERENCE_MODELS: tuple[str, ...] = ("constant_mask", "majority_class")
"""Training-free floors every sweep runs beside the requested models, so every table shows what
a model scores without looking at the image (on WBC-centred crops a constant mask scores IoU 0.8-0.9)."""
