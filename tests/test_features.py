"""Tests of spkit.features: spectral front ends, real-HuBERT loading, the tiny HuBERT and its training."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from fixtures_real import write_fairseq_hubert

from spkit.errors import CheckpointError
from spkit.features import KINDS, FeatureExtractor, LayeredExtractor, load_extractor, num_frames
from spkit.features.base import clip_cmvn
from spkit.features.hubert import (
    HubertExtractor,
    convert_fairseq_checkpoint,
    load_hubert_model,
)
from spkit.features.pretrain import (
    PretrainConfig,
    augment_batch,
    loss_fn,
    make_batch,
    make_targets,
    pretrain,
)
from spkit.features.spectral import LogMelExtractor, MFCCExtractor
from spkit.features.tiny_hubert import (
    TinyHubert,
    TinyHubertConfig,
    TinyHubertExtractor,
    load_tiny_hubert,
    span_mask,
    warp_frequency,
)

torch.set_num_threads(1)

LENGTHS = [400, 719, 720, 1040, 8000, 16000, 16001, 23999]


def _wave(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 0.1


# --------------------------------------------------------------------------- spectral
@pytest.mark.parametrize("extractor,dim", [(MFCCExtractor(), 39), (LogMelExtractor(), 80),
                                           (MFCCExtractor(cmvn=True), 39), (LogMelExtractor(n_mels=40), 40)])
def test_spectral_frames_and_dims(extractor: FeatureExtractor, dim: int) -> None:
    assert isinstance(extractor, FeatureExtractor) and extractor.dim == dim
    for n in LENGTHS:
        feats = extractor.extract(_wave(n))
        assert feats.shape == (num_frames(n), dim), n
        assert torch.isfinite(feats).all()
    assert extractor.extract(_wave(399)).shape == (0, dim)


def test_num_frames_formula() -> None:
    assert [num_frames(n) for n in (0, 399, 400, 719, 720, 16000)] == [0, 0, 1, 1, 2, 49]


def test_spectral_frame_alignment_and_cmvn() -> None:
    # Frame i covers samples [320 i, 320 i + 400): a clip cut at a frame boundary reproduces frames.
    w = _wave(16000)
    full, part = LogMelExtractor().extract(w), LogMelExtractor().extract(w[320 * 7:])
    torch.testing.assert_close(part, full[7:], atol=1e-4, rtol=1e-4)
    normed = MFCCExtractor(cmvn=True).extract(w)
    torch.testing.assert_close(normed.mean(0), torch.zeros(39), atol=1e-4, rtol=0)
    assert MFCCExtractor(cmvn=True).fingerprint != MFCCExtractor().fingerprint


# --------------------------------------------------------------------------- fairseq HuBERT
FAIRSEQ_CONFIGS = {
    # Base layout (post-LN, GroupNorm extractor, post_extract_proj 32 -> 64), base strides.
    "base_like": dict(encoder_layers=3, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                      encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4,
                      conv_feature_layers="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"),
    # Large layout (pre-LN, LayerNorm extractor with conv bias, no post_extract_proj, odd conv_pos).
    "large_like": dict(encoder_layers=2, encoder_embed_dim=48, encoder_ffn_embed_dim=96,
                       encoder_attention_heads=3, conv_pos=15, conv_pos_groups=3, layer_norm_first=True,
                       extractor_mode="layer_norm", conv_bias=True,
                       conv_feature_layers="[(48,10,5)] + [(48,3,2)] * 4 + [(48,2,2)] * 2"),
}


def _fairseq() -> None:
    pytest.importorskip("fairseq")
    from spkit.fairseq_compat import import_fairseq

    import_fairseq()  # NumPy 2 shims before fairseq's modules load


@pytest.fixture(scope="module", params=sorted(FAIRSEQ_CONFIGS))
def fairseq_hubert(request, tmp_path_factory):
    """A random fairseq HubertModel and its checkpoint in fairseq's file layout (as hubert_base_ls960.pt)."""
    _fairseq()
    path = tmp_path_factory.mktemp("fairseq") / f"hubert_{request.param}.pt"
    model = write_fairseq_hubert(path, FAIRSEQ_CONFIGS[request.param])
    return model, path, FAIRSEQ_CONFIGS[request.param].get("encoder_layers", 12)


