"""Balanced accuracy, post-hoc logit adjustment by the class priors and test-time augmentation (TTA) of the bundled
models, on their validation splits (issue 36, the cheap post-hoc part).

One pass over a validation split records, per face, the bundled model's final distribution before calibration for
each of the six TTA views (`grefel_hf.tta_grefel.TTA_VIEWS`: the face, its mirror, four 5 % shifts). It is cached
(`--cache`, outside the repository), so the analysis reruns without the model. The analysis then scores, with the
package's own functions:

- accuracy, balanced accuracy (mean per-class recall) and per-class recall with 1, 2 and 6 views, under the
  calibration the bundle shipped with before this study (`--shipped_calibration`: its calibration.json; a temperature
  never changes a label) and under the prior adjustment (`grefel-hf calibrate --method prior_adjustment`'s fit,
  `grefel_hf.calibration.priors`), fitted on every face of the split with one view;
- the adjustment's strength tau over its grid (accuracy and balanced accuracy for each tau);
- a held-out estimate: tau fitted on one interleaved half of the split and scored on the other, both ways.

The class priors are those of the training split the bundle learnt from (`--priors_label_mode`: FER+ soft labels
for `grefel-ferplus`, whose training targets were the vote distributions).

With `--speed`, it times instead the photo path with 1, 2 and 6 views: `grefel_hf.load_face_pipeline(model)` (ONNX
Runtime, YuNet) on decoded photos held in memory, the view counts interleaved within each repeat so that the
machine's changing load falls on all of them alike; faces/s and the ratio to one view.

    python benchmarks/prior_adjustment.py --model grefel-ferplus --dataset ferplus --data_dir DATA_DIR \\
        --priors_label_mode crossentropy --cache /tmp/prior/ferplus.npz \\
        --output benchmarks/results/prior_adjustment/grefel-ferplus.json
    python benchmarks/prior_adjustment.py --speed --photos_dir PHOTOS_DIR --photos 60 \\
        --output benchmarks/results/prior_adjustment/tta_speed.json

Validation splits only (FER+ Valid, FER2013 PublicTest); priors from the training split; nothing reads a test split.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the package, and selective_prediction's cache reader
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

logger = logging.getLogger("prior_adjustment")

VIEW_COUNTS = (1, 2, 6)
"""The TTA view counts compared (the first N of `TTA_VIEWS`)."""


def load_uncalibrated(model_name: str):
    """The bundled model and its processor, its stored calibration set to the identity (the pass records the final
    distribution before calibration)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import grefel_hf  # noqa: F401
    from grefel_hf.calibration.folder import set_identity_calibration
    from grefel_hf.pretrained import resolve_model_path

    folder = resolve_model_path(model_name)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    set_identity_calibration(model.config)
    return model, AutoImageProcessor.from_pretrained(folder)


def validation_loader(model, processor, dataset: str, data_dir: str, batch_size: int):
    """The validation split as `grefel-hf evaluate` reads it."""
    from grefel_hf.evaluation.runner import EvaluationOptions, evaluation_loader, load_split

    options = EvaluationOptions(model_dir="-", dataset=dataset, output_dir="/tmp", data_dir=data_dir,
                                split="validation", batch_size=batch_size)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return evaluation_loader(load_split(options, names), processor, options)


