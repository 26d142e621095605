"""Corpus loaders on tiny trees in each real layout (written by tests/fixtures_real.py)."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fixtures_real import (
    FSC_INTENTS,
    FSC_SPEAKERS,
    LIBRI_TREE,
    SC_NOISES,
    SC_SPEAKERS,
    SC_WORDS,
    write_alignments,
    write_fairseq_manifest,
    write_fluent,
    write_fluent_csv,
    write_librispeech,
    write_lid_tsv,
    write_speech_commands,
    write_speech_commands_test_set,
    write_tsv,
    write_wav,
)

from spkit.data import (
    KWS12_LABELS,
    DataError,
    asr_charset,
    class_labels,
    detect_layout,
    frame_labels,
    intent_vocab,
    kws_labels,
    label_set,
    load_alignments,
    load_corpus,
    load_manifest,
    load_utterance,
    read_corpus_info,
    silence_windows,
)
from spkit.data.speech_commands import load_speech_commands

TARGETS = {"yes", "no", "up", "go"}


# ---------------------------------------------------------------- Speech Commands


@pytest.fixture(scope="module")
def sc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sc") / "speech_commands_v0.01"
    write_speech_commands(root)
    return root


@pytest.fixture(scope="module")
def sc_test_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sct") / "speech_commands_test_set_v0.01"
    write_speech_commands_test_set(root)
    return root


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def test_speech_commands_kws12_counts_labels_speakers(sc_root: Path) -> None:
    data = load_corpus("speech_commands", sc_root)
    assert list(data) == ["train", "valid", "test"]
    for split, spks in SC_SPEAKERS.items():
        clips = [u for u in data[split] if u.label != "_silence_"]
        assert len(clips) == len(SC_WORDS) * len(spks)
        assert {u.speaker for u in clips} == set(spks)
        n_known = sum(u.label in TARGETS for u in clips)
        assert n_known == len(TARGETS) * len(spks)
        silence = [u for u in data[split] if u.label == "_silence_"]
        assert len(silence) == math.ceil(0.1 * n_known)
        assert all(u.split == split for u in data[split])
    by_uid = {u.uid: u for utts in data.values() for u in utts}
    assert by_uid["bed/0a0a0a0a_nohash_0"].label == "_unknown_"
    assert by_uid["bed/0a0a0a0a_nohash_0"].text == "bed"
    assert by_uid["bed/0a0a0a0a_nohash_0"].meta["word"] == "bed"
    assert by_uid["yes/3d3d3d3d_nohash_0"].label == "yes"
    assert by_uid["yes/3d3d3d3d_nohash_0"].split == "valid"
    assert set(Counter(u.label for utts in data.values() for u in utts)) <= set(KWS12_LABELS)
    assert len(by_uid) == sum(len(v) for v in data.values())  # uids unique across splits


def test_speech_commands_silence_windows_are_seeded_disjoint_and_readable(sc_root: Path) -> None:
    a = silence_windows(sc_root, "train", 7, seed=3)
    b = silence_windows(sc_root, "train", 7, seed=3)
    c = silence_windows(sc_root, "train", 7, seed=4)
    assert [u.meta["offset"] for u in a] == [u.meta["offset"] for u in b]
    assert [u.meta["offset"] for u in a] != [u.meta["offset"] for u in c]
    assert [u.path.name for u in a[:2]] == sorted(SC_NOISES)  # files used in turn
    regions = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
    for split, (lo, hi) in regions.items():
        for u in silence_windows(sc_root, split, 6, seed=0):
            frames = sf.info(str(u.path)).frames
            assert lo * frames - 1 <= u.meta["offset"]
            assert u.meta["offset"] + u.meta["num_frames"] <= hi * frames + 1
            assert u.meta["duration_s"] == 1.0 and u.label == "_silence_"
    u = a[0]
    wave = load_utterance(u)
    assert tuple(wave.shape) == (16_000,)
    full, _ = sf.read(str(u.path), dtype="float32")
    np.testing.assert_allclose(wave.numpy(), full[u.meta["offset"]:u.meta["offset"] + 16_000], atol=1e-6)
    # The loader's own windows are the same function of the seed.
    again = load_corpus("speech_commands", sc_root, seed=3)
    first = load_corpus("speech_commands", sc_root, seed=3)
    assert [u.meta for u in again["valid"] if u.label == "_silence_"] == \
           [u.meta for u in first["valid"] if u.label == "_silence_"]
    # ... and do not depend on which other splits were asked for.
    alone = load_corpus("speech_commands", sc_root, split="valid", seed=3)["valid"]
    assert [u.meta for u in alone] == [u.meta for u in first["valid"]]


def test_speech_commands_silence_count_and_unknown_ratio(sc_root: Path) -> None:
    data = load_speech_commands(sc_root, silence_count={"train": 5, "valid": 0, "test": 1},
                                unknown_ratio=0.25, seed=1)
    assert Counter(u.label for u in data["train"])["_silence_"] == 5
    assert Counter(u.label for u in data["valid"])["_silence_"] == 0
    n_known = len(TARGETS) * len(SC_SPEAKERS["train"])
    unknown = [u.uid for u in data["train"] if u.label == "_unknown_"]
    assert len(unknown) == math.ceil(0.25 * n_known)
    again = load_speech_commands(sc_root, silence_count={"train": 5, "valid": 0, "test": 1},
                                 unknown_ratio=0.25, seed=1)
    assert unknown == [u.uid for u in again["train"] if u.label == "_unknown_"]


def test_speech_commands_full_task_and_split_filter(sc_root: Path) -> None:
    data = load_corpus("speech_commands", sc_root, split="valid", task="full")
    assert list(data) == ["valid"]
    assert sorted(u.label for u in data["valid"]) == sorted(SC_WORDS)
    assert kws_labels("full", "v0.01")[:3] == ["bed", "bird", "cat"] and len(kws_labels("full")) == 30


def test_speech_commands_test_root_and_test_folder(sc_root: Path, sc_test_root: Path) -> None:
    data = load_corpus("speech_commands", sc_root, test_root=sc_test_root)
    test = data["test"]
    assert Counter(u.label for u in test) == {"yes": 1, "no": 1, "up": 1, "go": 1,
                                             "_unknown_": 3, "_silence_": 2}
    assert all(u.uid.startswith("test_set/") for u in test)
    assert all(u.path.is_relative_to(sc_test_root) for u in test)
    silence = [u for u in test if u.label == "_silence_"]
    assert all("offset_s" not in u.meta for u in silence)  # real files, not windows
    # The release's own test clips are in no split.
    test_speaker = SC_SPEAKERS["test"][0]
    assert not any(u.speaker == test_speaker for utts in data.values() for u in utts)
    alone = load_corpus("auto", sc_test_root)
    assert list(alone) == ["test"] and len(alone["test"]) == len(test)
    with pytest.raises(DataError, match="holds only the test split"):
        load_corpus("speech_commands", sc_test_root, split="train")


def test_speech_commands_test_folder_with_untrained_class_is_an_error(sc_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "speech_commands_test_set_v0.01"
    write_speech_commands_test_set(bad, words=("yes", "left"))  # the training clips have no "left"
    with pytest.raises(DataError, match=r"test folder has class\(es\) \['left'\].*training clips"):
        load_corpus("speech_commands", sc_root, test_root=bad)


def test_class_balanced_draws_follow_s3prl_weights() -> None:
    from spkit.data.speech_commands import class_balanced_draws

    labels = ["_unknown_"] * 90 + ["yes"] * 8 + ["_silence_"] * 2
    items = list(range(100))
    draws = class_balanced_draws(items, labels, seed=0, split="train", n=30_000)
    counts = Counter(labels[i] for i in draws)
    assert set(counts) == set(labels)
    for c in counts.values():  # every class ~1/3 of the draws although _unknown_ is 90 % of the items
        assert abs(c / 30_000 - 1 / 3) < 0.02
    within = Counter(i for i in draws if labels[i] == "yes")
    assert len(within) == 8  # uniform within a class
    again = class_balanced_draws(items, labels, seed=0, split="train")
    assert again == class_balanced_draws(items, labels, seed=0, split="train") and len(again) == 100
    assert again != class_balanced_draws(items, labels, seed=0, split="valid")
    with pytest.raises(ValueError, match="labels"):
        class_balanced_draws(items, labels[:3])


def test_speech_commands_v002_detection(tmp_path: Path) -> None:
    root = tmp_path / "v2"
    write_speech_commands(root, words=("yes", "backward", "visual"), noises={"pink_noise.wav": 12.0})
    data = load_corpus("auto", root)
    assert {u.meta["version"] for utts in data.values() for u in utts if "version" in u.meta} == {"v0.02"}
    assert Counter(u.label for u in data["train"])["_unknown_"] == 2 * len(SC_SPEAKERS["train"])
    full = load_corpus("speech_commands", root, task="full")
    assert {u.label for u in full["train"]} == {"yes", "backward", "visual"}
    with pytest.raises(DataError, match="backward"):  # a v0.02 word is not a v0.01 word
        load_speech_commands(root, version="v0.01")


def test_speech_commands_errors(sc_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        load_corpus("speech_commands", tmp_path / "absent")
    root = _copy(sc_root, tmp_path)
    (root / "validation_list.txt").unlink()
    with pytest.raises(DataError, match=r"validation_list\.txt"):
        load_corpus("speech_commands", root)

    root = _copy(sc_root, tmp_path / "b")
    with open(root / "testing_list.txt", "a") as f:
        f.write("yes/ffffffff_nohash_0.wav\n")
    with pytest.raises(DataError, match=r"testing_list.txt.*ffffffff_nohash_0.wav"):
        load_corpus("speech_commands", root)

    root = _copy(sc_root, tmp_path / "c")
    (root / "testing_list.txt").write_text("yes\n")
    with pytest.raises(DataError, match=r"testing_list.txt:1.*word/<file>.wav"):
        load_corpus("speech_commands", root)

    root = _copy(sc_root, tmp_path / "d")
    with open(root / "testing_list.txt", "a") as f:
        f.write((root / "validation_list.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match=r"also listed in .*validation_list\.txt"):
        load_corpus("speech_commands", root)

    root = _copy(sc_root, tmp_path / "e")
    write_wav(root / "yes" / "not-a-clip-name.wav")
    with pytest.raises(DataError, match=r"not-a-clip-name.wav: clip name"):
        load_corpus("speech_commands", root)

    root = _copy(sc_root, tmp_path / "f")
    write_wav(root / "banana" / "0a0a0a0a_nohash_0.wav")
    with pytest.raises(DataError, match=r"banana.*not Speech Commands"):
        load_corpus("speech_commands", root)

    root = _copy(sc_root, tmp_path / "g")
    shutil.rmtree(root / "_background_noise_")
    with pytest.raises(DataError, match="_background_noise_"):
        load_corpus("speech_commands", root)
    assert "_silence_" not in {u.label for u in load_corpus("speech_commands", root, task="full")["train"]}

    root = tmp_path / "short"
    write_speech_commands(root, words=("yes",), noises={"white_noise.wav": 2.5})
    with pytest.raises(DataError, match="long enough"):  # 2.5 s < three 1 s windows
        load_corpus("speech_commands", root)
    assert len(load_speech_commands(root, disjoint_noise=False)["valid"]) == 2


def test_speech_commands_short_noise_files_still_give_every_split_a_window(tmp_path: Path) -> None:
    root = tmp_path / "short"
    write_speech_commands(root, words=("yes",), noises={"white_noise.wav": 5.0})
    data = load_speech_commands(root, silence_count={"train": 4, "valid": 3, "test": 3})
    # 5 s file, 1 s windows: test = [4 s, 5 s), valid = [3 s, 4 s), train = [0, 3 s).
    assert {u.meta["offset"] for u in data["valid"] if u.label == "_silence_"} == {48_000}
    assert {u.meta["offset"] for u in data["test"] if u.label == "_silence_"} == {64_000}
    assert all(u.meta["offset"] <= 32_000 for u in data["train"] if u.label == "_silence_")


# ---------------------------------------------------------------- Fluent Speech Commands


@pytest.fixture(scope="module")
def fsc_parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("fsc")
    write_fluent(parent / "fluent_speech_commands_dataset")
    return parent


def test_fluent_counts_labels_and_parent_root(fsc_parent: Path) -> None:
    root = fsc_parent / "fluent_speech_commands_dataset"
    data = load_corpus("fluent", root)
    for split, spks in FSC_SPEAKERS.items():
        assert len(data[split]) == len(FSC_INTENTS) * len(spks)
        assert {u.speaker for u in data[split]} == set(spks)
    u = next(u for u in data["train"] if u.label["action"] == "change language")
    assert u.label == {"action": "change language", "object": "German", "location": "none"}
    assert u.meta["intent"] == "change language|German|none"
    assert u.text == "Switch to German, please"  # the quoted comma survives
    assert u.path.is_file() and u.path.is_relative_to(root)
    via_parent = load_corpus("auto", fsc_parent)
    assert [x.uid for x in via_parent["test"]] == [x.uid for x in data["test"]]
    vocab = intent_vocab(data["train"])
    assert vocab["action"] == sorted({i[1] for i in FSC_INTENTS})
    assert vocab["location"] == ["kitchen", "none"]
    assert len(vocab["intent"]) == len(FSC_INTENTS)
    assert label_set("fluent", data) == vocab


def test_fluent_errors(fsc_parent: Path, tmp_path: Path) -> None:
    root = _copy(fsc_parent / "fluent_speech_commands_dataset", tmp_path)
    (root / "data" / "valid_data.csv").unlink()
    with pytest.raises(DataError, match=r"valid_data\.csv: no such file"):
        load_corpus("fluent", root)
    assert list(load_corpus("fluent", root, split=["train", "test"])) == ["train", "test"]

    rows = [{"path": "wavs/x.wav", "speakerId": "s", "transcription": "t", "action": "a", "object": "o"}]
    write_fluent_csv(root / "data" / "valid_data.csv", rows,
                     columns=("path", "speakerId", "transcription", "action", "object"))
    with pytest.raises(DataError, match=r"valid_data.csv: missing column\(s\) \['location'\]"):
        load_corpus("fluent", root, split="valid")

    rows[0]["location"] = "none"
    write_fluent_csv(root / "data" / "valid_data.csv", rows)
    with pytest.raises(DataError, match=r"valid_data.csv: 1 listed audio file.*wavs/x.wav"):
        load_corpus("fluent", root, split="valid")
    assert load_corpus("fluent", root, split="valid", check_files=False)["valid"][0].speaker == "s"

    with pytest.raises(DataError, match="data"):
        load_corpus("fluent", tmp_path / "nothing-here")


# ---------------------------------------------------------------- LibriSpeech


@pytest.fixture(scope="module")
def libri_parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("libri")
    write_librispeech(parent)
    return parent


def test_librispeech_splits_texts_and_roots(libri_parent: Path) -> None:
    data = load_corpus("librispeech", libri_parent)
    expected = {"train": "train-clean-100", "valid": "dev-clean", "test": "test-clean"}
    for split, subset in expected.items():
        want = {f"{spk}-{ch}-{n:04d}": text for spk, chs in LIBRI_TREE[subset].items()
                for ch, texts in chs.items() for n, text in enumerate(texts)}
        assert {u.uid: u.text for u in data[split]} == want
        assert all(u.meta["subset"] == subset and u.label is None for u in data[split])
    u = next(u for u in data["train"] if u.uid == "1034-121120-0000")
    assert (u.speaker, u.meta["chapter"], u.path.suffix) == ("1034", "121120", ".flac")
    assert u.path.is_file()
    same = load_corpus("librispeech", libri_parent / "LibriSpeech")
    assert {k: [x.uid for x in v] for k, v in same.items()} == \
           {k: [x.uid for x in v] for k, v in data.items()}
    dev = load_corpus("auto", libri_parent / "LibriSpeech" / "dev-clean")
    assert list(dev) == ["valid"] and len(dev["valid"]) == 1
    only = load_corpus("librispeech", libri_parent, subsets=["test-clean"])
    assert list(only) == ["test"]
    chars = asr_charset(data["train"])
    assert chars[0] == "|" and "'" in chars and " " not in chars and chars[1:] == sorted(chars[1:])


def test_librispeech_errors(libri_parent: Path, tmp_path: Path) -> None:
    parent = _copy(libri_parent / "LibriSpeech", tmp_path)
    chapter = parent / "dev-clean" / "84" / "121123"
    with open(chapter / "84-121123.trans.txt", "a") as f:
        f.write("84-121123-0001 A LINE WITHOUT AUDIO\n")
    with pytest.raises(DataError, match=r"84-121123.trans.txt:2.*84-121123-0001.flac"):
        load_corpus("librispeech", parent)

    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO\n")
    write_wav(chapter / "84-121123-0007.flac")
    with pytest.raises(DataError, match=r"84-121123.trans.txt: no transcript line.*0007.flac"):
        load_corpus("librispeech", parent)
    (chapter / "84-121123-0007.flac").unlink()

    (chapter / "84-121123.trans.txt").write_text("99-121123-0000 GO\n")
    with pytest.raises(DataError, match=r"trans.txt:1: id '99-121123-0000'"):
        load_corpus("librispeech", parent)

    (chapter / "84-121123.trans.txt").unlink()
    with pytest.raises(DataError, match=r"84-121123.trans.txt: no such file"):
        load_corpus("librispeech", parent)
    shutil.rmtree(parent / "dev-clean")
    with pytest.raises(DataError, match=r"split\(s\) \['valid'\]"):
        load_corpus("librispeech", parent, split="valid")
    with pytest.raises(DataError, match=r"subset folder\(s\) \['dev-other'\]"):
        load_corpus("librispeech", parent, subsets=["dev-other"])
    with pytest.raises(DataError, match="no LibriSpeech subset folder"):
        load_corpus("librispeech", tmp_path / "LibriSpeech" / "test-clean" / "1089")


# ---------------------------------------------------------------- TSV manifests


def test_lid_tsv_corpus(tmp_path: Path) -> None:
    rows = write_lid_tsv(tmp_path / "lid")
    data = load_corpus("lid", tmp_path / "lid")
    assert list(data) == ["train", "valid", "test"]
    for split, want in rows.items():
        assert [(u.label, u.speaker, u.text) for u in data[split]] == [(r[1], r[2], r[3]) for r in want]
        assert all(u.path.is_file() for u in data[split])
    assert class_labels(data["train"]) == ["de", "en", "fr"]
    assert label_set("lid", data) == ["de", "en", "fr"]
    assert detect_layout(tmp_path / "lid").kind == "tsv"


def test_tsv_single_file_absolute_paths_and_split_column(tmp_path: Path) -> None:
    a = write_wav(tmp_path / "audio" / "a.wav")
    b = write_wav(tmp_path / "audio" / "b.wav")
    m = write_tsv(tmp_path / "m" / "all.tsv", ["path", "label", "speaker", "split", "lang_family"],
                  [[str(a), "x", "s1", "train", "ie"], [str(b), "y", "s2", "dev", "ie"]])
    data = load_corpus("auto", m)
    assert [u.split for u in data["train"]] == ["train"] and data["valid"][0].label == "y"
    assert data["train"][0].meta["lang_family"] == "ie" and data["train"][0].path == a


def test_tsv_errors(tmp_path: Path) -> None:
    write_lid_tsv(tmp_path / "lid")
    root = tmp_path / "lid"
    train = (root / "train.tsv").read_text().splitlines()
    mixed = [train[0], train[1], "\t".join([str(root / train[2].split("\t")[0]), *train[2].split("\t")[1:]])]
    (root / "train.tsv").write_text("\n".join(mixed) + "\n")
    with pytest.raises(DataError, match=r"train.tsv:3: path .* is absolute but earlier rows are relative"):
        load_corpus("tsv", root)

    (root / "train.tsv").write_text("path\tlabel\n" + "wavs/en/en00_0.wav\ten\n")
    with pytest.raises(DataError, match=r"train.tsv:1: missing column\(s\) \['speaker'\]"):
        load_corpus("tsv", root)

    (root / "train.tsv").write_text("path\tlabel\tspeaker\nwavs/en/en00_0.wav\ten\n")
    with pytest.raises(DataError, match=r"train.tsv:2: 2 cells"):
        load_corpus("tsv", root)

    (root / "train.tsv").write_text("path\tlabel\tspeaker\nwavs/missing.wav\ten\ts\n")
    with pytest.raises(DataError, match=r"train.tsv: 1 listed audio file.*missing.wav"):
        load_corpus("tsv", root)

    (root / "train.tsv").write_text("path\tlabel\tspeaker\tsplit\nwavs/en/en00_0.wav\ten\ts\ttest\n")
    with pytest.raises(DataError, match=r"train.tsv:2: row is in split 'test'"):
        load_corpus("tsv", root)

    (root / "train.tsv").unlink()
    with pytest.raises(DataError, match=r"no train.tsv"):
        load_corpus("tsv", root, split="train")
    assert list(load_corpus("tsv", root)) == ["valid", "test"]


def test_fairseq_manifest_with_wrd(libri_parent: Path, tmp_path: Path) -> None:
    audio = libri_parent / "LibriSpeech"
    rels = ["dev-clean/84/121123/84-121123-0000.flac", "test-clean/1089/134686/1089-134686-0001.flac"]
    m = write_fairseq_manifest(tmp_path / "valid.tsv", audio, rels, texts=["GO DO YOU HEAR", "STUFF"])
    utts = load_manifest(m)
    assert [u.path for u in utts] == [audio / r for r in rels]
    assert [u.speaker for u in utts] == ["84", "1089"]
    assert [u.text for u in utts] == ["GO DO YOU HEAR", "STUFF"]
    assert all(u.split == "valid" for u in utts)
    assert utts[0].meta["n_samples"] == sf.info(str(audio / rels[0])).frames
    assert list(load_corpus("tsv", tmp_path)) == ["valid"]

    m.with_suffix(".wrd").write_text("ONLY ONE LINE\n")
    with pytest.raises(DataError, match=r"valid.wrd: 1 lines, but .*valid.tsv lists 2"):
        load_manifest(m)
    m.with_suffix(".wrd").unlink()

    m.write_text(f"{audio}\n{rels[0]}\tmany\n")
    with pytest.raises(DataError, match=r"valid.tsv:2: n_samples 'many'"):
        load_manifest(m)
    m.write_text(f"{audio}\n{audio / rels[0]}\t16000\n")
    with pytest.raises(DataError, match=r"valid.tsv:2: path .* is absolute"):
        load_manifest(m)
    m.write_text(f"{audio}\n{rels[0]}\t16000\nnope.flac\t16000\n")
    with pytest.raises(DataError, match=r"valid.tsv: 1 listed audio file.*nope.flac"):
        load_manifest(m)
    write_wav(tmp_path / "audio" / "a.wav")
    other = write_fairseq_manifest(tmp_path / "sub" / "mine.tsv", "../audio", ["a.wav"])
    with pytest.raises(DataError, match=r"mine\.tsv: cannot tell the split"):
        load_manifest(other)
    relative = load_manifest(other, split="train")
    assert relative[0].path.resolve() == (tmp_path / "audio" / "a.wav").resolve()
    assert relative[0].speaker == "unknown" and relative[0].text is None


# ---------------------------------------------------------------- detection, labels


def test_detect_layout(sc_root: Path, sc_test_root: Path, fsc_parent: Path, libri_parent: Path,
                       tmp_path: Path) -> None:
    assert detect_layout(sc_root).kind == "speech_commands"
    assert detect_layout(sc_test_root).kind == "speech_commands"
    fsc = detect_layout(fsc_parent)
    assert fsc.kind == "fluent" and fsc.root.name == "fluent_speech_commands_dataset"
    assert detect_layout(libri_parent).kind == "librispeech"
    assert detect_layout(libri_parent / "LibriSpeech" / "test-clean").kind == "librispeech"
    with pytest.raises(DataError) as e:
        detect_layout(tmp_path)
    for looked in ("validation_list.txt", "train_data.csv", "dev-clean", "train.tsv"):
        assert looked in str(e.value)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DataError, match="no such folder"):
        detect_layout(tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown corpus kind"):
        load_corpus("timit", tmp_path)


def test_kws_labels_fixed_order() -> None:
    assert kws_labels() == ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
                            "_unknown_", "_silence_"]
    assert label_set("speech_commands") == kws_labels()
    assert len(kws_labels("full", "v0.02")) == 35


# ---------------------------------------------------------------- spkit alignments


def test_alignments_attach_and_frame_labels(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    write_speech_commands(root, words=("yes", "bed"), speakers={"train": ["aa"], "valid": ["bb"],
                                                               "test": ["cc"]})
    records = [{"path": "yes/aa_nohash_0.wav", "text": "yes", "speaker": "aa", "split": "train",
                "words": [["yes", 0.05, 0.2]],
                "phones": [["y", 0.05, 0.1], ["eh", 0.1, 0.15], ["s", 0.15, 0.2]]}]
    write_alignments(root, records)
    data = load_corpus("speech_commands", root)
    clip = next(u for u in data["train"] if u.uid == "yes/aa_nohash_0")
    assert clip.meta["alignment"]["phones"][1] == ["eh", 0.1, 0.15]
    assert clip.meta["alignments_file"].endswith("spkit/alignments.jsonl")
    others = [u for utts in data.values() for u in utts if u.uid != clip.uid]
    assert not any("alignment" in u.meta for u in others)
    assert "alignment" not in next(iter(load_corpus("sc", root, alignments=False)["train"])).meta
    assert read_corpus_info(root) == {"name": "fixture", "clips": 1}
    assert read_corpus_info(tmp_path) is None

    # 0.25 s clip -> 12 HuBERT frames at 50 Hz; frame i is centred at 20 ms * (i + 0.5).
    labels = frame_labels(clip.meta["alignment"], 12)
    assert labels == ["sil", "sil", "y", "y", "y", "eh", "eh", "s", "s", "s", "sil", "sil"]
    assert frame_labels(clip.meta["alignment"], 12, tier="words").count("yes") == 8
    assert frame_labels([["a", 0.0, 1.0]], 3, frame_rate=2) == ["a", "a", "sil"]
    # Centres 10, 30, 50, 70, 90 ms: [35, 70) ms holds only the 50 ms one; the first interval wins.
    assert frame_labels([["a", 0.035, 0.07]], 5) == ["sil", "sil", "a", "sil", "sil"]
    assert frame_labels([["a", 0.0, 0.04], ["b", 0.02, 0.1]], 4, silence="-") == ["a", "a", "b", "b"]
    with pytest.raises(DataError, match="no 'foo' tier"):
        frame_labels(clip.meta["alignment"], 3, tier="foo")


def test_alignments_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"alignments.jsonl: no such file"):
        load_alignments(tmp_path)
    path = write_alignments(tmp_path, [{"path": "a.wav", "phones": [["a", 0.0, 0.1]]}])
    with open(path, "a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"alignments.jsonl:2: not valid JSON"):
        load_alignments(tmp_path)
    path.write_text('{"path": "a.wav", "phones": [["a", 0.3, 0.1]]}\n')
    with pytest.raises(DataError, match=r"alignments.jsonl:1 \(phones\).*start_s <= end_s"):
        load_alignments(tmp_path)
    path.write_text('{"path": "a.wav"}\n{"path": "a.wav"}\n')
    with pytest.raises(DataError, match=r"alignments.jsonl:2: 'a.wav' is listed twice"):
        load_alignments(tmp_path)
    path.write_text('{"text": "no path"}\n')
    with pytest.raises(DataError, match=r"alignments.jsonl:1: expected an object with a string 'path'"):
        load_alignments(tmp_path)
