"""Weight averaging ("uniform soup") of GReFEL runs that share one starting point, scored on a validation split
(issue 36: a cheap lever on the bundled FER2013 model).

Fine-tuning runs started from the same weights (here: the 20-epoch FER2013 run, then its plain, square-root
class-balanced and fully balanced continuations) usually stay in one basin of the loss, so the average of their
weights is itself a model of the same size and speed, often better than each. This script averages the
floating-point tensors of `model.safetensors` of the given run folders (a folder given twice counts twice; integer
buffers such as BatchNorm's step counter are taken from the first), saves the soup as a GReFEL folder (the first
folder's config, with its calibration set to the identity), and scores it on the validation split with the package's
evaluation runner: accuracy, balanced accuracy (mean per-class recall), macro-F1, ECE and per-class recall.

    python benchmarks/weight_soup.py --runs RUN_20EP RUN_SQRT RUN_SQRT RUN_FULL --dataset fer2013 --data_dir DATA_DIR \\
        --soup_dir /tmp/soup --output benchmarks/results/weight_soup/fer2013_init_sqrt2_full.json

Only validation splits (FER2013 PublicTest, FER+ Valid) are accepted; a soup is chosen on them alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the package, and selective_prediction's commit()
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from selective_prediction import commit  # noqa: E402

logger = logging.getLogger("weight_soup")


def average_weights(run_dirs: list[Path]) -> dict[str, torch.Tensor]:
    """The uniform average of the runs' floating-point tensors (computed in float64, stored in each tensor's dtype).

    Raises:
        ValueError: a folder has no model.safetensors, or the folders' tensors differ in names or shapes.
    """
    states = []
    for folder in run_dirs:
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ValueError(f"{weights} does not exist: every --runs folder must be a saved GReFEL model")
        states.append(load_file(weights))
    first = states[0]
    for folder, state in zip(run_dirs[1:], states[1:], strict=True):
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise ValueError(f"{folder}/model.safetensors does not match {run_dirs[0]}: a soup needs one architecture")
    soup = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            soup[key] = (sum(state[key].double() for state in states) / len(states)).to(tensor.dtype)
        else:
            soup[key] = tensor
    return soup


def save_soup(run_dirs: list[Path], soup_dir: Path) -> None:
    """Write the soup as a model folder: averaged weights, the first run's configs, identity calibration."""
    from transformers import AutoConfig

    import grefel_hf  # noqa: F401  (registers GReFEL with the Auto classes)
    from grefel_hf.calibration.folder import set_identity_calibration

    soup_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dirs[0] / "preprocessor_config.json", soup_dir / "preprocessor_config.json")
    config = AutoConfig.from_pretrained(run_dirs[0])
    set_identity_calibration(config)
    config.save_pretrained(soup_dir)
    save_file(average_weights(run_dirs), soup_dir / "model.safetensors", metadata={"format": "pt"})


def score(soup_dir: Path, dataset: str, data_dir: str | None, split: str) -> dict:
    """The soup's validation metrics, without the confusion matrix and calibration bins."""
    from grefel_hf.evaluation.runner import EvaluationOptions, evaluate_variant

    options = EvaluationOptions(model_dir=str(soup_dir), dataset=dataset, output_dir=str(soup_dir),
                                data_dir=data_dir, split=split, progress=False)
    metrics, _ = evaluate_variant(str(soup_dir), options)
    kept = ("num_images", "accuracy", "balanced_accuracy", "macro_f1", "ece")
    return {**{key: metrics[key] for key in kept},
            "recall": {name: row["recall"] for name, row in metrics["per_class"].items()}}


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True,
                        help="saved GReFEL folders from one starting point (a folder named twice weighs twice)")
    parser.add_argument("--dataset", required=True, help="fer2013 or ferplus")
    parser.add_argument("--data_dir", default=None, help="the dataset's raw files")
    parser.add_argument("--split", default="validation", choices=("validation",),
                        help="the split that scores the soup: validation only")
    parser.add_argument("--soup_dir", required=True, help="where the soup's model folder is written")
    parser.add_argument("--output", default=None, help="the JSON report")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error(f"--runs needs at least two folders, got {len(args.runs)}")
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_arguments(argv)
    run_dirs = [Path(run) for run in args.runs]
    save_soup(run_dirs, Path(args.soup_dir))
    report = score(Path(args.soup_dir), args.dataset, args.data_dir, args.split)
    print(f"soup of {len(run_dirs)}: accuracy {100 * report['accuracy']:.2f} %, balanced accuracy "
          f"{100 * report['balanced_accuracy']:.2f} %, macro-F1 {100 * report['macro_f1']:.2f} %")
    print("recall: " + ", ".join(f"{name} {100 * value:.1f}" for name, value in report["recall"].items()))
    if args.output:
        ingredients = [run.name for run in run_dirs]
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"commit": commit(), "dataset": args.dataset, "split": args.split,
                                      "ingredients": ingredients, **report}, indent=2) + "\n")
        logger.info("wrote %s", output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