def test_fairseq_checkpoint_matches_fairseq_features(fairseq_hubert) -> None:
    model, path, layers = fairseq_hubert
    ext = HubertExtractor.from_checkpoint(path, layer=1)
    assert isinstance(ext, LayeredExtractor) and ext.num_layers == layers
    wave = _wave(8000, seed=3)
    all_layers = ext.extract_layers(wave)
    with torch.no_grad():
        for k in range(1, layers + 1):
            ref, _ = model.extract_features(wave[None], padding_mask=None, mask=False, output_layer=k)
            ours = ext.with_layer(k).extract(wave)
            assert ours.shape == ref[0].shape == (num_frames(8000), ext.dim)
            torch.testing.assert_close(ours, ref[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(all_layers[k - 1], ref[0], atol=1e-5, rtol=1e-5)


def test_fixture_is_a_real_fairseq_checkpoint(fairseq_hubert) -> None:
    # fairseq's own loader reads the file (so it has the released layout) and agrees with spkit.
    from fairseq import checkpoint_utils
    from fairseq.data import Dictionary

    _, path, layers = fairseq_hubert
    with torch.serialization.safe_globals([Dictionary]):
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    wave = _wave(5000, 4)
    with torch.no_grad():
        ref, _ = models[0].eval().extract_features(wave[None], output_layer=layers)
    ours = HubertExtractor.from_checkpoint(path, layer=layers).extract(wave)
    torch.testing.assert_close(ours, ref[0], atol=1e-5, rtol=1e-5)


def test_fairseq_checkpoint_conversion_and_frames(fairseq_hubert, tmp_path: Path) -> None:
    _, path, layers = fairseq_hubert
    ext = HubertExtractor.from_checkpoint(path, layer=layers)
    for n in LENGTHS:
        assert ext.extract(_wave(n)).shape == (num_frames(n), ext.dim), n
    assert ext.extract(_wave(399)).shape == (0, ext.dim)
    batch = torch.stack([_wave(4000, 1), _wave(4000, 2)])  # equal lengths batch like one by one
    torch.testing.assert_close(ext.extract_batch(batch)[1], ext.extract(batch[1]), atol=1e-5, rtol=1e-5)
    # The converted file loads with weights_only=True (no fairseq classes) and gives the same features.
    converted = convert_fairseq_checkpoint(path, tmp_path / "hubert.spkit.pt")
    assert torch.load(converted, weights_only=True)["format"] == "spkit.hubert"
    again = HubertExtractor.from_checkpoint(converted, layer=layers)
    wave = _wave(6000, 5)
    torch.testing.assert_close(again.extract(wave), ext.extract(wave), atol=0, rtol=0)
    assert again.fingerprint == ext.fingerprint != ext.with_layer(1).fingerprint  # same weights
    cm = HubertExtractor.from_checkpoint(path, layer=layers, cmvn=True)  # per-clip normalised layer
    torch.testing.assert_close(cm.extract(wave), clip_cmvn(ext.extract(wave)[None])[0], atol=1e-5, rtol=1e-5)
    assert cm.fingerprint == ext.fingerprint + "-cmvn" and cm.with_layer(1).cmvn
    assert ext.fingerprint != ext.with_layer(1).fingerprint


def test_torchaudio_state_dict(fairseq_hubert, tmp_path: Path, monkeypatch) -> None:
    import spkit.features.hubert as hub

    _, path, _ = fairseq_hubert
    model, config, _ = load_hubert_model(path)
    sd_path = tmp_path / "torchaudio.pt"
    torch.save(model.state_dict(), sd_path)
    with pytest.raises(CheckpointError, match=str(sd_path)):  # not a hubert_base/large/xlarge size
        load_hubert_model(sd_path)
    # Recognised sizes (hubert_base/large/xlarge) are read off the shapes; register this one too.
    keys = ("encoder_num_heads", "encoder_layer_norm_first")
    sizes = {(config["encoder_embed_dim"], config["encoder_num_layers"]): {k: config[k] for k in keys}}
    monkeypatch.setattr(hub, "_TORCHAUDIO_SIZES", sizes)
    loaded, loaded_config, normalize = load_hubert_model(sd_path)
    assert loaded_config == config and normalize == config["encoder_layer_norm_first"]
    for (ka, a), (kb, b) in zip(loaded.state_dict().items(), model.state_dict().items()):
        assert ka == kb and torch.equal(a, b)


def test_hubert_errors(fairseq_hubert, tmp_path: Path) -> None:
    _, path, layers = fairseq_hubert
    with pytest.raises(ValueError, match=rf"{path}.*layer {layers + 1} out of range"):
        HubertExtractor.from_checkpoint(path, layer=layers + 1)
    with pytest.raises(ValueError, match="out of range"):
        HubertExtractor.from_checkpoint(path, layer=0)
    odd = tmp_path / "odd.pt"
    torch.save({"weights": torch.zeros(3)}, odd)
    with pytest.raises(CheckpointError, match=rf"{odd}: unknown checkpoint layout"):
        load_extractor("hubert", checkpoint=odd)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=str(garbage)):
        load_extractor("hubert", checkpoint=garbage)
    # A fairseq layout with a parameter that has no torchaudio counterpart.
    ckpt = torch.load(path, weights_only=False)
    ckpt["model"]["encoder.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=rf"{bad}: unknown HuBERT parameter 'encoder.extra.weight'"):
        load_hubert_model(bad)


# --------------------------------------------------------------------------- tiny HuBERT
SMALL = TinyHubertConfig(dim=32, layers=3, heads=2, ffn_dim=64, conv_pos=8, conv_pos_groups=4,
                         dropout=0.1, attention_dropout=0.0, final_dim=16, mask_length=5)


def _toy_corpus(n: int = 12) -> list[torch.Tensor]:
    """Two-tone clips (0.6-1.2 s): the tone pair and its switch point differ across clips."""
    g = torch.Generator().manual_seed(1)
    waves = []
    for i in range(n):
        length = 9600 + 800 * (i % 9)
        t = torch.arange(length) / 16000
        f1, f2 = 200 + 150 * (i % 4), 900 + 200 * (i % 3)
        switch = 0.2 + 0.05 * (i % 5)
        w = torch.where(t < switch, torch.sin(2 * math.pi * f1 * t), torch.sin(2 * math.pi * f2 * t))
        waves.append((0.3 * w + 0.01 * torch.randn(length, generator=g)).float())
    return waves


def _config(**kw) -> PretrainConfig:
    base = dict(num_clusters=8, batch_size=4, max_steps=6, warmup_steps=2, lr=3e-3, save_every=2,
                crop_seconds=0.5, kmeans_n_init=1, seed=7)
    return PretrainConfig(**{**base, **kw})


def test_tiny_hubert_frames_padding_invariance_and_layers() -> None:
    ext = TinyHubertExtractor(TinyHubert(SMALL))
    assert isinstance(ext, LayeredExtractor) and ext.layer == 1 and ext.dim == 32
    for n in LENGTHS:
        assert ext.extract(_wave(n)).shape == (num_frames(n), 32), n
    a, b = _wave(16000, 1), _wave(9000, 2)
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :9000] = a, b
    out = ext.extract_batch(batch, torch.tensor([16000, 9000]))
    torch.testing.assert_close(out[0], ext.extract(a), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, : num_frames(9000)], ext.extract(b), atol=1e-5, rtol=1e-5)
    assert out[1, num_frames(9000):].abs().max() == 0
    layers = ext.extract_layers(a)
    assert layers.shape == (3, num_frames(16000), 32)
    torch.testing.assert_close(layers[2], ext.with_layer(3).extract(a), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="layer 4 out of range"):
        ext.with_layer(4)


