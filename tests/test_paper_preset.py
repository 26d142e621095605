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
    write_fluent(fsc)
    hubert = root / "hubert_base_ls960.pt"
    write_fairseq_hubert(hubert, HUBERT)
    return {"kws": sc, "intent": fsc, "hubert": hubert, "km": write_gslm_kmeans(root / "km.bin", 64, K),
            "ulm": write_gslm_ulm(root / "hubert100_lm", K), "root": root}


def test_paper_preset_needs_real_corpora(tmp_path):
    with pytest.raises(ValueError, match="paper preset reads the real data sets"):
        plan("paper", tmp_path / "run")
    with pytest.raises(UserError, match="kws="):
        plan("paper", tmp_path / "run", corpora={"kws": str(tmp_path / "missing")})


def test_paper_preset_runs_on_real_formats(real_files, capsys):
    run = real_files["root"] / "run"
    argv = ["run", "--preset", "paper", "--out", str(run),
            "--corpus", f"kws={real_files['kws']}", "--corpus", f"intent={real_files['intent']}",
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
    assert (run / "index.html").exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-p", "no:hydra_pytest"]))
