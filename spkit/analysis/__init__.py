"""Analyses of trained prompts (notebooks 04 and 05).

* :mod:`spkit.analysis.verbalizer`: confusion matrices, label probabilities and accuracy per verbalizer,
  the learnable verbalizer's head, unit-label mutual information, and what a unit sounds like;
* :mod:`spkit.analysis.attention`: the attention of the separator and label positions to the deep prompt,
  the speech units and the BOS/separator, per layer and head, aligned with the audio.

Both import torch and plotly lazily where they can; import the submodules directly.
"""
