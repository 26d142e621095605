"""Dense speech features at 50 frames per second: MFCC, log-mel, HuBERT (real or trained here)."""

from spkit.features.base import FRAME_RATE, FeatureExtractor, num_frames

__all__ = ["FRAME_RATE", "FeatureExtractor", "num_frames"]
