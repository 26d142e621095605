"""The oracle topline's units (spkit.units.oracle): the synthesizer's phone label per 20 ms frame, through a
phone inventory built from training clips only, deduplicated, in the kit's unit-file format; and what the
``oracle`` preset plans. The end-to-end smoke run is in tests/test_spkit_base.py (it reuses that file's
smoke spkit-base and corpora)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spkit.data import load_corpus
from spkit.data.base import DataError
from spkit.units.encoder import SpeechEncoder
from spkit.units.oracle import (
    ORACLE_KIND,
    ORACLE_LABEL,
    SILENCE_UNIT,
    UNSEEN_UNIT,
    OracleEncoder,
    OracleUnitsError,
    PhoneInventory,
    quantize_oracle,
    save_oracle_unit_model,
)
from spkit.units.quantize import read_records, read_units

# One clip of 16000 samples = num_frames 49 (HuBERT framing: (16000 - 400) // 320 + 1); frame i is centred at
# (i + 0.5) / 50 s, PNMI's grid. "a" [0.111, 0.30) holds the centres of frames 6..14 (frame 5's, 0.110 s,
# falls before it; on a grid centred at 0.0125 + 0.02 i it would not), the explicit pause "sil" [0.30, 0.40)
# frames 15..19, "b" [0.40, 0.70) frames 20..34; frames 0..5 and 35..48 are outside every phone (silence).
TRAIN_PHONES = [["a", 0.111, 0.30], ["sil", 0.30, 0.40], ["b", 0.40, 0.70]]
# the test clip: "c" occurs in no training clip (only here), "b" does
TEST_PHONES = [["b", 0.10, 0.30], ["c", 0.30, 0.50]]


def _corpus(root: Path, extra_train: list[str] = ()) -> Path:
    """A tsv corpus with spkit's alignments: train.wav (a, sil, b), test.wav (b, c); ``extra_train``: clips
    listed in train.tsv but missing from alignments.jsonl."""
    (root / "wavs").mkdir(parents=True)
    (root / "spkit").mkdir()
    wave = (0.1 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)
    rows = {"train": ["train.wav", *extra_train], "test": ["test.wav"]}
    for split, names in rows.items():
        lines = ["path\tlabel\tspeaker"]
        for name in names:
            sf.write(root / "wavs" / name, wave, 16000, subtype="PCM_16")
            lines.append(f"wavs/{name}\tx\t{split}spk")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    ali = [{"path": "wavs/train.wav", "split": "train", "text": "a b", "words": [["ab", 0.1, 0.7]],
            "phones": TRAIN_PHONES},
           {"path": "wavs/test.wav", "split": "test", "text": "b c", "words": [["bc", 0.1, 0.5]],
            "phones": TEST_PHONES}]
    (root / "spkit" / "alignments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ali))
    return root


def test_oracle_units_are_the_frame_labels_deduplicated_with_durations(tmp_path):
    data = load_corpus("tsv", _corpus(tmp_path / "c"))
    inv = PhoneInventory.build(data["train"])
    assert inv.phones == ("a", "b") and inv.names == ["sil", "<unseen>", "a", "b"] and inv.n_units == 4
    path = quantize_oracle(data["train"], inv, tmp_path / "units", name="train", progress=False)
    expected = [0] * 6 + [2] * 9 + [0] * 5 + [3] * 15 + [0] * 14  # worked out by hand above
    units = read_units(path)
    assert list(units.values()) == [expected]
    (rec,) = read_records(tmp_path / "units" / "train.jsonl")
    assert rec["units"] == [0, 2, 0, 3, 0] and rec["durations"] == [6, 9, 5, 15, 14]
    assert rec["n_frames"] == 49 and rec["split"] == "train" and rec["path"].endswith("train.wav")
    meta = json.loads((tmp_path / "units" / "train.meta.json").read_text())
    assert meta["units"] == ORACLE_KIND and meta["kmeans"]["n_clusters"] == 4
    assert meta["silence_frames"] == 25 and meta["unseen_frames"] == 0
    assert inv.counts == {"a": 9, "b": 15, "sil": 25}


def test_unseen_phone_maps_to_the_reserved_unit_and_test_phones_stay_out(tmp_path):
    data = load_corpus("tsv", _corpus(tmp_path / "c"))
    inv = PhoneInventory.build(data["train"])
    assert "c" not in inv.phones and inv.unit("c") == UNSEEN_UNIT == 1 and inv.unit("sil") == SILENCE_UNIT
    quantize_oracle(data["test"], inv, tmp_path / "units", name="test", progress=False)
    (rec,) = read_records(tmp_path / "units" / "test.jsonl")
    # b [0.10, 0.30) -> frames 5..14, c [0.30, 0.50) -> frames 15..24 (unseen), silence around
    assert rec["units"] == [0, 3, 1, 0] and rec["durations"] == [5, 10, 10, 24]
    meta = json.loads((tmp_path / "units" / "test.meta.json").read_text())
    assert meta["unseen_frames"] == 10 and meta["unseen_phones"] == {"c": 10}


def test_inventory_refuses_clips_outside_the_training_split(tmp_path):
    data = load_corpus("tsv", _corpus(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"training clips only.*'test' split"):
        PhoneInventory.build(data["train"] + data["test"])
    with pytest.raises(DataError, match="no training clips"):
        PhoneInventory.build([])


def test_a_clip_without_alignment_is_an_error_naming_the_file(tmp_path):
    data = load_corpus("tsv", _corpus(tmp_path / "c", extra_train=["lost.wav"]))
    inv = PhoneInventory.from_labels([["a", "b"]])
    with pytest.raises(OracleUnitsError, match=r"lost\.wav: no synthesizer alignment"):
        quantize_oracle(data["train"], inv, tmp_path / "units", name="train", progress=False)
    with pytest.raises(OracleUnitsError, match=r"lost\.wav"):
        PhoneInventory.build(data["train"])
    assert not (tmp_path / "units" / "train.txt").exists()  # nothing half-written


def test_encoder_of_an_oracle_run(tmp_path):
    root = _corpus(tmp_path / "c")
    data = load_corpus("tsv", root)
    inv = PhoneInventory.build(data["train"])
    run = tmp_path / "run"
    save_oracle_unit_model(run, inv, ssl=None)
    for split in ("train", "test"):
        quantize_oracle(data[split], inv, run / "units" / "c", name=split, progress=False)
    enc = SpeechEncoder.from_run(run)
    assert isinstance(enc, OracleEncoder) and enc.kind == ORACLE_KIND and enc.vocab_size == 4
    assert enc.fingerprints["kmeans"] == inv.fingerprint
    record = json.loads((run / "units" / "unit_model.json").read_text())
    assert record["kind"] == ORACLE_KIND and record["label"] == ORACLE_LABEL
    assert record["kmeans_fingerprint"] == inv.fingerprint and record["n_clusters"] == 4
    # a corpus file: its alignment is found beside the corpus, the same units as the unit file
    out = enc.encode(path=root / "wavs" / "test.wav")
    assert out.units.tolist() == [0, 3, 1, 0] and out.durations.tolist() == [5, 10, 10, 24]
    assert enc.encode(np.zeros(16000, np.float32), path=root / "wavs" / "train.wav").units.tolist() == \
        read_records(run / "units" / "c" / "train.jsonl")[0]["units"]
    # raw audio, or a file no alignment lists: refused, saying why
    with pytest.raises(OracleUnitsError, match=r"oracle topline.*upload"):
        enc.encode(np.zeros(16000, np.float32))
    stray = tmp_path / "stray.wav"
    sf.write(stray, np.zeros(16000, np.float32), 16000)
    with pytest.raises(OracleUnitsError, match=r"stray\.wav: no synthesizer alignment"):
        enc.encode(path=stray)
    with pytest.raises(DataError, match="no SSL model for the downstream baseline"):
        _ = enc.extractor
    # a changed inventory is refused
    PhoneInventory(("a", "b", "z")).save(run / "units" / "oracle_inventory.json")
    with pytest.raises(DataError, match="phone inventory changed"):
        SpeechEncoder.from_run(run)


def test_oracle_recipe_builds_the_inventory_from_the_pretraining_training_split(tmp_path):
    """Only the pretraining corpus's training clips enter the inventory: a phone of its test split, or of a
    task corpus's training split, does not; every corpus is written; the run records the downstream's SSL
    model (spkit-base's HuBERT)."""
    from spkit.recipes import unit_discovery as ud
    from spkit.recipes import unit_lm

    pre = _corpus(tmp_path / "pretrain")
    task = tmp_path / "task"
    _corpus(task)
    ali = [json.loads(x) for x in (task / "spkit" / "alignments.jsonl").read_text().splitlines()]
    ali[0]["phones"] = [["q", 0.1, 0.3]]  # a phone only the task corpus's training split has
    (task / "spkit" / "alignments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ali))
    config = ud.preset_config("smoke", units="oracle")
    report = ud.discover_units({"pretrain": pre, "lid": task}, tmp_path / "run", config, progress=False)
    inv = PhoneInventory.load(tmp_path / "run" / "units" / "oracle_inventory.json")
    assert inv.phones == ("a", "b")  # not "c" (pretrain test), not "q" (task train)
    assert report["oracle"]["coverage"]["lid"]["train"]["unseen_phones"] == {"q": 10}
    assert report["metrics"]["lid"]["phones"]["pnmi"] == pytest.approx(1.0)  # the labels, as units
    assert report["oracle"]["inventory"]["sources"][0]["corpus"] == "pretrain"
    for name in ("pretrain", "lid"):
        assert (tmp_path / "run" / "units" / name / "train.txt").is_file()
    record = json.loads((tmp_path / "run" / "units" / "unit_model.json").read_text())
    card = json.loads((Path(config.base) / "spkit-base.json").read_text())
    assert record["ssl"]["fingerprint"] == card["extractor_fingerprint"]  # the default run's HuBERT
    assert "oracle topline" in ud.oracle_markdown(report)
    with pytest.raises(DataError, match="training split of \\['pretrain'\\]"):
        ud.discover_units({"lid": task}, tmp_path / "run2", config, progress=False)
    # the oracle uLM is trained here: no GSLM uLM, and units=oracle on a run of other units is refused
    with pytest.raises(DataError, match="trains its own uLM"):
        unit_lm.build_unit_lm(tmp_path / "run", unit_lm.preset_config("smoke", gslm_checkpoint="x"))
    (tmp_path / "run3" / "units").mkdir(parents=True)
    (tmp_path / "run3" / "units" / "unit_model.json").write_text(json.dumps({"n_clusters": 5}))
    with pytest.raises(DataError, match="units=oracle, but the run's units are ssl_kmeans"):
        unit_lm.build_unit_lm(tmp_path / "run3", unit_lm.preset_config("smoke", units="oracle"))


def test_results_md_opens_with_the_oracle_label(tmp_path):
    from spkit.prompt.results import RunResult, load_results, update_results

    run = RunResult("kws", "deep_prompt", 0, 0.5, "accuracy", 10, 1.0, 1.0)
    update_results(tmp_path / "a" / "results.json", [run])
    plain = (tmp_path / "a" / "results.md").read_text()
    assert ORACLE_LABEL not in plain and "units" not in load_results(tmp_path / "a" / "results.json")
    units = {"kind": ORACLE_KIND, "label": ORACLE_LABEL, "n_units": 4}
    merged = update_results(tmp_path / "b" / "results.json", [run], units=units)
    assert merged["units"] == units and merged["tasks"]["kws"]["methods"]["deep_prompt"]["mean"] == 0.5
    md = (tmp_path / "b" / "results.md").read_text()
    assert md.startswith("# Results") and f"**{ORACLE_LABEL}**" in md.split("|")[0]
    again = update_results(tmp_path / "b" / "results.json", [RunResult("kws", "finetune", 0, 0.2, "accuracy",
                                                                       9, 1.0, 1.0)])
    assert again["units"] == units  # kept by later merges


def test_oracle_preset_plans_the_pretraining_corpus(tmp_path):
    from spkit.pipeline import RunRequestError, plan
    from spkit.presets import RUN_PRESETS, corpus_preset

    assert "oracle" in RUN_PRESETS and corpus_preset("oracle") == "default"
    stages = plan("oracle", tmp_path / "run", data_root=tmp_path / "data")
    names = [s.name for s in stages]
    # default's prompted tasks (no ASR), then the pretraining corpus
    assert names[:5] == ["synth_kws", "synth_intent", "synth_lid", "synth_sf", "synth_pretrain"]
    pre = stages[4].params
    assert pre["kind"] == "pretrain" and pre["preset"] == "default" and pre["seed"] == 0
    assert pre["out"] == str((tmp_path / "data" / "pretrain-default-seed0").resolve())
    nb = stages[-1].params
    assert nb["preset"] == "oracle" and nb["corpora"]["pretrain"] == pre["out"]
    # oracle units at another size: the smoke pretraining corpus; the other presets plan none
    smoke = plan("smoke", tmp_path / "run", data_root=tmp_path / "data", seed=3, params={"units": "oracle"})
    pre = next(s for s in smoke if s.name == "synth_pretrain").params
    assert pre["out"].endswith("pretrain-smoke-seed0") and smoke[-1].params["units"] == "oracle"
    assert not any(s.name == "synth_pretrain" for s in plan("default", tmp_path / "run", data_root=tmp_path))
    with pytest.raises(RunRequestError, match="paper preset reads real data"):
        plan("paper", tmp_path / "run", corpora={"kws": str(tmp_path)}, params={"units": "oracle"})
    with pytest.raises(RunRequestError, match="choose one of"):
        plan("smoke", tmp_path / "run", params={"units": "phones"})
    with pytest.raises(RunRequestError, match="preset oracle is units=oracle"):
        plan("oracle", tmp_path / "run", params={"units": "ssl"})
    with pytest.raises(RunRequestError, match="read only with oracle units"):
        plan("smoke", tmp_path / "run", corpora={"kws": str(tmp_path), "pretrain": str(tmp_path)})
    given = plan("smoke", tmp_path / "run", corpora={"kws": str(tmp_path), "pretrain": str(tmp_path)},
                 params={"units": "oracle"})
    assert given[-1].params["corpora"]["pretrain"] == str(tmp_path.resolve())
    assert not any(s.name.startswith("synth_") for s in given)  # nothing synthesized when given
