"""Tests for grefel_hf.evaluation.report: Markdown and LaTeX tables show the metrics' numbers."""

import numpy as np
import pytest

from grefel_hf.evaluation.report import latex_escape, write_latex_report, write_markdown_report
from grefel_hf.metrics.classification import compute_classification_metrics, hard_label_metrics

NAMES = ["angry", "happy_face", "sad"]
REFS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def probs_for(preds, confidence=0.8):
    probs = np.full((len(preds), 3), (1 - confidence) / 2)
    probs[np.arange(len(preds)), preds] = confidence
    return probs


@pytest.fixture
def raw():
    return compute_classification_metrics(REFS, probs_for([0, 0, 1, 2, 1, 1, 0, 2, 2, 1]), label_names=NAMES)


@pytest.fixture
def ema():
    return compute_classification_metrics(REFS, probs_for([0, 0, 0, 2, 1, 1, 1, 2, 2, 1]), label_names=NAMES)


def table_rows(text, first_cell):
    """Cells of the Markdown rows that start with ``first_cell``."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell} |")]


def test_markdown_single(tmp_path, raw):
    text = write_markdown_report(raw, tmp_path / "r.md", title="FER test").read_text()
    assert text.startswith("# FER test")
    assert table_rows(text, "Accuracy (%)") == [["Accuracy (%)", f"{100 * raw['accuracy']:.2f}"]]
    assert table_rows(text, "Macro-F1 (%)")[0][1] == f"{100 * raw['macro_f1']:.2f}"
    assert table_rows(text, "ECE (%)")[0][1] == f"{100 * raw['ece']:.2f}"
    # Per-class row: support, precision, accuracy (= recall), F1; then the confusion-matrix row.
    happy = raw["per_class"]["happy_face"]
    rows = table_rows(text, "happy_face")
    assert rows[0] == ["happy_face", "3", f"{100 * happy['precision']:.2f}", f"{100 * happy['accuracy']:.2f}",
                       f"{100 * happy['f1']:.2f}"]
    assert rows[1] == ["happy_face"] + [str(c) for c in raw["confusion_matrix"][1]]
    # Reliability was not given: no row rather than a made-up number.
    assert table_rows(text, "Mean reliability, correct") == []


def test_markdown_variants_side_by_side(tmp_path, raw, ema):
    raw = compute_classification_metrics(REFS, probs_for([0, 0, 1, 2, 1, 1, 0, 2, 2, 1]), label_names=NAMES,
                                         reliability=[0.5] * 5 + [0.3] * 5)
    text = write_markdown_report({"raw": raw, "ema": ema}, tmp_path / "r.md").read_text()
    # Only "raw" has reliability scores: "ema" shows a dash there.
    assert table_rows(text, "Mean reliability, correct")[0] == [
        "Mean reliability, correct", f"{raw['mean_reliability_correct']:.3f}", "–"]
    assert "| Metric | raw | ema |" in text
    assert table_rows(text, "Accuracy (%)")[0] == ["Accuracy (%)", f"{100 * raw['accuracy']:.2f}",
                                                   f"{100 * ema['accuracy']:.2f}"]
    assert "## Confusion matrix (raw)" in text and "## Confusion matrix (ema)" in text
    # One shared support column, then three columns per variant.
    assert len(table_rows(text, "sad")[0]) == 2 + 3 + 3


def test_hard_label_metrics_report_has_no_ece_row(tmp_path):
    text = write_markdown_report(hard_label_metrics(REFS, [0] * 10, NAMES), tmp_path / "r.md").read_text()
    assert table_rows(text, "ECE (%)") == []
    assert table_rows(text, "Images")[0][1] == "10"


def test_latex_report(tmp_path, raw, ema):
    text = write_latex_report({"raw": raw, "ema": ema}, tmp_path / "r.tex", caption="GReFEL on FER_2013 (50% val)").read_text()
    # overall, per class, two confusion matrices, selective prediction and its thresholds
    assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 6
    assert text.count(r"\toprule") == 6 and text.count(r"\bottomrule") == 6
    assert r"\caption{GReFEL on FER\_2013 (50\% val): overall.}" in text
    assert r"\label{tab:grefel-confusion-ema}" in text
    assert rf"Accuracy (\%) & {100 * raw['accuracy']:.2f} & {100 * ema['accuracy']:.2f} \\" in text
    assert r"happy\_face" in text and "happy_face" not in text.replace(r"happy\_face", "")
    # Every table row has as many cells as the tabular spec has columns.
    for block in text.split(r"\begin{tabular}{")[1:]:
        spec, body = block.split("}", 1)
        rows = [line for line in body.split(r"\end{tabular}")[0].splitlines() if line.endswith(r"\\")]
        assert rows and all(line.count(" & ") == len(spec) - 1 for line in rows)


def test_latex_escape():
    assert latex_escape("a_b & 5% #1 $x$ {y} ~^\\") == (
        r"a\_b \& 5\% \#1 \$x\$ \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}")


def test_variants_with_different_labels_are_rejected(tmp_path, raw):
    other = hard_label_metrics([0, 1], [0, 1], ["x", "y"])
    with pytest.raises(ValueError, match="different class names"):
        write_markdown_report({"a": raw, "b": other}, tmp_path / "r.md")
