"""Selective prediction in `grefel-hf evaluate` (issue 34): accuracy at each coverage, AURC and abstention thresholds
for rankings by top probability, reliability and their product, checked against a hand computation; the
risk-coverage PNG; and the command's numbers against an independent computation."""

import json

import numpy as np
import pytest
import torch
from inference_support import save_tiny_model
from PIL import Image

from grefel_hf import GReFELForImageClassification, GReFELImageProcessor
from grefel_hf.cli import main as cli_main
from grefel_hf.evaluation.runner import EvaluationOptions, write_outputs
from grefel_hf.metrics.classification import compute_classification_metrics
from grefel_hf.metrics.selective import accepted_count, risk_coverage_curve

# Five faces, three classes, every prediction class 0. Top probabilities 0.95 ... 0.55; right, wrong, right, right,
# wrong; reliability 0.25, 0.95, 0.85, 0.75, 0.15.
TOP = [0.95, 0.85, 0.75, 0.65, 0.55]
LABELS = [0, 1, 0, 0, 2]
RELIABILITY = [0.25, 0.95, 0.85, 0.75, 0.15]


def hand_metrics():
    probs = np.array([[p, (1 - p) / 2, (1 - p) / 2] for p in TOP])
    return compute_classification_metrics(LABELS, probs, reliability=RELIABILITY, label_names=["a", "b", "c"])


def markdown_rows(text, first_cell):
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell} |")]


def test_the_selective_metrics_match_a_hand_computation():
    selective = hand_metrics()["selective"]
    top, reliability, product = (selective["rankings"][n] for n in ("top_probability", "reliability", "product"))
    # By top probability: risks after 1..5 faces 0, 1/2, 1/3, 1/4, 2/5.
    assert top["aurc"] == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5)
    # By reliability the wrong face 1 comes first: 1, 1/2, 1/3, 1/4, 2/5; the product ranks the same way.
    assert reliability["aurc"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5) == product["aurc"]
    assert selective["optimal_aurc"] == pytest.approx((0 + 0 + 0 + 1 / 4 + 2 / 5) / 5)
    assert selective["best_ranking"] == "top_probability"
    # 90 % of 5 faces is ceil(4.5) = 5 faces, 80 % is 4, 50 % is ceil(2.5) = 3.
    assert top["accuracy_at"] == pytest.approx({"1.0": 0.6, "0.9": 0.6, "0.8": 0.75, "0.5": 2 / 3})
    assert top["threshold_at"] == pytest.approx({"1.0": 0.55, "0.9": 0.55, "0.8": 0.65, "0.5": 0.75})
    assert reliability["threshold_at"]["0.8"] == pytest.approx(0.25)
    assert top["at_threshold"]["0.6"] == pytest.approx({"coverage": 0.8, "accuracy": 0.75})
    assert reliability["at_threshold"]["0.9"] == pytest.approx({"coverage": 0.2, "accuracy": 0.0})
    assert selective["rankings"]["top_probability"]["curve"]["risk"][-1] == pytest.approx(0.4)


def test_a_coverage_accepts_ceil_of_its_share_and_ties_keep_their_order():
    assert [accepted_count(c, 10) for c in (1.0, 0.9, 0.8, 0.5, 0.01)] == [10, 9, 8, 5, 1]
    coverage, risk, ranked = risk_coverage_curve(np.array([False, True]), np.array([0.5, 0.5]))
    assert risk.tolist() == [1.0, 0.5] and coverage.tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="coverage must be in"):
        accepted_count(0.0, 10)


def test_evaluate_writes_the_risk_coverage_png_and_tables_of_the_hand_computation(tmp_path):
    options = EvaluationOptions(model_dir=str(tmp_path), dataset="hand", split="validation",
                                output_dir=str(tmp_path / "eval"))
    files = write_outputs({"model": hand_metrics()}, options)
    with Image.open(files["risk_coverage"]) as image:
        image.verify()
    assert files["risk_coverage"].name == "risk_coverage.png" and files["risk_coverage"].stat().st_size > 5_000
    text = (tmp_path / "eval" / "report.md").read_text()
    assert "## Selective prediction" in text and "## Abstention thresholds" in text
    assert markdown_rows(text, "top probability (best)") == [["top probability (best)", "60.00", "60.00", "75.00",
                                                              "66.67", "29.67"]]
    assert markdown_rows(text, "reliability") == [["reliability", "60.00", "60.00", "75.00", "66.67", "49.67"]]
    assert markdown_rows(text, "top probability × reliability")[0][-1] == "49.67"
    assert markdown_rows(text, "ideal ranking") == [["ideal ranking", "–", "–", "–", "–", "13.00"]]
    # threshold: --min_score answered, accuracy; --min_reliability answered, accuracy
    assert markdown_rows(text, "0.6") == [["0.6", "80.00", "75.00", "60.00", "66.67"]]
    assert markdown_rows(text, "0.9") == [["0.9", "20.00", "100.00", "20.00", "0.00"]]
    tex = (tmp_path / "eval" / "report.tex").read_text()
    assert "selective prediction" in tex and r"top probability (best) & 60.00 & 60.00 & 75.00 & 66.67 & 29.67 \\" in tex


def _independent_aurc(correct, scores):
    """AURC by a plain loop: accept the most confident faces one by one (ties in input order)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    errors, risks = 0, []
    for k, i in enumerate(order, start=1):
        errors += not correct[i]
        risks.append(errors / k)
    return sum(risks) / len(risks)


@pytest.mark.slow
def test_the_evaluate_command_ranks_the_models_own_answers(tmp_path):
    from dataset_scripts import load_expression_dataset

    folder = save_tiny_model(tmp_path / "model")
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--model_dir", str(folder), "--dataset", "synthetic", "--split", "validation",
                     "--output_dir", str(out), "--max_samples", "24", "--no_progress"]) == 0
    assert (out / "risk_coverage.png").is_file()
    selective = json.loads((out / "metrics.json").read_text())["selective"]
    model = GReFELForImageClassification.from_pretrained(folder).eval()
    processor = GReFELImageProcessor.from_pretrained(folder)
    split = load_expression_dataset("synthetic")["validation"].select(range(24))
    correct, top, reliability = [], [], []
    with torch.no_grad():
        for example in split:
            output = model(**processor(example["image"], return_tensors="pt"))
            probs = output.logits.exp()[0]
            correct.append(int(probs.argmax()) == example["label"])
            top.append(float(probs.max()))
            reliability.append(float(output.reliability[0]))
    expected = {"top_probability": top, "reliability": reliability,
                "product": [t * r for t, r in zip(top, reliability, strict=True)]}
    for name, scores in expected.items():
        assert selective["rankings"][name]["aurc"] == pytest.approx(_independent_aurc(correct, scores), abs=1e-6)