def test_feature_cmvn_per_clip_padding_invariant_and_fingerprinted() -> None:
    raw = TinyHubertExtractor(TinyHubert(SMALL))
    ext = TinyHubertExtractor(raw.model, cmvn=True)
    a, b = _wave(16000, 1), _wave(9000, 2)
    fa = ext.extract(a)
    torch.testing.assert_close(fa.mean(0), torch.zeros(32), atol=1e-4, rtol=0)
    torch.testing.assert_close(fa.std(0, unbiased=False), torch.ones(32), atol=1e-3, rtol=0)
    torch.testing.assert_close(fa, clip_cmvn(raw.extract(a)[None])[0], atol=1e-5, rtol=1e-5)
    # stats over each clip's own frames: a padded batch gives each clip's units as alone; padding stays 0
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :9000] = a, b
    out = ext.extract_batch(batch, torch.tensor([16000, 9000]))
    torch.testing.assert_close(out[0], fa, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[1, : num_frames(9000)], ext.extract(b), atol=1e-4, rtol=1e-4)
    assert out[1, num_frames(9000):].abs().max() == 0
    # extract_layers stays raw (the downstream baseline's input); with_layer keeps the setting
    torch.testing.assert_close(ext.extract_layers(a), raw.extract_layers(a))
    assert ext.with_layer(2).cmvn and ext.fingerprint == raw.fingerprint + "-cmvn"
    assert clip_cmvn(torch.zeros(1, 0, 4)).shape == (1, 0, 4)
    assert torch.isfinite(clip_cmvn(torch.ones(1, 3, 4))).all()  # constant dims: no division by zero


