"""Hear the units: a simple unit-to-speech path (spectral templates + Griffin-Lim), trained in seconds.

Each unit gets a *template*: the average log-magnitude STFT frame (``n_fft // 2 + 1`` bins, 16 kHz) over
every training frame quantized to it. A unit sequence becomes sound by laying the templates out in
time (one unit per 20 ms frame, so two 10 ms STFT frames per unit frame), smoothing across unit
boundaries, and recovering a phase with Griffin-Lim (``torchaudio.transforms.GriffinLim``). It is not a
neural vocoder: the result is buzzy and speaker-averaged, but it says what a unit sequence "contains"
(which phones, where the silences are), which is what the demo needs.

Durations: a deduplicated sequence ``u1 u2 ...`` needs a duration (in 20 ms frames) per unit; given
durations (e.g. from :func:`spkit.units.quantize.dedup` on a clip's frame units) reproduce the clip's
timing exactly, otherwise each unit's mean run length in the training data is used.

Templates live in ``RUN/vocoder/templates.pt`` (:func:`save_templates`, atomic; plain tensors and
numbers, loaded with ``weights_only=True`` and strict keys)::

    format: "spkit.vocoder", version: 1
    config: {sample_rate, n_fft, win_length, hop_length, frame_hop}     # samples
    templates: (n_units, n_fft // 2 + 1) float32, natural-log magnitude
    counts: (n_units,) int64, training frames per unit (0: unseen, the global mean is used)
    mean_duration: (n_units,) float32, mean run length in unit frames
    info: {clips, frames, corpora, seed}
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import Tensor
from tqdm.auto import tqdm

from spkit.audio import SAMPLE_RATE, AudioError, load_audio
from spkit.errors import UserError
from spkit.io import read_json, torch_save
from spkit.layout import RunLayout
from spkit.units.encoded import dedup
from spkit.units.kmeans import KMeansModel
from spkit.units.quantize import read_records, read_units

FORMAT = "spkit.vocoder"
VERSION = 1
TEMPLATES_NAME = "templates.pt"
FRAME_HOP = 320  # samples per unit frame: HuBERT's 20 ms hop at 16 kHz
FRAME_WIN = 400  # samples a unit frame sees (HuBERT's receptive field starts with a 25 ms window)
LOG_FLOOR = 1e-5  # magnitude floor before the log (about -100 dB): silence stays finite


class VocoderError(UserError, ValueError):
    """Unusable templates file, or a unit sequence the templates cannot voice; the message says which."""


@dataclass(frozen=True)
class VocoderConfig:
    """STFT settings of the templates (samples at ``sample_rate``); ``hop_length`` must divide the unit
    frame hop (320), so each unit frame maps onto a whole number of STFT frames."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    frame_hop: int = FRAME_HOP

    def __post_init__(self) -> None:
        if self.frame_hop % self.hop_length:
            raise VocoderError(f"hop_length {self.hop_length} must divide the unit frame hop "
                               f"{self.frame_hop}")
        if self.win_length > self.n_fft:
            raise VocoderError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def stft_per_unit(self) -> int:
        """STFT frames per 20 ms unit frame (2 with the defaults)."""
        return self.frame_hop // self.hop_length


def log_magnitude(wave: Tensor, cfg: VocoderConfig) -> Tensor:
    """Natural-log STFT magnitude ``(stft_frames, n_bins)`` of a ``(samples,)`` waveform at 16 kHz
    (centred frames: frame j is centred on sample ``j * hop_length``)."""
    window = torch.hann_window(cfg.win_length)
    spec = torch.stft(wave.float(), cfg.n_fft, cfg.hop_length, cfg.win_length, window, center=True,
                      return_complex=True)
    return spec.abs().clamp_min(LOG_FLOOR).log().T


