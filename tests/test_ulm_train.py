"""uLM pretraining: unit-file reading, learning, strict checkpoints, exact resume, DDP (gloo, 2 ranks)."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from spkit.ulm.data import BatchSampler, DataPosition, collate, encode_sequences, load_sequences
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.train import ULMTrainConfig, load_ulm, lr_at, train

SMALL = {"dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64}


def write_units(path: Path, n: int, seed: int, K: int = 20) -> Path:
    """A learnable toy corpus: a sparse Markov chain over K units, each unit repeated 1-3 times."""
    g = torch.Generator().manual_seed(seed)
    nxt = torch.Generator().manual_seed(123)  # the chain is shared by train and valid
    table = torch.randint(0, K, (K, 2), generator=nxt)
    lines = []
    for i in range(n):
        u = int(torch.randint(0, K, (1,), generator=g))
        units = []
        for _ in range(int(torch.randint(8, 30, (1,), generator=g))):
            units += [str(u)] * int(torch.randint(1, 4, (1,), generator=g))
            u = int(table[u, int(torch.randint(0, 2, (1,), generator=g))])
        lines.append(f"spk{seed}_utt{i}|{' '.join(units)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("units")
    return write_units(d / "train.units", 160, 0), write_units(d / "valid.units", 30, 1)


def cfg(**kw) -> ULMTrainConfig:
    base = dict(
        model="tiny",
        model_overrides=SMALL,
        max_steps=8,
        batch_size=8,
        max_len=32,
        lr=3e-3,
        warmup_steps=2,
        eval_every=4,
        save_every=2,
        seed=0,
    )
    return ULMTrainConfig(**{**base, **kw})


def test_load_sequences_and_batches(tmp_path):
    f = tmp_path / "u.txt"
    f.write_text("a|1 1 2 2 2 1\nb/c.wav|3\n\n")
    assert load_sequences(f) == [("a", ["1", "2", "1"]), ("b/c.wav", ["3"])]
    assert load_sequences(f, deduplicate=False)[0][1] == ["1", "1", "2", "2", "2", "1"]
    f.write_text("a|1 2\nno bar here\n")
    with pytest.raises(ValueError, match=r"u.txt:2"):
        load_sequences(f)
    f.write_text("\n")
    with pytest.raises(ValueError, match="no utterances"):
        load_sequences(f)
    d = UnitDictionary.from_units(range(10))
    seqs = encode_sequences([("x", [str(i % 10) for i in range(7)])], d, max_len=4)
    assert [s.tolist() for s in seqs] == [[2, 4, 5, 6, 7], [7, 8, 9, 10, 2]]
    inputs, targets = collate([seqs[0], torch.tensor([2, 4, 2])])
    assert inputs.tolist() == [[2, 4, 5, 6], [2, 4, 1, 1]] and targets.tolist() == [
        [4, 5, 6, 7],
        [4, 2, 1, 1],
    ]
    s = BatchSampler(10, 4, seed=0)
    it = s.iterate(DataPosition())
    full = [next(it) for _ in range(5)]
    assert [p.epoch for _, p in full] == [0, 0, 1, 1, 2]  # 2 batches an epoch, last partial one dropped
    resumed = s.iterate(full[2][1])
    assert next(resumed)[0] == full[3][0]
    r0 = BatchSampler(10, 4, seed=0, rank=0, world_size=2).iterate(DataPosition())
    r1 = BatchSampler(10, 4, seed=0, rank=1, world_size=2).iterate(DataPosition())
    assert sorted(next(r0)[0] + next(r1)[0]) == sorted(full[0][0])


def test_lr_schedule():
    c = cfg(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(99, c) == pytest.approx(0.1, abs=1e-3) and lr_at(50, c) < lr_at(20, c)
    c = cfg(max_steps=100, warmup_steps=4, lr=1.0, schedule="inverse_sqrt")
    assert lr_at(15, c) == pytest.approx(0.5)


def test_training_learns_and_checkpoints_load_strictly(corpus, tmp_path):
    torch.set_num_threads(1)
    train_f, valid_f = corpus
    s = train(
        cfg(
            max_steps=60,
            eval_every=60,
            save_every=60,
            batch_size=16,
            model_overrides={**SMALL, "dropout": 0.0},
        ),
        train_f,
        valid_f,
        tmp_path / "run",
        progress=False,
    )
    assert s["steps"] == 60 and s["valid"]["ppl"] < 12  # chance is ~24 (20 units + </s> + madeupwords)
    model, d = load_ulm(tmp_path / "run")
    assert d.num_units == 20 and len(d) == 24 and model.fingerprint() == s["fingerprint"]
    assert UnitDictionary.load(tmp_path / "run" / "dict.txt") == d
    state = torch.load(tmp_path / "run" / "checkpoint_best.pt", weights_only=True)
    state["model"]["blocks.0.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad.pt: weights do not fit"):
        load_ulm(tmp_path / "bad.pt")


def test_resume_equals_uninterrupted(corpus, tmp_path):
    """Interrupted after 3 steps (odd: between checkpoints) and resumed == one run of 8 steps, with
    dropout on (the RNG state and data position must be restored)."""
    torch.set_num_threads(1)
    train_f, valid_f = corpus
    c = cfg(model_overrides={**SMALL, "dropout": 0.2})
    full = train(c, train_f, valid_f, tmp_path / "full", progress=False)
    part = train(c, train_f, valid_f, tmp_path / "part", stop_after_steps=3, progress=False)
    assert part["steps"] == 3
    resumed = train(c, train_f, valid_f, tmp_path / "part", resume=True, progress=False)
    assert resumed["steps"] == 8 and resumed["steps_this_run"] == 5
    a = torch.load(tmp_path / "full" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint_last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert full["fingerprint"] == resumed["fingerprint"]
    with pytest.raises(ValueError, match="different settings"):
        train(cfg(lr=1e-2), train_f, valid_f, tmp_path / "part", resume=True, progress=False)


def test_resume_after_crash_between_checkpoints(corpus, tmp_path, monkeypatch):
    """A run killed during step 6 (last checkpoint at step 4) resumes to the uninterrupted result."""
    import spkit.ulm.train as train_mod

    torch.set_num_threads(1)
    train_f, valid_f = corpus
    c = cfg(model_overrides={**SMALL, "dropout": 0.2}, save_every=4)
    full = train(c, train_f, valid_f, tmp_path / "full", progress=False)

    class Crash(Exception):
        pass

    real_iterate = BatchSampler.iterate

    def crashing(self, position):
        for n, item in enumerate(real_iterate(self, position)):
            if n == 5:
                raise Crash
            yield item

    monkeypatch.setattr(train_mod.BatchSampler, "iterate", crashing)
    with pytest.raises(Crash):
        train(c, train_f, valid_f, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(train_mod.BatchSampler, "iterate", real_iterate)
    assert torch.load(tmp_path / "crashed" / "checkpoint_last.pt", weights_only=True)["step"] == 4
    resumed = train(c, train_f, valid_f, tmp_path / "crashed", resume=True, progress=False)
    assert resumed["steps_this_run"] == 4 and resumed["fingerprint"] == full["fingerprint"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, args: tuple, results: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
        }
    )
    try:
        summary = train(*args, progress=False)
        (results / f"rank{rank}.txt").write_text(summary["fingerprint"])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_match_single_process(corpus, tmp_path):
    train_f, valid_f = corpus
    c = cfg(model_overrides={**SMALL, "dropout": 0.0}, max_steps=4, eval_every=0, save_every=0)
    mp.spawn(
        _ddp_worker,
        args=(2, _free_port(), (c, train_f, valid_f, tmp_path / "ddp"), tmp_path),
        nprocs=2,
        join=True,
    )
    assert (tmp_path / "rank0.txt").read_text() == (tmp_path / "rank1.txt").read_text()  # identical weights
    torch.set_num_threads(1)
    train(c, train_f, valid_f, tmp_path / "single", progress=False)
    a = torch.load(tmp_path / "ddp" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "single" / "checkpoint_last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    diff = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    moved = max((a["model"][k] - load_init(c, train_f)[k]).abs().max().item() for k in a["model"])
    # Gradients agree to float rounding (summation order differs); Adam's normalised update turns that
    # into ~1e-4 on near-zero-gradient weights after 4 steps, against ~1e-2 of real movement.
    assert diff < 1e-3 and diff < 0.05 * moved, (diff, moved)


def load_init(c: ULMTrainConfig, train_f: Path) -> dict[str, torch.Tensor]:
    from spkit.ulm.model import CONFIGS, UnitLM

    d = UnitDictionary.from_sequences(u for _, u in load_sequences(train_f))
    torch.manual_seed(c.seed)
    return UnitLM(CONFIGS[c.model](len(d), **c.model_overrides)).state_dict()


def test_cli(corpus, tmp_path, capsys):
    from spkit.ulm import cli

    train_f, valid_f = corpus
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(
        [
            "--units-train",
            str(train_f),
            "--units-valid",
            str(valid_f),
            "--out",
            str(tmp_path / "o"),
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--max-len",
            "16",
            "--num-units",
            "20",
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert cli.main(args) == 0
    assert '"steps": 2' in capsys.readouterr().out
    _model, d = load_ulm(tmp_path / "o" / "checkpoint_last.pt")
    assert len(d) == 24 and d.symbols[4] == "0"
