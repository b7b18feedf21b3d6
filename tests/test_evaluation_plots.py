"""Tests for grefel_hf.evaluation.plots: every figure is a valid, reasonably sized PNG."""

import json

import numpy as np
import pytest
from PIL import Image

from grefel_hf.evaluation.plots import plot_confusion_matrix, plot_reliability_diagram, plot_training_curves
from grefel_hf.metrics.classification import compute_classification_metrics

NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def assert_png(path, min_side=300, max_side=2500):
    """The file is a PNG that PIL can fully decode, with sensible pixel size and file size."""
    assert path.is_file()
    assert 2_000 < path.stat().st_size < 600_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        assert min_side <= image.width <= max_side
        assert min_side <= image.height <= max_side
        # A blank canvas would mean nothing was drawn.
        assert len(image.convert("L").getcolors(maxcolors=1_000_000)) > 2


@pytest.fixture(scope="module")
def metrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(NAMES), 500)
    logits = rng.normal(size=(500, len(NAMES)))
    logits[np.arange(500), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return compute_classification_metrics(labels, probs, label_names=NAMES)


def test_confusion_matrix_png(tmp_path, metrics):
    path = plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], tmp_path / "sub" / "cm.png")
    assert path == tmp_path / "sub" / "cm.png"
    assert_png(path)
    with Image.open(path) as image:
        assert image.width > image.height  # two panels side by side


def test_confusion_matrix_with_empty_class_and_bad_shape(tmp_path):
    cm = [[3, 1, 0], [0, 0, 0], [1, 0, 2]]
    assert_png(plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png"))
    with pytest.raises(ValueError, match="shape"):
        plot_confusion_matrix(cm, ["a", "b"], tmp_path / "bad.png")


def test_reliability_diagram_png(tmp_path, metrics):
    assert_png(plot_reliability_diagram(metrics["calibration"], tmp_path / "rel.png"))
    with pytest.raises(ValueError, match="bin_count"):
        plot_reliability_diagram({"bin_edges": [0, 1], "bin_accuracy": [1], "bin_confidence": [1]},
                                 tmp_path / "bad.png")


def test_training_curves_png_with_and_without_keys(tmp_path):
    history = [{"loss": 2.0 - 0.01 * i, "learning_rate": 1e-4, "epoch": i / 50, "step": 10 * i} for i in range(50)]
    history += [{"eval_loss": 1.5 - 0.1 * i, "eval_accuracy": 0.4 + 0.05 * i, "eval_ema_accuracy": 0.42 + 0.05 * i,
                 "epoch": i + 1, "step": 100 * (i + 1)} for i in range(5)]
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"global_step": 500, "log_history": history}))
    assert_png(plot_training_curves(state, tmp_path / "curves.png"))

    # Training loss only: no eval keys at all must still give a figure.
    state.write_text(json.dumps({"log_history": history[:50]}))
    assert_png(plot_training_curves(state, tmp_path / "train_only.png"))
    state.write_text(json.dumps({"log_history": []}))
    assert_png(plot_training_curves(state, tmp_path / "empty.png"))


def test_training_curves_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        plot_training_curves(tmp_path / "missing.json", tmp_path / "x.png")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"global_step": 3}))
    with pytest.raises(ValueError, match="log_history"):
        plot_training_curves(bad, tmp_path / "x.png")