def test_warp_frequency_moves_energy_and_keeps_identity() -> None:
    spec = torch.zeros(2, 201, 3)
    spec[:, 40] = 1.0  # a single peak at bin 40 (1.6 kHz)
    same = warp_frequency(spec, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(same, spec)
    out = warp_frequency(spec, torch.tensor([1.25, 0.8]))
    assert out.shape == spec.shape
    assert int(out[0, :, 0].argmax()) == 50 and int(out[1, :, 0].argmax()) == 32  # 40 * 1.25, 40 * 0.8
    # above the top bin nothing is invented: a 0.5 warp leaves the upper half empty
    assert warp_frequency(torch.ones(1, 201, 2), torch.tensor([0.5]))[0, 101:].abs().max() == 0


def test_utterance_cmvn_is_padding_invariant_and_ignores_level() -> None:
    ext = TinyHubertExtractor(TinyHubert(dataclasses.replace(SMALL, utterance_cmvn=True)))
    a, b = _wave(16000, 1), _wave(9000, 2)
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :9000] = a, b
    out = ext.extract_batch(batch, torch.tensor([16000, 9000]))
    torch.testing.assert_close(out[1, : num_frames(9000)], ext.extract(b), atol=1e-5, rtol=1e-5)
    # a level change is a constant offset of the log-mel, which the clip's own mean removes
    torch.testing.assert_close(ext.extract(a * 0.1), ext.extract(a), atol=2e-2, rtol=0)  # up to the log floor


