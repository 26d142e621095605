"""Dense speech features at 50 frames per second: MFCC, log-mel, HuBERT (real or trained here)."""

from spkit.features.base import (
    FRAME_RATE,
    FeatureExtractor,
    LayeredExtractor,
    extract_all_layers,
    num_frames,
)
from spkit.features.factory import KINDS, load_extractor

__all__ = ["FRAME_RATE", "KINDS", "FeatureExtractor", "LayeredExtractor", "extract_all_layers",
           "load_extractor", "num_frames"]
