"""Names of the SG-CLDFF ablation family, importable without torch (reports and the CLI use it)."""

SG_CLDFF_VARIANTS: tuple[str, ...] = ("sg_cldff", "sg_cldff_no_saliency", "sg_cldff_no_align", "sg_cldff_no_cldff")
"""The full model first, then one variant per ablated component (SPEC "Ablations")."""
