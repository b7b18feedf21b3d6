"""Soft training targets from an ensemble of trained models, for distilling it into one model of today's size
(issue 36: "an ensemble ... distilled into one model").

Each teacher (a saved model folder, its calibration set aside so that no class-prior shift or temperature is
taught) predicts every training image once, unaugmented; the teachers' probabilities are averaged. A teacher trained
on another label set of the same emotions (the FER+ model for FER2013) is mapped class by class by emotion, its
classes the dataset lacks dropped. The target of each training image is then

    soft_label = hard_weight * one_hot(its label) + (1 - hard_weight) * the ensemble's probabilities,

saved as a `soft_label` column beside the images and labels of a copy of the dataset folder. Training on it is the
usual command with `--use_soft_labels true --dataset OUTPUT_DIR`. The script also scores every teacher and their
ensemble on the validation split (accuracy, balanced accuracy, macro-F1, ECE, per-class recall) and writes them to
the JSON, so the teacher's figure is known before any student trains. Nothing reads a test split.

    python benchmarks/distill_targets.py --teachers MODEL_A MODEL_B --dataset_dir FER2013_FOLDER \\
        --output_dir /tmp/fer2013-distill --output benchmarks/results/distillation/fer2013_teachers.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import datasets
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the package, and selective_prediction's commit()
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from selective_prediction import commit  # noqa: E402

VALIDATION_SPLIT = "validation"


def teacher_probabilities(folder: str, splits: dict[str, datasets.Dataset], batch_size: int) -> dict[str, np.ndarray]:
    """(split name -> (N, C) probabilities in the dataset's class order) of one teacher, uncalibrated, one view per
    image. A teacher with other class names is mapped by emotion (`angry` = `anger`); its classes the dataset lacks
    (FER+'s contempt for FER2013) are dropped and the rest renormalised.

    Raises:
        ValueError: a dataset class has no teacher class of the same emotion.
    """
    from grefel_hf.calibration.folder import set_identity_calibration
    from grefel_hf.data.labels import label_names_of
    from grefel_hf.evaluation.runner import EvaluationOptions, evaluation_loader, load_variant, predict
    from grefel_hf.training.calibration import stores_calibration
    from grefel_hf.training.class_transfer import match_classes

    model, processor = load_variant(folder)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    dataset_names = label_names_of(next(iter(splits.values())))
    rows = match_classes(names, dataset_names)
    if None in rows:
        missing = [name for name, row in zip(dataset_names, rows, strict=True) if row is None]
        raise ValueError(f"teacher {folder} has classes {names}, with none for the dataset's {missing}: every "
                         "dataset class needs a teacher class of the same emotion")
    if stores_calibration(model):
        set_identity_calibration(model.config)
    options = EvaluationOptions(model_dir=folder, dataset="folder", output_dir="unused", batch_size=batch_size,
                                progress=False)
    result = {}
    for split, dataset in splits.items():
        probs = predict(model, evaluation_loader(dataset, processor, options), progress=False)[1][:, rows]
        result[split] = probs / probs.sum(axis=1, keepdims=True)
    return result


def soft_targets(labels: np.ndarray, ensemble: np.ndarray, hard_weight: float) -> np.ndarray:
    """hard_weight * one_hot(labels) + (1 - hard_weight) * ensemble, row-normalised (float32)."""
    targets = (1.0 - hard_weight) * np.asarray(ensemble, dtype=np.float64)
    targets[np.arange(len(labels)), labels] += hard_weight
    return (targets / targets.sum(axis=1, keepdims=True)).astype(np.float32)


def scores(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> dict:
    """The figures the issue asks for, from the package's metrics."""
    from grefel_hf.metrics.classification import compute_classification_metrics

    metrics = compute_classification_metrics(labels, probs, label_names=names)
    keep = ("accuracy", "balanced_accuracy", "macro_f1", "ece")
    result = {key: metrics[key] for key in keep}
    result["recall"] = {name: metrics["per_class"][name]["recall"] for name in names}
    return result


def add_target_options(parser: argparse.ArgumentParser, default_hard_weight: float, output_help: str) -> None:
    """The options every soft-target helper shares: --output_dir, --output and --hard_weight."""
    parser.add_argument("--output_dir", required=True, help="where the copy with the soft_label column goes (new)")
    parser.add_argument("--output", required=True, help=output_help)
    parser.add_argument("--hard_weight", type=float, default=default_hard_weight,
                        help=f"share of the one-hot label in each target, in [0, 1] (default {default_hard_weight})")


def parse_target_options(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, refusing a --hard_weight outside [0, 1] and an --output_dir that exists (exit status 2)."""
    args = parser.parse_args(argv)
    if not 0.0 <= args.hard_weight <= 1.0:
        parser.error(f"--hard_weight must be in [0, 1], got {args.hard_weight}")
    if Path(args.output_dir).exists():
        parser.error(f"--output_dir {args.output_dir} exists; give a new folder")
    return args


def load_train_and_validation(dataset_dir: str, train_columns: tuple[str, ...] = ()) -> datasets.DatasetDict:
    """The saved DatasetDict's train and validation splits; one line on stderr and exit status 2 when a split, or
    one of `train_columns` in the train split, is missing."""
    data = datasets.load_from_disk(dataset_dir)
    missing = [split for split in ("train", VALIDATION_SPLIT) if split not in data]
    if missing:
        print(f"--dataset_dir {dataset_dir} has no {' or '.join(missing)} split (it has {sorted(data)}): a "
              "DatasetDict with train and validation is expected", file=sys.stderr)
        raise SystemExit(2)
    absent = [column for column in train_columns if column not in data["train"].column_names]
    if absent:
        print(f"--dataset_dir {dataset_dir}: its train split has no {' or '.join(absent)} column (it has "
              f"{data['train'].column_names})", file=sys.stderr)
        raise SystemExit(2)
    return datasets.DatasetDict({"train": data["train"], VALIDATION_SPLIT: data[VALIDATION_SPLIT]})


def save_with_targets(splits: datasets.DatasetDict, targets: np.ndarray, output_dir: str) -> None:
    """Save a copy of `splits` whose train split has `targets` as a float32 `soft_label` column."""
    train = splits["train"].add_column("soft_label", [row.tolist() for row in targets])
    train = train.cast_column("soft_label", datasets.Sequence(datasets.Value("float32")))
    datasets.DatasetDict({"train": train, VALIDATION_SPLIT: splits[VALIDATION_SPLIT]}).save_to_disk(output_dir)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teachers", nargs="+", required=True,
                        help="saved model folders with a class for each of the dataset's emotions")
    parser.add_argument("--dataset_dir", required=True, help="a saved DatasetDict folder with train and validation")
    add_target_options(parser, 0.5, "the JSON with the teachers' and the ensemble's scores")
    parser.add_argument("--batch_size", type=int, default=128, help="images per prediction batch")
    return parse_target_options(parser, argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(name)s - %(message)s")
    from grefel_hf.data.labels import label_names_of

    splits = load_train_and_validation(args.dataset_dir)
    names = label_names_of(splits["train"])
    labels = {split: np.asarray(dataset["label"]) for split, dataset in splits.items()}
    teachers = {folder: teacher_probabilities(folder, splits, args.batch_size) for folder in args.teachers}
    ensemble = {split: np.mean([probs[split] for probs in teachers.values()], axis=0) for split in splits}
    report = {
        "study": "issue 36: distilling an ensemble into one model; the teachers and their ensemble on the validation "
                 "split (uncalibrated, one view)",
        "commit": commit(), "dataset_dir": args.dataset_dir, "hard_weight": args.hard_weight,
        "teachers": {folder: scores(labels[VALIDATION_SPLIT], probs[VALIDATION_SPLIT], names)
                     for folder, probs in teachers.items()},
        "ensemble": scores(labels[VALIDATION_SPLIT], ensemble[VALIDATION_SPLIT], names),
        "train_agreement_with_labels": float((ensemble["train"].argmax(1) == labels["train"]).mean()),
    }
    targets = soft_targets(labels["train"], ensemble["train"], args.hard_weight)
    save_with_targets(splits, targets, args.output_dir)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    ens = report["ensemble"]
    print(f"ensemble of {len(teachers)} on validation: accuracy {ens['accuracy']:.2%}, balanced accuracy "
          f"{ens['balanced_accuracy']:.2%}; targets saved to {args.output_dir}")
    return report


if __name__ == "__main__":
    main()
