"""espeak-ng through ctypes: the speech synthesizer behind spkit's embedded corpora.

The library and its data folder come from the PyPI package ``espeakng-loader`` (no system install).
espeak-ng is one global engine per process, so :class:`EspeakSynth` is a per-process singleton
(:func:`get_synth`). It synthesizes at 22 050 Hz and reports word and phoneme events with their
sample positions, which become the word/phone alignments of every corpus.

Determinism: espeak-ng keeps internal state between calls (pitch flutter index, echo buffers), so
the same call repeated in one process gives slightly different samples and no seed call resets
it; the same calls in the same order in a fresh process give identical bytes. Corpus generation
therefore runs each shard in a fresh process (see :mod:`spkit.synth.corpora`).
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np
import torch

from spkit.audio import resample

ESPEAK_RATE = 22_050
"""The rate espeak-ng synthesizes at (its data files fix it)."""

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4

RATE_LIMITS = (80, 450)
"""espeak-ng's speaking rate range in words per minute (175 is its default)."""


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded, or refused a voice or a text."""


class _Event(ctypes.Structure):
    # espeak_EVENT from speak_lib.h; ``id`` is a union whose 8-byte ``string`` member holds
    # phoneme names.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


class _Voice(ctypes.Structure):
    # espeak_VOICE from speak_lib.h
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class SynthEvent:
    """One word or phoneme event.

    Attributes:
        kind: ``"word"``, ``"phoneme"`` or ``"end"``.
        sample: start position in the 22 050 Hz output, in samples.
        text_position: 1-based character position in the input text (of the word it belongs to).
        length: the word's length in characters (words only, else 0).
        name: the phoneme mnemonic (phonemes only; may carry stress marks ``'`` ``,``), else ``""``.
    """

    kind: str
    sample: int
    text_position: int
    length: int = 0
    name: str = ""


@dataclass(frozen=True)
class VoiceInfo:
    """A language voice: ``language`` is what :meth:`EspeakSynth.synth` takes (e.g. ``en-us``)."""

    name: str
    language: str
    identifier: str


def library_paths() -> tuple[Path, Path]:
    """``(libespeak-ng.so, espeak-ng-data folder)`` from the ``espeakng-loader`` package."""
    lib = Path(espeakng_loader.get_library_path())
    data = Path(espeakng_loader.get_data_path())
    if not lib.is_file():
        raise EspeakError(f"{lib}: espeak-ng library not found")
    return lib, data


class EspeakSynth:
    """espeak-ng, synchronous, with word and phoneme events. Use :func:`get_synth` (one per process)."""

    def __init__(self) -> None:
        lib_path, data = library_paths()
        self.data_path = data
        try:
            self._lib = ctypes.CDLL(str(lib_path))
        except OSError as e:
            raise EspeakError(f"{lib_path}: cannot load ({e})") from e
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._libc = ctypes.CDLL(None)
        self._libc.srand.argtypes = [ctypes.c_uint]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        # espeak_Initialize wants the folder that *contains* espeak-ng-data.
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data.parent).encode(),
                                     _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise EspeakError(f"{data}: espeak_Initialize failed (returned {rate})")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[SynthEvent] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: ctypes would free it
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _on_audio(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._events.append(SynthEvent("word", ev.sample, ev.text_position, ev.length))
            elif ev.type == _EVENT_PHONEME:
                name = bytes(ev.id).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append(SynthEvent("phoneme", ev.sample, ev.text_position, 0, name))
            elif ev.type == _EVENT_END:
                self._events.append(SynthEvent("end", ev.sample, ev.text_position))
            i += 1
        return 0  # 0 = continue synthesis

    def languages(self) -> list[VoiceInfo]:
        """All language voices espeak-ng knows (141 with espeakng-loader 1.52)."""
        voices = self._lib.espeak_ListVoices(None)
        out = []
        i = 0
        while voices[i]:
            v = voices[i].contents
            # ``languages`` is a priority byte followed by a NUL-terminated name.
            lang = (v.languages or b"\x05")[1:].split(b"\0", 1)[0].decode()
            out.append(VoiceInfo(v.name.decode(), lang, v.identifier.decode()))
            i += 1
        return out

    def variants(self) -> list[str]:
        """The usable voice variant names (see :func:`usable_variants`), sorted; 94 of 104 here."""
        return usable_variants(self.data_path)

    def synth(self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50,
              pitch_range: int = 50, seed: int = 0) -> tuple[np.ndarray, list[SynthEvent]]:
        """Synthesize ``text`` with ``voice`` (``"en-us"`` or ``"en-us+m3"`` for a variant).

        Args:
            rate: words per minute, clamped to :data:`RATE_LIMITS`.
            pitch, pitch_range: 0..99, 50 = the voice's own (relative to the variant's settings).
            seed: seeds espeak-ng's noise generator (klatt and breathy variants draw from it; it is
                otherwise seeded from the clock, so unseeded output differs between processes).

        Returns:
            ``(wave, events)``: wave ``(samples,)`` float32 in [-1, 1] at 22 050 Hz, and the word,
            phoneme and end events in output order.
        """
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EspeakError(f"espeak-ng has no voice {voice!r} (data: {self.data_path})")
            rate = int(min(max(rate, RATE_LIMITS[0]), RATE_LIMITS[1]))
            self._lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, int(min(max(pitch, 0), 99)), 0)
            self._lib.espeak_SetParameter(_PARAM_RANGE, int(min(max(pitch_range, 0), 99)), 0)
            self._lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            self._libc.srand(int(seed) & 0x7FFFFFFF)  # some of espeak-ng's noise uses libc rand()
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise EspeakError(f"espeak_Synth failed (error {err}) for voice {voice!r}, text {text!r}")
            chunks, events = self._chunks, self._events
            self._chunks, self._events = [], []
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return (pcm.astype(np.float32) / 32768.0), events


_N_INTONATION_TYPES = 8  # espeak-ng's punctuation_to_tone table has 8 rows


def usable_variants(data_path: Path | None = None) -> list[str]:
    """Voice variants in ``espeak-ng-data/voices/!v`` that are safe to use, sorted.

    Ten variant files shipped with espeak-ng 1.52 (Demonic, anika, robosoft3...) set
    ``intonation 10``, which indexes past espeak-ng's 8-row intonation table: synthesis with them
    reads stray memory and crashed a worker here (segfault after ~130 clips). They are left out.
    """
    if data_path is None:
        data_path = library_paths()[1]
    out = []
    for p in sorted((data_path / "voices" / "!v").iterdir()):
        if not p.is_file():
            continue
        ok = True
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "intonation":
                try:
                    ok = 0 <= int(parts[1]) < _N_INTONATION_TYPES
                except ValueError:
                    ok = False
        if ok:
            out.append(p.name)
    return out


@functools.lru_cache(maxsize=1)
def get_synth() -> EspeakSynth:
    """The process's espeak-ng engine (created on first use)."""
    return EspeakSynth()


