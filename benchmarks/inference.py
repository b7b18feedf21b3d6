"""Photo-path speed: grefel_hf against the `fer` package on the same images, in the same run (benchmark, not a test).

Image sets:
- `astronaut`: scikit-image's astronaut (512x512, one face), `--copies` times;
- `canvas`: a 1024x256 canvas of four copies of her (one face each), `--copies` times;
- `mixed`: the first `--mixed` photos of the pasted-faces set (`pasted_faces.py`, report half: FER+ faces on
  natural photos, 0-4 faces each, 480-1600 px), once each.

For each set it times, per detector (YuNet, the default, and Haar at the same working size):
- `pipeline`: grefel_hf's pipeline as `grefel_hf.load_face_pipeline()` builds it (the bundled model in ONNX Runtime),
  on the decoded images, with `predict`'s worker and thread defaults;
- `predict`: the `grefel-hf predict` command on the image files (a subprocess), its photos/s once started (the
  time of a run on all the files less that of a run on the first alone) and with its start-up (process, imports,
  model loading) included;
- `fer`: the `fer` package's `FER().detect_emotions(bgr_image)` on the same decoded images (`fer_peer.py`, run with
  the Python of a separate virtual environment given by `--fer_python`; TensorFlow is never a grefel_hf
  dependency), timed before and after grefel_hf so a load change shows.
Photos/s and faces/s are medians of `--repeats` passes after a warm-up; the figure that matters is grefel_hf's
photos/s over fer's, same machine, same moment.

Usage (from the repository root):
    python benchmarks/inference.py --fer_python /tmp/fervenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import grefel_hf
from grefel_hf.image_processing_grefel import read_image
from grefel_hf.inference.predict import default_num_workers
from grefel_hf.pipeline_grefel import load_rgb

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "photo_speed" / "photo_speed.json"
DETECTORS = ("yunet", "haar")


def astronaut_files(folder: Path, copies: int) -> list[Path]:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"astronaut{i:03d}.jpg" for i in range(copies)]
    Image.fromarray(data.astronaut()).save(paths[0], quality=95)
    for path in paths[1:]:
        path.write_bytes(paths[0].read_bytes())
    return paths


def canvas_files(folder: Path, copies: int) -> list[Path]:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    face = Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (1024, 256))
    for i in range(4):
        canvas.paste(face, (256 * i, 0))
    paths = [folder / f"canvas{i:03d}.jpg" for i in range(copies)]
    canvas.save(paths[0], quality=95)
    for path in paths[1:]:
        path.write_bytes(paths[0].read_bytes())
    return paths


def mixed_files(folder: Path, count: int, work_dir: Path) -> list[Path]:
    sys.path.insert(0, str(HERE))
    from pasted_faces import make_pasted_set, save_folder

    if not (folder / "truth.json").is_file() or len(list(folder.glob("*.jpg"))) < count:
        photos = make_pasted_set(work_dir, 2 * count, seed=0)[0]
        save_folder(photos[len(photos) // 2 :][:count], folder)
    return sorted(folder.glob("*.jpg"))[:count]


def median_pass(run, repeats: int) -> tuple[float, int]:
    """(median seconds, faces of the last pass) of `repeats` passes after a warm-up."""
    run()
    passes = [run() for _ in range(repeats)]
    return statistics.median(p[0] for p in passes), passes[-1][1]


def time_pipeline(pipe, images: list[np.ndarray], detector: str, workers: int, repeats: int) -> dict:
    def run():
        start = time.perf_counter()
        faces = sum(len(r) for r in pipe(images, face_detector=detector, batch_size=32, num_workers=workers))
        return time.perf_counter() - start, faces

    seconds, faces = median_pass(run, repeats)  # the pipeline keeps PyTorch to one thread itself
    return {"photos": len(images), "faces": faces, "seconds": seconds, "photos_per_s": len(images) / seconds,
            "faces_per_s": faces / seconds}


def time_predict(paths: list[Path], detector: str, repeats: int, out: Path) -> dict:
    """The command on all the files and on the first alone: its photos/s with start-up (process, imports, model)
    and without it (the difference of the two runs)."""

    def run(files):
        command = [sys.executable, "-m", "grefel_hf.cli", "predict", *map(str, files), "--output", str(out),
                   "--face_detector", detector, "--no_progress", "--overwrite"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        return seconds, sum(1 for line in out.read_text().splitlines()[1:] if ",no_face," not in line)

    seconds, faces = median_pass(lambda: run(paths), repeats)
    start_up, _ = median_pass(lambda: run(paths[:1]), repeats)
    steady = (len(paths) - 1) / max(seconds - start_up, 1e-9)
    return {"photos": len(paths), "faces": faces, "seconds": seconds, "photos_per_s": steady,
            "faces_per_s": steady * faces / len(paths), "photos_per_s_with_start_up": len(paths) / seconds,
            "one_photo_seconds": start_up}


def time_fer(fer_python: str, paths: list[Path], repeats: int) -> dict:
    run = subprocess.run([fer_python, str(HERE / "fer_peer.py"), "--repeats", str(repeats), *map(str, paths)],
                         check=True, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    report = json.loads(run.stdout.strip().splitlines()[-1])
    seconds = statistics.median(report["seconds"])
    return {"photos": report["photos"], "faces": report["faces"], "seconds": seconds,
            "photos_per_s": report["photos"] / seconds, "faces_per_s": report["faces"] / seconds}


def measure_set(name: str, paths: list[Path], args, pipe, workers: int, out: Path) -> dict:
    images = [load_rgb(read_image(p), i) for i, p in enumerate(paths)]
    result = {"set": name, "photos": len(paths)}
    if args.fer_python:
        result["fer_before"] = time_fer(args.fer_python, paths, args.repeats)
    for detector in DETECTORS:
        result[f"pipeline_{detector}"] = time_pipeline(pipe, images, detector, workers, args.repeats)
        result[f"predict_{detector}"] = time_predict(paths, detector, max(1, args.repeats - 1), out)
    if args.fer_python:
        result["fer_after"] = time_fer(args.fer_python, paths, args.repeats)
        fer_rate = (result["fer_before"]["photos_per_s"] + result["fer_after"]["photos_per_s"]) / 2
        result["ratios_over_fer"] = {key: result[key]["photos_per_s"] / fer_rate for key in result
                                     if key.startswith(("pipeline_", "predict_"))}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer_python", default=None, help="the Python of a virtual environment with `fer` installed")
    parser.add_argument("--copies", type=int, default=256, help="copies of the astronaut and of the canvas")
    parser.add_argument("--mixed", type=int, default=200, help="photos of the pasted-faces set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work_dir", default="/tmp/grefel-pasted", help="where the shared FER+ archive is unpacked")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    workers = default_num_workers()
    pipe = grefel_hf.load_face_pipeline()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = {"astronaut": astronaut_files(tmp / "astronaut", args.copies),
                "canvas": canvas_files(tmp / "canvas", args.copies),
                "mixed": mixed_files(Path(args.work_dir) / "mixed_photos", args.mixed, Path(args.work_dir))}
        results = [measure_set(name, paths, args, pipe, workers, tmp / "rows.csv") for name, paths in sets.items()]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"command": "python benchmarks/inference.py " + " ".join(sys.argv[1:]), "commit": commit,
              "cpu_count": os.cpu_count(), "num_workers": workers, "model": grefel_hf.pretrained_model_path(),
              "backend": "onnx", "load_average_at_end": os.getloadavg()[0], "results": results,
              "runs_per_figure": f"median of {args.repeats} passes after one warm-up pass"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
