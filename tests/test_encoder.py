"""The composed SpeechEncoder: aligned streams, batching, its factories, and the unit files made with it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from spkit.audio import load_audio
from spkit.data.base import DataError, Utterance
from spkit.features.base import num_frames
from spkit.features.tiny_hubert import FORMAT as TH_FORMAT
from spkit.features.tiny_hubert import VERSION as TH_VERSION
from spkit.features.tiny_hubert import TinyHubert, TinyHubertConfig, TinyHubertExtractor
from spkit.io import torch_save, write_json
from spkit.layout import RunLayout
from spkit.units.encoder import EncodedSpeech, SpeechEncoder, dedup, save_unit_model
from spkit.units.kmeans import KMeansError, KMeansModel
from spkit.units.quantize import quantize_corpus, read_records, read_units

K = 8


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _waves() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    out = []
    for i, (freq, n) in enumerate([(200, 16000), (900, 12000), (2500, 9000), (400, 16000)]):
        w = 0.3 * torch.sin(2 * torch.pi * freq * t[:n]) * torch.linspace(0.2, 1.0, n)
        out.append((w + 0.02 * torch.randn(n, generator=g)).float() * (1 + i % 2))
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict:
    """A saved tiny HuBERT (layer 1, CMVN) and a K=8 k-means on its features."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("enc")
    cfg = TinyHubertConfig(n_mels=20, dim=16, layers=2, heads=2, ffn_dim=32, conv_pos=4, conv_pos_groups=2,
                           num_classes=K, final_dim=8)
    ckpt = root / "hubert.pt"
    torch_save({"format": TH_FORMAT, "version": TH_VERSION, "config": dataclasses.asdict(cfg),
                "model": TinyHubert(cfg).state_dict()}, ckpt)
    ext = TinyHubertExtractor.from_checkpoint(ckpt, layer=1, cmvn=True)
    feats = torch.cat([ext.extract(w) for w in _waves()])
    km = KMeansModel(feats[torch.randperm(feats.shape[0], generator=torch.Generator().manual_seed(1))[:K]]
                     .double().numpy())
    km.save(root / "km.bin")
    return {"root": root, "ckpt": ckpt, "ext": ext, "km": KMeansModel.load(root / "km.bin")}


def test_encode_returns_aligned_streams(parts):
    enc = SpeechEncoder(parts["ext"], parts["km"])
    for w in _waves():
        frames = parts["km"].predict(parts["ext"].extract(w))  # the chain written out by hand
        out = enc.encode(w, with_features=True)
        assert isinstance(out, EncodedSpeech)
        assert out.units.dtype == torch.long and out.units.shape == out.durations.shape
        assert torch.equal(out.frame_units, frames) and out.n_frames == num_frames(w.numel())
        assert bool((out.units[1:] != out.units[:-1]).all()) and int(out.durations.min()) >= 1
        assert out.features is not None and out.features.shape == (num_frames(w.numel()), parts["ext"].dim)
        assert enc(w).features is None  # dense features only on request
        assert (out.units.tolist(), out.durations.tolist()) == dedup(frames.tolist())
    frame_enc = SpeechEncoder(parts["ext"], parts["km"], deduplicate=False)
    w = _waves()[0]
    out = frame_enc.encode(w)
    assert torch.equal(out.units, parts["km"].predict(parts["ext"].extract(w)))
    assert out.durations.tolist() == [1] * num_frames(w.numel())


def test_encode_many_batches_to_the_same_units(parts):
    enc = SpeechEncoder(parts["ext"], parts["km"])
    waves = _waves()
    one = [enc.encode(w) for w in waves]
    many = enc.encode_many(waves, batch_size=3)  # different lengths share a batch (padding-invariant)
    assert len(many) == len(one)
    for a, b in zip(one, many):
        assert torch.equal(a.units, b.units) and torch.equal(a.durations, b.durations)


def test_quantizer_must_fit_the_features(parts, tmp_path):
    km = KMeansModel(np.zeros((4, 5)))
    km.save(tmp_path / "small.bin")
    with pytest.raises(KMeansError, match=r"small\.bin.*dimension 5.*dimension 16"):
        SpeechEncoder(parts["ext"], KMeansModel.load(tmp_path / "small.bin"))