def test_augment_batch_is_seeded_and_keeps_padding() -> None:
    waves, config = _toy_corpus(), _config()
    labels, _ = make_targets(waves, config, progress=False)
    batch, lengths, _ = make_batch(waves, labels, config, step=0)
    plain, warp = augment_batch(batch, lengths, config, step=0)
    assert warp is None and torch.equal(plain, batch)  # no augmentation configured: the batch as is
    aug_cfg = _config(warp_range=(0.9, 1.1), noise_prob=1.0, noise_snr_db=(10.0, 10.0), mix_prob=1.0,
                      mix_snr_db=(10.0, 10.0), gain_db=3.0)
    x1, w1 = augment_batch(batch, lengths, aug_cfg, step=0)
    x2, w2 = augment_batch(batch, lengths, aug_cfg, step=0)
    x3, _ = augment_batch(batch, lengths, aug_cfg, step=1)
    assert torch.equal(x1, x2) and torch.equal(w1, w2) and not torch.equal(x1, x3)
    assert ((w1 >= 0.9) & (w1 <= 1.1)).all() and w1.shape == (batch.shape[0],)
    for b, n in enumerate(lengths.tolist()):
        assert x1[b, n:].abs().max() == 0 if n < batch.shape[1] else True  # padding stays silent
        noise_db = 10 * torch.log10((x1[b, :n] - batch[b, :n]).pow(2).mean() / batch[b, :n].pow(2).mean())
        assert -10.0 < float(noise_db) < 6.0, float(noise_db)  # perturbed, but speech still dominates


def test_augmented_pretraining_runs_and_refuses_other_augmentation(tmp_path: Path) -> None:
    waves = _toy_corpus()
    cfg = _config(max_steps=4, warp_range=(0.9, 1.1), noise_prob=0.5, mix_prob=0.5)
    part = pretrain(waves, tmp_path / "m.pt", cfg, SMALL, until_step=2, progress=False)
    assert part["step"] == 2
    with pytest.raises(ValueError, match="cannot resume: warp_range"):
        pretrain(waves, tmp_path / "m.pt", _config(max_steps=4, noise_prob=0.5, mix_prob=0.5), SMALL,
                 progress=False)
    done = pretrain(waves, tmp_path / "m.pt", cfg, SMALL, progress=False)
    assert done["finished"] and math.isfinite(done["loss"])


