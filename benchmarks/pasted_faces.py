"""Whole-path accuracy on photos with known faces (benchmark, not a test): FER+ Valid faces pasted onto photos.

There is no labelled set here of photographs with expressions and face boxes, so this builds one from real faces:
FER+ Valid faces (the shared real data; majority labels) are pasted at random sizes (24 to 300 px), positions and
small rotations (up to 15 degrees either way) onto scikit-image's natural photos without faces (coffee, rocket,
chelsea, hubble_deep_field and others), scaled to a random size (long side 480 to 1600 px); about one photo in six
gets no face at all. Each pasted face's square and label are recorded.

Per detector setting it reports, on one half of the photos or the other:
- recall: true faces matched by a detected box (IoU >= 0.3 with the pasted square, one box per face);
- false positives per photo: boxes that match no pasted face;
- the bundled model's accuracy on the matched faces through the whole path (detect, crop, classify), against its
  accuracy on the same faces given as their original 48 px crops (`face_detector="none"`).

Defaults are chosen on the `tune` half (`--half tune --grid detection`: YuNet score and NMS thresholds and working
sizes, Haar with and without a working size; `--grid crop`: the crop margin and alignment); the `report` half is only
measured with the chosen settings. `--save_folder` writes the photos as JPEGs (with `truth.json`), which `inference.py` times.

Usage (from the repository root; the shared data must be beside it):
    python benchmarks/pasted_faces.py --half tune --grid detection --output benchmarks/results/detection/pasted_tune.json
    python benchmarks/pasted_faces.py --half tune --grid crop --output benchmarks/results/detection/pasted_crop.json
    python benchmarks/pasted_faces.py --half report --output benchmarks/results/detection/pasted_report.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from grefel_hf import pretrained_model_path
from grefel_hf.face_detection_grefel import FaceBox, box_iou
from grefel_hf.inference.backends import face_pipeline, load_model

logger = logging.getLogger("pasted_faces")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKGROUNDS = ("coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "moon", "brick",
               "grass", "gravel", "coins", "clock", "cell", "colorwheel", "stereo_motorcycle")
"""scikit-image photos without faces (the cameraman and the astronaut are left out)."""
MATCH_IOU = 0.3
"""A detected box matches a pasted face when their IoU is at least this (the pasted square holds hair and chin
around the face, so a tight face box covers about 60 % of it)."""


@dataclass
class PastedFace:
    """One pasted face: its square in the photo (before rotation), rotation, true label and FER+ file."""

    box: tuple[int, int, int, int]
    rotation: float
    label: int
    file: str


@dataclass
class PastedPhoto:
    """One generated photo and its faces."""

    name: str
    background: str
    image: np.ndarray
    faces: list[PastedFace] = field(default_factory=list)


def background_photo(name: str) -> np.ndarray:
    from skimage import data

    image = data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(data, name)()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (255 * (image.astype(float) / max(float(image.max()), 1.0))).astype(np.uint8)
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]


def ferplus_valid_faces(work_dir: Path) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """FER+ Valid faces with majority labels (the project's FER+ builder), unpacked from the shared archive."""
    from dataset_scripts import load_expression_dataset

    target = work_dir / "ferplus"
    if not (target / "data" / "FER2013Valid").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(SHARED_DATA / "ferplus_trainval.tar.gz") as archive:
            archive.extractall(target, filter="data")
    split = load_expression_dataset("ferplus", data_dir=str(target / "data"), label_mode="majority")["validation"]
    names = split.features["label"].names
    images = [np.asarray(image.convert("L")) for image in split["image"]]
    return images, list(split["label"]), names, list(split["source"])


def _free_place(rng, width: int, height: int, side: int, taken: list[tuple[int, int, int, int]]):
    for _ in range(50):
        x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        if all(x + side <= a or a + c <= x or y + side <= b or b + d <= y for a, b, c, d in taken):
            return x, y
    return None


def make_photo(index: int, rng, faces: list[np.ndarray], labels: list[int], files: list[str]) -> PastedPhoto:
    """One photo: a background at a random size with 0 to 4 faces pasted (see the module docstring)."""
    name = BACKGROUNDS[index % len(BACKGROUNDS)]
    background = Image.fromarray(background_photo(name))
    long_side = int(rng.integers(480, 1601))
    scale = long_side / max(background.size)
    canvas = background.resize((round(background.width * scale), round(background.height * scale)),
                               Image.Resampling.BILINEAR)
    photo = PastedPhoto(f"photo{index:04d}", name, np.zeros(0))
    count = 0 if rng.random() < 1 / 6 else int(rng.integers(1, 5))
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(count):
        side = int(min(rng.integers(24, 301), min(canvas.size) - 1))
        place = _free_place(rng, canvas.width, canvas.height, side, taken)
        if place is None:
            continue
        pick = int(rng.integers(0, len(faces)))
        rotation = float(rng.uniform(-15, 15))
        face = Image.fromarray(faces[pick]).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        turned = face.rotate(rotation, resample=Image.Resampling.BILINEAR, expand=True)
        mask = Image.new("L", face.size, 255).rotate(rotation, resample=Image.Resampling.BILINEAR, expand=True)
        offset = ((turned.width - side) // 2, (turned.height - side) // 2)
        canvas.paste(turned, (place[0] - offset[0], place[1] - offset[1]), mask)
        taken.append((*place, side, side))
        photo.faces.append(PastedFace((*place, side, side), rotation, labels[pick], files[pick]))
    photo.image = np.asarray(canvas)
    return photo


def make_pasted_set(work_dir: Path, count: int, seed: int = 0):
    """`count` photos (see `make_photo`), the FER+ faces, their labels and label names."""
    faces, labels, names, files = ferplus_valid_faces(work_dir)
    rng = np.random.default_rng(seed)
    return [make_photo(i, rng, faces, labels, files) for i in range(count)], faces, labels, names, files


def match(detected: list[FaceBox], truth: list[PastedFace]) -> dict[int, int]:
    """Greedy one-to-one matching of detections to pasted faces by IoU (>= MATCH_IOU): {truth index: detection}."""
    pairs = sorted(((box_iou(d, FaceBox(*t.box)), i, j) for j, d in enumerate(detected)
                    for i, t in enumerate(truth)), reverse=True)
    matched, used = {}, set()
    for iou, i, j in pairs:
        if iou < MATCH_IOU:
            break
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def evaluate(pipe, photos: list[PastedPhoto], crop_labels: dict[str, int], names: list[str], **options) -> dict:
    """Recall, false positives per photo, whole-path accuracy and crop accuracy on the same faces, and time."""
    start = time.perf_counter()
    results = pipe([p.image for p in photos], top_k=1, batch_size=32, **options)
    seconds = time.perf_counter() - start
    true_faces = found = false_positives = right = right_crop = 0
    for photo, entries in zip(photos, results, strict=True):
        boxes = [FaceBox(**e["box"]) for e in entries]
        matched = match(boxes, photo.faces)
        true_faces += len(photo.faces)
        found += len(matched)
        false_positives += len(boxes) - len(matched)
        for i, j in matched.items():
            truth = photo.faces[i]
            right += entries[j]["label"] == names[truth.label]
            right_crop += crop_labels[truth.file] == truth.label
    return {"options": {k: v for k, v in options.items()}, "photos": len(photos), "true_faces": true_faces,
            "found": found, "recall": found / max(true_faces, 1), "false_positives": false_positives,
            "false_positives_per_photo": false_positives / len(photos),
            "whole_path_accuracy": right / max(found, 1), "crop_accuracy_same_faces": right_crop / max(found, 1),
            "accuracy_gap_points": 100 * (right_crop - right) / max(found, 1), "seconds": seconds}


def crop_predictions(pipe, faces: list[np.ndarray], files: list[str], used: set[str], names: list[str]) -> dict:
    """The bundled model's label for each used FER+ face given as its own 48 px crop."""
    keep = [i for i, f in enumerate(files) if f in used]
    results = pipe([np.stack([faces[i]] * 3, axis=-1) for i in keep], face_detector="none", top_k=1, batch_size=64)
    return {files[i]: names.index(r[0]["label"]) for i, r in zip(keep, results, strict=True)}


TUNING_GRIDS = {
    "detection": (
        [{"face_detector": "yunet", "score_threshold": s, "nms_threshold": n, "detection_size": d}
         for s in (0.5, 0.6, 0.7, 0.8, 0.9) for n in (0.3,) for d in (640, 960)]
        + [{"face_detector": "yunet", "score_threshold": 0.6, "nms_threshold": 0.45, "detection_size": 640}]
        + [{"face_detector": "haar", "detection_size": d} for d in (640, 0)]
        + [{"face_detector": "yunet", "align": True}]
    ),
    "crop": (
        [{"face_detector": "yunet", "margin": m} for m in (0.0, 0.1, 0.2)]
        + [{"face_detector": "yunet", "margin": 0.0, "align": True}]
        + [{"face_detector": "haar", "margin": m} for m in (0.0, 0.2)]
    ),
}
"""The settings compared on the tuning half (the pipeline's defaults fill the rest): the detector's thresholds and
working size, then how faces are cut out (margin, alignment)."""

REPORT_SETTINGS = (
    {"face_detector": "yunet"},
    {"face_detector": "yunet", "align": True},
    {"face_detector": "haar"},
    {"face_detector": "haar", "detection_size": 0, "margin": 0.2},
)
"""What the report half measures: the chosen defaults (YuNet, thresholds 0.6 / 0.3, 640 px, no margin), with
alignment, Haar with the same settings, and the previous default (Haar at full resolution, margin 0.2)."""


def save_folder(photos: list[PastedPhoto], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for photo in photos:
        Image.fromarray(photo.image).save(folder / f"{photo.name}.jpg", quality=92)
        truth.append({"file": f"{photo.name}.jpg", "background": photo.background,
                      "faces": [asdict(face) for face in photo.faces]})
    (folder / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--half", choices=("tune", "report"), required=True)
    parser.add_argument("--photos", type=int, default=400, help="photos generated in all (each half gets half)")
    parser.add_argument("--grid", choices=sorted(TUNING_GRIDS), default="detection",
                        help="with --half tune: which settings to compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="/tmp/grefel-pasted", help="where the shared FER+ archive is unpacked")
    parser.add_argument("--save_folder", default=None, help="also write the half's photos here as JPEGs")
    parser.add_argument("--output", required=True, help="the JSON file of results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    photos, faces, labels, names, files = make_pasted_set(Path(args.work_dir), args.photos, args.seed)
    half = photos[: len(photos) // 2] if args.half == "tune" else photos[len(photos) // 2 :]
    if args.save_folder:
        save_folder(half, Path(args.save_folder))
    pipe = face_pipeline(load_model(pretrained_model_path()))
    crops = crop_predictions(pipe, faces, files, {f.file for p in half for f in p.faces}, names)
    runs = []
    for options in TUNING_GRIDS[args.grid] if args.half == "tune" else REPORT_SETTINGS:
        runs.append(evaluate(pipe, half, crops, names, **options))
        logger.info("%s", json.dumps(runs[-1]))
    report = {"half": args.half, "grid": args.grid if args.half == "tune" else None, "photos": len(half), "seed": args.seed, "match_iou": MATCH_IOU,
              "rotation_degrees_max": 15, "face_sizes_px": [24, 300], "runs": runs}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in runs], indent=1))


if __name__ == "__main__":
    main()
