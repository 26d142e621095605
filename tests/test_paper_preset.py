"""The ``paper`` preset (real HuBERT + GSLM km.bin + GSLM uLM on Speech Commands / Fluent Speech
Commands) wired end to end on fixtures in the real formats: the same command a GPU user runs with the
real files, here with tiny random models and tiny corpora."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fixtures_real import (
    write_fairseq_hubert,
    write_fluent,
    write_gslm_kmeans,
    write_gslm_ulm,
    write_speech_commands,
    write_speech_commands_test_set,
)

from spkit.cli import main as spkit_main
from spkit.errors import UserError
from spkit.pipeline import plan

pytest.importorskip("fairseq")

HUBERT = dict(encoder_layers=3, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4,
              conv_pos=16, conv_pos_groups=4,
              conv_feature_layers="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2")
K = 12


@pytest.fixture(scope="module")
def real_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper")
    sc, fsc = root / "speech_commands_v0.01", root / "fluent_speech_commands_dataset"
    write_speech_commands(sc, words=("yes", "no", "up", "down", "bed", "cat"), repeats=2, clip_seconds=1.0)
    sc_test = root / "speech_commands_test_set_v0.01"  # SUPERB's separate KS test folder
    write_speech_commands_test_set(sc_test, words=("yes", "no", "up", "down"), n_unknown=3, n_silence=2)
    write_fluent(fsc)
    hubert = root / "hubert_base_ls960.pt"
    write_fairseq_hubert(hubert, HUBERT)
    return {"kws": sc, "kws_test": sc_test, "intent": fsc, "hubert": hubert,
            "km": write_gslm_kmeans(root / "km.bin", 64, K),
            "ulm": write_gslm_ulm(root / "hubert100_lm", K), "root": root}


def test_paper_preset_needs_real_corpora(tmp_path):
    with pytest.raises(ValueError, match="paper preset reads the real data sets"):
        plan("paper", tmp_path / "run")
    with pytest.raises(UserError, match="kws="):
        plan("paper", tmp_path / "run", corpora={"kws": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match=r"kws_test=.*give the training corpus too"):
        plan("paper", tmp_path / "run", corpora={"kws_test": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown corpus name"):
        plan("paper", tmp_path / "run", corpora={"kws": str(tmp_path), "kws_tst": str(tmp_path)})


def test_paper_preset_settings_are_speechprompts():
    from spkit.recipes.prompting import preset_config

    cfg = preset_config("paper")
    settings = (cfg.lr, tuple(cfg.adam_betas), cfg.batch_size, cfg.epochs, cfg.patience)
    assert settings == (5e-3, (0.9, 0.98), 32, 300, 5)
    assert cfg.seeds[0] == 100501 and cfg.prompt_init == "random" and cfg.separator_init == "random"
    assert cfg.loss_positions == "sep_label_eos" and cfg.kws_balanced and cfg.prompt_dropout is None
    assert cfg.for_task("kws").prompt_length == 3 and cfg.for_task("intent").prompt_length == 6


def test_kws_test_folder_is_the_kws_test_split(real_files):
    from spkit.data.base import DataError
    from spkit.recipes.unit_discovery import load_corpora

    data = load_corpora({"kws": str(real_files["kws"]), "kws_test": str(real_files["kws_test"])})
    assert set(data) == {"kws"}
    assert len(data["kws"]["test"]) == 4 + 3 + 2 and all("/test_set/" in u.uid for u in data["kws"]["test"])
    with pytest.raises(DataError, match="needs the training corpus"):
        load_corpora({"kws_test": str(real_files["kws_test"])})


def test_paper_preset_runs_on_real_formats(real_files, capsys):
    run = real_files["root"] / "run"
    argv = ["run", "--preset", "paper", "--out", str(run),
            "--corpus", f"kws={real_files['kws']}", "--corpus", f"kws_test={real_files['kws_test']}",
            "--corpus", f"intent={real_files['intent']}",
            "--hubert", str(real_files["hubert"]), "--layer", "2", "--kmeans", str(real_files["km"]),
            "--ulm", str(real_files["ulm"]),
            # tiny budgets: the fixture data are a few dozen clips
            "--param", "seeds=[0]", "--param", "epochs=2"]
    rc = spkit_main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err[-3000:]
    unit_model = json.loads((run / "units" / "unit_model.json").read_text())
    assert unit_model["features"] == "hubert" and unit_model["layer"] == 2 and unit_model["n_clusters"] == K
    assert unit_model["cmvn"] is False  # GSLM's km.bin expects raw HuBERT features
    ulm = json.loads((run / "ulm" / "report.json").read_text())
    assert ulm["source"] == str(real_files["ulm"]) and ulm["vocab_size"] == 16  # 12 units + 4 specials
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"kws", "intent"}
    assert {"deep_prompt", "downstream", "finetune"} <= set(results["tasks"]["kws"]["methods"])
    from spkit.artifacts import load_run_ulm

    lm, _ = load_run_ulm(run)
    n, d = lm.cfg.n_layers, lm.cfg.dim
    for task, L in (("kws", 3), ("intent", 6)):  # SpeechPrompt's lengths; its count (2n + 1) L d + d
        dp = results["tasks"][task]["methods"]["deep_prompt"]
        assert dp["trainable_params"] == (2 * n + 1) * L * d + d
        assert dp["runs"][0]["extra"]["live_params"] == 2 * n * L * d + d
        assert dp["decoder"] == "greedy_exact" and 0.0 <= dp["constrained"]["mean"] <= 1.0
        assert dp["seed_ids"] == [0]
    # The KS test split is SUPERB's folder (4 words + 3 unknown + 2 silence clips), not testing_list.txt.
    ev = json.loads((run / "prompts" / "kws" / "deep_prompt" / "seed0" / "eval.json").read_text())
    assert len(ev["predictions"]) == 9 and all("/test_set/" in p["uid"] for p in ev["predictions"])
    assert {"constrained_prediction", "prediction"} <= set(ev["predictions"][0])
    config = json.loads((run / "prompting_config.json").read_text())
    assert config["kws_balanced"] and config["loss_positions"] == "sep_label_eos"
    assert (run / "index.html").exists()


def test_paper_preset_with_one_corpus_runs_that_task(real_files, capsys):
    """A researcher with one data set: ``--corpus kws=...`` alone runs KWS end to end (every notebook, the
    report and results.json follow the task list), and says in one line that IC is skipped and why."""
    run = real_files["root"] / "run_kws_only"
    argv = ["run", "--preset", "paper", "--out", str(run), "--corpus", f"kws={real_files['kws']}",
            "--hubert", str(real_files["hubert"]), "--layer", "2", "--kmeans", str(real_files["km"]),
            "--ulm", str(real_files["ulm"]), "--param", "seeds=[0]", "--param", "epochs=2"]
    rc = spkit_main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err[-3000:]
    skip = [ln for ln in out.out.splitlines() if "skipped:" in ln]
    assert skip == ["[spkit run] tasks: kws; skipped: intent (no intent corpus) (give --corpus intent=DIR "
                    "to run them)"], out.out[-2000:]
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"kws"}
    assert {"deep_prompt", "downstream", "finetune"} <= set(results["tasks"]["kws"]["methods"])
    assert sorted(p.name for p in (run / "units").iterdir() if p.is_dir() and p.name != "cache") == ["kws"]
    assert sorted(p.name for p in (run / "prompts").iterdir() if p.name != "feature_cache") == ["kws"]
    stage = json.loads((run / ".stages" / "03_prompt_training.json").read_text())
    assert stage["params"]["tasks"] == ["kws"]
    assert len(list((run / "notebooks").glob("0[1-6]_*.ipynb"))) == 6
    assert "IC" not in (run / "results.md").read_text() and (run / "index.html").exists()


def test_paper_preset_refuses_an_explicit_task_without_its_corpus(real_files, capsys):
    run = real_files["root"] / "run_refused"
    argv = ["run", "--preset", "paper", "--out", str(run), "--corpus", f"kws={real_files['kws']}",
            "--hubert", str(real_files["hubert"]), "--kmeans", str(real_files["km"]),
            "--ulm", str(real_files["ulm"]), "--param", "tasks=kws,intent"]
    assert spkit_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "--param tasks asks for intent" in err and "--corpus intent=DIR" in err, err
    assert not run.exists()  # refused before anything ran
    assert spkit_main([*argv[:-1], "tasks=['kws']", "--param", "task=intent"]) == 2
    assert "--param task=intent: not a task of this run" in capsys.readouterr().err
    assert not run.exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-p", "no:hydra_pytest"]))