def expected_frames(n_samples: int) -> int:
    """Unit frames of a clip of ``n_samples`` at 16 kHz: ``floor((N - 400) / 320) + 1`` (HuBERT's framing)."""
    return max(0, (n_samples - FRAME_WIN) // FRAME_HOP + 1)


def stft_to_unit_frames(n_stft: int, n_units: int, cfg: VocoderConfig) -> Tensor:
    """For each of ``n_stft`` STFT frames, the index of the unit frame whose window centre is nearest
    (unit frame i covers samples ``[320 i, 320 i + 400)``, centre ``320 i + 200``); ``(n_stft,)`` int64."""
    centres = torch.arange(n_stft, dtype=torch.float64) * cfg.hop_length
    idx = torch.round((centres - FRAME_WIN / 2) / cfg.frame_hop).long()
    return idx.clamp_(0, max(n_units - 1, 0))


@dataclass
class TemplateAccumulator:
    """Running sums for :func:`fit_templates`: add clips one at a time, then :meth:`finish`."""

    n_units: int
    cfg: VocoderConfig = field(default_factory=VocoderConfig)

    def __post_init__(self) -> None:
        self.sums = torch.zeros(self.n_units, self.cfg.n_bins, dtype=torch.float64)
        self.counts = torch.zeros(self.n_units, dtype=torch.int64)
        self.run_frames = torch.zeros(self.n_units, dtype=torch.float64)
        self.runs = torch.zeros(self.n_units, dtype=torch.int64)
        self.clips = 0

    def add(self, wave: Tensor, frame_units: Sequence[int]) -> None:
        """One clip: ``wave`` ``(samples,)`` at 16 kHz and its units, one per 20 ms frame."""

        units = torch.as_tensor(list(frame_units), dtype=torch.int64)
        if units.numel() == 0:
            return
        if int(units.min()) < 0 or int(units.max()) >= self.n_units:
            raise VocoderError(f"unit ids must lie in [0, {self.n_units}); got {int(units.min())}.."
                               f"{int(units.max())}")
        logmag = log_magnitude(torch.as_tensor(wave), self.cfg).double()
        # Keep only STFT frames inside the span the units describe (the tail after the last unit frame
        # would otherwise be credited to the last unit).
        n_keep = min(logmag.shape[0], units.numel() * self.cfg.stft_per_unit + 1)
        owner = units[stft_to_unit_frames(n_keep, units.numel(), self.cfg)]
        self.sums.index_add_(0, owner, logmag[:n_keep])
        self.counts += torch.bincount(owner, minlength=self.n_units)
        dd, dur = dedup(units.tolist())
        self.run_frames.index_add_(0, torch.tensor(dd), torch.tensor(dur, dtype=torch.float64))
        self.runs += torch.bincount(torch.tensor(dd), minlength=self.n_units)
        self.clips += 1

    def finish(self, info: dict[str, Any] | None = None) -> UnitVocoder:
        if int(self.counts.sum()) == 0:
            raise VocoderError("no training frames: the templates need at least one clip with units")
        seen = self.counts > 0
        templates = torch.empty(self.n_units, self.cfg.n_bins, dtype=torch.float64)
        templates[seen] = self.sums[seen] / self.counts[seen, None]
        # Units never seen in training sound like the average frame rather than silence or noise.
        templates[~seen] = (self.sums.sum(0) / self.counts.sum())
        mean_dur = torch.where(self.runs > 0, self.run_frames / self.runs.clamp_min(1),
                               self.run_frames.sum() / self.runs.sum().clamp_min(1))
        frames = int(self.counts.sum() // self.cfg.stft_per_unit)
        meta = {"clips": self.clips, "frames": frames, **(info or {})}
        return UnitVocoder(templates.float(), self.counts.clone(), mean_dur.float(), self.cfg, meta)


def fit_templates(clips: Iterable[tuple[Tensor, Sequence[int]]], n_units: int,
                  cfg: VocoderConfig | None = None, info: dict[str, Any] | None = None) -> UnitVocoder:
    """Average log-magnitude template per unit from ``(wave (samples,) at 16 kHz, frame units)`` pairs."""
    acc = TemplateAccumulator(n_units, cfg or VocoderConfig())
    for wave, units in clips:
        acc.add(wave, units)
    return acc.finish(info)


@dataclass
class UnitVocoder:
    """Per-unit spectral templates and Griffin-Lim synthesis (see the module docstring).

    Attributes:
        templates: ``(n_units, n_bins)`` natural-log STFT magnitudes.
        counts: ``(n_units,)`` training frames (STFT frames) per unit.
        mean_duration: ``(n_units,)`` mean run length of each unit in 20 ms frames.
    """

    templates: Tensor
    counts: Tensor
    mean_duration: Tensor
    cfg: VocoderConfig = field(default_factory=VocoderConfig)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return int(self.templates.shape[0])

    def durations_for(self, units: Sequence[int]) -> list[int]:
        """Default durations (20 ms frames, at least 1) for a deduplicated sequence without timing."""
        self._check(units)
        return [max(1, round(float(self.mean_duration[u]))) for u in units]

    def _check(self, units: Sequence[int]) -> None:
        bad = [u for u in units if not 0 <= int(u) < self.n_units]
        if bad:
            raise VocoderError(f"unit ids {bad[:5]} are outside the templates' range [0, {self.n_units})")

    def spectrogram(self, units: Sequence[int], durations: Sequence[int] | None = None,
                    smooth: int = 3) -> Tensor:
        """Log-magnitude ``(stft_frames, n_bins)`` for deduplicated ``units`` with ``durations`` (frames);
        ``smooth``: moving-average width in STFT frames, softening the steps between templates."""
        units = [int(u) for u in units]
        durations = self.durations_for(units) if durations is None else [int(d) for d in durations]
        if len(durations) != len(units):
            raise VocoderError(f"{len(units)} units but {len(durations)} durations")
        if any(d < 1 for d in durations):
            raise VocoderError("durations must be at least one frame each")
        self._check(units)
        if not units:
            raise VocoderError("an empty unit sequence has no sound")
        per_frame = torch.repeat_interleave(torch.tensor(units), torch.tensor(durations))
        n_stft = per_frame.numel() * self.cfg.stft_per_unit + 1  # centred STFT of the exact length
        logmag = self.templates[per_frame[stft_to_unit_frames(n_stft, per_frame.numel(), self.cfg)]]
        if smooth > 1:
            kernel = torch.ones(1, 1, smooth) / smooth
            padded = torch.nn.functional.pad(logmag.T[:, None], (smooth // 2, smooth - 1 - smooth // 2),
                                             mode="replicate")
            logmag = torch.nn.functional.conv1d(padded, kernel)[:, 0].T
        return logmag

    def synthesize(self, units: Sequence[int], durations: Sequence[int] | None = None, *, n_iter: int = 32,
                   seed: int = 0, peak: float = 0.9) -> Tensor:
        """Waveform ``(sum(durations) * 320,)`` float32 at 16 kHz for deduplicated ``units``.

        ``durations`` in 20 ms frames (None: each unit's mean training duration); ``n_iter`` Griffin-Lim
        iterations; the random initial phase comes from ``seed`` (same seed -> same samples); the output is
        scaled to a peak of ``peak``.
        """

        logmag = self.spectrogram(units, durations)
        n_frames = (logmag.shape[0] - 1) // self.cfg.stft_per_unit
        n_samples = n_frames * self.cfg.frame_hop
        c = self.cfg
        gl = torchaudio.transforms.GriffinLim(n_fft=c.n_fft, n_iter=n_iter, win_length=c.win_length,
                                              hop_length=c.hop_length, power=1.0, length=n_samples,
                                              rand_init=True)
        with torch.random.fork_rng(devices=[]):  # a seeded initial phase without touching the global RNG
            torch.manual_seed(seed)
            wave = gl(logmag.exp().T)
        wave = _fit_length(wave, n_samples)
        top = float(wave.abs().max())
        return (wave * (peak / top) if top > 0 else wave).float()

    def synthesize_frames(self, frame_units: Sequence[int], **kwargs: Any) -> Tensor:
        """Waveform for per-frame units (one per 20 ms, not deduplicated): the clip's own timing."""

        units, durations = dedup(frame_units)
        return self.synthesize(units, durations, **kwargs)

    def state(self) -> dict[str, Any]:
        """The plain dict :func:`save_templates` writes."""
        return {"format": FORMAT, "version": VERSION, "config": asdict(self.cfg),
                "templates": self.templates.float().contiguous(), "counts": self.counts.long(),
                "mean_duration": self.mean_duration.float(), "info": dict(self.info)}


def _fit_length(wave: Tensor, n: int) -> Tensor:
    """Trim or zero-pad ``(samples,)`` to exactly ``n`` samples."""
    if wave.numel() >= n:
        return wave[:n]
    return torch.nn.functional.pad(wave, (0, n - wave.numel()))


def save_templates(path: str | os.PathLike, vocoder: UnitVocoder) -> Path:
    """Write ``vocoder`` atomically to ``path`` (usually ``RUN/vocoder/templates.pt``)."""

    return torch_save(vocoder.state(), path)


_KEYS = {"format", "version", "config", "templates", "counts", "mean_duration", "info"}


def load_templates(path: str | os.PathLike) -> UnitVocoder:
    """Read a templates file strictly (any missing or unexpected key, or a shape mismatch, is an error)."""
    path = Path(path)
    if not path.is_file():
        raise VocoderError(f"{path}: no such templates file (fit them with spkit.vocoder.fit_run_vocoder)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise VocoderError(f"{path}: unreadable templates file ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
        raise VocoderError(f"{path}: not a {FORMAT} version {VERSION} file")
    if set(d) != _KEYS:
        raise VocoderError(f"{path}: missing keys {sorted(_KEYS - set(d))}, unexpected keys "
                           f"{sorted(set(d) - _KEYS)}")
    try:
        cfg = VocoderConfig(**d["config"])
    except TypeError as e:
        raise VocoderError(f"{path}: bad config ({e})") from None
    t, c, m = d["templates"], d["counts"], d["mean_duration"]
    if t.ndim != 2 or t.shape[1] != cfg.n_bins or c.shape != (t.shape[0],) or m.shape != (t.shape[0],):
        raise VocoderError(f"{path}: inconsistent shapes: templates {tuple(t.shape)} (expected (units, "
                           f"{cfg.n_bins})), counts {tuple(c.shape)}, mean_duration {tuple(m.shape)}")
    return UnitVocoder(t.float(), c.long(), m.float(), cfg, dict(d["info"]))


# --------------------------------------------------------------------------------------------
# In a run folder
# --------------------------------------------------------------------------------------------

def templates_path(run: str | os.PathLike) -> Path:
    """``RUN/vocoder/templates.pt``."""
    return RunLayout.at(run).root / "vocoder" / TEMPLATES_NAME


def _run_n_units(layout: RunLayout) -> int:
    """K of the run's units: ``unit_model.json``'s ``n_clusters`` (k-means or oracle units alike), else the
    run's ``km.bin``."""
    record = layout.units / "unit_model.json"
    if record.is_file() and read_json(record).get("n_clusters") is not None:
        return int(read_json(record)["n_clusters"])
    if not layout.kmeans.is_file():
        raise VocoderError(f"{layout.kmeans}: no k-means model in the run (run notebook 01 first)")
    return int(KMeansModel.load(layout.kmeans).n_clusters)


def fit_run_vocoder(run: str | os.PathLike, corpora: Sequence[str] | None = None, *, max_clips: int = 400,
                    seed: int = 0, save: bool = True, progress: bool = True) -> UnitVocoder:
    """Fit templates on a run's training clips and (``save``) write ``RUN/vocoder/templates.pt``.

    Frame units come from ``RUN/units/<corpus>/train.txt`` (one unit per 20 ms frame), audio paths from
    ``train.jsonl`` beside it; ``corpora`` None: every corpus with both files. At most ``max_clips`` clips,
    drawn with ``seed`` (same seed -> same templates). Unreadable clips are skipped and counted.
    """


    layout = RunLayout.at(run)
    names = list(corpora) if corpora is not None else sorted(
        p.parent.name for p in layout.units.glob("*/train.txt") if (p.parent / "train.jsonl").is_file())
    pairs: list[tuple[str, list[int]]] = []
    for name in names:
        d = layout.unit_dir(name)
        if not (d / "train.txt").is_file() or not (d / "train.jsonl").is_file():
            raise VocoderError(f"{d}: needs train.txt and train.jsonl (quantized training units)")
        frames = read_units(d / "train.txt")
        paths = {r["uid"]: r["path"] for r in read_records(d / "train.jsonl")}
        pairs += [(paths[uid], u) for uid, u in frames.items() if uid in paths and u]
    if not pairs:
        raise VocoderError(f"{layout.units}: no training units with audio paths (corpora: {names or 'none'})")
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:max_clips]
    acc = TemplateAccumulator(_run_n_units(layout))
    skipped = 0
    for path, units in tqdm(pairs, desc="vocoder templates", unit="clip", disable=not progress):
        try:
            wave = load_audio(path)
        except AudioError:
            skipped += 1
            continue
        # A record whose file is longer than its units (e.g. a 1 s slice of a long noise file, whose offset
        # the unit records do not keep) cannot be aligned frame by frame: leave it out.
        if abs(expected_frames(wave.numel()) - len(units)) > 1:
            skipped += 1
            continue
        acc.add(wave, units)
    vocoder = acc.finish({"corpora": names, "seed": seed, "skipped": skipped})
    if save:
        save_templates(templates_path(layout.root), vocoder)
    return vocoder


def load_run_vocoder(run: str | os.PathLike, fit_if_missing: bool = True, **fit_kwargs: Any) -> UnitVocoder:
    """``RUN/vocoder/templates.pt``, fitted (and saved) first when absent and ``fit_if_missing``."""
    path = templates_path(run)
    if not path.is_file() and fit_if_missing:
        return fit_run_vocoder(run, **fit_kwargs)
    return load_templates(path)
