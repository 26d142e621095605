"""Corpus loaders for the real data sets' native layouts (and spkit's synthesized stand-ins).

``load_corpus(kind, root, split=None)`` -> ``{split: [Utterance, ...]}`` for Speech Commands,
Fluent Speech Commands, LibriSpeech, Audio SNIPS and TSV manifests; ``detect_layout(root)`` tells the kind.
Loaders only list files; read the audio with :func:`load_utterance`.
"""

from spkit.data.alignments import attach_alignments, frame_labels, load_alignments, read_corpus_info
from spkit.data.base import DataError, Utterance
from spkit.data.corpus import load_corpus, load_utterance
from spkit.data.detect import KINDS, Layout, detect_layout
from spkit.data.fluent import load_fluent
from spkit.data.labels import asr_charset, class_labels, intent_vocab, kws_labels, label_set
from spkit.data.librispeech import load_librispeech
from spkit.data.manifest import load_manifest, load_tsv_corpus
from spkit.data.snips import load_snips
from spkit.data.speech_commands import KWS12_LABELS, load_segment, load_speech_commands, silence_windows

__all__ = [
    "KINDS",
    "KWS12_LABELS",
    "DataError",
    "Layout",
    "Utterance",
    "asr_charset",
    "attach_alignments",
    "class_labels",
    "detect_layout",
    "frame_labels",
    "intent_vocab",
    "kws_labels",
    "label_set",
    "load_alignments",
    "load_corpus",
    "load_fluent",
    "load_librispeech",
    "load_manifest",
    "load_segment",
    "load_snips",
    "load_speech_commands",
    "load_tsv_corpus",
    "load_utterance",
    "read_corpus_info",
    "silence_windows",
]
