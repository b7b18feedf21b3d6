"""`grefel-hf evaluate` on a small trained model: files written, numbers checked independently, bad input."""

import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from grefel_hf import FER2013_EMOTIONS, GReFELForImageClassification, GReFELImageProcessor
from grefel_hf.cli import main as cli_main
from grefel_hf.evaluation.runner import EvaluationOptions, model_variants, run_evaluation
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import run_training
from grefel_hf.tta_grefel import predict_probabilities, tta_views

EVAL_IMAGES = 40


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A tiny GReFEL trained for a few steps on the generated set, with EMA (so raw and EMA weights exist)."""
    out = tmp_path_factory.mktemp("trained")
    run_training(
        ModelArguments(backbone="test_resnet", image_size=32, embed_dim=32, anchors_per_class=2,
                       num_attention_heads=4, primary_hidden_sizes="[32]"),
        DataArguments(max_train_samples=48, max_eval_samples=32),
        GReFELTrainingArguments(output_dir=str(out), max_steps=3, per_device_train_batch_size=16, use_cpu=True,
                                eval_strategy="no", save_strategy="no", disable_tqdm=True, logging_steps=1),
    )
    return out


def _independent_predictions(folder, split_name="test", count=EVAL_IMAGES):
    """Predictions computed without the evaluation runner: processor + model, one image at a time."""
    from dataset_scripts import load_expression_dataset

    model = GReFELForImageClassification.from_pretrained(folder).eval()
    processor = GReFELImageProcessor.from_pretrained(folder)
    split = load_expression_dataset("synthetic")[split_name].select(range(count))
    labels, predictions = [], []
    with torch.no_grad():
        for example in split:
            logits = model(**processor(example["image"], return_tensors="pt")).logits
            predictions.append(int(logits.argmax(-1)))
            labels.append(int(example["label"]))
    return np.array(labels), np.array(predictions)


def test_evaluate_writes_every_file_with_independently_checked_numbers(trained_dir, tmp_path):
    out = tmp_path / "eval"
    code = cli_main(["evaluate", "--model_dir", str(trained_dir), "--dataset", "synthetic", "--split", "test",
                     "--output_dir", str(out), "--max_samples", str(EVAL_IMAGES), "--no_progress",
                     "--batch_size", "16"])
    assert code == 0
    for name in ("metrics.json", "confusion_matrix.png", "reliability_diagram.png", "training_curves.png",
                 "report.md", "report.tex"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    selected = json.loads((trained_dir / "weights_selection.json").read_text())["selected"]
    other = "raw" if selected == "ema" else "ema"
    assert set(metrics) == {selected, other}  # both weights, side by side
    for variant, folder in ((selected, trained_dir), (other, trained_dir / other)):
        labels, predictions = _independent_predictions(folder)
        m = metrics[variant]
        assert m["num_images"] == EVAL_IMAGES
        assert m["accuracy"] == pytest.approx(float((labels == predictions).mean()))
        expected_cm = np.zeros((7, 7), dtype=int)
        for t, p in zip(labels, predictions, strict=True):
            expected_cm[t, p] += 1
        assert np.array_equal(np.array(m["confusion_matrix"]), expected_cm)
        assert 0.0 <= m["ece"] <= 1.0 and m["labels"] == list(FER2013_EMOTIONS)
        for name in FER2013_EMOTIONS:
            idx = FER2013_EMOTIONS.index(name)
            support = int((labels == idx).sum())
            assert m["per_class"][name]["support"] == support
    for png in ("confusion_matrix.png", "reliability_diagram.png", "training_curves.png"):
        with Image.open(out / png) as image:
            image.verify()
        with Image.open(out / png) as image:
            width, height = image.size
        assert 300 <= width <= 4000 and 200 <= height <= 4000, (png, image.size)
        assert 5_000 < (out / png).stat().st_size < 2_000_000
    report = (out / "report.md").read_text()
    assert f"{metrics[selected]['accuracy'] * 100:.2f}" in report or f"{metrics[selected]['accuracy']:.4f}" in report
    assert "\\begin{tabular}" in (out / "report.tex").read_text()


def test_tta_views_and_tta_evaluation(trained_dir, tmp_path):
    x = torch.arange(2 * 3 * 20 * 20, dtype=torch.float32).view(2, 3, 20, 20)
    views = tta_views(x, 6, shift=0.1)
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[1], x.flip(-1))
    assert torch.equal(views[2][..., :, :-2], x[..., :, 2:])  # shift_left: the content moves 2 px left
    assert torch.equal(views[3][..., :, 2:], x[..., :, :-2])  # shift_right
    assert torch.equal(views[4][..., :-2, :], x[..., 2:, :])  # shift_up
    with pytest.raises(ValueError, match=r"TTA shift must be .* in \(0, 0.25\], got 5"):
        tta_views(x, 6, shift=5)
    with pytest.raises(ValueError, match=r"number of TTA views must be in 1..6, got 7"):
        tta_views(x, 7)
    results = run_evaluation(EvaluationOptions(model_dir=str(trained_dir), dataset="synthetic", split="validation",
                                               output_dir=str(tmp_path / "tta"), tta_views=6, max_samples=16,
                                               progress=False))
    assert all(len(r["tta_views"]) == 6 and r["num_images"] == 16 for r in results.values())


def test_tta_with_identity_views_equals_plain_prediction_and_flips_average(trained_dir):
    model = GReFELForImageClassification.from_pretrained(trained_dir).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(pixel_values=x)
        probs, reliability = predict_probabilities(model, x, ["identity"])
        torch.testing.assert_close(probs, plain.logits.exp())
        torch.testing.assert_close(reliability, plain.reliability)
        flipped, _ = predict_probabilities(model, x, ["identity", "hflip"])
        mean = (plain.logits.exp() + model(pixel_values=x.flip(-1)).logits.exp()) / 2
    torch.testing.assert_close(flipped, mean)


def test_model_variants_reads_the_selection(trained_dir):
    variants = model_variants(str(trained_dir))
    selected = json.loads((trained_dir / "weights_selection.json").read_text())["selected"]
    assert list(variants)[0] == selected and len(variants) == 2


def _save_dataset(path, label_names, splits):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=label_names)})
    face = Image.fromarray(np.full((48, 48), 100, np.uint8), "L")
    dataset_dict = datasets.DatasetDict({
        name: datasets.Dataset.from_dict({"image": [face] * size, "label": [0] * size}, features=features)
        for name, size in splits.items()
    })
    dataset_dict.save_to_disk(str(path))
    return str(path)


def test_bad_inputs_give_clear_errors(trained_dir, tmp_path, caplog):
    def run(**kwargs):
        options = dict(model_dir=str(trained_dir), dataset="synthetic", output_dir=str(tmp_path / "x"),
                       progress=False)
        return run_evaluation(EvaluationOptions(**{**options, **kwargs}))

    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(model_dir=str(tmp_path / "no_such_model"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        run(model_dir=str(tmp_path))
    with pytest.raises(ValueError, match="has no 'dev' split"):
        run(split="dev")
    empty = _save_dataset(tmp_path / "empty", list(FER2013_EMOTIONS), {"train": 1, "test": 0})
    with pytest.raises(ValueError, match="split of .* is empty"):
        run(dataset=empty)
    ferplus_names = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    other_labels = _save_dataset(tmp_path / "ferplus_like", ferplus_names, {"test": 2})
    with pytest.raises(ValueError, match="do not match the model's labels"):
        run(dataset=other_labels)
    # the command reports the same problems as a message and an exit code, without a traceback
    code = cli_main(["evaluate", "--model_dir", str(tmp_path / "missing"), "--dataset", "synthetic",
                     "--output_dir", str(tmp_path / "y"), "--no_progress"])
    assert code == 2 and "does not exist" in caplog.text
