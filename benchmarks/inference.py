"""Inference speed from photographs: faces/s through the whole path against classifying pre-cropped faces.

The whole path is what `grefel-hf predict` does per photo: decode the file, detect faces (OpenCV Haar cascade),
crop, batch across photos and classify. The pre-cropped path classifies the same face crops, already in memory
(image processor + model). Both run at batch sizes 1, 16 and 64, with PyTorch and with ONNX Runtime, on a GReFEL
model with random weights (speed only). The detector's share is the time spent in face detection over the whole
path's time. Speeds are ratios measured in the same run.

Usage (from the repository root):
    python benchmarks/inference.py --backbone tf_efficientnet_lite0 --image_size 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from grefel_hf import GReFELConfig, GReFELForImageClassification, build_image_processor, save_grefel_folder
from grefel_hf.face_detection_grefel import HaarFaceDetector, extract_faces
from grefel_hf.image_processing_grefel import read_image
from grefel_hf.inference.backends import load_classifier
from grefel_hf.inference.onnx_export import export_onnx
from grefel_hf.pipeline_grefel import classify_faces_in_batches, load_rgb

DEFAULT_OUTPUT = Path("benchmarks/results/inference/inference.json")


class TimedDetector:
    """The Haar detector, adding up the seconds it spends."""

    def __init__(self):
        self.detector, self.seconds = HaarFaceDetector(), 0.0

    def __call__(self, image):
        start = time.perf_counter()
        faces = self.detector(image)
        self.seconds += time.perf_counter() - start
        return faces


def make_photos(folder: Path, count: int) -> list[Path]:
    """`count` JPEG photos: the astronaut (one face), mirrored and shifted so no two files are the same."""
    from skimage import data

    photo = data.astronaut()
    paths = []
    for i in range(count):
        variant = np.roll(photo[:, ::-1] if i % 2 else photo, 4 * (i // 2), axis=1)
        paths.append(folder / f"photo{i:03d}.jpg")
        Image.fromarray(variant).save(paths[-1], quality=90)
    return paths


def whole_path(paths: list[Path], classifier, batch_size: int) -> dict[str, float]:
    """Decode, detect, crop, batch, classify every photo; faces/s and the detector's share of the time."""
    detector = TimedDetector()

    def items():
        for i, path in enumerate(paths):
            rgb = load_rgb(read_image(path), i)
            yield i, (rgb.shape[1], rgb.shape[0]), extract_faces(rgb, detector)

    start = time.perf_counter()
    faces = sum(len(r.faces) for r in classify_faces_in_batches(items(), classifier, batch_size,
                                                               len(classifier.labels)))
    seconds = time.perf_counter() - start
    return {"faces": faces, "seconds": seconds, "detector_seconds": detector.seconds}


def precropped(crops: list[np.ndarray], classifier, batch_size: int) -> dict[str, float]:
    """Classify face crops already in memory, in batches of `batch_size`."""
    start = time.perf_counter()
    for i in range(0, len(crops), batch_size):
        classifier(crops[i : i + batch_size])
    return {"faces": len(crops), "seconds": time.perf_counter() - start}


def median_run(function, repeats: int) -> dict[str, float]:
    """Run once to warm up, then `repeats` times; the run with the median time."""
    function()
    runs = sorted((function() for _ in range(repeats)), key=lambda r: r["seconds"])
    return runs[len(runs) // 2]


def measure(classifier, paths, crops, batch_sizes, repeats) -> list[dict]:
    rows = []
    for batch_size in batch_sizes:
        whole = median_run(lambda b=batch_size: whole_path(paths, classifier, b), repeats)
        cropped = median_run(lambda b=batch_size: precropped(crops, classifier, b), repeats)
        whole_rate, crop_rate = whole["faces"] / whole["seconds"], cropped["faces"] / cropped["seconds"]
        rows.append({"backend": classifier.backend, "batch_size": batch_size,
                     "whole_path_faces_per_s": whole_rate, "precropped_faces_per_s": crop_rate,
                     "whole_over_precropped": whole_rate / crop_rate,
                     "detector_share": whole["detector_seconds"] / whole["seconds"]})
        print(f"{classifier.backend:5s} batch {batch_size:3d}: whole path {whole_rate:7.1f} faces/s, pre-cropped "
              f"{crop_rate:7.1f} faces/s ({rows[-1]['whole_over_precropped']:.2f}x), detector "
              f"{100 * rows[-1]['detector_share']:.0f} % of the whole path", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--photos", type=int, default=32, help="photos (one face each) per run")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of PyTorch and ONNX Runtime (1: a shared 2-core machine stays usable)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = GReFELForImageClassification(GReFELConfig(backbone=args.backbone, image_size=args.image_size)).eval()
        folder = save_grefel_folder(model, build_image_processor(model.config), tmp / "model")
        export = export_onnx(folder, tmp / "model.onnx")
        paths = make_photos(tmp, args.photos)
        crops = [crop for p in paths for _, crop in extract_faces(load_rgb(read_image(p), 0), HaarFaceDetector())]
        rows = []
        for model_path in (folder, export.path):
            classifier = load_classifier(model_path, device="cpu", onnx_threads=args.threads)
            rows += measure(classifier, paths, crops, args.batch_sizes, args.repeats)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"command": "python benchmarks/inference.py " + " ".join(
                  f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
                  if k != "output"),
              "commit": commit, "backbone": args.backbone, "image_size": args.image_size, "photos": args.photos,
              "faces_per_photo": len(crops) / args.photos, "threads": args.threads,
              "onnx_parity_max_abs_diff": export.max_abs_diff, "results": rows,
              "load_average_at_end": os.getloadavg()[0],
              "runs_per_figure": f"median of {args.repeats} after one warm-up run"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
