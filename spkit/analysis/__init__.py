"""Analyses of trained prompts (notebooks 04 and 05).

* :mod:`spkit.analysis.verbalizer`: scoring a prompt file per verbalizer, the learnable verbalizer's head;
  :mod:`spkit.analysis.metrics` (confusion matrices, accuracy over seeds, label probabilities, unit-label
  mutual information), :mod:`spkit.analysis.unit_audio` (what a unit sounds like),
  :mod:`spkit.analysis.figures` (plotly) and :mod:`spkit.analysis.tables` (markdown) beside it;
* :mod:`spkit.analysis.attention`: the attention of the separator and label positions to the deep prompt,
  the speech units and the BOS/separator, per layer and head, aligned with the audio.

plotly is imported lazily (an optional, heavy dependency); import the submodules directly.
"""
