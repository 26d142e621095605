"""Shims that let fairseq 0.12 (``fairseq-fixed``) run on the NumPy 2 / torch 2.x stack spkit pins.

Every spkit module that touches fairseq imports it through :func:`import_fairseq` so the shims are
applied once, in one place, before fairseq's own modules are imported.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np


def apply_numpy_shims() -> None:
    """Restore ``np.compat.long`` (removed in NumPy 2), which fairseq 0.12's data code still uses."""
    compat = getattr(np, "compat", None)
    if compat is None or not hasattr(compat, "long"):
        # A namespace, not a module: fairseq only reads the attribute ``long``.
        np.compat = types.SimpleNamespace(long=np.int64)  # type: ignore[attr-defined]


def import_fairseq() -> Any:
    """Apply the shims and import fairseq; raise ImportError with the install hint if it is missing."""
    apply_numpy_shims()
    try:
        import fairseq
    except ImportError as e:
        raise ImportError(
            "this needs fairseq: pip install --no-build-isolation fairseq-fixed==0.12.3.1 "
            f"(import failed: {e})"
        ) from e
    return fairseq
