"""Discrete speech units: k-means over dense features, corpus quantization, unit-quality metrics, and the
oracle topline's units (the synthesizer's phone labels, :mod:`spkit.units.oracle`).

Heavy modules (torch, sklearn) load on first use of a name, so ``import spkit.units`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KMeansModel": "kmeans", "KMeansError": "kmeans", "fit_kmeans": "kmeans",
    "fit_kmeans_on_corpus": "kmeans", "sample_frames": "kmeans", "GSLM_PRESET": "kmeans",
    "quantize_corpus": "quantize", "merge_shards": "quantize", "read_units": "quantize",
    "read_records": "quantize", "dedup": "encoder", "SpeechEncoder": "encoder",
    "EncodedSpeech": "encoder", "parse_shard": "quantize",
    "cluster_quality": "metrics", "ClusterQuality": "metrics", "frame_pairs": "metrics",
    "sequence_stats": "metrics", "unit_report": "metrics", "alignments_by_uid": "metrics",
    "OracleEncoder": "oracle", "PhoneInventory": "oracle", "quantize_oracle": "oracle",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"spkit.units.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'spkit.units' has no attribute {name!r}")
