"""The bottom layer every other package may import: the user-facing error type, the decorator
registry, the sample type with the class list and mask encoding, and the study's model names.
It imports nothing of the project (tests/test_layering.py keeps it so)."""
from core.errors import BenchmarkError
from core.registry import Registry
from core.sample import CLASSES, MASK_BACKGROUND, MASK_CYTOPLASM, MASK_NUCLEUS, Sample

__all__ = ["BenchmarkError", "CLASSES", "MASK_BACKGROUND", "MASK_CYTOPLASM", "MASK_NUCLEUS", "Registry", "Sample"]
