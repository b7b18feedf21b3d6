"""The summary of paired CPU-budget runs (benchmarks/pair_summary.py): which figures it reads, and its gaps."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from pair_summary import format_table, pair_row, selected_figures, summarise  # noqa: E402

SCRIPT = os.path.join(REPO_ROOT, "benchmarks", "pair_summary.py")


def _result(setup: str, *, raw: float, ema: float, weights: str, mode=None, primary=None, tta=0.5, steps=100):
    """A result as fer_cpu_budget.py writes it, with distinct macro-F1s so that a wrong pick shows."""
    result = {"setup": setup, "validation_images": 1000, "steps": steps, "final_weights": weights,
              "validation_accuracy": raw, "validation_ema_accuracy": ema,
              "validation_macro_f1": raw - 0.1, "validation_ema_macro_f1": ema - 0.2,
              "final_inference_mode": mode, "validation_tta_accuracy": tta}
    scores = {"corrected": raw if weights == "raw" else ema}
    if mode is not None:
        scores["primary"] = primary
        result["inference_mode_scores"] = scores
        result["validation_primary_head"] = {"weights": weights, "accuracy": primary, "macro_f1": primary - 0.3}
    result["validation_selected_accuracy"] = scores.get(mode, scores["corrected"])
    return result


def _report(grefel: dict, plain: dict, seed=42, dataset="fer2013") -> dict:
    return {"dataset": dataset, "seed": seed, "commit": "abc1234", "protocol": {"mode": "concurrent"},
            "results": [grefel, plain]}


def test_the_selected_figures_follow_the_weights_and_the_inference_mode():
    primary = selected_figures(_result("grefel", raw=0.60, ema=0.62, weights="ema", mode="primary", primary=0.63))
    assert primary["accuracy"] == pytest.approx(0.63)
    assert primary["macro_f1"] == pytest.approx(0.33)  # p's own macro-F1, not q's
    corrected = selected_figures(_result("grefel", raw=0.60, ema=0.62, weights="ema", mode="corrected", primary=0.61))
    assert corrected["accuracy"] == pytest.approx(0.62)
    assert corrected["macro_f1"] == pytest.approx(0.42)  # the EMA weights' q
    plain = selected_figures(_result("plain", raw=0.65, ema=0.64, weights="raw"))
    assert (plain["accuracy"], plain["macro_f1"]) == (pytest.approx(0.65), pytest.approx(0.55))


def test_a_row_gives_grefels_gap_in_points_and_faces():
    row = pair_row(_report(_result("grefel", raw=0.60, ema=0.662, weights="ema", mode="corrected", primary=0.6,
                                   tta=0.67, steps=90),
                           _result("plain", raw=0.659, ema=0.65, weights="raw", tta=0.68)), "a.json")
    assert row["gap"]["accuracy"] == pytest.approx(0.003)
    assert row["gap_faces"] == 3
    assert row["gap"]["tta_accuracy"] == pytest.approx(-0.01)
    assert row["gap"]["macro_f1"] == pytest.approx(0.462 - 0.559)
    assert (row["grefel"]["steps"], row["plain"]["steps"], row["seed"]) == (90, 100, 42)


def test_the_summary_means_each_figure_and_counts_who_is_ahead():
    rows = [pair_row(_report(_result("grefel", raw=g, ema=0.0, weights="raw"),
                             _result("plain", raw=p, ema=0.0, weights="raw"), seed=seed), f"{seed}.json")
            for seed, g, p in ((1, 0.66, 0.65), (2, 0.64, 0.65), (3, 0.65, 0.65))]
    summary = summarise(rows)
    assert summary["mean"]["gap"]["accuracy"] == pytest.approx(0.0)
    assert summary["mean"]["grefel"]["accuracy"] == pytest.approx(0.65)
    assert (summary["grefel_ahead"], summary["level"], summary["grefel_behind"]) == (1, 1, 1)
    # gaps +0.01, -0.01, 0: sample standard deviation 0.01, standard error 0.01 / sqrt(3)
    assert summary["gap_spread"]["accuracy"]["stdev"] == pytest.approx(0.01)
    assert summary["gap_spread"]["accuracy"]["standard_error"] == pytest.approx(0.01 / 3**0.5)
    assert summarise(rows[:1])["gap_spread"] is None
    table = format_table(rows, summary)
    assert "| 1 | abc1234 | 66.00 / 50.00 / 56.00 | 65.00 / 50.00 / 55.00 | +1.00 (+10) / +0.00 / +1.00" in table
    assert table.splitlines()[-2].startswith("| mean of 3 |")
    # the gap's standard error (deviation) in points: accuracy 0.58 (1.00); TTA 0 (0); macro-F1 as accuracy
    assert table.splitlines()[-1] == ("| standard error (deviation) of the gap | | | | 0.58 (1.00) / 0.00 (0.00) / "
                                      "0.58 (1.00) | |")
    one = format_table(rows[:1], summarise(rows[:1]))
    assert one.splitlines()[-1].startswith("| mean of 1 |")


def test_reports_it_cannot_pair_are_refused_by_name():
    lone = {"dataset": "fer2013", "results": [_result("grefel", raw=0.6, ema=0.6, weights="raw")]}
    with pytest.raises(ValueError, match=r"lone\.json: expected one 'grefel' and one 'plain' result"):
        pair_row(lone, "lone.json")
    old = _report(_result("grefel", raw=0.6, ema=0.6, weights="raw"), _result("plain", raw=0.6, ema=0.6,
                                                                              weights="raw"))
    del old["results"][1]["validation_selected_accuracy"]
    with pytest.raises(ValueError, match=r"old\.json: the 'plain' result has no 'validation_selected_accuracy'"):
        pair_row(old, "old.json")
    rows = [pair_row(_report(_result("grefel", raw=0.6, ema=0.6, weights="raw"),
                             _result("plain", raw=0.6, ema=0.6, weights="raw"), dataset=name), name)
            for name in ("fer2013", "ferplus")]
    with pytest.raises(ValueError, match="different datasets"):
        summarise(rows)


def test_the_command_prints_the_table_and_writes_json(tmp_path):
    report = tmp_path / "pair.json"
    report.write_text(json.dumps(_report(_result("grefel", raw=0.66, ema=0.6, weights="raw"),
                                         _result("plain", raw=0.65, ema=0.6, weights="raw"))))
    output = tmp_path / "summary.json"
    done = subprocess.run([sys.executable, SCRIPT, str(report), "--output", str(output)], capture_output=True,
                          text=True, check=True)
    assert "GReFEL ahead in 1, level in 0, behind in 0 of 1 pairs" in done.stdout
    assert "standard error" not in done.stdout  # one pair has no spread
    second = tmp_path / "pair2.json"
    second.write_text(json.dumps(_report(_result("grefel", raw=0.64, ema=0.6, weights="raw"),
                                         _result("plain", raw=0.65, ema=0.6, weights="raw"), seed=1)))
    both = subprocess.run([sys.executable, SCRIPT, str(report), str(second)], capture_output=True, text=True,
                          check=True)
    assert "| standard error (deviation) of the gap | | | | 1.00 (1.41) / 0.00 (0.00) / 1.00 (1.41) | |" in both.stdout
    assert json.loads(output.read_text())["summary"]["mean"]["gap"]["accuracy"] == pytest.approx(0.01)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    failed = subprocess.run([sys.executable, SCRIPT, str(broken)], capture_output=True, text=True)
    assert failed.returncode == 2 and "cannot read the report" in failed.stderr and "broken.json" in failed.stderr
