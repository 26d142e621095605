"""spkit-base: the pretraining corpus, packed audio, streamed targets, and the recipe end to end (smoke)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spkit.data.base import Utterance
from spkit.data.packed import PackedAudio, pack_utterances
from spkit.features.pretrain import PretrainConfig, make_targets
from spkit.synth import pretrain_text, texts
from spkit.synth.corpora import _variant_pools, plan_corpus

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------- corpus
def test_sentences_from_fortunes_keeps_plain_sentences_only():
    raw = ("The early bird gets the worm, but the second mouse gets the cheese.\n\t\t-- Steven Wright\n%\n"
           "|| a table || with bars ||\n%\n"
           "Short one.  This sentence has exactly enough words to count here. Yes!\n%\n"
           "x = y + 1; print(x)\n%\n")
    out = pretrain_text.sentences_from_fortunes(raw)
    assert out == ["The early bird gets the worm, but the second mouse gets the cheese.",
                   "This sentence has exactly enough words to count here."]


def test_english_text_source_is_installed_and_large():
    sentences = pretrain_text.english_sentences()
    assert len(sentences) > 15_000
    words = sum(len(s.split()) for s in sentences)
    assert words > 200_000
    assert all(5 <= len(s.split()) <= 32 for s in sentences[:2000])


def test_pretrain_plan_uses_training_side_voices_only():
    speakers, clips = plan_corpus("pretrain", "smoke", seed=0)
    train_pool = set(_variant_pools()["train"])
    held_out = set(_variant_pools()["valid"]) | set(_variant_pools()["test"])
    assert speakers and {s.split for s in speakers} == {"train", "valid"}
    for s in speakers:
        assert s.variant is None or s.variant in train_pool, s
        assert s.variant not in held_out
    # valid holds out whole speakers
    by_split = {sp: {c["speaker"]["id"] for c in clips if c["split"] == sp} for sp in ("train", "valid")}
    assert by_split["train"].isdisjoint(by_split["valid"])
    # same seed, same plan; another seed, another plan
    assert plan_corpus("pretrain", "smoke", seed=0)[1] == clips
    assert plan_corpus("pretrain", "smoke", seed=1)[1] != clips


def test_pretrain_default_plan_size_and_task_material():
    speakers, clips = plan_corpus("pretrain", "default", seed=0)
    assert len(clips) >= 28_000 and len(speakers) >= 1500  # about 6 s each: ~47 h
    langs = {c["label"] for c in clips}
    assert langs == set(texts.LID_LANGUAGES)
    english = [c["text"].lower() for c in clips if c["label"] == "en"]
    joined = " ".join(english)
    phrasings = [p for ps in texts.FSC_INTENTS.values() for p in ps]
    assert sum(any(p in t for p in phrasings) for t in english[:3000]) > 100  # commands in running text
    for kw in texts.KWS_TARGETS:  # every keyword occurs in running speech
        assert f" {kw} " in f" {joined} ", kw
    assert sum(" ".join(texts.DIGITS[:3]) in t or "the number is" in t for t in english) > 0
    train_pool = set(_variant_pools()["train"])
    assert all(s.variant is None or s.variant in train_pool for s in speakers)


def test_synth_pretrain_smoke_writes_manifests_and_alignments(tmp_path):
    from spkit.data.manifest import load_tsv_corpus
    from spkit.synth import synthesize_corpus

    root = synthesize_corpus("pretrain", tmp_path / "pt", preset="smoke", seed=0)
    splits = load_tsv_corpus(root, ("train", "valid"))
    assert len(splits["train"]) == 32 and len(splits["valid"]) == 8
    rows = [json.loads(x) for x in (root / "spkit" / "alignments.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(r["phones"] and r["words"] for r in rows)
    durations = [sf.info(str(root / r["path"])).duration for r in rows]
    assert min(durations) > 1.0 and max(durations) < 20.0
    info = json.loads((root / "spkit" / "corpus.json").read_text())
    assert info["kind"] == "pretrain" and info["splits"]["test"]["clips"] == 0


# ---------------------------------------------------------------------------------------- packing
def _utt(path: Path, uid: str) -> Utterance:
    return Utterance(uid=uid, path=path, split="train", speaker="s", label=None)


def test_pack_utterances_round_trip_and_skips_unreadable(tmp_path):
    rng = np.random.default_rng(0)
    waves = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (1600, 4000, 800)]
    utts = []
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"{i}.wav", w, 16000, subtype="PCM_16")
        utts.append(_utt(tmp_path / f"{i}.wav", f"c{i}"))
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    utts.insert(1, _utt(tmp_path / "bad.wav", "bad"))
    packed = pack_utterances(utts, tmp_path / "pack" / "train.json", progress=False)
    assert len(packed) == 3 and packed.uids == ["c0", "c1", "c2"]
    assert packed.lengths.tolist() == [1600, 4000, 800]
    for got, want in zip(packed, waves):
        assert got.dtype == torch.float32
        assert torch.allclose(got, torch.from_numpy(want), atol=1 / 32768 + 1e-6)
    index = json.loads((tmp_path / "pack" / "train.json").read_text())
    assert [s["uid"] for s in index["skipped"]] == ["bad"] and "bad.wav" in index["skipped"][0]["path"]
    # a finished pack is reused; the file on disk is int16 of the right size
    again = PackedAudio.open(tmp_path / "pack" / "train.json")
    assert again.uids == packed.uids
    assert (tmp_path / "pack" / "train.int16").stat().st_size == 2 * 6400


def test_make_targets_streaming_equals_in_memory():
    g = torch.Generator().manual_seed(0)
    waves = [torch.randn(int(n), generator=g) * 0.1 for n in (8000, 12000, 5000, 16000)]
    cfg = PretrainConfig(num_clusters=8, kmeans_max_frames=60, seed=3, kmeans_n_init=1)
    kept, c1 = make_targets(waves, cfg, progress=False)
    streamed, c2 = make_targets(waves, cfg, progress=False, keep_features_bytes=0)
    assert torch.equal(c1, c2)
    assert all(torch.equal(a, b) for a, b in zip(kept, streamed))
    assert [len(y) for y in kept] == [(len(w) - 400) // 320 + 1 for w in waves]


def test_pretrain_on_phone_targets_checks_them_and_records_their_kind(tmp_path):
    from spkit.features.pretrain import pretrain
    from spkit.features.tiny_hubert import TinyHubertConfig, load_tiny_hubert

    g = torch.Generator().manual_seed(0)
    waves = [torch.randn(int(n), generator=g) * 0.1 for n in (8000, 12000, 5000)]
    frames = [(len(w) - 400) // 320 + 1 for w in waves]
    targets = [torch.randint(0, 5, (n,), generator=g) for n in frames]
    cfg = PretrainConfig(targets="phones", num_clusters=5, max_steps=3, batch_size=2, crop_seconds=0.5,
                         warmup_steps=1, unmasked_weight=1.0)
    mcfg = TinyHubertConfig(dim=16, layers=1, heads=2, ffn_dim=32)
    with pytest.raises(ValueError, match="frame_targets"):  # one label sequence per clip
        pretrain(waves, tmp_path / "a.pt", cfg, mcfg, frame_targets=targets[:2], progress=False)
    with pytest.raises(ValueError, match=r"frame_targets\[1\]: .* labels for a clip of"):
        pretrain(waves, tmp_path / "a.pt", cfg, mcfg, frame_targets=[targets[0], targets[0], targets[2]],
                 progress=False)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\)"):
        pretrain(waves, tmp_path / "a.pt", cfg, mcfg, frame_targets=[t + 5 for t in targets], progress=False)
    with pytest.raises(ValueError, match="need frame_targets"):
        pretrain(waves, tmp_path / "a.pt", cfg, mcfg, progress=False)
    res = pretrain(waves, tmp_path / "a.pt", cfg, mcfg, frame_targets=targets, target_names=list("abcde"),
                   progress=False)
    assert res["finished"] and res["step"] == 3
    _, ckpt = load_tiny_hubert(tmp_path / "a.pt")
    assert ckpt["targets"]["kind"] == "phones" and ckpt["targets"]["names"] == list("abcde")
    assert ckpt["train"]["targets"] == "phones"
    # a resume with k-means targets is refused, naming the field
    with pytest.raises(ValueError, match="cannot resume: targets="):
        pretrain(waves, tmp_path / "a.pt", dataclasses.replace(cfg, targets="kmeans"), mcfg, progress=False)


# ---------------------------------------------------------------------------------------- recipe
@pytest.fixture(scope="module")
def smoke_base(tmp_path_factory):
    """spkit-base built end to end at the smoke size by the CLI, reading which clips it loads."""
    root = tmp_path_factory.mktemp("spkit_base")
    r = subprocess.run([sys.executable, "-m", "spkit", "pretrain-base", "--out", str(root / "base"),
                        "--preset", "smoke", "--data-root", str(root / "data")],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return root


def test_pretrain_base_ships_every_file(smoke_base):
    from spkit.features.tiny_hubert import load_tiny_hubert
    from spkit.recipes.spkit_base import load_base

    base = smoke_base / "base"
    assert sorted(p.name for p in base.iterdir()) == ["README.md", "curves.json", "hubert.pt", "km.bin",
                                                     "spkit-base.json", "ulm"]
    card = load_base(base)
    assert card["n_clusters"] in (12, 20) and card["layer"] in (1, 2) and card["cmvn"] is True
    assert sum(p.stat().st_size for p in base.rglob("*") if p.is_file()) < 60 * 2**20
    state = json.loads((smoke_base / "base.work" / "state.json").read_text())
    assert [s for s in ("corpus", "pack", "hubert1", "hubert2", "hubert", "select", "kmeans", "units", "ulm",
                        "export") if s not in state["stages"]] == []
    # the selection is made on validation clips and records every candidate
    sel = state["stages"]["select"]["result"]
    assert len(sel["layers"]) == 4 and all(0 < r["phone_pnmi"] < 1 for r in sel["layers"])
    best = max(sel["layers"], key=lambda r: r["phone_pnmi"])
    assert (sel["iteration"], sel["layer"]) == (best["iteration"], best["layer"])
    assert "Rebuild" in (base / "README.md").read_text()
    # v2's iteration 1 predicts the synthesizer's phones, said on the card and in the model card
    assert card["targets"] == "phone_alignment"
    assert "phone labels" in (base / "README.md").read_text() and "not self-supervised" in (
        base / "README.md").read_text()
    inventory = json.loads((smoke_base / "base.work" / "phone_inventory.json").read_text())
    _, it1 = load_tiny_hubert(smoke_base / "base.work" / "hubert" / "iter1.pt")
    assert it1["targets"]["kind"] == "phones" and it1["targets"]["names"] == inventory["units"]
    assert it1["targets"]["num_clusters"] == len(inventory["units"]) > 10
    _, it2 = load_tiny_hubert(smoke_base / "base.work" / "hubert" / "iter2.pt")
    assert it2["targets"]["kind"] == "tiny_hubert" and it2["targets"]["num_clusters"] == 20
    # what results.json calls the units: k-means of a phone-trained model, through the teacher chain
    from spkit.features.tiny_hubert import training_targets

    assert training_targets(it1) == training_targets(it2) == "phone_alignment"
    curves = json.loads((base / "curves.json").read_text())
    assert set(curves["hubert"]) == {"iter1", "iter2"} or sel["iteration"] == 1
    assert curves["ulm"] and curves["ulm"][-1]["valid_ppl"] > 1


def test_shipped_parts_load_strictly_and_in_their_native_tools(smoke_base):
    import joblib

    from spkit.features import load_extractor
    from spkit.ulm.fairseq_io import load_fairseq_ulm
    from spkit.units.kmeans import KMeansModel

    base = smoke_base / "base"
    state = torch.load(base / "hubert.pt", map_location="cpu", weights_only=True)
    assert state["optimizer"] is None  # weights only, no training state shipped
    card = json.loads((base / "spkit-base.json").read_text())
    ext = load_extractor("tiny_hubert", checkpoint=str(base / "hubert.pt"), layer=card["layer"], cmvn=True)
    assert ext.fingerprint == card["extractor_fingerprint"]
    km = KMeansModel.load(base / "km.bin")
    assert km.fingerprint == card["kmeans_fingerprint"]
    assert joblib.load(base / "km.bin").cluster_centers_.shape == (card["n_clusters"], ext.dim)
    lm, dictionary = load_fairseq_ulm(base / "ulm")
    assert lm.fingerprint() == card["ulm_fingerprint"] and len(dictionary) >= card["n_clusters"] + 4

    pytest.importorskip("fairseq")
    from spkit.fairseq_compat import import_fairseq

    import_fairseq()
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(base / "ulm" / "checkpoint_best.pt")], arg_overrides={"data": str(base / "ulm")})
    assert len(task.source_dictionary) == len(dictionary)
    x = torch.tensor([[2, 4, 5, 6, 7]])
    with torch.no_grad():
        ours = lm(x).logits
        theirs = models[0].eval()(x)[0]
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_rerun_resumes_nothing_and_refuses_without_resume(smoke_base):
    work = smoke_base / "base.work"
    before = (work / "state.json").read_text()
    args = [sys.executable, "-m", "spkit", "pretrain-base", "--out", str(smoke_base / "base"),
            "--preset", "smoke", "--data-root", str(smoke_base / "data")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    after = json.loads((work / "state.json").read_text())
    assert after["stages"]["hubert1"] == json.loads(before)["stages"]["hubert1"]
    assert json.loads(r.stdout.strip().splitlines()[-1])["left"] == []


def test_mfcc_kmeans_targets_stay_buildable(tmp_path, smoke_base):
    """v1's recipe (`--targets mfcc_kmeans`): iteration 1 on MFCC k-means, at smoke size, to the end."""
    from spkit.features.tiny_hubert import load_tiny_hubert

    r = subprocess.run([sys.executable, "-m", "spkit", "pretrain-base", "--out", str(tmp_path / "base"),
                        "--preset", "smoke", "--targets", "mfcc_kmeans",
                        "--data-root", str(smoke_base / "data")],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    _, it1 = load_tiny_hubert(tmp_path / "base.work" / "hubert" / "iter1.pt")
    assert it1["targets"]["kind"] == "mfcc" and it1["train"]["targets"] == "kmeans"
    card = json.loads((tmp_path / "base" / "spkit-base.json").read_text())
    assert card["targets"] == "mfcc_kmeans" and card["recipe"]["targets"] == "mfcc_kmeans"
    assert "self-supervised" in (tmp_path / "base" / "README.md").read_text()
    assert not (tmp_path / "base.work" / "phone_inventory.json").exists()
    from spkit.features.tiny_hubert import training_targets

    assert training_targets(it1) == "mfcc_kmeans"


def test_v1_recipe_is_the_mfcc_kmeans_targets_of_the_default():
    """The committed record of spkit-base v1 (docs/spkit-base-v1/) is what `--targets mfcc_kmeans` builds."""
    from spkit.recipes.spkit_base import preset_recipe

    v1 = json.loads((REPO / "docs" / "spkit-base-v1" / "spkit-base.json").read_text())["recipe"]
    now = json.loads(json.dumps(dataclasses.asdict(preset_recipe("default", targets="mfcc_kmeans"))))
    assert now.pop("targets") == "mfcc_kmeans"
    assert {k: v for k, v in v1.items() if k != "threads"} == {k: v for k, v in now.items() if k != "threads"}


def test_time_budget_pauses_and_resume_is_bit_identical(tmp_path, smoke_base):
    from spkit.recipes.spkit_base import pretrain_base

    data = smoke_base / "data"
    paused = pretrain_base(tmp_path / "a" / "base", "smoke", data_root=data, max_seconds=0.0, until="hubert",
                           progress=False)
    assert "hubert" not in paused["stages"]
    done = pretrain_base(tmp_path / "a" / "base", "smoke", data_root=data, until="hubert", progress=False)
    assert "hubert" in done["stages"]
    ref = torch.load(smoke_base / "base.work" / "hubert" / "iter2.pt", weights_only=True)
    got = torch.load(tmp_path / "a" / "base.work" / "hubert" / "iter2.pt", weights_only=True)
    assert all(torch.equal(ref["model"][k], got["model"][k]) for k in ref["model"])


def test_selection_never_reads_test_clips(tmp_path, smoke_base, monkeypatch):
    import spkit.data.corpus as corpus_mod
    from spkit.data.packed import PackedAudio
    from spkit.recipes.spkit_base import _select_stage, preset_recipe

    seen: list[str] = []
    real = corpus_mod.load_utterance

    def spy(utt, *a, **k):
        seen.append(utt.split)
        return real(utt, *a, **k)

    import spkit.recipes.spkit_base as base_mod
    import spkit.units.kmeans as kmeans_mod

    for module in (corpus_mod, base_mod, kmeans_mod):  # every module that reads clips by this name
        monkeypatch.setattr(module, "load_utterance", spy)
    state = json.loads((smoke_base / "base.work" / "state.json").read_text())
    packed = PackedAudio.open(smoke_base / "base.work" / "audio" / "train.json")
    recipe = preset_recipe("smoke")
    sel = _select_stage(recipe, state["stages"]["hubert"]["result"], packed, False, smoke_base / "data")
    assert seen and set(seen) <= {"train", "valid"}
    assert sel == state["stages"]["select"]["result"]


def test_notebooks_01_02_build_on_a_base_folder_and_train_nothing(tmp_path, smoke_base):
    """`spkit run --base DIR` (what the default preset does with models/spkit-base): units and uLM come
    from the folder."""
    import shutil

    from spkit.pipeline import execute, plan

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("01_unit_discovery.ipynb", "02_unit_lm.ipynb"):
        shutil.copy(REPO / "notebooks" / name, nbs / name)
    base = smoke_base / "base"
    run = tmp_path / "run"
    old = os.environ.get("SPKIT_NOTEBOOKS")
    os.environ["SPKIT_NOTEBOOKS"] = str(nbs)
    try:
        execute(plan("smoke", run, data_root=smoke_base / "data", params={"base": str(base)}), run,
                log=lambda _: None)
    finally:
        if old is None:
            os.environ.pop("SPKIT_NOTEBOOKS")
        else:
            os.environ["SPKIT_NOTEBOOKS"] = old
    card = json.loads((base / "spkit-base.json").read_text())
    unit_model = json.loads((run / "units" / "unit_model.json").read_text())
    assert unit_model["checkpoint"] == str(base / "hubert.pt") and unit_model["layer"] == card["layer"]
    assert unit_model["kmeans_fingerprint"] == card["kmeans_fingerprint"]
    assert unit_model["targets"] == "phone_alignment"  # results.json's units.targets comes from here
    assert not (run / "hubert").exists()  # nothing pretrained in the run
    report = json.loads((run / "ulm" / "report.json").read_text())
    assert report["source"] == str(base / "ulm") and report["fingerprint"] == card["ulm_fingerprint"]
    assert (run / "figures" / "01_base_hubert_curve.html").is_file()
    assert (run / "units" / "kws" / "test.jsonl").is_file()


def test_oracle_topline_runs_notebooks_01_03_at_smoke(tmp_path, smoke_base):
    """`spkit run --preset smoke --param units=oracle` (notebooks 01-03, KWS only): oracle units of every
    corpus, a uLM trained on the pretraining corpus's oracle units whose validation loss falls, the prompts
    and the downstream baseline on spkit-base's HuBERT, every output labelled; predict and the demo take
    corpus clips and refuse audio without an alignment, saying why."""
    import shutil

    from spkit.demo import ORACLE_NOTE, DemoApp, DemoSession
    from spkit.pipeline import execute, plan
    from spkit.prompt.predict import Predictor
    from spkit.report import build_index
    from spkit.units.encoder import SpeechEncoder
    from spkit.units.oracle import ORACLE_KIND, ORACLE_LABEL, OracleUnitsError
    from spkit.units.quantize import read_records

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("01_unit_discovery.ipynb", "02_unit_lm.ipynb", "03_prompt_training.ipynb"):
        shutil.copy(REPO / "notebooks" / name, nbs / name)
    base, run = smoke_base / "base", tmp_path / "run"
    params = {"units": "oracle", "base": str(base), "tasks": ["kws"],
              "methods": ["deep_prompt", "downstream"], "few_shot_shots": []}
    old = os.environ.get("SPKIT_NOTEBOOKS")
    os.environ["SPKIT_NOTEBOOKS"] = str(nbs)
    try:
        stages = plan("smoke", run, data_root=smoke_base / "data", kinds=("kws",), params=params)
        assert [s.name for s in stages][:2] == ["synth_kws", "synth_pretrain"]
        execute(stages, run, log=lambda _: None)
    finally:
        if old is None:
            os.environ.pop("SPKIT_NOTEBOOKS")
        else:
            os.environ["SPKIT_NOTEBOOKS"] = old
    # units: every corpus, oracle kind; the downstream reads the base's HuBERT (as the default preset does)
    record = json.loads((run / "units" / "unit_model.json").read_text())
    card = json.loads((base / "spkit-base.json").read_text())
    assert record["kind"] == ORACLE_KIND and record["ssl"]["fingerprint"] == card["extractor_fingerprint"]
    assert (run / "units" / "pretrain" / "train.txt").is_file() and not (run / "units" / "km.bin").exists()
    metrics = json.loads((run / "units" / "metrics.json").read_text())
    assert metrics["metrics"]["kws"]["phones"]["pnmi"] > 0.95
    # the uLM: spkit-base's smoke uLM recipe on the pretraining corpus's units; it learned
    report = json.loads((run / "ulm" / "report.json").read_text())
    assert report["units"] == ORACLE_KIND and report["corpora"] == ["pretrain"]
    assert report["train_config"]["max_len"] == 128 and report["train_config"]["max_steps"] == 12
    losses = [h["valid_loss"] for h in json.loads((run / "ulm" / "history.json").read_text())["history"]]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    # results: labelled, every usual field
    results = json.loads((run / "results.json").read_text())
    assert results["units"]["kind"] == ORACLE_KIND and results["units"]["label"] == ORACLE_LABEL
    assert results["units"]["downstream_features"]["checkpoint"] == record["ssl"]["checkpoint"]
    for method in ("deep_prompt", "downstream"):
        entry = results["tasks"]["kws"]["methods"][method]
        assert {"mean", "std", "seeds", "trainable_params", "peak_mem_mb", "train_s", "settings"} <= \
            set(entry)
    assert ORACLE_LABEL in (run / "results.md").read_text().split("|")[0]
    assert ORACLE_LABEL[1:] in build_index(run).read_text()
    # predict: a corpus clip from its alignment, the same units as the unit file; a copy elsewhere: refused
    clip = next(r for r in read_records(run / "units" / "kws" / "test.jsonl") if "offset_s" not in r)
    predictor = Predictor(run, "kws")
    assert predictor.predict_file(clip["path"]).units == clip["units"]
    assert SpeechEncoder.from_run(run).encode(path=clip["path"]).durations.tolist() == clip["durations"]
    shutil.copy(clip["path"], tmp_path / "mine.wav")
    (line,) = predictor.predict_lines([tmp_path / "mine.wav"])
    assert "mine.wav: no synthesizer alignment" in line["error"]
    # the demo: test clips work, raw audio gets the reason in place of a prediction
    session = DemoSession(run)
    assert session.oracle
    with pytest.raises(OracleUnitsError, match="oracle topline"):
        session.analyse(torch.zeros(16000), None, "upload")
    app = DemoApp(run, task="kws", n_clips=4)
    assert app.note.value == ORACLE_NOTE and app.update() is not None
    app.source.value = "synthesize"  # a phrase synthesized now: no alignment
    assert "no synthesizer alignment" not in app.prediction.value and "oracle topline" in app.prediction.value


def test_default_preset_without_the_shipped_folder_names_it(tmp_path, monkeypatch):
    from spkit.data.base import DataError
    from spkit.recipes import unit_discovery

    monkeypatch.setitem(unit_discovery.PRESETS, "default",
                        unit_discovery.UnitDiscoveryConfig(base=str(tmp_path / "missing-base")))
    with pytest.raises(DataError, match=r"missing-base.*spkit pretrain-base"):
        unit_discovery.preset_config("default")


# ---------------------------------------------------------------------------------------- the shipped folder
def test_shipped_base_is_the_default_recipe_and_loads_strictly():
    """models/spkit-base (what the default preset prompts) is what the documented recipe builds: its card
    records today's `BaseRecipe` defaults, its parts match the card's fingerprints, and the uLM's curve ends
    at the card's perplexity (a part rebuilt without its card, or a recipe edit not rebuilt, fails)."""
    from spkit.presets import SHIPPED_BASE
    from spkit.recipes.spkit_base import load_base, preset_recipe
    from spkit.ulm.fairseq_io import load_fairseq_ulm
    from spkit.units.encoder import SpeechEncoder

    card = load_base(SHIPPED_BASE)
    targets = card["recipe"].get("targets", "mfcc_kmeans")  # v1's card predates the field
    recipe = json.loads(json.dumps(dataclasses.asdict(preset_recipe("default", targets=targets))))
    shipped = {k: v for k, v in card["recipe"].items() if k != "threads"}
    assert shipped == {k: v for k, v in recipe.items() if k not in ("threads", "targets") or k in shipped}
    enc = SpeechEncoder.from_base(SHIPPED_BASE)
    assert enc.extractor.fingerprint == card["extractor_fingerprint"]
    assert enc.kmeans.fingerprint == card["kmeans_fingerprint"]
    lm, dictionary = load_fairseq_ulm(SHIPPED_BASE / "ulm")
    assert lm.fingerprint() == card["ulm_fingerprint"] and dictionary.num_units == card["n_clusters"]
    summary = card["ulm_summary"]
    assert summary["steps"] == recipe["ulm"]["max_steps"]
    curve = json.loads((SHIPPED_BASE / "curves.json").read_text())["ulm"]
    assert min(h["valid_ppl"] for h in curve) == pytest.approx(summary["best_valid_ppl"])
    assert sum(f.stat().st_size for f in SHIPPED_BASE.rglob("*") if f.is_file()) < 60e6
