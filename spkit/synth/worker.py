"""One shard of a corpus, synthesized in a fresh process (``python -m spkit.synth.worker``).

Reads a job (JSON on stdin, made by :mod:`spkit.synth.corpora`), writes the shard's audio files
atomically, prints ``clip`` once per finished clip (the parent's progress bar), and ends by writing
the shard's done-marker: its alignment rows as JSON lines (or ``background.json``).
Running in a fresh process matters: espeak-ng's output depends on what the process synthesized
before, so a shard's bytes are fixed only when it always starts from a new engine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkit.audio import resample, save_audio
from spkit.io import write_json, write_text
from spkit.synth import noise as nz
from spkit.synth.espeak import ESPEAK_RATE, EspeakSynth, align, get_synth
from spkit.synth.speakers import Speaker

SAMPLE_RATE = 16_000
_BABBLE_TEXTS = ("the meeting starts at nine in the morning", "could you pass me the salt please",
                 "I think it is going to rain later", "we should leave before the traffic gets worse",
                 "das ist eine gute Idee", "on se voit ce soir", "dónde está mi teléfono",
                 "che cosa fai domani", "я не знаю", "she bought three apples and a loaf of bread",
                 "turn left at the next corner", "twenty one forty two seventeen")
_BABBLE_VOICES = ("en-us", "en-gb-x-rp", "en-029", "de", "fr", "es", "it", "ru", "en-gb-scotland")


def _resample(wave: np.ndarray) -> np.ndarray:
    """22 050 Hz -> 16 kHz with spkit's cached resampler; ``(samples,)`` float32."""
    return resample(torch.from_numpy(np.ascontiguousarray(wave)), ESPEAK_RATE, SAMPLE_RATE).numpy()


def babble_bank(synth: EspeakSynth, rng: np.random.Generator, seconds: float,
                variants: list[str]) -> np.ndarray:
    """``(seconds * 16000,)`` float32 of 5-talker babble from synthesized speech (varied voices)."""
    utts = []
    for k in range(16):
        voice = _BABBLE_VOICES[k % len(_BABBLE_VOICES)]
        variant = variants[int(rng.integers(0, len(variants)))]
        wave, _ = synth.synth(_BABBLE_TEXTS[int(rng.integers(0, len(_BABBLE_TEXTS)))], f"{voice}+{variant}",
                              rate=int(rng.integers(130, 230)), pitch=int(rng.integers(10, 90)),
                              pitch_range=int(rng.integers(20, 90)), seed=int(rng.integers(0, 2**31)))
        if wave.size:
            utts.append(_resample(wave))
    return nz.mix_babble_bank(utts, seconds, SAMPLE_RATE, rng, talkers=int(rng.integers(4, 8)))


