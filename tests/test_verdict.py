"""What a run shows and when a result means nothing (:mod:`spkit.prompt.verdict`): each warning fires on its
case and not on its negative, the sentences come from results.json alone, ``class_rates`` is added to
results.json without changing a field that was there, and results.md, the report and ``spkit run``'s last
lines carry them. Synthetic records (tests/report_records.py): fast, no training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from report_records import RATES, meaningless_runs, run, sound_runs, write_run

from spkit.prompt.results import load_results, render_markdown, update_results
from spkit.prompt.verdict import (
    class_rates_from_units,
    cli_lines,
    label_rates,
    missing_class_rates,
    run_warnings,
    summary_markdown,
    verdict_sentences,
)


def kinds(results) -> dict[str, tuple[str, ...]]:
    return {w.kind: w.runs for w in run_warnings(results)}


def record(tmp_path: Path, runs, rates=None) -> dict:
    return write_run(tmp_path, runs, rates)


def seeds(task: str, method: str, value: float, n: int = 2, **kw) -> list:
    """``n`` seeds of one method, all scoring ``value``."""
    return [run(task, method, s, value, **kw) for s in range(n)]


def write_units(folder: Path, labels: dict[str, list[str]]) -> None:
    """Unit-record files ``<split>.jsonl`` with these labels."""
    folder.mkdir(parents=True)
    for split, names in labels.items():
        records = [{"uid": f"{split}{i}", "label": lb, "units": [1, 2]} for i, lb in enumerate(names)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


# --------------------------------------------------------------------------------------------
# each warning: fires on its case, not on its negative
# --------------------------------------------------------------------------------------------

def test_near_chance_fires_at_the_majority_rate_and_below_chance(tmp_path):
    three = [0, 1, 2]
    res = record(tmp_path / "a", [run("kws", "deep_prompt", s, 0.60) for s in three]
                 + [run("kws", "deep_prompt_random_lm", s, 0.195) for s in three]   # 0.4 point above majority
                 + [run("kws", "downstream", s, 0.02, params=300_000) for s in three])  # below chance
    near = kinds(res)["near_chance"]
    assert len(near) == 2
    assert near[0].startswith("KWS deep_prompt_random_lm 19.5 %") and "majority class rate 19.1 %" in near[0]
    assert near[1].startswith("KWS downstream 2.0 % (below")
    # the negative: 1.5 points above the majority rate, and a task without class rates
    res = record(tmp_path / "b", [run("kws", "deep_prompt_random_lm", s, 0.206) for s in three]
                 + [run("sf", "deep_prompt", s, 0.0, metric="slot_type_f1") for s in three])
    assert "near_chance" not in kinds(res)


def test_near_chance_uses_the_higher_of_chance_and_majority(tmp_path):
    rates = {"lid": {**RATES["lid"], "chance": 0.25, "majority": 0.05}}
    res = record(tmp_path, [run("lid", "deep_prompt", s, 0.255) for s in (0, 1)], rates)
    (near,) = kinds(res)["near_chance"]
    assert "chance rate 25.0 %" in near
    assert "near_chance" not in kinds(record(tmp_path / "b", seeds("lid", "deep_prompt", 0.27), rates))


def test_near_chance_ignores_lower_is_better_metrics(tmp_path):
    res = record(tmp_path, seeds("asr", "deep_prompt", 0.05, metric="cer (lower is better)"),
                 {"asr": {**RATES["lid"]}})
    assert "near_chance" not in kinds(res)


def test_capped_names_the_seeds_and_the_cap_parameter(tmp_path):
    res = record(tmp_path, [run("kws", "deep_prompt", 0, 0.6, "max_epochs"),
                            run("kws", "deep_prompt", 1, 0.6),
                            run("kws", "downstream", 0, 0.8, "max_epochs", params=300_000),
                            run("kws", "downstream", 1, 0.8, params=300_000)])
    (w,) = [w for w in run_warnings(res) if w.kind == "capped"]
    assert w.runs == ("KWS deep_prompt (seed 0 of 2 at cap 4)", "KWS downstream (seed 0 of 2 at cap 40)")
    assert "--param downstream_epochs=N" in w.advice and "--param epochs=N" in w.advice
    assert "PRESET=full" in w.advice
    res = record(tmp_path / "b", [run("kws", "deep_prompt", s, 0.6) for s in (0, 1)])
    assert "capped" not in kinds(res)


def test_control_at_least_as_good_as_the_prompts(tmp_path):
    def pair(dp, rc, task="kws", metric="accuracy"):
        return ([run(task, "deep_prompt", s, dp, metric=metric) for s in (0, 1)]
                + [run(task, "deep_prompt_random_lm", s, rc, metric=metric) for s in (0, 1)])

    same = kinds(record(tmp_path / "eq", pair(0.5, 0.5)))["control"]
    assert same == ("KWS: control 50.0 % vs deep prompts 50.0 %",)
    assert "control" in kinds(record(tmp_path / "gt", pair(0.5, 0.6)))
    assert "control" not in kinds(record(tmp_path / "lt", pair(0.6, 0.5)))
    # lower is better: a control with the lower CER is the better one
    cer = "cer (lower is better)"
    assert "control" in kinds(record(tmp_path / "cer1", pair(0.5, 0.4, "asr", cer)))
    assert "control" not in kinds(record(tmp_path / "cer2", pair(0.4, 0.5, "asr", cer)))
    # no control run: nothing to compare
    assert "control" not in kinds(record(tmp_path / "none", pair(0.5, 0.5)[:2]))


def test_single_seed(tmp_path):
    res = record(tmp_path, seeds("kws", "deep_prompt", 0.6) + seeds("kws", "finetune", 0.7, n=1))
    assert kinds(res)["single_seed"] == ("KWS finetune",)
    assert "single_seed" not in kinds(record(tmp_path / "b", seeds("kws", "deep_prompt", 0.6)))


def test_the_issue_record_warns_and_the_sound_record_does_not(tmp_path):
    bad = record(tmp_path / "bad", meaningless_runs())
    found = kinds(bad)
    assert set(found) == {"near_chance", "capped", "control", "single_seed"}
    assert any(r.startswith("KWS deep_prompt_random_lm 19.1 %") for r in found["near_chance"])
    assert any(r.startswith("IC deep_prompt 0.0 % (below") for r in found["near_chance"])
    assert any(r.startswith("LID deep_prompt 10.2 %") for r in found["near_chance"])
    assert "KWS deep_prompt (seeds 0, 1, 2 of 3 at cap 4)" in found["capped"]
    assert run_warnings(record(tmp_path / "good", sound_runs())) == []


# --------------------------------------------------------------------------------------------
# sentences
# --------------------------------------------------------------------------------------------

def test_sentences_from_the_record(tmp_path):
    res = record(tmp_path, sound_runs())
    s = verdict_sentences(res)
    assert 2 <= len(s) <= 3
    # 0.61 / 0.81 of the head with 98K / 300K parameters; +20 points over the control; fine-tuning's 71 %
    assert s[0].startswith("Deep prompts reach 0.75 of the downstream head's score on KWS (61.0 vs 81.0 % "
                           "accuracy) with 1/3 of its parameters and 0.58 on LID (52.0 vs 90.0 %, 1/3)")
    assert "+20.0 points on KWS (61.0 vs 41.0 %)" in s[1] and "+22.0 points on LID" in s[1]
    assert s[2] == ("Fine-tuning every uLM weight (12.0M trainable parameters) reaches 71.0 % on KWS (deep "
                    "prompts 61.0 %, head 81.0 %).")
    assert verdict_sentences(load_results(tmp_path / "nothing.json")) == []


def test_sentences_without_the_compared_methods_name_the_best(tmp_path):
    res = record(tmp_path, [run("kws", "input_prompt", s, 0.3) for s in (0, 1)]
                 + [run("kws", "deep_prompt_L2", s, 0.4) for s in (0, 1)])
    assert verdict_sentences(res) == ["Best method: deep_prompt_L2 on KWS (40.0 % accuracy)."]


# --------------------------------------------------------------------------------------------
# class rates: computed from the unit files, added to results.json without changing what was there
# --------------------------------------------------------------------------------------------

def test_label_rates():
    r = label_rates(["a", "b", "c", "d"], ["a", "a", "a", "b"])
    assert r["n_classes"] == 4 and r["chance"] == 0.25
    assert r["majority"] == 0.75 and r["majority_label"] == "a"
    assert r["test_n"] == 4 and r["test_counts"] == {"a": 3, "b": 1}


def test_class_rates_from_unit_files(tmp_path):
    write_units(tmp_path / "units" / "kws", {"train": ["yes", "no", "up", "down", "yes"],
                                             "test": ["yes", "yes", "no", "_unknown_"]})
    rates = class_rates_from_units(tmp_path, ["kws", "intent", "asr"])  # intent: no files; asr: no classes
    assert set(rates) == {"kws"}
    kws = rates["kws"]
    assert kws["n_classes"] == 4 and kws["chance"] == 0.25  # the training split's label set
    assert kws["majority"] == 0.5 and kws["majority_label"] == "yes" and kws["test_n"] == 4


def test_class_rates_are_added_and_kept(tmp_path):
    path = tmp_path / "results.json"
    update_results(path, [run("kws", "deep_prompt", s, 0.6) for s in (0, 1)])
    old = load_results(path)
    assert "class_rates" not in old and missing_class_rates(old) == ["kws"]
    assert "near_chance" not in kinds(old)  # no rates, no claim
    new = update_results(path, [], class_rates={"kws": RATES["kws"]})
    assert new["class_rates"] == {"kws": RATES["kws"]} and missing_class_rates(new) == []
    assert new["tasks"] == old["tasks"] and new["few_shot"] == old["few_shot"]  # the contract: unchanged
    again = update_results(path, [run("kws", "deep_prompt", 2, 0.6)], class_rates={"lid": RATES["lid"]})
    assert set(again["class_rates"]) == {"kws", "lid"}  # merged, kept by later runs


def test_report_backfills_class_rates_of_an_older_record(tmp_path):
    from spkit.report import backfill_class_rates

    write_units(tmp_path / "units" / "lid", {"train": ["en", "de"], "test": ["en", "en", "de"]})
    update_results(tmp_path / "results.json", [run("lid", "deep_prompt", s, 0.66) for s in (0, 1)])
    res = backfill_class_rates(tmp_path)
    assert res["class_rates"]["lid"]["majority"] == pytest.approx(2 / 3)
    assert kinds(res)["near_chance"] == ("LID deep_prompt 66.0 % (below the majority class rate 66.7 %)",)


# --------------------------------------------------------------------------------------------
# where they are shown: results.md, the CLI's last lines, the report
# --------------------------------------------------------------------------------------------

def test_results_md_opens_with_the_verdict_and_the_warnings(tmp_path):
    write_run(tmp_path, meaningless_runs())
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("# Results\n\n## What this run shows\n\nDeep prompts reach 0.37 of the downstream")
    head = md.split("## All methods")[0]
    assert "## Warnings" in head and "KWS deep_prompt_random_lm 19.1 %" in head and "PRESET=full" in head
    assert md.index("## Warnings") < md.index("| Method |")
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert len(headings) == len(set(headings)), headings
    assert render_markdown(load_results(tmp_path / "results.json"), figure="figures/headline.png").count(
        "![headline figure") == 1
    write_run(tmp_path / "good", sound_runs())
    assert "Warnings" not in (tmp_path / "good" / "results.md").read_text()
    assert summary_markdown(load_results(tmp_path / "none.json")) == []


def test_cli_last_lines(tmp_path):
    bad = cli_lines(write_run(tmp_path / "bad", meaningless_runs()))
    assert bad[0].startswith("[spkit run] Deep prompts reach")
    warns = [line for line in bad if line.startswith("[spkit run] WARNING")]
    assert len(warns) == 4 and any("Stopped at the epoch cap" in w and "KWS deep_prompt " in w for w in warns)
    many = write_run(tmp_path / "many", [run(t, f"deep_prompt_L{n}", 0, 0.6) for t in ("kws", "lid")
                                         for n in range(4)])  # 8 single-seed results: the CLI names 6
    (line,) = [line for line in cli_lines(many) if "WARNING" in line]
    assert "KWS deep_prompt_L0; " in line and "and 2 more (the report lists them)" in line
    good = cli_lines(write_run(tmp_path / "good", sound_runs()))
    assert good and not any("WARNING" in line for line in good)


def test_cli_prints_the_verdict_last(tmp_path, monkeypatch, capsys):
    from spkit import pipeline

    write_run(tmp_path, meaningless_runs())
    monkeypatch.setattr(pipeline, "plan", lambda *a, **k: [])
    monkeypatch.setattr(pipeline, "finalize_run", lambda *a, **k: tmp_path / "index.html")
    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    assert pipeline.main(parser.parse_args(["--preset", "smoke", "--out", str(tmp_path)])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("[spkit run] complete")
    assert lines[-1].startswith("[spkit run] WARNING A single seed")


def test_report_leads_with_the_figure_and_the_warnings(tmp_path):
    from spkit.report import build_index

    write_run(tmp_path / "bad", meaningless_runs())
    page = build_index(tmp_path / "bad", {"preset": "x", "stages": {"a": {"status": "done", "seconds": 1.0}},
                                          "seconds": 1.0}).read_text()
    order = [page.index(s) for s in ("What this run shows", 'id="headline-figure"', "class='verdict'",
                                     "class='warnings'", "Results by task", "Stages and timings")]
    assert order == sorted(order)
    assert page.count("class='warning'") == 4 and "KWS deep_prompt_random_lm 19.1 %" in page
    assert (tmp_path / "bad" / "figures" / "headline.plotly.json").exists()
    write_run(tmp_path / "good", sound_runs())
    good = build_index(tmp_path / "good").read_text()
    assert "class='warning'" not in good and "class='checks-ok'" in good
    assert "class='units'" not in good  # no unit model recorded: no sentence about it
    # the page says what the units' encoder was trained on (results.json units.targets' sentence)
    (tmp_path / "good" / "units").mkdir(exist_ok=True)
    (tmp_path / "good" / "units" / "unit_model.json").write_text('{"targets": "phone_alignment"}')
    good = build_index(tmp_path / "good").read_text()
    assert "trained on the synthesizer&#x27;s phone labels" in good and "not self-supervised" in good
