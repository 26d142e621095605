"""Tests of the embedded corpora (spkit.synth): determinism across processes, native layouts,
speaker-disjoint splits, alignments, resume, and the ``spkit synth`` command."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spkit.synth import noise as nz
from spkit.synth.corpora import PRESETS, SynthError, build_corpus, plan_corpus
from spkit.synth.espeak import ESPEAK_RATE, EspeakError, get_synth, synthesize_phrase
from spkit.synth.speakers import partition_variants
from spkit.synth.texts import FSC_INTENTS, KWS_TARGETS, LID_LANGUAGES

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(out: Path, kind: str = "kws", seed: int = 0) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.time()
    cmd = [sys.executable, "-m", "spkit", "synth", kind, "--preset", "smoke", "--out", str(out),
           "--seed", str(seed)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return time.time() - t0


@pytest.fixture(scope="module")
def kws_runs(tmp_path_factory) -> tuple[Path, Path, float]:
    """The smoke KWS corpus made twice by the CLI, each in its own process tree."""
    base = tmp_path_factory.mktemp("kws")
    wall = _cli(base / "a")
    _cli(base / "b")
    return base / "a", base / "b", wall


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpora")
    return {k: build_corpus(k, base / k, "smoke", seed=3).root for k in ("intent", "lid", "asr")}


def _alignments(root: Path) -> list[dict]:
    lines = (root / "spkit" / "alignments.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _check_alignment_rows(root: Path, rows: list[dict]) -> None:
    for r in rows:
        dur = sf.info(str(root / r["path"])).duration
        assert r["words"], r
        prev_end = 0.0
        for _, t0, t1 in r["phones"]:  # ordered, non-overlapping, inside the clip
            assert prev_end - 1e-6 <= t0 < t1 <= dur + 1e-6, r
            prev_end = t1
        speech = [p for p in r["phones"] if p[0] != "sil"]
        assert speech[0][1] == pytest.approx(r["words"][0][1])
        assert speech[-1][2] == pytest.approx(r["words"][-1][2])


# ---- the CLI, determinism, the Speech Commands layout ------------------------------------------

def test_cli_smoke_is_fast_and_byte_identical_across_processes(kws_runs):
    a, b, wall = kws_runs
    assert wall < 60
    fa, fb = _files(a), _files(b)
    assert len(fa) > 100 and fa.keys() == fb.keys()
    differing = [k for k in fa if fa[k] != fb[k]]
    assert differing == []


def test_plan_depends_on_seed_only():
    s1, c1 = plan_corpus("kws", "smoke", seed=1)
    assert plan_corpus("kws", "smoke", seed=1) == (s1, c1)
    s2, _ = plan_corpus("kws", "smoke", seed=2)
    assert {s.id for s in s1}.isdisjoint({s.id for s in s2})
    assert [s.variant for s in s1] != [s.variant for s in s2]


def test_speech_commands_layout(kws_runs):
    root = kws_runs[0]
    cfg = PRESETS["kws"]["smoke"]
    wavs = sorted(p for p in root.rglob("*.wav") if p.parent.name != "_background_noise_")
    n_speakers = sum(cfg["speakers"])
    assert len(wavs) == n_speakers * (len(KWS_TARGETS) + cfg["unknown_per_speaker"])
    for p in wavs:
        assert re.fullmatch(r"[0-9a-f]{8}_nohash_\d+\.wav", p.name), p
        assert p.parent.parent == root
        info = sf.info(str(p))
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 16000, 1, "PCM_16")
    for w in KWS_TARGETS:
        assert (root / w).is_dir()
    bg = sorted((root / "_background_noise_").glob("*.wav"))
    assert len(bg) >= 5
    for p in bg:
        assert sf.info(str(p)).duration >= cfg["background_s"] - 1e-3
    # validation/testing lists: relative paths, existing, speaker-disjoint from each other and train
    rel = {str(p.relative_to(root)) for p in wavs}
    lists = {}
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = (root / name).read_text().splitlines()
        assert lines and set(lines) <= rel
        lists[name] = set(lines)
    train = rel - lists["validation_list.txt"] - lists["testing_list.txt"]

    def spk(paths: set[str]) -> set[str]:
        return {Path(p).name.split("_nohash_")[0] for p in paths}

    s_tr, s_va, s_te = spk(train), spk(lists["validation_list.txt"]), spk(lists["testing_list.txt"])
    assert s_tr and s_va and s_te
    assert not (s_tr & s_va) and not (s_tr & s_te) and not (s_va & s_te)
    info = json.loads((root / "spkit" / "corpus.json").read_text())
    assert info["kind"] == "kws" and info["sample_rate"] == 16000 and info["seed"] == 0
    assert set(info["splits"]["test"]["labels"]) == {*KWS_TARGETS, "_unknown_"}
    assert set(info["speakers"]["test"]) == s_te
    rows = _alignments(root)
    assert sorted(r["path"] for r in rows) == sorted(rel)
    _check_alignment_rows(root, rows)


def test_unseen_voice_variants_in_valid_and_test(kws_runs):
    speakers = json.loads((kws_runs[0] / "spkit" / "speakers.json").read_text())
    by_split: dict[str, set] = {"train": set(), "valid": set(), "test": set()}
    for s in speakers.values():
        by_split[s["split"]].add(s["variant"])
    assert not (by_split["train"] & by_split["valid"]) and not (by_split["train"] & by_split["test"])
    pools = partition_variants(get_synth().variants())
    assert sum(len(v) for v in pools.values()) == len(get_synth().variants())
    assert not (set(pools["train"]) & set(pools["test"]))


# ---- resume ------------------------------------------------------------------------------------

def test_resume_redoes_only_what_is_missing(kws_runs, tmp_path):
    a = kws_runs[0]
    c = tmp_path / "c"
    shutil.copytree(a, c)
    assert build_corpus("kws", c, "smoke", seed=0).noop
    # an interrupted run: shard 1 lost its marker and a file, corpus.json was not written yet
    rows = [json.loads(x) for x in (c / "spkit/shards/0001.jsonl").read_text().splitlines()]
    (c / rows[0]["path"]).unlink()
    (c / "spkit/shards/0001.jsonl").unlink()
    (c / "spkit/corpus.json").unlink()
    # and a file of shard 0 vanished although its marker is there
    first = json.loads((c / "spkit/shards/0000.jsonl").read_text().splitlines()[3])["path"]
    (c / first).unlink()
    untouched = c / "spkit/shards/background.json"
    mtime = untouched.stat().st_mtime_ns
    report = build_corpus("kws", c, "smoke", seed=0, jobs=1)
    assert (report.shards_run, report.noop) == (2, False)
    assert untouched.stat().st_mtime_ns == mtime
    assert _files(c) == _files(a)
    again = build_corpus("kws", c, "smoke", seed=0)
    assert again.noop and again.shards_run == 0


def test_refuses_to_mix_corpora(kws_runs, tmp_path):
    c = tmp_path / "c"
    shutil.copytree(kws_runs[0], c)
    with pytest.raises(SynthError, match="seed"):
        build_corpus("kws", c, "smoke", seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        build_corpus("lid", tmp_path / "other", "smoke")


# ---- the other layouts -------------------------------------------------------------------------

def test_fluent_speech_commands_layout(corpora):
    root = corpora["intent"]
    seen: dict[str, set[str]] = {}
    valid_intents = set(FSC_INTENTS)
    assert len(valid_intents) == 31
    for split in ("train", "valid", "test"):
        text = (root / "data" / f"{split}_data.csv").read_text()
        assert text.splitlines()[0] == ",path,speakerId,transcription,action,object,location"
        rows = list(csv.DictReader(text.splitlines()))
        assert [int(r[""]) for r in rows] == list(range(len(rows)))
        for r in rows:
            assert re.fullmatch(r"wavs/speakers/[A-Za-z0-9]{16}/[0-9a-f-]{36}\.wav", r["path"]), r
            assert r["path"].split("/")[2] == r["speakerId"]
            assert (r["action"], r["object"], r["location"]) in valid_intents
            assert sf.info(str(root / r["path"])).samplerate == 16000
        seen[split] = {r["speakerId"] for r in rows}
    assert not (seen["train"] & seen["valid"]) and not (seen["train"] & seen["test"])
    assert not (seen["valid"] & seen["test"])
    _check_alignment_rows(root, _alignments(root))


def test_lid_manifest_layout(corpora):
    root = corpora["lid"]
    speakers: dict[str, set[str]] = {}
    for split in ("train", "valid", "test"):
        lines = (root / f"{split}.tsv").read_text().splitlines()
        assert lines[0] == "path\tlabel\tspeaker"
        rows = [line.split("\t") for line in lines[1:]]
        assert {lab for _, lab, _ in rows} == set(LID_LANGUAGES) and len(LID_LANGUAGES) >= 6
        for path, lab, spk in rows:
            assert re.fullmatch(rf"wavs/{lab}/{spk}/\d+\.wav", path) and (root / path).is_file()
        speakers[split] = {spk for _, _, spk in rows}
    assert not (speakers["train"] & speakers["test"]) and not (speakers["valid"] & speakers["test"])
    rows = _alignments(root)
    ru = [r for r in rows if r["label"] == "ru"]
    assert ru and all(re.search("[а-яё]", r["text"]) or r["text"].isdigit() for r in ru)
    _check_alignment_rows(root, rows)


def test_librispeech_layout(corpora):
    root = corpora["asr"]
    dirs = {"train-clean-100", "dev-clean", "test-clean"}
    assert dirs <= {p.name for p in root.iterdir()}
    spk_by_split = {}
    n = 0
    for d in dirs:
        spk_by_split[d] = {p.name for p in (root / d).iterdir()}
        for trans in (root / d).glob("*/*/*.trans.txt"):
            spk, chap = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{spk}-{chap}.trans.txt"
            for line in trans.read_text().splitlines():
                uid, text = line.split(" ", 1)
                assert re.fullmatch(rf"{spk}-{chap}-\d{{4}}", uid)
                assert text == text.upper() and re.fullmatch(r"[A-Z' ]+", text)
                info = sf.info(str(trans.parent / f"{uid}.flac"))
                assert info.samplerate == 16000 and info.format == "FLAC"
                n += 1
    assert n == sum(PRESETS["asr"]["smoke"]["speakers"]) * PRESETS["asr"]["smoke"]["clips_per_speaker"]
    assert not (spk_by_split["train-clean-100"] & spk_by_split["test-clean"])
    assert (root / "SPEAKERS.TXT").read_text().startswith(";ID")
    _check_alignment_rows(root, _alignments(root))


# ---- synthesizer, alignments against the audio, noise --------------------------------------------

def test_espeak_synth_voices_and_events():
    synth = get_synth()
    assert synth.sample_rate == ESPEAK_RATE
    assert len(synth.variants()) >= 90 and "Demonic" not in synth.variants()
    langs = {v.language for v in synth.languages()}
    assert {"en-us", "de", "fr-fr", "es", "it", "ru"} <= langs
    wave, events = synth.synth("yes stop", "en-us+m3", rate=170, pitch=40, pitch_range=60)
    assert wave.dtype == np.float32 and wave.ndim == 1 and 0.3 < wave.size / ESPEAK_RATE < 2.0
    assert [e.kind for e in events if e.kind == "word"] == ["word", "word"]
    samples = [e.sample for e in events if e.kind == "phoneme"]
    assert samples == sorted(samples) and len(samples) >= 6
    with pytest.raises(EspeakError, match="no voice"):
        synth.synth("hello", "xx-nonexistent")
    phrase = synthesize_phrase("turn on the lights", voice="en-gb-scotland", variant="f2")
    assert phrase.dtype == np.float32 and 0.5 < phrase.size / 16000 < 3


def test_phone_times_match_the_audio():
    """In clean renders, every non-pause phone has energy and the signal outside speech is silent."""
    from spkit.synth.corpora import AUGMENT
    from spkit.synth.worker import render_clip

    _, clips = plan_corpus("lid", "smoke", seed=0)
    synth = get_synth()
    bank = np.zeros(16000, np.float32)
    for k, clip in enumerate(clips[::7]):
        wave, words, phones = render_clip(clip, np.random.default_rng(k), synth, bank, AUGMENT, clean=True)
        speech = [p for p in phones if p[0] != "sil"]
        s0, s1 = int(speech[0][1] * 16000), int(speech[-1][2] * 16000)
        assert np.abs(wave[: max(s0 - 40, 0)]).max(initial=0) < 1e-3  # resampler ringing stays tiny
        assert np.abs(wave[s1 + 40:]).max(initial=0) < 1e-3
        inside = wave[s0:s1]
        assert np.sqrt(np.mean(inside ** 2)) > 0.005
        voiced = [p for p in speech if p[2] - p[1] > 0.06]
        loud = [np.sqrt(np.mean(wave[int(a * 16000): int(b * 16000)] ** 2)) > 1e-3 for _, a, b in voiced]
        assert np.mean(loud) > 0.9
        assert words[0][1] == speech[0][1]


def test_noise_kinds_and_snr():
    rng = np.random.default_rng(0)
    n = 32000

    def slope(x: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / 16000)
        lo, hi = p[(f > 100) & (f < 400)].mean(), p[(f > 3200) & (f < 6400)].mean()
        return float(np.log10(hi / lo) / np.log10(16))

    assert abs(slope(nz.make_noise("white", n, rng, 16000))) < 0.2
    assert -1.3 < slope(nz.make_noise("pink", n, rng, 16000)) < -0.7
    assert slope(nz.make_noise("brown", n, rng, 16000)) < -1.6
    speech = np.sin(np.arange(n) * 0.05).astype(np.float32)
    noise = nz.make_noise("hum", n, rng, 16000)
    mixed = nz.add_noise(speech, noise, 10.0, float(np.sqrt(np.mean(speech ** 2))))
    snr = 10 * np.log10(np.mean(speech ** 2) / np.mean((mixed - speech) ** 2))
    assert snr == pytest.approx(10.0, abs=0.01)
    with pytest.raises(ValueError, match="babble bank"):
        nz.make_noise("babble", n, rng, 16000)