def render_clip(clip: dict, rng: np.random.Generator, synth: EspeakSynth, bank: np.ndarray,
                augment: dict[str, Any], clean: bool = False) -> tuple[np.ndarray, list, list]:
    """Synthesize one planned clip at 16 kHz.

    Speaker voice with per-utterance rate/pitch jitter -> trimmed to the speech (first to last
    non-pause phone) -> 16 kHz -> optional tilt and reverb -> level -> placed in the clip (random
    offset in 1 s for fixed-length clips, random silence around it otherwise) -> additive noise at a
    random SNR. ``clean=True`` skips tilt, reverb and noise (tests use it to check alignments).

    Returns ``(wave (samples,) float32 at 16 kHz, words, phones)``; words and phones are
    ``[label, start_s, end_s]`` in the final clip, phones ordered and within the speech.
    """
    spk = Speaker.from_dict(clip["speaker"])
    a = augment
    rate = spk.rate * rng.uniform(1 - a["rate_jitter"], 1 + a["rate_jitter"])
    pitch = spk.pitch + rng.uniform(-a["pitch_jitter"], a["pitch_jitter"])
    prange = spk.pitch_range + rng.uniform(-a["range_jitter"], a["range_jitter"])
    wave22, events = synth.synth(clip["spoken"], spk.espeak_voice, round(rate), round(pitch), round(prange),
                                 seed=int(rng.integers(0, 2**31)))
    words, phones = align(clip["spoken"], wave22.size, events)
    speech = [p for p in phones if p[0] != "sil"]
    if not speech:
        raise RuntimeError(f"{clip['path']}: espeak-ng produced no speech for {clip['spoken']!r} "
                           f"with voice {spk.espeak_voice}")
    s0, s1 = speech[0][1], speech[-1][2]
    wave = _resample(wave22[s0:s1])
    ratio = SAMPLE_RATE / ESPEAK_RATE

    if not clean and rng.uniform() < a["tilt_prob"]:
        wave = nz.tilt(wave, rng, SAMPLE_RATE)
    if not clean and rng.uniform() < a["reverb_prob"]:
        wave = nz.reverb(wave, rng, SAMPLE_RATE)
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    level = 10 ** (rng.uniform(*a["level_dbfs"]) / 20)
    wave = (wave * (level / max(rms, 1e-9))).astype(np.float32)
    speech_rms = level

    if clip["fixed_len"]:
        total = int(clip["fixed_len"])
        offset = int(rng.integers(0, total - wave.size + 1)) if wave.size < total else 0
        wave = wave[: total - offset]
    else:
        lead = int(rng.uniform(*a["pad_s"]) * SAMPLE_RATE)
        total = lead + wave.size + int(rng.uniform(*a["pad_s"]) * SAMPLE_RATE)
        offset = lead
    out = np.zeros(total, np.float32)
    out[offset: offset + wave.size] = wave

    if not clean and rng.uniform() < a["noise_prob"]:
        kinds = list(a["noise_weights"])
        p = np.array([a["noise_weights"][k] for k in kinds], np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        noise = nz.make_noise(kind, total, rng, SAMPLE_RATE, bank)
        out = nz.add_noise(out, noise, rng.uniform(*a["snr_db"]), speech_rms)
    peak = float(np.abs(out).max())
    if peak > 0.99:  # keep the SNR, avoid clipping
        out = (out * (0.99 / peak)).astype(np.float32)

    # Times: 22.05 kHz samples relative to s0 -> 16 kHz clip seconds, clipped to the clip end.
    end_s = (offset + wave.size) / SAMPLE_RATE

    def conv(items: list) -> list:
        res = []
        for lab, a0, a1 in items:
            t0 = (offset + (a0 - s0) * ratio) / SAMPLE_RATE
            t1 = min((offset + (a1 - s0) * ratio) / SAMPLE_RATE, end_s)
            if a0 >= s0 and a1 <= s1 and t1 > t0:
                res.append([lab, round(t0, 5), round(t1, 5)])
        return res

    return out, conv(words), conv(phones)


def run_background(job: dict, synth: EspeakSynth) -> None:
    """Write the long ``_background_noise_/*.wav`` files of the Speech Commands layout."""
    bg = job["background"]
    rng = np.random.default_rng([job["seed"], job["kind_code"], bg["tag"]])
    n = int(bg["seconds"] * SAMPLE_RATE)
    root = Path(job["root"])
    kinds = {"white_noise": "white", "pink_noise": "pink", "brown_noise": "brown", "babble": "babble",
             "hum": "hum", "running_tap": "tap"}
    bank = babble_bank(synth, rng, min(bg["seconds"], 30.0), synth.variants())
    for name in bg["names"]:
        wave = nz.make_noise(kinds[name], n, rng, SAMPLE_RATE, bank) * rng.uniform(0.05, 0.2)
        save_audio(root / "_background_noise_" / f"{name}.wav", np.clip(wave, -1, 1).astype(np.float32))
    write_json(job["marker"], {"files": [f"_background_noise_/{n}.wav" for n in bg["names"]]})


def run_shard(job: dict, synth: EspeakSynth) -> None:
    """Synthesize a shard's clips in plan order, then write its marker (alignment rows)."""
    root = Path(job["root"])
    seed, code = job["seed"], job["kind_code"]
    bank_rng = np.random.default_rng([seed, code, 10**7 + job["shard"]])
    bank = babble_bank(synth, bank_rng, 20.0, synth.variants())
    rows = []
    for index, clip in zip(job["indices"], job["clips"]):
        rng = np.random.default_rng([seed, code, index])
        wave, words, phones = render_clip(clip, rng, synth, bank, job["augment"])
        save_audio(root / clip["path"], wave, SAMPLE_RATE)
        if job["kind"] in ("asr", "sf"):  # the transcript is upper case; keep the alignments consistent
            words = [[w.upper(), t0, t1] for w, t0, t1 in words]
        rows.append({"path": clip["path"], "text": clip["text"], "speaker": clip["speaker"]["id"],
                     "split": clip["split"], "label": clip["label"], "words": words, "phones": phones,
                     "duration": round(wave.size / SAMPLE_RATE, 5)})
        print("clip", flush=True)
    write_text(job["marker"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def main() -> int:
    torch.set_num_threads(1)  # shards run side by side on few cores; also keeps resampling bit-stable
    job = json.loads(sys.stdin.read())
    synth = get_synth()
    if "background" in job:
        run_background(job, synth)
    else:
        run_shard(job, synth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
