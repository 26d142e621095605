"""Embedded spoken corpora synthesized with espeak-ng, in the native layouts of real data sets.

    from spkit.synth import synthesize_corpus
    root = synthesize_corpus("kws", "data/corpora/kws", preset="default", seed=0)

Kinds: ``kws`` (Speech Commands v0.01), ``intent`` (Fluent Speech Commands), ``lid`` (language ID
manifest over ten languages), ``asr`` (LibriSpeech). See :mod:`spkit.synth.corpora` for the preset
table and :mod:`spkit.synth.espeak` for the synthesizer (:class:`EspeakSynth`,
:func:`synthesize_phrase` for a single 16 kHz phrase).
"""

from spkit.synth.corpora import KINDS, PRESETS, BuildReport, SynthError, build_corpus, synthesize_corpus
from spkit.synth.espeak import EspeakSynth, get_synth, synthesize_phrase

__all__ = ["KINDS", "PRESETS", "BuildReport", "EspeakSynth", "SynthError", "build_corpus", "get_synth",
           "synthesize_corpus", "synthesize_phrase"]
