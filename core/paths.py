"""The data root, in the bottom layer: datasets extract there (``wbcdata``), and the caches of
derived arrays live under it, the models' embedding cache included (``models`` may not import
``wbcdata``)."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Where datasets are extracted: ``$WBC_DATA_DIR`` or ``./data``, read now."""
    return Path(os.environ.get("WBC_DATA_DIR", "data")).resolve()
