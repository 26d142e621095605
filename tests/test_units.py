"""Tests of spkit.units: k-means I/O and prediction, corpus quantization, unit-quality metrics."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import joblib
import numpy as np
import pytest
import soundfile as sf
import torch

from spkit.data.base import DataError, Utterance
from spkit.units.encoder import SpeechEncoder, dedup
from spkit.units.kmeans import KMeansError, KMeansModel, fit_kmeans, sample_frames
from spkit.units.metrics import cluster_quality, frame_pairs, sequence_stats
from spkit.units.quantize import (
    merge_shards,
    parse_shard,
    quantize_corpus,
    read_records,
    read_units,
)

torch.set_num_threads(1)


class BandEnergy:
    """Test extractor: log energy in ``dim`` frequency bands per HuBERT frame (400-sample window,
    320 hop), ``(samples,)`` 16 kHz -> ``(frames, dim)``. Counts its calls."""

    name = "band-energy"
    layer = None

    def __init__(self, dim: int = 6):
        self.dim = dim
        self.calls = 0

    @property
    def fingerprint(self) -> str:
        return f"band-energy-{self.dim}"

    def _feats(self, waves: torch.Tensor) -> torch.Tensor:
        frames = waves.unfold(-1, 400, 320)  # (..., frames, 400)
        spec = torch.fft.rfft(frames * torch.hann_window(400), dim=-1).abs() ** 2
        bands = torch.stack([b.sum(-1) for b in spec.tensor_split(self.dim, dim=-1)], dim=-1)
        return torch.log(bands + 1e-6)

    def extract(self, wave: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self._feats(wave)

    def extract_batch(self, waves: torch.Tensor) -> torch.Tensor:
        self.calls += waves.shape[0]
        return self._feats(waves)


def _tone(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    f = rng.uniform(200, 3000, size=3)
    # Tones that change every 0.15 s so units vary within a clip.
    seg = (t // 0.15).astype(int) % 3
    wave = 0.3 * np.sin(2 * np.pi * f[seg] * t) + 0.01 * rng.normal(size=n)
    return wave.astype(np.float32)


NAMES = ["clip.v2.final", "saw", "vow", "a.wav.b", "wav", "spk1_utt3", "zz.flac"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    root = tmp_path_factory.mktemp("corpus")
    utts = []
    for i, uid in enumerate(NAMES):
        path = root / f"{uid}.wav"
        sec = 1.0 if i % 2 else 0.5 + 0.1 * i  # several clips of exactly 1 s: batchable
        sf.write(path, _tone(i, sec), 16000, subtype="PCM_16")
        utts.append(Utterance(uid=uid, path=path, split="train", speaker=f"s{i % 2}", label=f"w{i % 3}"))
    return utts


@pytest.fixture(scope="module")
def kmeans(corpus: list[Utterance]) -> KMeansModel:
    from spkit.audio import load_audio

    ext = BandEnergy()
    frames = sample_frames((ext.extract(load_audio(u.path)) for u in corpus), 2000, seed=0)
    return fit_kmeans(frames, 8, seed=0, n_init=2)


# ------------------------------------------------------------------------------- k-means

def test_kmbin_roundtrip_matches_sklearn(tmp_path: Path) -> None:
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3000, 12)) + 4 * rng.integers(0, 4, size=(3000, 1))).astype(np.float32)
    est = MiniBatchKMeans(n_clusters=16, n_init=2, random_state=0, batch_size=512).fit(x)
    joblib.dump(est, tmp_path / "km.bin")  # exactly what GSLM's scripts write
    km = KMeansModel.load(tmp_path / "km.bin")
    assert km.n_clusters == 16 and km.dim == 12
    test = (rng.normal(size=(5000, 12)) * 3).astype(np.float32)
    np.testing.assert_array_equal(km.predict(torch.from_numpy(test)).numpy(), est.predict(test))
    # Saving writes a joblib file that sklearn (and GSLM) load and predict with unchanged.
    km.save(tmp_path / "again.bin")
    np.testing.assert_array_equal(joblib.load(tmp_path / "again.bin").predict(test), est.predict(test))
    assert KMeansModel.load(tmp_path / "again.bin").fingerprint == km.fingerprint


def test_torch_fit_saves_gslm_loadable_and_is_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(2000, 8)) + 5 * rng.integers(0, 6, size=(2000, 1))).astype(np.float32)
    a = fit_kmeans(x, 10, seed=3, n_init=2, tol=0.0)
    b = fit_kmeans(x, 10, seed=3, n_init=2, tol=0.0)
    np.testing.assert_array_equal(a.centers, b.centers)
    a.save(tmp_path / "km.bin")
    est = joblib.load(tmp_path / "km.bin")
    np.testing.assert_array_equal(est.predict(x), a.predict(x).numpy())
    # Lloyd's result is a fixed point: every centre is the mean of the points assigned to it.
    lab = a.predict(x).numpy()
    for k in np.unique(lab):
        np.testing.assert_allclose(x[lab == k].mean(0), a.centers[k], rtol=1e-4, atol=1e-4)


def test_predict_ties_and_near_ties_follow_sklearn() -> None:
    from spkit.units.kmeans import sklearn_estimator

    centers = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0], [1.0, 1e-4]])
    x = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 5e-5], [1.0, 5.0001e-5]], dtype=np.float32)
    km = KMeansModel(centers)
    ours = km.predict(torch.from_numpy(x)).numpy()
    assert ours[1] == 1  # exact tie between two equal centres -> the first
    np.testing.assert_array_equal(ours, sklearn_estimator(centers, dtype=np.float64).predict(x.astype(
        np.float64)))


def test_dimension_mismatch_names_file_and_dims(tmp_path: Path) -> None:
    km = KMeansModel(np.zeros((4, 12)))
    km.save(tmp_path / "km.bin")
    km = KMeansModel.load(tmp_path / "km.bin")
    with pytest.raises(KMeansError, match=r"km\.bin.*dimension 12.*dimension 6"):
        km.predict(torch.zeros(5, 6))
    with pytest.raises(KMeansError, match=r"km\.bin.*12.*6"):
        quantize_corpus([Utterance("a", tmp_path / "a.wav", "train", "s")], SpeechEncoder(BandEnergy(6), km),
                        tmp_path)
    (tmp_path / "bad.bin").write_bytes(b"not a pickle")
    with pytest.raises(KMeansError, match=r"bad\.bin"):
        KMeansModel.load(tmp_path / "bad.bin")


def test_reservoir_sample_is_uniform_and_seeded() -> None:
    stream = [torch.arange(i * 50, (i + 1) * 50, dtype=torch.float32)[:, None] for i in range(40)]
    a = sample_frames(stream, 200, seed=5)
    assert a.shape == (200, 1)
    np.testing.assert_array_equal(a, sample_frames(stream, 200, seed=5))
    assert len(np.unique(a)) == 200  # without replacement
    # Every frame equally likely: over many seeds, early and late halves are kept equally often.
    late = np.mean([(sample_frames(stream, 200, seed=s) >= 1000).mean() for s in range(30)])
    assert abs(late - 0.5) < 0.03
    assert sample_frames(stream[:2], 200).shape == (100, 1)


# ------------------------------------------------------------------------------- quantization

def _expected_lines(corpus: list[Utterance], km: KMeansModel) -> str:
    from spkit.audio import load_audio

    ext = BandEnergy()
    lines = []
    for u in sorted(corpus, key=lambda u: u.uid):
        units = km.predict(ext.extract(load_audio(u.path))).tolist()
        lines.append(f"{u.uid}|{' '.join(map(str, units))}\n")
    return "".join(lines)


def test_gslm_format_names_intact(tmp_path: Path, corpus: list[Utterance], kmeans: KMeansModel) -> None:
    out = quantize_corpus(corpus, SpeechEncoder(BandEnergy(), kmeans), tmp_path, progress=False)
    assert out == tmp_path / "units.txt"
    assert out.read_text() == _expected_lines(corpus, kmeans)
    units = read_units(out)
    assert set(units) == set(NAMES)  # 'saw', 'vow', 'wav', 'a.wav.b' not stripped
    recs = {r["uid"]: r for r in read_records(tmp_path / "units.jsonl")}
    for uid, seq in units.items():
        d, dur = dedup(seq)
        assert recs[uid]["units"] == d and recs[uid]["durations"] == dur
        assert recs[uid]["n_frames"] == len(seq) == sum(dur)
        assert all(a != b for a, b in itertools.pairwise(d))
    assert recs["saw"]["label"] == "w1" and recs["saw"]["speaker"] == "s1"
    assert (tmp_path / "units.errors.jsonl").read_text() == ""
    assert json.loads((tmp_path / "units.meta.json").read_text())["n_ok"] == len(NAMES)


def test_batched_equal_lengths_same_units(tmp_path: Path, corpus: list[Utterance],
                                          kmeans: KMeansModel) -> None:
    ext = BandEnergy()
    a = quantize_corpus(corpus, SpeechEncoder(ext, kmeans), tmp_path / "a", progress=False)
    b = quantize_corpus(corpus, SpeechEncoder(ext, kmeans), tmp_path / "b", batch_size=4, progress=False)
    assert a.read_text() == b.read_text()


@pytest.mark.parametrize("cmvn", [False, True])
def test_padding_invariant_extractor_batches_any_lengths(tmp_path: Path, corpus: list[Utterance],
                                                         cmvn: bool) -> None:
    from spkit.audio import load_audio
    from spkit.features.tiny_hubert import TinyHubert, TinyHubertConfig, TinyHubertExtractor

    torch.manual_seed(0)
    ext = TinyHubertExtractor(TinyHubert(TinyHubertConfig(n_mels=20, dim=16, layers=2, heads=2, ffn_dim=32,
                                                          conv_pos=4, conv_pos_groups=2)), cmvn=cmvn)
    assert ext.padding_invariant
    frames = sample_frames((ext.extract(load_audio(u.path)) for u in corpus), 2000, seed=0)
    km = fit_kmeans(frames, 8, seed=0, n_init=2)
    calls = []
    batched = ext.extract_batch
    ext.extract_batch = lambda w, lengths=None: calls.append(w.shape[0]) or batched(w, lengths)  # type: ignore
    a = quantize_corpus(corpus, SpeechEncoder(ext, km), tmp_path / "a", progress=False)
    calls.clear()
    b = quantize_corpus(corpus, SpeechEncoder(ext, km), tmp_path / "b", batch_size=4, progress=False)
    assert a.read_text() == b.read_text()
    assert max(calls) > 1 and len(calls) < len(corpus)  # clips of different lengths shared batches


def test_cache_makes_rerun_free(tmp_path: Path, corpus: list[Utterance], kmeans: KMeansModel) -> None:
    ext = BandEnergy()
    first = quantize_corpus(corpus, SpeechEncoder(ext, kmeans), tmp_path / "o1", cache_dir=tmp_path / "c",
                            progress=False).read_text()
    assert ext.calls == len(corpus)
    second = quantize_corpus(corpus, SpeechEncoder(ext, kmeans), tmp_path / "o2", cache_dir=tmp_path / "c",
                             progress=False).read_text()
    assert ext.calls == len(corpus) and second == first
    # A different k-means invalidates the cache.
    other = KMeansModel(kmeans.centers[::-1].copy())
    quantize_corpus(corpus, SpeechEncoder(ext, other), tmp_path / "o3", cache_dir=tmp_path / "c",
                    progress=False)
    assert ext.calls == 2 * len(corpus)


def test_shards_merge_to_unsharded(tmp_path: Path, corpus: list[Utterance], kmeans: KMeansModel) -> None:
    full = quantize_corpus(corpus, SpeechEncoder(BandEnergy(), kmeans), tmp_path / "full", progress=False)
    for i in (2, 0):  # any order, as array jobs finish
        quantize_corpus(corpus, SpeechEncoder(BandEnergy(), kmeans), tmp_path / "sh", shard=f"{i}/3",
                        progress=False)
    with pytest.raises(FileNotFoundError, match="shard 1/3"):
        merge_shards(tmp_path / "sh", 3)
    quantize_corpus(corpus, SpeechEncoder(BandEnergy(), kmeans), tmp_path / "sh", shard=(1, 3),
                    progress=False)
    merged = merge_shards(tmp_path / "sh", 3)
    assert merged.read_text() == full.read_text()
    assert ((tmp_path / "sh" / "units.jsonl").read_text()
            == (tmp_path / "full" / "units.jsonl").read_text())
    assert parse_shard("2/3") == (2, 3)
    with pytest.raises(ValueError, match="3/3"):
        parse_shard("3/3")


def test_corrupt_clip_reported_others_survive(tmp_path: Path, corpus: list[Utterance],
                                              kmeans: KMeansModel) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    utts = [*corpus, Utterance("broken", bad, "train", "s9"),
            Utterance("missing", tmp_path / "nope.wav", "train", "s9")]
    out = quantize_corpus(utts, SpeechEncoder(BandEnergy(), kmeans), tmp_path / "o", cache_dir=tmp_path / "c",
                          progress=False)
    assert set(read_units(out)) == set(NAMES)
    errors = [json.loads(line) for line in (tmp_path / "o" / "units.errors.jsonl").read_text().splitlines()]
    assert [e["uid"] for e in errors] == ["broken", "missing"]
    assert errors[0]["path"] == str(bad) and "unreadable" in errors[0]["problem"]
    assert "nope.wav" in errors[1]["path"]


def test_empty_corpus_and_bad_names(tmp_path: Path, kmeans: KMeansModel) -> None:
    with pytest.raises(DataError, match="no utterances"):
        quantize_corpus([], SpeechEncoder(BandEnergy(), kmeans), tmp_path)
    with pytest.raises(ValueError, match=r"'a\|b'"):
        quantize_corpus([Utterance("a|b", tmp_path / "x.wav", "train", "s")],
                        SpeechEncoder(BandEnergy(), kmeans), tmp_path)


def test_dedup_and_read_units(tmp_path: Path) -> None:
    assert dedup([5, 5, 7, 5, 5, 5]) == ([5, 7, 5], [2, 1, 3])
    assert dedup([]) == ([], [])
    (tmp_path / "u.txt").write_text("x.y|1 2 2\nsaw|3\n")
    assert read_units(tmp_path / "u.txt") == {"x.y": [1, 2, 2], "saw": [3]}
    (tmp_path / "bad.txt").write_text("x|1 a\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        read_units(tmp_path / "bad.txt")


# ------------------------------------------------------------------------------- metrics

def test_pnmi_constructed_examples() -> None:
    labels = ["a"] * 32 + ["b"] * 32 + ["c"] * 36
    perfect = [{"a": 7, "b": 3, "c": 9}[x] for x in labels]
    q = cluster_quality(perfect, labels)
    assert q.pnmi == pytest.approx(1.0) and q.purity == 1.0 and q.cluster_purity == 1.0
    # A code that splits each label evenly over two units: still label-pure, half cluster purity.
    split = [{"a": 0, "b": 2, "c": 4}[x] + (i % 2) for i, x in enumerate(labels)]
    q = cluster_quality(split, labels)
    assert q.pnmi == pytest.approx(1.0) and q.purity == 1.0 and q.cluster_purity == pytest.approx(0.5)
    # Independent: every label spread evenly over the same 4 codes.
    indep = [i % 4 for i in range(100)]
    q = cluster_quality(indep, labels)
    assert q.pnmi == pytest.approx(0.0, abs=1e-12) and q.purity == pytest.approx(0.36)
    # 2x2 by hand: p(y,z) = [[.4, .1], [.1, .4]]; I = .8 ln 1.6 + .2 ln .4, H(y) = ln 2,
    # PNMI = 1 - H_binary(0.2) = 0.27807190511263774; purity = cluster purity = 0.8.
    lab = ["p"] * 5 + ["q"] * 5
    code = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1]
    q = cluster_quality(code, lab)
    hb = -(0.2 * math.log2(0.2) + 0.8 * math.log2(0.8))
    assert q.pnmi == pytest.approx(1 - hb, abs=1e-12) and q.pnmi == pytest.approx(0.2780719051126377)
    assert q.purity == pytest.approx(0.8) and q.cluster_purity == pytest.approx(0.8)
    assert q.mutual_info == pytest.approx(0.8 * math.log(1.6) + 0.2 * math.log(0.4))
    # Ignoring a label drops its frames.
    q = cluster_quality([0, 1, 1], ["sil", "x", "y"], ignore={"sil"})
    assert q.n_frames == 2 and q.pnmi == pytest.approx(0.0)
    assert math.isnan(cluster_quality([0, 1], ["x", "x"]).pnmi)


def test_frame_pairs_and_sequence_stats() -> None:
    units = {"u1": [3, 3, 3, 5, 5, 5, 5, 8, 8, 8], "u2": [1] * 5}
    ali = {"u1": {"phones": [["h", 0.0, 0.06], ["i", 0.06, 0.14]], "words": [["hi", 0.0, 0.14]]}}
    codes, labels, missing = frame_pairs(units, ali, "phones")
    assert missing == ["u2"] and len(codes) == 10
    assert labels == ["h"] * 3 + ["i"] * 4 + ["sil"] * 3
    assert cluster_quality(codes, labels).pnmi == pytest.approx(1.0)
    s = sequence_stats(units)
    assert s["mean_dedup_length"] == pytest.approx(2.0)  # (3 + 1) / 2
    assert s["dedup_units_per_second"] == pytest.approx(4 / 0.3)


def test_cli_fit_and_quantize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from spkit.units import cli

    root = tmp_path / "c"
    root.mkdir()
    for split in ("train", "test"):
        rows = ["path\tlabel\tspeaker"]
        for i in range(4):
            sf.write(root / f"{split}{i}.wav", _tone(i + (10 if split == "test" else 0), 0.8), 16000)
            rows.append(f"{split}{i}.wav\tl{i % 2}\tspk{i}")
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n")

    def run(command: str, *argv: str) -> int:
        parser = argparse.ArgumentParser(prog=f"spkit {command}")
        cli.add_arguments(parser)
        return cli.main(parser.parse_args([str(root), "--kind", "tsv", "--features", "mfcc",
                                           "--no-progress", *argv]))

    assert run("fit-kmeans", "--clusters", "6", "--out", str(tmp_path / "km.bin")) == 0
    assert KMeansModel.load(tmp_path / "km.bin").n_clusters == 6
    assert run("quantize", "--km", str(tmp_path / "km.bin"), "--out", str(tmp_path / "u")) == 0
    assert set(read_units(tmp_path / "u" / "test.txt")) == {f"test{i}" for i in range(4)}
    assert (tmp_path / "u" / "train.report.json").is_file()
    assert run("quantize", "--km", str(tmp_path / "km.bin"), "--out", str(tmp_path / "v"),
               "--features", "logmel") == 2  # 80-dim features vs a 39-dim km.bin
    assert "dimension 39" in capsys.readouterr().err
