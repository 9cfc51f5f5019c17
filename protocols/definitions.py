"""The protocols of SPEC.md, as a table: on the real datasets, and the same designs on the
procedural smears (for tests and runs without a download). ``cross_scanner`` is a protocol of its
own, trained as ``cross_stain``, so that cross_stain's splits, hashes and job ids stay as they were.
The designs are in ``protocols.designs``; docs/protocols.md says what each one does."""
from __future__ import annotations

from protocols.registry import ALL_DOMAINS, FIRST_DOMAIN, ProtocolSpec, register_spec

MASKED_REAL = ("zheng_d1", "zheng_d2", "bccd")
CLASSIFICATION_ONLY_REAL = ("pbc",)
REAL = MASKED_REAL + CLASSIFICATION_ONLY_REAL
SYNTHETIC = ("synthetic",)

PROTOCOL_TABLE: tuple[ProtocolSpec, ...] = (
    ProtocolSpec("within_dataset", REAL, "train/val/test inside each real dataset (60/20/20, stratified)",
                 "within", REAL),
    ProtocolSpec("cross_dataset", REAL, "train on one real dataset, test on every other (in-domain test beside)",
                 "cross_dataset", REAL),
    ProtocolSpec("cross_stain", REAL, "train on each masked dataset; test its held-out images re-stained into each "
                 "other domain and under HED severities", "cross_stain", MASKED_REAL),
    ProtocolSpec("cross_scanner", MASKED_REAL, "train as cross_stain; test its held-out images under defocus, JPEG, "
                 "gamma and resampling, each at 5 severities", "cross_scanner", MASKED_REAL),
    ProtocolSpec("within_dataset_synthetic", SYNTHETIC, "within_dataset on each procedural stain domain",
                 "within", ALL_DOMAINS),
    ProtocolSpec("cross_dataset_synthetic", SYNTHETIC, "cross_dataset between the procedural stain domains",
                 "cross_dataset", ALL_DOMAINS),
    ProtocolSpec("cross_stain_synthetic", SYNTHETIC, "cross_stain from the first procedural domain to the others, "
                 "plus HED severities", "cross_stain", FIRST_DOMAIN),
    ProtocolSpec("cross_scanner_synthetic", SYNTHETIC, "cross_scanner from the first procedural domain",
                 "cross_scanner", FIRST_DOMAIN),
)

for _spec in PROTOCOL_TABLE:
    register_spec(_spec)