@torch.no_grad()
def record_views(model, loader) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) and the final distribution before calibration of every TTA view (N, 6, C)."""
    from grefel_hf.tta_grefel import TTA_VIEWS, tta_views

    labels, views = [], []
    for batch in loader:
        outputs = [model(pixel_values=view).logits.float().exp() for view in
                   tta_views(batch["pixel_values"], len(TTA_VIEWS))]
        labels.append(batch["labels"].numpy())
        views.append(torch.stack(outputs, dim=1).numpy())
    return np.concatenate(labels), np.concatenate(views)


def recorded_pass(args) -> tuple[np.ndarray, np.ndarray, dict]:
    """The cached pass when `--cache` holds one for this model and dataset, else a new one (then cached)."""
    from selective_prediction import read_cached_pass

    cache = Path(args.cache)
    cached = read_cached_pass(cache, args.model, args.dataset)
    if cached is not None:
        stored, info = cached
        return stored["labels"], stored["views"], info
    model, processor = load_uncalibrated(args.model)
    torch.set_num_threads(args.threads)
    start = time.time()
    labels, views = record_views(model, validation_loader(model, processor, args.dataset, args.data_dir,
                                                          args.batch_size))
    info = {"model": args.model, "dataset": args.dataset, "split": "validation",
            "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
            "pass_seconds": round(time.time() - start, 1)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, info=json.dumps(info), labels=labels, views=views)
    return labels, views, info


# ---------------------------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------------------------


def training_priors(args, names: list[str]) -> tuple[np.ndarray, str]:
    """The priors `grefel-hf calibrate --method prior_adjustment` reads for this bundle."""
    from grefel_hf.calibration.folder import CalibrationOptions
    from grefel_hf.calibration.folder import training_priors as read_priors
    from grefel_hf.pretrained import resolve_model_path

    options = CalibrationOptions(model_dir=str(resolve_model_path(args.model)), dataset=args.dataset,
                                 data_dir=args.data_dir, label_mode=args.priors_label_mode,
                                 method="prior_adjustment")
    return read_priors(options, names)


def view_scores(views: np.ndarray, labels: np.ndarray, count: int, temperature: float,
                bias: list[float] | None) -> dict:
    """Accuracy, balanced accuracy, per-class recall and ECE of the first `count` views, each calibrated as the
    model calibrates it and their probabilities averaged (as `grefel-hf evaluate --tta_views` does)."""
    from grefel_hf.calibration.fitting import calibrated, top_probability_ece
    from grefel_hf.metrics.classification import balanced_accuracy, class_recalls

    faces, _, classes = views.shape
    log_views = np.log(np.clip(views[:, :count].reshape(-1, classes), 1e-12, None))
    probs = np.exp(calibrated(log_views, temperature, bias)).reshape(faces, count, classes).mean(axis=1)
    predicted = probs.argmax(axis=1)
    return {"accuracy": float((predicted == labels).mean()),
            "balanced_accuracy": balanced_accuracy(labels, predicted, classes),
            "recall": class_recalls(labels, predicted, classes), "ece": top_probability_ece(np.log(probs), labels)}


def analyse(labels: np.ndarray, views: np.ndarray, priors: np.ndarray, priors_from: str, dataset: str) -> dict:
    """The shipped temperature (refitted: the same fit on the same faces), the prior adjustment, the τ curve and the
    scores of both with 1, 2 and 6 views (module docstring)."""
    from grefel_hf.calibration.fitting import fit_calibration
    from grefel_hf.calibration.priors import tau_curve

    log_probs = np.log(np.clip(views[:, 0], 1e-12, None))
    shipped = fit_calibration(log_probs, labels, "temperature", dataset, "validation")
    adjusted = fit_calibration(log_probs, labels, "prior_adjustment", dataset, "validation", priors, priors_from)
    calibrations = {"temperature (shipped before)": shipped.config_values(),
                    "prior adjustment": adjusted.config_values()}
    tta = {str(count): {name: view_scores(views, labels, count, values["calibration_temperature"],
                                          values["calibration_bias"]) for name, values in calibrations.items()}
           for count in VIEW_COUNTS}
    curve = [vars(point) for point in tau_curve(log_probs, labels, np.log(priors))]
    return {"class_priors": priors.tolist(), "priors_from": priors_from, "shipped_temperature": vars(shipped),
            "prior_adjustment": vars(adjusted), "tau_curve": curve, "tta": tta}


def print_report(report: dict, names: list[str]) -> None:
    fit = report["prior_adjustment"]
    print(f"tau {fit['prior_tau']:g}, T {fit['temperature']:.4f}: accuracy {fit['accuracy_before']:.4f} -> "
          f"{fit['accuracy_after']:.4f}, balanced {fit['balanced_accuracy_before']:.4f} -> "
          f"{fit['balanced_accuracy_after']:.4f}, ECE {fit['ece_before']:.4f} -> {fit['ece_after']:.4f}")
    for name, prior, before, after in zip(names, fit["class_priors"], fit["recall_before"], fit["recall_after"],
                                          strict=True):
        print(f"  {name:10s} prior {100 * prior:5.2f} %  recall {100 * before:6.2f} -> {100 * after:6.2f}")
    for estimate in fit["held_out"]:
        print(f"held out: tau {estimate['tau']:g} from the {estimate['fit_half']} half; {estimate['score_half']} "
              f"half {estimate['before']} -> {estimate['after']}")
    for count, rows in report["tta"].items():
        for name, row in rows.items():
            print(f"{count} views, {name}: accuracy {row['accuracy']:.4f}, balanced {row['balanced_accuracy']:.4f}, "
                  f"ECE {row['ece']:.4f}")


# ---------------------------------------------------------------------------------------------------------------
# Speed of the photo path with TTA
# ---------------------------------------------------------------------------------------------------------------


def timed_pass(pipe, images: list[np.ndarray], views: int) -> tuple[float, int]:
    """(seconds, faces) of one pass of the pipeline over the images with `views` TTA views."""
    start = time.perf_counter()
    faces = sum(len(found) for found in pipe(images, tta_views=views, batch_size=32))
    return time.perf_counter() - start, faces


def time_views(args) -> dict:
    """Faces/s of each bundle's photo path with 1, 2 and 6 views (module docstring): per model one warm-up pass,
    then `--repeats` rounds, each timing every view count once, in an order that turns round by one each round."""
    import grefel_hf
    from grefel_hf.image_processing_grefel import read_image
    from grefel_hf.inference.predict import classification_threads, default_num_workers
    from grefel_hf.pipeline_grefel import load_rgb

    paths = sorted(Path(args.photos_dir).glob("*.jpg"))[: args.photos]
    images = [load_rgb(read_image(path), index) for index, path in enumerate(paths)]
    results = {}
    for model in ("grefel-ferplus", "grefel-fer2013"):
        pipe = grefel_hf.load_face_pipeline(model, num_workers=default_num_workers())
        seconds = {count: [] for count in VIEW_COUNTS}
        with classification_threads(1, "onnx"):
            timed_pass(pipe, images, 1)
            for round_index in range(args.repeats):
                order = VIEW_COUNTS[round_index % 3:] + VIEW_COUNTS[: round_index % 3]
                for count in order:
                    took, faces = timed_pass(pipe, images, count)
                    seconds[count].append(took)
        rates = {count: faces / float(np.median(values)) for count, values in seconds.items()}
        results[model] = {"faces": faces, "seconds": {str(k): v for k, v in seconds.items()},
                          "faces_per_s": {str(k): r for k, r in rates.items()},
                          "ratio_to_one_view": {str(k): r / rates[1] for k, r in rates.items()}}
        print(model, json.dumps(results[model]["faces_per_s"]), json.dumps(results[model]["ratio_to_one_view"]))
    return {"photos": len(images), "num_workers": default_num_workers(), "backend": "onnx",
            "load_average_at_end": os.getloadavg()[0], "models": results,
            "runs_per_figure": f"median of {args.repeats} passes after one warm-up pass"}


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="grefel-ferplus", help="a bundled model's name")
    parser.add_argument("--dataset", default="ferplus", help="ferplus or fer2013 (their validation split)")
    parser.add_argument("--data_dir", default=None, help="the dataset's raw files")
    parser.add_argument("--priors_label_mode", default=None,
                        help="FER+ label mode of the training split the priors come from (the bundle's own)")
    parser.add_argument("--cache", default=None, help="the .npz of the recorded pass (outside the repository)")
    parser.add_argument("--output", default=None, help="the JSON report")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed", action="store_true", help="time the photo path with 1, 2 and 6 views instead")
    parser.add_argument("--photos_dir", default=None, help="--speed: a folder of photos (JPEG)")
    parser.add_argument("--photos", type=int, default=60, help="--speed: how many of them")
    parser.add_argument("--repeats", type=int, default=3, help="--speed: timed passes per view count and model")
    return parser.parse_args(argv)


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True).stdout.strip()


def shown_command(args, argv) -> str:
    """The command as run, its local paths replaced by placeholders (no local paths in the report)."""
    given = " ".join(argv if argv is not None else sys.argv[1:])
    for path, name in ((args.data_dir, "DATA_DIR"), (args.cache, "CACHE.npz"), (args.photos_dir, "PHOTOS_DIR")):
        if path:
            given = given.replace(path, name)
    return "python benchmarks/prior_adjustment.py " + given


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_arguments(argv)
    if args.speed:
        report = time_views(args)
    else:
        labels, views, info = recorded_pass(args)
        logger.info("recorded %d faces x %d views (%s)", len(labels), views.shape[1], info)
        priors, priors_from = training_priors(args, info["labels"])
        report = {**info, **analyse(labels, views, priors, priors_from, args.dataset)}
        print_report(report, info["labels"])
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"commit": commit(), "command": shown_command(args, argv), **report},
                                     indent=2) + "\n")
        logger.info("wrote %s", output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