def test_span_mask() -> None:
    g = torch.Generator().manual_seed(0)
    mask = span_mask(torch.tensor([49, 20, 3, 0]), 49, 0.08, 10, g)
    assert mask.shape == (4, 49)
    assert mask[0].any() and mask[1].any() and mask[2].any() and not mask[3].any()
    assert not mask[1, 20:].any() and not mask[2, 3:].any()  # never past a clip's end
    assert mask[2].sum() == 1  # short clip: span shortened to half the clip
    again = span_mask(torch.tensor([49, 20, 3, 0]), 49, 0.08, 10, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_training_reduces_loss(tmp_path: Path) -> None:
    waves, config = _toy_corpus(), _config(max_steps=40, save_every=100)
    labels, _ = make_targets(waves, config, progress=False)
    batch, lengths, targets = make_batch(waves, labels, config, step=0)
    mask = span_mask((targets >= 0).sum(1), targets.shape[1], 0.08, 5, torch.Generator().manual_seed(0))

    def eval_loss(model: TinyHubert) -> float:
        model.eval()
        with torch.no_grad():
            return float(loss_fn(model, batch, lengths, targets, mask, 0.0)[0])

    res = pretrain(waves, tmp_path / "m.pt", config, SMALL, until_step=0, progress=False)
    before = eval_loss(load_tiny_hubert(tmp_path / "m.pt")[0])  # the initial weights, as saved
    res = pretrain(waves, tmp_path / "m.pt", config, SMALL, progress=False)
    model, ckpt = load_tiny_hubert(tmp_path / "m.pt")
    after = eval_loss(model)
    assert res["finished"] and res["step"] == 40 and len(ckpt["history"]) == 40
    print(f"loss before {before:.3f} after {after:.3f}")
    assert after < before - 0.3, (before, after)


def test_checkpoint_roundtrip_and_resume(tmp_path: Path) -> None:
    waves = _toy_corpus()
    full = pretrain(waves, tmp_path / "full.pt", _config(), SMALL, progress=False)
    assert full["finished"]
    # Interrupted after 3 steps (the last save was at step 2 or 3), then resumed to the end.
    part = pretrain(waves, tmp_path / "part.pt", _config(), SMALL, until_step=3, progress=False)
    assert part["step"] == 3 and not part["finished"]
    resumed = pretrain(waves, tmp_path / "part.pt", _config(), SMALL, progress=False)
    assert resumed["step"] == 6 and resumed["finished"]
    a = torch.load(tmp_path / "full.pt", weights_only=True)
    b = torch.load(tmp_path / "part.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h[1] for h in a["history"]] == [h[1] for h in b["history"]]
    # Round trip: the loader rebuilds exactly the trained weights, strictly.
    ext = TinyHubertExtractor.from_checkpoint(tmp_path / "full.pt", layer=2)
    for k, v in ext.model.state_dict().items():
        assert torch.equal(v, a["model"][k]), k
    assert ext.fingerprint == TinyHubertExtractor.from_checkpoint(tmp_path / "part.pt", 2).fingerprint
    # A resume with different settings is refused rather than silently mixed.
    with pytest.raises(ValueError, match="cannot resume: lr"):
        pretrain(waves, tmp_path / "part.pt", _config(lr=1e-2), SMALL, progress=False)


def test_tiny_checkpoint_errors_and_iteration2(tmp_path: Path) -> None:
    waves = _toy_corpus(8)
    it1 = tmp_path / "iter1.pt"
    pretrain(waves, it1, _config(max_steps=2), SMALL, progress=False)
    with pytest.raises(ValueError, match="layer 9 out of range"):
        load_extractor("tiny_hubert", checkpoint=it1, layer=9)
    ckpt = torch.load(it1, weights_only=True)
    ckpt["model"]["unexpected.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=rf"{bad}: weights do not match"):
        TinyHubertExtractor.from_checkpoint(bad)
    torch.save({"format": "something else"}, bad)
    with pytest.raises(ValueError, match=rf"{bad}: unknown checkpoint layout"):
        TinyHubertExtractor.from_checkpoint(bad)
    # Iteration 2 clusters the teacher's layer 2.
    res = pretrain(waves, tmp_path / "iter2.pt", _config(iteration=2, max_steps=2, target_layer=2), SMALL,
                   teacher=it1, progress=False)
    info = torch.load(res["path"], weights_only=True)["targets"]
    assert info["kind"] == "tiny_hubert" and info["teacher_layer"] == 2
    assert info["centers"].shape == (8, SMALL.dim)
    with pytest.raises(ValueError, match="needs a teacher"):
        pretrain(waves, tmp_path / "iter2b.pt", _config(iteration=2), SMALL, progress=False)


def test_iteration2_warm_start_from_the_teacher(tmp_path: Path) -> None:
    waves = _toy_corpus(8)
    it1 = tmp_path / "iter1.pt"
    pretrain(waves, it1, _config(max_steps=2), SMALL, progress=False)
    teacher = torch.load(it1, weights_only=True)["model"]
    cfg = _config(iteration=2, max_steps=2, target_layer=2, init_from_teacher=True)
    pretrain(waves, tmp_path / "warm.pt", cfg, SMALL, teacher=it1, until_step=0, progress=False)
    warm = torch.load(tmp_path / "warm.pt", weights_only=True)["model"]
    cold = _config(iteration=2, max_steps=2, target_layer=2)
    pretrain(waves, tmp_path / "cold.pt", cold, SMALL, teacher=it1, until_step=0, progress=False)
    fresh = torch.load(tmp_path / "cold.pt", weights_only=True)["model"]
    # Every weight but the label embeddings (new targets) starts as the teacher's; a fresh model's do not.
    for k, v in teacher.items():
        if k == "label_emb":
            assert torch.equal(warm[k], fresh[k]), k  # the fresh, seeded label embeddings
        else:
            assert torch.equal(warm[k], v), k
    assert not torch.equal(fresh["proj.weight"], teacher["proj.weight"])
    # The setting is part of the checkpoint: a resume with the other one is refused.
    with pytest.raises(ValueError, match="cannot resume: init_from_teacher"):
        pretrain(waves, tmp_path / "warm.pt", cold, SMALL, teacher=it1, progress=False)
    res = pretrain(waves, tmp_path / "warm.pt", cfg, SMALL, teacher=it1, progress=False)
    assert res["finished"] and math.isfinite(res["loss"])


def test_iteration2_targets_from_the_teachers_normalised_layer(tmp_path: Path) -> None:
    """``target_cmvn`` clusters the teacher's layer after per-clip normalisation (as the units are made)."""
    waves = _toy_corpus(8)
    it1 = tmp_path / "iter1.pt"
    pretrain(waves, it1, _config(max_steps=2), SMALL, progress=False)
    cfg = _config(iteration=2, max_steps=2, target_layer=1, target_cmvn=True)
    res = pretrain(waves, tmp_path / "norm.pt", cfg, SMALL, teacher=it1, until_step=0, progress=False)
    info = torch.load(res["path"], weights_only=True)["targets"]
    raw = pretrain(waves, tmp_path / "raw.pt", _config(iteration=2, max_steps=2, target_layer=1), SMALL,
                   teacher=it1, until_step=0, progress=False)
    raw_info = torch.load(raw["path"], weights_only=True)["targets"]
    frames = {}
    for cmvn in (False, True):
        teacher = TinyHubertExtractor.from_checkpoint(it1, layer=1, cmvn=cmvn)
        frames[cmvn] = torch.cat([teacher.extract(w) for w in waves])

    def nearest(centers: torch.Tensor, x: torch.Tensor) -> float:
        return float(torch.cdist(centers, x).min(1).values.mean())

    # k-means centres lie among the frames they were fitted on: the normalised ones here, the raw ones there
    assert nearest(info["centers"], frames[True]) < nearest(info["centers"], frames[False])
    assert nearest(raw_info["centers"], frames[False]) < nearest(raw_info["centers"], frames[True])
    with pytest.raises(ValueError, match="cannot resume: target_cmvn"):
        pretrain(waves, tmp_path / "norm.pt", _config(iteration=2, max_steps=2, target_layer=1), SMALL,
                 teacher=it1, progress=False)


def test_factory(tmp_path: Path) -> None:
    assert set(KINDS) == {"mfcc", "logmel", "hubert", "tiny_hubert"}
    assert load_extractor("mfcc").dim == 39 and load_extractor("logmel").dim == 80
    with pytest.raises(ValueError, match="unknown feature kind"):
        load_extractor("wav2vec")
    with pytest.raises(ValueError, match="need a checkpoint"):
        load_extractor("hubert")
    with pytest.raises(ValueError, match="no checkpoint or layer"):
        load_extractor("mfcc", layer=3)


def test_pretrain_cli(tmp_path: Path) -> None:
    import argparse

    from spkit.audio import save_audio
    from spkit.features import cli

    corpus = tmp_path / "corpus"
    for i, w in enumerate(_toy_corpus(8)):
        save_audio(corpus / f"spk{i % 2}" / f"clip{i}.wav", w)
    (tmp_path / "train.tsv").write_text("".join(f"corpus/spk{i % 2}/clip{i}.wav\t1\n" for i in range(4)))
    assert len(cli.audio_files(corpus)) == 8 and len(cli.audio_files(tmp_path / "train.tsv")) == 4
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(corpus), str(tmp_path / "out"), "--iterations", "2", "--clusters", "8",
                              "--steps", "2", "--batch-size", "4", "--dim", "32", "--layers", "2"])
    assert cli.main(args) == 0
    for it in (1, 2):
        ext = load_extractor("tiny_hubert", checkpoint=tmp_path / "out" / f"iter{it}.pt")
        assert ext.layer == 1 and ext.extract(_wave(3200)).shape == (num_frames(3200), 32)
    with pytest.raises(FileNotFoundError, match=r"no \.wav or \.flac"):
        cli.audio_files(tmp_path / "out")
