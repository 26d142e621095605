"""Discrete speech units: k-means over dense features, corpus quantization, unit-quality metrics, and the
oracle topline's units (the synthesizer's phone labels, :mod:`spkit.units.oracle`)."""

from __future__ import annotations

from spkit.units.encoder import EncodedSpeech, SpeechEncoder, dedup
from spkit.units.kmeans import (
    GSLM_PRESET,
    KMeansError,
    KMeansModel,
    fit_kmeans,
    fit_kmeans_on_corpus,
    sample_frames,
)
from spkit.units.metrics import (
    ClusterQuality,
    alignments_by_uid,
    cluster_quality,
    frame_pairs,
    sequence_stats,
    unit_report,
)
from spkit.units.oracle import OracleEncoder, PhoneInventory, quantize_oracle
from spkit.units.quantize import merge_shards, parse_shard, quantize_corpus, read_records, read_units

__all__ = ["GSLM_PRESET", "ClusterQuality", "EncodedSpeech", "KMeansError", "KMeansModel", "OracleEncoder",
           "PhoneInventory", "SpeechEncoder", "alignments_by_uid", "cluster_quality", "dedup", "fit_kmeans",
           "fit_kmeans_on_corpus", "frame_pairs", "merge_shards", "parse_shard", "quantize_corpus",
           "quantize_oracle", "read_records", "read_units", "sample_frames", "sequence_stats", "unit_report"]
