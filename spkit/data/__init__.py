"""Corpus loaders for the real data sets' native layouts (and spkit's synthesized stand-ins)."""

from spkit.data.base import DataError, Utterance

__all__ = ["DataError", "Utterance"]
