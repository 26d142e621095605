"""Slot filling: the Audio SNIPS-style corpus, its loader, the sf task, SUPERB's metrics, the CTC head."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys

import pytest
import torch

from spkit.data import DataError, detect_layout, load_corpus
from spkit.data.snips import SUPERB_SPEAKERS, iob_to_tagged, parse_tagged, tagged_slots
from spkit.prompt import (
    Collator,
    PromptConfig,
    TaskExample,
    TrainConfig,
    build_prompted,
    build_spec,
    build_verbalizer,
    evaluate,
    load_task,
    train,
)
from spkit.prompt.downstream import DownstreamSpec
from spkit.prompt.slots import (
    CLOSE,
    slot_metrics,
    slot_type_f1,
    slot_value_cer,
    symbols_to_tagged,
    tagged_symbols,
)
from spkit.prompt.tasks import UNK_CHAR
from spkit.synth import snips_text
from spkit.synth.corpora import PRESETS, build_corpus, plan_corpus
from spkit.synth.speakers import partition_variants
from spkit.ulm import UnitDictionary, UnitLM, ulm_tiny
from tests.fixtures_real import SNIPS_LINES, SNIPS_SPEAKERS, write_snips

N_UNITS = 16


# ---- the corpus ------------------------------------------------------------------------------------

def test_plan_deterministic_speaker_and_voice_disjoint():
    speakers, clips = plan_corpus("sf", "smoke", seed=3)
    assert plan_corpus("sf", "smoke", seed=3) == (speakers, clips)
    other, _ = plan_corpus("sf", "smoke", seed=4)
    assert [s.id for s in other] != [s.id for s in speakers]
    cfg = PRESETS["sf"]["smoke"]
    assert [sum(s.split == x for s in speakers) for x in ("train", "valid", "test")] == list(cfg["speakers"])
    assert len(clips) == sum(cfg["speakers"]) * cfg["clips_per_speaker"]
    by_split = {x: {s.variant for s in speakers if s.split == x} for x in ("train", "valid", "test")}
    assert not by_split["train"] & by_split["valid"] and not by_split["train"] & by_split["test"]
    from spkit.synth.espeak import usable_variants
    pools = partition_variants(usable_variants())
    for s in speakers:  # the variant comes from the split's own pool (train may use the plain voice)
        assert s.variant in pools[s.split] or (s.split == "train" and s.variant is None)
    uids = set()
    for c in clips:
        uid = c["meta"]["id"]
        m = re.fullmatch(r"([A-Z][a-z]+)-snips-(train|valid|test)-(\d+)", uid)
        assert m and m.group(1) == c["speaker"]["id"] and m.group(2) == c["split"]
        assert c["path"] == f"{c['split']}/{uid}.wav" and uid not in uids
        uids.add(uid)
        assert len(c["meta"]["tags"]) == len(c["text"].split()) and c["text"] == c["spoken"].upper()
        assert c["label"] in snips_text.SF_INTENTS and set(c["meta"]["tags"]) - {"O"}  # always a slot


def test_sf_utterance_tags_follow_the_templates():
    rng = __import__("numpy").random.default_rng(0)
    seen = set()
    for _ in range(300):
        intent, words, tags = snips_text.sf_utterance(rng)
        seen.add(intent)
        assert len(words) == len(tags) and all(re.fullmatch(r"[a-z']+", w) for w in words)
        assert set(tags) - {"O"} <= set(snips_text.slot_types())
    assert seen == set(snips_text.SF_INTENTS) and len(seen) == 7


@pytest.fixture(scope="module")
def sf_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("sf") / "a"
    build_corpus("sf", root, "smoke", seed=0, jobs=1)
    return root


def _files(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_corpus_layout_bytes_resume_and_loader(sf_corpus, tmp_path):
    root = sf_corpus
    info = json.loads((root / "spkit" / "corpus.json").read_text())
    assert info["format"] == "audio_snips" and info["clips"] == 54
    lines = (root / "all.iob.snips.txt").read_text().splitlines()
    assert len(lines) == 54
    assert all(re.fullmatch(r"\S+ BOS [A-Z' ]+ EOS\tO [\w ]+ [A-Za-z]+", x) for x in lines)
    tags = (root / "slots.txt").read_text().split()
    assert tags[0] == "O" and tags == sorted(tags)
    # byte-deterministic: a second build is identical; an interrupted one (marker and a wav lost) resumes
    b = tmp_path / "b"
    shutil.copytree(root, b)
    (b / "spkit/shards/0000.jsonl").unlink()
    (b / "spkit/corpus.json").unlink()
    next((b / "train").glob("*.wav")).unlink()
    report = build_corpus("sf", b, "smoke", seed=0, jobs=1)
    assert report.shards_run == 1 and not report.noop
    assert _files(b) == _files(root)
    assert build_corpus("sf", b, "smoke", seed=0).noop
    # the loader lists it, speaker-disjoint by corpus.json's lists, labels = tagged transcripts
    assert detect_layout(root).kind == "snips"
    data = load_corpus("sf", root)
    assert {s: len(v) for s, v in data.items()} == {s: info["splits"][s]["clips"] for s in data}
    spk = {s: {u.speaker for u in v} for s, v in data.items()}
    assert not spk["train"] & spk["valid"] and not spk["train"] & spk["test"]
    u = data["train"][0]
    parse_tagged(u.label, "test")
    assert re.sub(r"\s*[BE]-\S+", "", u.label).split() == u.text.split()
    assert "alignment" in u.meta and u.meta["intent"] in snips_text.SF_INTENTS


def test_synth_cli_knows_sf(tmp_path):
    out = subprocess.run([sys.executable, "-m", "spkit", "synth", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "sf" in out.stdout and "Audio SNIPS" in out.stdout


# ---- the loader on the real layout --------------------------------------------------------------

def test_loader_real_layout_speaker_lists_and_normalization(tmp_path):
    written = write_snips(tmp_path)
    assert detect_layout(tmp_path).kind == "snips"  # the parent of SNIPS/
    data = load_corpus("auto", tmp_path, speakers=SNIPS_SPEAKERS)
    for split in ("train", "valid", "test"):
        assert [u.uid for u in data[split]] == sorted(written[split])  # Ivy's clips left out
        assert {u.speaker for u in data[split]} == set(SNIPS_SPEAKERS[split])
    u = next(x for x in data["train"] if x.uid == "Joanna-snips-train-0")
    assert u.label == ("ADD B-artist MADONNA E-artist TO B-playlist_owner MY E-playlist_owner "
                       "B-playlist CHILL MIX E-playlist PLAYLIST")
    assert u.text == "ADD MADONNA TO MY CHILL MIX PLAYLIST" and u.meta["intent"] == "AddToPlaylist"
    weather = next(x for x in data["train"] if x.uid == "Matthew-snips-train-1")
    assert weather.label == "WHAT IS THE WEATHER IN B-city PARIS E-city"  # "?" dropped with its tag
    jazz = data["valid"][0]
    assert jazz.label == "PLAY SOME B-genre JAZZ AND BLUES E-genre"  # & reads AND, as SUPERB prepares it
    assert tagged_slots(jazz.label) == [("genre", "JAZZ AND BLUES")]
    assert data["test"][0].path.is_file() and data["test"][0].path.parent.name == "test"
    # default speaker lists: SUPERB's, where Ivy is a training voice too
    superb = load_corpus("snips", tmp_path / "SNIPS")
    assert {u.speaker for u in superb["train"]} == {"Joanna", "Matthew", "Ivy"}
    assert {"Joanna", "Matthew", "Ivy"} <= set(SUPERB_SPEAKERS["train"])
    assert len(superb["train"]) == 6 and [u.uid for u in superb["test"]] == ["Brian-snips-test-0"]
    with pytest.raises(DataError, match=r"all\.iob\.snips\.txt: no train clip"):
        load_corpus("snips", tmp_path, speakers={"train": ["Nobody"], "valid": ["Amy"], "test": ["Brian"]})


@pytest.mark.parametrize("bad, message", [
    ("Joanna-snips-train-9 BOS PLAY JAZZ EOS\tO O I-genre PlayMusic", r":5: unbalanced slot tags: word 2"),
    ("Joanna-snips-train-9 BOS PLAY JAZZ EOS\tO O PlayMusic", r":5: 2 words but 1 slot tags"),
    ("Joanna-snips-train-9 BOS PLAY JAZZ EOS O O genre PlayMusic", r":5: no tab"),
    ("Joanna-snips-train-9 PLAY JAZZ\tO O genre PlayMusic", r":5: expected '<uid> BOS WORDS EOS'"),
    ("Joanna-train-9 BOS PLAY JAZZ EOS\tO O genre PlayMusic", r":5: uid 'Joanna-train-9' is not"),
    ("Joanna-snips-train-0 BOS PLAY JAZZ EOS\tO O genre PlayMusic", r":5: uid .* listed twice"),
    ("Joanna-snips-train-9 BOS PLAY JAZZ EOS\tO O genre PlayMusic", r":5: .* has no audio file"),
])
def test_loader_bad_lines_name_file_and_line(tmp_path, bad, message):
    write_snips(tmp_path, lines=SNIPS_LINES, other_speaker=None)
    # lines 1-4: 2 train texts x 2 speakers; the bad line goes in as line 5, before the valid and test ones
    text = (tmp_path / "SNIPS/all.iob.snips.txt").read_text().splitlines()
    moved = [*text[:4], bad, *text[4:]]
    (tmp_path / "SNIPS/all.iob.snips.txt").write_text("\n".join(moved) + "\n")
    with pytest.raises(DataError, match=r"all\.iob\.snips\.txt" + message):
        load_corpus("snips", tmp_path, speakers=SNIPS_SPEAKERS)


def test_tagged_transcripts_unbalanced_are_errors():
    assert iob_to_tagged(["A", "B", "C"], ["B-x", "I-x", "B-x"], "w") == "B-x A B E-x B-x C E-x"
    assert iob_to_tagged(["A", "B", "C"], ["O", "x", "x"], "w") == "A B-x B C E-x"  # bare: a run is one slot
    assert iob_to_tagged(["A", "B"], ["x", "y"], "w") == "B-x A E-x B-y B E-y"
    for bad, why in [("PLAY B-genre JAZZ", "never closed"), ("PLAY JAZZ E-genre", "closes no open slot"),
                     ("B-a X B-b Y E-b E-a", "opens a slot inside"), ("B-a X E-b", "closes the open 'a'"),
                     ("B-a E-a", "empty slot")]:
        with pytest.raises(DataError, match=why):
            parse_tagged(bad, "f.txt:3")


def test_unit_records_with_unbalanced_tags_name_the_file_and_line(tmp_path):
    rec = {"uid": "u1", "units": [1, 2], "label": "PLAY B-genre JAZZ E-genre", "text": "PLAY JAZZ"}
    bad = {**rec, "uid": "u2", "label": "PLAY B-genre JAZZ"}
    (tmp_path / "train.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl:2 \(uid u2\): unbalanced slot tags"):
        load_task("sf", tmp_path, ("train",))
    (tmp_path / "train.jsonl").write_text(json.dumps(rec) + "\n")
    ex = load_task("sf", tmp_path, ("train",))["train"]
    assert ex[0].label == "PLAY B-genre JAZZ E-genre"


# ---- SUPERB's metrics on hand-made cases -----------------------------------------------------------

REF = "ADD B-artist MADONNA E-artist TO B-playlist_owner MY E-playlist_owner B-playlist CHILL MIX E-playlist"


def test_slot_type_f1_as_superb():
    assert slot_type_f1([REF], [REF]) == 1.0
    # types {artist} vs {artist, playlist_owner, playlist}: P = 1, R = 1/3, F1 = 0.5
    assert slot_type_f1(["B-artist MADONA E-artist"], [REF]) == pytest.approx(0.5)
    # a wrong type: P = 1/2 (artist right, city wrong), R = 1/3 -> F1 = 2 * 1/6 / (5/6) = 0.4
    assert slot_type_f1(["B-artist X E-artist B-city Y E-city"], [REF]) == pytest.approx(0.4)
    # per-utterance F1, averaged; no slots on both sides is 1, on one side 0; an unclosed slot is none
    assert slot_type_f1(["PLAY JAZZ", "B-genre JAZZ", "B-x A E-x"], ["PLAY JAZZ", "B-genre JAZZ E-genre",
                                                                     "HELLO"]) == pytest.approx(1 / 3)
    # tags nested in a hypothesis value are cleaned away (s3prl's clean()), the slot still counts
    assert slot_type_f1(["B-artist B-city MADONNA E-artist"], ["B-artist MADONNA E-artist"]) == 1.0


def test_slot_value_cer_as_superb():
    assert slot_value_cer([REF], [REF]) == 0.0
    # MADONA vs MADONNA: 1 edit; MY and CHILL MIX missing: 2 + 9 edits; over 7 + 2 + 9 characters
    assert slot_value_cer(["B-artist MADONA E-artist"], [REF]) == pytest.approx(12 / 18)
    # two hypothesis values of the type: the one with the lowest CER is used
    two = "B-artist XYZ E-artist B-artist MADONNA E-artist"
    assert slot_value_cer([two], ["B-artist MADONNA E-artist"]) == 0.0
    # corpus level: total edits over total reference value length (spaces count), not a mean of CERs
    assert slot_value_cer(["B-a AB E-a", "B-a ABCDEFGH E-a"], ["B-a AC E-a", "B-a ABCDEFGH E-a"]) == 0.1
    # runs of spaces collapse before parsing; a type the hypothesis lacks scores as the empty string
    assert slot_value_cer(["B-a  X   Y E-a"], ["B-a X Y E-a B-b QQ E-b"]) == pytest.approx(2 / 5)
    assert slot_metrics([REF], [REF]) == {"slot_type_f1": 1.0, "slot_value_cer": 0.0}


def test_symbols_roundtrip_and_slot_only_targets():
    full = tagged_symbols(REF)
    assert symbols_to_tagged(full) == REF
    only = tagged_symbols(REF, slots_only=True)
    assert only[:9] == ["B-artist", *"MADONNA", CLOSE] and "T" not in only[:12]
    assert symbols_to_tagged(only) == ("B-artist MADONNA E-artist B-playlist_owner MY E-playlist_owner "
                                       "B-playlist CHILL MIX E-playlist")
    assert slot_metrics([symbols_to_tagged(only)], [REF]) == {"slot_type_f1": 1.0, "slot_value_cer": 0.0}
    # a close with nothing open is dropped; a slot left open is not a slot
    assert symbols_to_tagged([CLOSE, "A", "B-x", "B", CLOSE, "B-y", "C"]) == "A B-x B E-x B-y C"


# ---- the task on a toy uLM, and the CTC head ---------------------------------------------------------

def _toy_sf(n: int, seed: int, split: str) -> list[TaskExample]:
    rng = random.Random(seed)
    values = {"city": ["PARIS", "OSLO"], "genre": ["JAZZ", "FOLK"]}
    out = []
    for i in range(n):
        kind = rng.choice(sorted(values))
        k = rng.randrange(2)
        units = [rng.randrange(4 * (2 * (kind == "city") + k), 4 * (2 * (kind == "city") + k) + 4)
                 for _ in range(8)]
        label = f"PLAY B-{kind} {values[kind][k]} E-{kind}"
        out.append(TaskExample(f"{split}{i}", "", split, f"s{i % 3}", units, label))
    return out


def test_sf_task_trains_decodes_and_scores_with_superb_metrics():
    data = {"train": _toy_sf(48, 0, "train"), "valid": _toy_sf(8, 1, "valid"), "test": _toy_sf(16, 2, "test")}
    spec = build_spec("sf", data)
    assert spec.kind == "sequence" and spec.metric == "slot_type_f1" and not spec.lower_is_better
    assert spec.labels[:2] == ("B-city", "B-genre") and CLOSE in spec.labels
    d = UnitDictionary.from_units(range(N_UNITS))
    torch.manual_seed(0)
    lm = UnitLM(ulm_tiny(len(d), dim=32, n_layers=2, n_heads=2, ffn_dim=64))
    v = build_verbalizer("frequency", spec, d, data["train"])
    col = Collator(spec, v, d)
    e = data["train"][0]
    assert len(col.label_tokens(e.label)) == v.code_len * len(spec.atoms(e.label)) + 1  # slots only + </s>
    model = build_prompted(lm, spec, v, PromptConfig(length=4), col(data["train"]), seed=0)
    train(model, data, col, TrainConfig(max_epochs=2, batch_size=8, metric_every=0), progress=False)
    res = evaluate(model, data["test"], col, beam=2, max_len=20)
    assert res["metric"] == "slot_type_f1" and res["value"] == res["slot_type_f1"]
    refs = [p["label"] for p in res["predictions"]]
    hyps = [p["prediction"] or "" for p in res["predictions"]]
    assert res["slot_type_f1"] == pytest.approx(slot_type_f1(hyps, refs))
    assert res["slot_value_cer"] == pytest.approx(slot_value_cer(hyps, refs))
    assert 0.0 <= res["slot_type_f1"] <= 1.0 and res["slot_value_cer"] >= 0.0


def test_downstream_spec_for_sf_is_ctc_over_tagged_symbols():
    spec = build_spec("sf", {"train": _toy_sf(10, 0, "train")})
    ds = DownstreamSpec.from_task(spec)
    assert ds.is_ctc and ds.slots and ds.metric == "slot_type_f1" and not ds.lower_is_better
    e = _toy_sf(1, 5, "test")[0]
    ids = ds.targets(e)
    assert [ds.charset[i - 1] for i in ids] == tagged_symbols(e.label) and ds.text(ids) == e.label
    # a symbol unseen in training (here the character Ü) is <unk>, last in the set, and decodes as an error
    unseen = TaskExample("x", "f.wav", "test", "s", [], "PLAY B-city ZÜRICH E-city")
    ids = ds.targets(unseen)
    unseen_chars = [c for c in "PLAYZÜRICH" if c not in ds.charset]
    assert "Ü" in unseen_chars and ds.charset[-1] == UNK_CHAR
    assert ids.count(len(ds.charset)) == len(unseen_chars)
    expected = "".join("\ufffd" if c in unseen_chars else c for c in "ZÜRICH")
    assert ds.text(ids).endswith(f"B-city {expected} E-city")
    assert spec.label_from_atoms(spec.atoms(unseen.label)) == f"B-city {expected} E-city"