def test_from_run_round_trip_and_changed_weights(parts, tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    layout.units.mkdir(parents=True)
    parts["km"].save(layout.kmeans)
    enc = SpeechEncoder(parts["ext"], parts["km"])
    save_unit_model(layout.root, enc, "tiny_hubert", parts["ckpt"])
    loaded = SpeechEncoder.from_run(layout.root)
    assert loaded.record is not None and loaded.record["layer"] == 1 and loaded.record["cmvn"] is True
    assert loaded.fingerprints == enc.fingerprints and loaded.vocab_size == K and loaded.layer == 1
    w = _waves()[1]
    assert torch.equal(loaded.encode(w).units, enc.encode(w).units)
    rec = json.loads((layout.units / "unit_model.json").read_text())
    write_json(layout.units / "unit_model.json", {**rec, "extractor_fingerprint": "tiny_hubert-other"})
    with pytest.raises(DataError, match="weights changed"):
        SpeechEncoder.from_run(layout.root)
    with pytest.raises(DataError, match="no unit model in this run"):
        SpeechEncoder.from_run(tmp_path / "empty")


def test_from_base_reads_the_model_card(parts, tmp_path):
    base = tmp_path / "spkit-base"
    with pytest.raises(DataError, match="no spkit-base model card"):
        SpeechEncoder.from_base(base)
    base.mkdir()
    (base / "ulm").mkdir()
    for name in ("hubert.pt", "km.bin"):
        (base / name).write_bytes((parts["ckpt"] if name == "hubert.pt" else parts["km"].path).read_bytes())
    card = {"format": "spkit.base", "hubert": "hubert.pt", "kmeans": "km.bin", "ulm": "ulm", "layer": 2,
            "cmvn": False, "n_clusters": K}
    write_json(base / "spkit-base.json", card)
    enc = SpeechEncoder.from_base(base)
    assert enc.layer == 2 and enc.extractor.cmvn is False and enc.vocab_size == K
    assert enc.extractor.fingerprint.endswith("-L2")  # the card's layer, not the default
    write_json(base / "spkit-base.json", {**card, "format": "other"})
    with pytest.raises(DataError, match="not an spkit-base folder"):
        SpeechEncoder.from_base(base)


def test_from_gslm_uses_a_fairseq_hubert_layer(tmp_path):
    pytest.importorskip("fairseq")
    from fixtures_real import write_fairseq_hubert

    config = dict(encoder_layers=3, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                  encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4,
                  conv_feature_layers="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2")
    model = write_fairseq_hubert(tmp_path / "hubert_base_ls960.pt", config)
    KMeansModel(np.random.default_rng(0).normal(size=(5, 64))).save(tmp_path / "km.bin")
    enc = SpeechEncoder.from_gslm(tmp_path / "hubert_base_ls960.pt", tmp_path / "km.bin", layer=2)
    w = _waves()[0]
    with torch.no_grad():
        ref = model.extract_features(source=w[None], padding_mask=None, mask=False, output_layer=2)[0][0]
    out = enc.encode(w, with_features=True)
    assert out.features is not None and torch.allclose(out.features, ref, atol=1e-4)
    assert torch.equal(out.frame_units, enc.kmeans.predict(ref))


def test_unit_files_are_the_encoders_units(parts, tmp_path):
    """quantize_corpus writes, per clip, the per-frame units and the deduplicated stream of encode()."""
    utts = []
    for i, w in enumerate(_waves()):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, w.numpy(), 16000)
        utts.append(Utterance(f"c{i}", path, "test", "s", "x"))
    enc = SpeechEncoder(parts["ext"], parts["km"])
    out = quantize_corpus(utts, enc, tmp_path / "q", name="test", batch_size=3, progress=False)
    frames = read_units(out)
    records = {r["uid"]: r for r in read_records(tmp_path / "q" / "test.jsonl")}
    for u in utts:
        e = enc.encode(load_audio(u.path))
        assert frames[u.uid] == e.frame_units.tolist()
        assert records[u.uid]["units"] == e.units.tolist()
        assert records[u.uid]["durations"] == e.durations.tolist()