# espeak marks stress on the vowel mnemonic; phone labels drop it (stress is not a phone identity).
_STRESS = "'," + "ˈˌ"


def phone_label(name: str) -> str:
    """Normalize an espeak phoneme mnemonic: pauses (``_``, ``_:``, ``_!``) -> ``sil``, no stress marks."""
    if name.startswith("_"):
        return "sil"
    return name.lstrip(_STRESS) or name


def align(text: str, wave_len: int, events: list[SynthEvent]) -> tuple[list, list]:
    """Word and phone intervals in 22 050 Hz samples from espeak's events.

    A phone lasts from its event to the next phoneme (or the end). Words come from the word events
    (``text[pos-1 : pos-1+len]``) and span their non-pause phones. Zero-length phones are dropped.

    Returns:
        ``(words, phones)`` as lists of ``[label, start_sample, end_sample]``.
    """
    # espeak-ng sends an END event at the end of every clause and sentence: the utterance ends at the last.
    ends = [ev.sample for ev in events if ev.kind == "end"]
    end = min(wave_len, max(ends)) if ends else wave_len
    phs = [ev for ev in events if ev.kind == "phoneme"]
    phones = []
    for i, ev in enumerate(phs):
        stop = phs[i + 1].sample if i + 1 < len(phs) else end
        start, stop = min(ev.sample, end), min(stop, end)
        if stop > start:
            phones.append([phone_label(ev.name), start, stop, ev.text_position])
    words = []
    for ev in events:
        if ev.kind != "word":
            continue
        own = [p for p in phones if p[3] == ev.text_position and p[0] != "sil"]
        if own:
            word = text[ev.text_position - 1: ev.text_position - 1 + ev.length]
            words.append([word, own[0][1], own[-1][2]])
    return words, [p[:3] for p in phones]


def synthesize_phrase(text: str, voice: str = "en-us", variant: str | None = None, rate: int = 175,
                      pitch: int = 50, pitch_range: int = 50, sample_rate: int = 16_000) -> np.ndarray:
    """One phrase, clean, trimmed to its speech, at ``sample_rate`` (for demos and widgets).

    Returns a ``(samples,)`` float32 waveform at ``sample_rate`` Hz (16 kHz by default).
    """
    name = f"{voice}+{variant}" if variant else voice
    wave, events = get_synth().synth(text, name, rate, pitch, pitch_range)
    _, phones = align(text, len(wave), events)
    speech = [p for p in phones if p[0] != "sil"]
    if speech:
        wave = wave[speech[0][1]: speech[-1][2]]
    out = resample(torch.from_numpy(np.ascontiguousarray(wave)), ESPEAK_RATE, sample_rate)
    return out.numpy().astype(np.float32)


def espeak_version() -> str:
    """The espeak-ng version string (``espeak_Info``)."""
    lib_path, _ = library_paths()
    lib = ctypes.CDLL(str(lib_path))
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    return (lib.espeak_Info(None) or b"unknown").decode(errors="replace")
