"""Make a trained model folder the model that ships with the package (maintainers' tool; see grefel_hf/bundling.py).

    python tools/bundle_model.py --trained_dir outputs/grefel-ferplus --name grefel-ferplus \\
        --dataset ferplus --data_dir /data/FERPlus/data --recipe recipes/grefel_ferplus_bundled.yaml \\
        --command "accelerate launch train_hf.py recipes/grefel_ferplus_bundled.yaml" --seed 42 --commit abc1234 \\
        --dataset_description "FER+ (FER2013Train, majority labels)" --licences_file docs/ferplus_licences.md

It saves the selected weights in float16 into grefel_hf/pretrained/<name>/, fits their calibration on the validation
split (`grefel-hf calibrate`'s code: config, calibration.json, model.onnx), evaluates exactly those weights there with
the evaluation CLI's code, and writes validation_metrics.json, provenance.json and the card.

An existing bundle whose calibration is fitted again keeps its weights and provenance:

    python tools/bundle_model.py --recalibrate grefel-ferplus --data_dir /data/FERPlus/data

With `--method prior_adjustment` (see `grefel-hf calibrate --help`) the fit also adjusts for the class priors of the
training split; pass the label mode the bundle trained with (FER+: `--label_mode crossentropy`), whose priors it
learnt.
"""

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from transformers import AutoImageProcessor, AutoModelForImageClassification

import grefel_hf  # noqa: F401  (registers the Auto classes)
from grefel_hf.bundling import (
    Provenance,
    finish_bundle,
    read_provenance,
    refresh_bundle,
    write_bundle_weights,
)
from grefel_hf.calibration.fitting import METHODS, CalibrationRecord
from grefel_hf.calibration.folder import CalibrationOptions, calibrate_folder
from grefel_hf.evaluation.runner import EvaluationOptions, run_evaluation
from grefel_hf.pretrained import pretrained_model_path

REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_recalibration(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fit a bundled model's calibration again and rewrite its metrics "
                                                 "and card (weights and provenance unchanged).")
    parser.add_argument("--recalibrate", required=True, metavar="NAME", help="the bundled model's name")
    parser.add_argument("--data_dir", required=True, help="its dataset's raw files (the validation split)")
    parser.add_argument("--method", default="temperature", choices=METHODS, help="the calibration method (default: "
                        "temperature; prior_adjustment also reads the training split's class priors)")
    parser.add_argument("--label_mode", default=None,
                        help="FER+ label mode of the training split the priors come from (the bundle's own)")
    return parser.parse_args(argv)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trained_dir", required=True, help="train_hf.py's output folder (its selected weights)")
    parser.add_argument("--name", required=True, help="the bundle's folder name under grefel_hf/pretrained/")
    parser.add_argument("--dataset", required=True, help="the training dataset's builder name (ferplus, fer2013)")
    parser.add_argument("--data_dir", required=True, help="its raw files, for the validation evaluation")
    parser.add_argument("--dataset_description", required=True, help="the training data in words, for the card")
    parser.add_argument("--evaluation_description", required=True, help="the validation data in words")
    parser.add_argument("--recipe", required=True, help="the recipe file that reproduces the run")
    parser.add_argument("--command", required=True, help="the exact training command")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--commit", required=True, help="the commit the run trained at")
    parser.add_argument("--backbone_weights", default=None, help="the pretrained weights the backbone started from")
    parser.add_argument("--licences_file", required=True, help="Markdown: the training data's licences")
    parser.add_argument("--notes_file", default=None, help="Markdown for the card: what was tried, how it was chosen")
    parser.add_argument("--output_dir", default=None, help="default: grefel_hf/pretrained/<name>")
    return parser.parse_args()


def shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it (no local paths in the bundle)."""
    return str(path.resolve().relative_to(REPO_ROOT)) if path.resolve().is_relative_to(REPO_ROOT) else str(path)


def calibrate_and_evaluate(folder: Path, dataset: str, data_dir: str, method: str = "temperature",
                           label_mode: str | None = None) -> tuple[CalibrationRecord, dict]:
    """Fit the bundle's calibration on the validation split, then its validation metrics (calibrated)."""
    record = calibrate_folder(CalibrationOptions(model_dir=str(folder), dataset=dataset, data_dir=data_dir,
                                                 method=method, label_mode=label_mode, progress=False))
    with tempfile.TemporaryDirectory() as scratch:
        results = run_evaluation(EvaluationOptions(model_dir=str(folder), dataset=dataset, data_dir=data_dir,
                                                   split="validation", output_dir=scratch, progress=False))
    (metrics,) = results.values()
    return record, {**metrics, "model_dir": shown(folder)}  # no local paths in the bundle


def recalibrate(args: argparse.Namespace) -> int:
    """Fit an existing bundle's calibration again; its weights, checksum and provenance stay."""
    folder = Path(pretrained_model_path(args.recalibrate))
    before = json.loads((folder / "validation_metrics.json").read_text())
    record, metrics = calibrate_and_evaluate(folder, read_provenance(folder).dataset_id, args.data_dir, args.method,
                                             args.label_mode)
    checksum = refresh_bundle(folder, metrics)
    same = metrics["confusion_matrix"] == before["confusion_matrix"]
    balanced = "" if "balanced_accuracy" not in before else (
        f", balanced accuracy {before['balanced_accuracy']:.4f} -> {metrics['balanced_accuracy']:.4f}")
    print(f"recalibrated {args.recalibrate}: {record.describe()}; validation ECE {before['ece']:.4f} -> "
          f"{metrics['ece']:.4f}, accuracy {before['accuracy']:.4f} -> {metrics['accuracy']:.4f}{balanced}, "
          "confusion matrix "
          f"{'unchanged' if same else 'CHANGED'}; weights sha256 {checksum}")
    return 0 if same or record.method != "temperature" else 1


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if "--recalibrate" in sys.argv[1:]:
        return recalibrate(parse_recalibration(sys.argv[1:]))
    args = parse_arguments()
    output = Path(args.output_dir or REPO_ROOT / "grefel_hf" / "pretrained" / args.name)
    model = AutoModelForImageClassification.from_pretrained(args.trained_dir).eval()
    processor = AutoImageProcessor.from_pretrained(args.trained_dir)
    write_bundle_weights(model, processor, output)
    evaluation_command = (f"grefel-hf evaluate --model_dir {shown(output)} --dataset {args.dataset} "
                          f"--data_dir DATA_DIR --split validation --output_dir EVAL_DIR")
    _, metrics = calibrate_and_evaluate(output, args.dataset, args.data_dir)
    provenance = Provenance(
        name=args.name, recipe=args.recipe, command=args.command, seed=args.seed, commit=args.commit,
        dataset=args.dataset_description, dataset_id=args.dataset, evaluation_dataset=args.evaluation_description,
        evaluation_command=evaluation_command,
        backbone_weights=args.backbone_weights, licences=Path(args.licences_file).read_text().strip(),
        notes=Path(args.notes_file).read_text().strip() if args.notes_file else "",
    )
    checksum = finish_bundle(output, metrics, provenance)
    print(f"bundled {args.name} into {output}: validation accuracy {metrics['accuracy']:.4f}, sha256 {checksum}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
