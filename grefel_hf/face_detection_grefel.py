"""Finding faces in a photograph and cutting them out for the expression model.

- `YuNetFaceDetector` (the default): YuNet, a 54,608-parameter CNN face detector run by OpenCV's
  `cv2.FaceDetectorYN`. Its ONNX file ships with grefel_hf (`face_detectors/yunet/`, with its licences and
  provenance) and is checked against its SHA-256 when loaded. It gives a score and five landmarks per face.
- `HaarFaceDetector`: OpenCV's Haar cascades (frontal faces, profile faces as an option, eyes for alignment), which
  ship inside `opencv-python-headless` 4.x.
- Any callable that takes an (H, W, 3) uint8 RGB array and returns boxes (and optionally landmarks and scores)
  works as a detector too (`as_face_detector`), so a user can bring MTCNN or RetinaFace.
- `FaceOptions` holds every setting of how faces are found and cut out, with their defaults, in one place;
  `build_face_detector` makes the detector they describe; `extract_faces` finds, filters and crops.

Built-in detectors see the photo at a working size (`detection_size`, 640 px on the long side by default): larger
photos are scaled down, very small ones (under `DETECTION_MIN_SIDE`) up, and the boxes and landmarks are mapped back
to the original pixels. Boxes are (x, y, w, h) in pixels of the input image. Finding no face is an empty list, never
a made-up box.

This file is saved next to checkpoints as remote code: it imports only numpy and, optionally, OpenCV (inside
`try`, so a machine without OpenCV can still load the model and use a callable detector).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

try:
    import cv2
except ImportError:  # the built-in detectors need OpenCV; everything else here does not
    cv2 = None

OPENCV_HINT = "pip install 'opencv-python-headless>=4.8,<5' (OpenCV 5 no longer ships the Haar cascades)"
"""What to install when OpenCV or its Haar cascades are missing."""

FACE_DETECTORS = ("yunet", "haar", "haar_profile", "none")
"""Detector names `as_face_detector` accepts: YuNet (the default), OpenCV's frontal Haar cascade, frontal plus
profile cascades, or no detection (the whole image is one face, for images that are already face crops)."""

YUNET_FILE = Path("face_detectors") / "yunet" / "face_detection_yunet_2023mar.onnx"
"""Where the YuNet model lies inside the grefel_hf package."""

YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
"""The checksum the shipped YuNet file must have."""

LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
"""YuNet's five landmarks, in its order; right and left are the subject's (the right eye appears on the image's
left). Haar with eye search gives the first two only."""

DEFAULT_MARGIN = 0.0
"""The default crop margin: none, the detector's box squared by its longer side. The bundled models learnt from FER
crops, which frame a face that way (YuNet's box on them: 0.80 of the crop wide, 1.01 high, centred); on FER+ faces
pasted into photos, the whole path's accuracy trailed the same faces' own crops by 1.7 points with no margin, 4.1
with 0.1 and 12 with 0.2 (`benchmarks/pasted_faces.py`, tuning half)."""

DETECTION_MIN_SIDE = 160
"""Built-in detectors see images whose long side is shorter than this scaled up to it: YuNet found 343 of 400 FER+
faces in their 48 px crops as they are, and 397 of 400 at 160 px."""


@dataclass(frozen=True)
class FaceBox:
    """One detected face.

    Args:
        x, y, w, h: the box in pixels of the input image (left, top, width, height).
        score: the detector's confidence, when it gives one.
        landmarks: facial landmarks as (x, y) pixel pairs, when known; the first two are the eyes (either order),
            which alignment uses. YuNet gives the five of `LANDMARK_NAMES`.
        roll: the face's in-plane rotation in radians (the eye line's angle, as `eye_angle` measures it), when it
            was estimated for alignment (`YuNetFaceDetector(estimate_roll=True)`).
    """

    x: int
    y: int
    w: int
    h: int
    score: float | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None
    roll: float | None = None

    def as_dict(self) -> dict[str, int]:
        """The box as `{"x", "y", "w", "h"}`."""
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    @property
    def area(self) -> int:
        return self.w * self.h


def box_iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, width) * max(0, height)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found and cut out: the pipeline's and `grefel-hf predict`'s options of the same names.

    Args:
        face_detector: a name from `FACE_DETECTORS` or a callable detector (see `CallableFaceDetector`).
        detection_size: built-in detectors see the photo scaled so its long side is at most this many pixels (faces
            of roughly 10 to 300 pixels are found best); 0 means the full resolution.
        score_threshold: YuNet's smallest face score kept, in (0, 1).
        nms_threshold: YuNet's overlap (IoU) above which two boxes are one face, in (0, 1).
        min_face_size: faces whose shorter side is below this many pixels of the original image are left out.
        max_faces: keep only the largest N faces of each image (None: all).
        margin: margin added around each face box before cropping, as a fraction of its size, in [0, 2].
        align: rotate each face so that its eyes are level (YuNet's eye landmarks; Haar looks for eyes).
    """

    face_detector: str | Callable = "yunet"
    detection_size: int = 640
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    min_face_size: int = 24
    max_faces: int | None = None
    margin: float = DEFAULT_MARGIN
    align: bool = False

    def __post_init__(self):
        spec = self.face_detector
        if not callable(spec) and spec not in FACE_DETECTORS:
            raise ValueError(f"face_detector must be one of {FACE_DETECTORS} or a callable, got {spec!r}")
        _check_int(self.detection_size, "detection_size", 0, "0 (full resolution) or a long side in pixels")
        for name in ("score_threshold", "nms_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
        _check_int(self.min_face_size, "min_face_size", 1, "a side in pixels")
        if self.max_faces is not None:
            _check_int(self.max_faces, "max_faces", 1, "a number of faces, or None for all")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not 0 <= self.margin <= 2:
            raise ValueError(f"margin must be a fraction of the face size in [0, 2], got {self.margin!r}")

    def updated(self, **changes) -> FaceOptions:
        """A copy with the given options changed (None values are ignored), checked again."""
        return replace(self, **{name: value for name, value in changes.items() if value is not None})


def _check_int(value: Any, name: str, minimum: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} ({meaning}), got {value!r}")


def _require_cv2(what: str, attribute: str = "CascadeClassifier"):
    if cv2 is None or not hasattr(cv2, attribute):
        found = "OpenCV is not installed" if cv2 is None else f"OpenCV {cv2.__version__} has no {attribute}"
        raise ImportError(f"{what} needs OpenCV, but {found}: {OPENCV_HINT}")
    return cv2


def _load_cascade(filename: str):
    cv = _require_cv2("face detection with Haar cascades")
    path = cv.data.haarcascades + filename
    cascade = cv.CascadeClassifier(path)
    if cascade.empty():
        raise ImportError(f"OpenCV could not load its Haar cascade {path}: {OPENCV_HINT}")
    return cascade


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) RGB array as uint8 for detectors: float images in [0, 1] are scaled to [0, 255]."""
    if image.dtype == np.uint8:
        return image
    scale = 255.0 if float(image.max(initial=0.0)) <= 1.0 else 1.0
    return np.clip(image.astype(np.float32) * scale, 0, 255).round().astype(np.uint8)


def detection_scale(width: int, height: int, detection_size: int) -> float:
    """The factor a built-in detector scales a width x height image by: down to `detection_size` on the long side
    (0: never down), up to `DETECTION_MIN_SIDE` for smaller images, 1 otherwise."""
    side = max(width, height)
    if detection_size and side > detection_size:
        return detection_size / side
    if side < DETECTION_MIN_SIDE:
        return DETECTION_MIN_SIDE / side
    return 1.0


def _rescaled_face(face: FaceBox, factor: float) -> FaceBox:
    """`face` found in an image scaled by `factor`, in the original image's pixels."""
    if factor == 1.0:
        return face
    landmarks = None if face.landmarks is None else tuple((x / factor, y / factor) for x, y in face.landmarks)
    return FaceBox(round(face.x / factor), round(face.y / factor), max(1, round(face.w / factor)),
                   max(1, round(face.h / factor)), face.score, landmarks, face.roll)


class _WorkingSizeDetector:
    """A built-in detector: scales the image to its working size, finds faces there, maps them back."""

    detection_size = 640

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        """The faces in an (H, W, 3) RGB uint8 array (or (H, W) gray for Haar), in its pixels."""
        cv = _require_cv2("face detection", "resize")
        height, width = image.shape[:2]
        factor = detection_scale(width, height, self.detection_size)
        if factor != 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = cv.resize(image, size, interpolation=cv.INTER_AREA if factor < 1 else cv.INTER_LINEAR)
        return [_rescaled_face(face, factor) for face in self._detect(np.ascontiguousarray(image))]


class HaarFaceDetector(_WorkingSizeDetector):
    """Faces from OpenCV's Haar cascades (bundled with opencv-python-headless 4.x; no download).

    Args:
        profile: also look for faces in profile (both directions), besides frontal faces.
        find_eyes: look for the two eyes inside each face, as landmarks for alignment (a face whose eyes are not
            both found keeps `landmarks=None`).
        scale_factor: how much the search window grows between scales (smaller: slower, finds more).
        min_neighbors: how many overlapping detections a face needs (larger: fewer false faces).
        min_size: smallest face side searched for, in pixels of the working-size image.
        detection_size: the working size (see `FaceOptions`).
    """

    def __init__(self, profile: bool = False, find_eyes: bool = False, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 24, detection_size: int = 640):
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be above 1, got {scale_factor}")
        if min_neighbors < 0 or min_size < 1:
            raise ValueError(f"min_neighbors must be >= 0 and min_size >= 1, got {min_neighbors}, {min_size}")
        self.profile, self.find_eyes = profile, find_eyes
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
        self.detection_size = detection_size
        self._frontal = _load_cascade("haarcascade_frontalface_default.xml")
        self._side = _load_cascade("haarcascade_profileface.xml") if profile else None
        self._eyes = _load_cascade("haarcascade_eye.xml") if find_eyes else None

    def _cascade(self, cascade, gray: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
        found = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                         minSize=(min_size, min_size))
        return [tuple(int(v) for v in box) for box in found]

    def _eye_centres(self, gray: np.ndarray, box: tuple[int, int, int, int]):
        """The two largest eyes found in the upper part of the face, as (x, y) centres sorted left to right."""
        x, y, w, h = box
        upper = gray[y : y + int(h * 0.6), x : x + w]
        eyes = self._cascade(self._eyes, upper, max(4, w // 10))
        if len(eyes) < 2:
            return None
        eyes = sorted(eyes, key=lambda e: e[2] * e[3], reverse=True)[:2]
        centres = sorted((x + ex + ew / 2.0, y + ey + eh / 2.0) for ex, ey, ew, eh in eyes)
        return tuple(centres)

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        cv = _require_cv2("face detection with Haar cascades")
        gray = image if image.ndim == 2 else cv.cvtColor(image, cv.COLOR_RGB2GRAY)
        gray = cv.equalizeHist(np.ascontiguousarray(gray))
        boxes = self._cascade(self._frontal, gray, self.min_size)
        if self._side is not None:
            width = gray.shape[1]
            side = self._cascade(self._side, gray, self.min_size)
            mirrored = self._cascade(self._side, np.ascontiguousarray(gray[:, ::-1]), self.min_size)
            side += [(width - x - w, y, w, h) for x, y, w, h in mirrored]
            boxes = merge_overlapping(boxes, side)
        faces = []
        for box in boxes:
            eyes = self._eye_centres(gray, box) if self._eyes is not None else None
            faces.append(FaceBox(*box, landmarks=eyes))
        return faces


def merge_overlapping(first: Sequence, extra: Sequence, threshold: float = 0.3) -> list:
    """`first` plus the boxes of `extra` that overlap no kept box by more than `threshold` IoU."""
    kept = list(first)
    for box in extra:
        if all(box_iou(FaceBox(*box), FaceBox(*other)) <= threshold for other in kept):
            kept.append(box)
    return kept


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_yunet_file(path: Path) -> Path:
    """`path` if it holds the shipped YuNet model; a ValueError naming it when its checksum differs."""
    digest = file_sha256(path)
    if digest != YUNET_SHA256:
        raise ValueError(f"the YuNet face detector file {path} is altered (sha256 {digest[:12]}..., expected "
                         f"{YUNET_SHA256[:12]}...): reinstall grefel_hf")
    return path


def yunet_model_path(also: Sequence[str | os.PathLike] = ()) -> Path:
    """The shipped YuNet file, checked: beside this module in the grefel_hf package, in an installed grefel_hf (for
    a remote-code copy of this module), or at one of the paths `also` names (a saved model folder's copy).

    Raises:
        FileNotFoundError: the file is missing (the message names where it was looked for).
        ValueError: the file is there but is not the shipped one (its checksum differs).
    """
    candidates = [Path(__file__).resolve().parent / YUNET_FILE]
    try:
        import importlib.util

        spec = importlib.util.find_spec("grefel_hf")
    except (ImportError, ValueError, AttributeError):  # not installed, or blocked in this process
        spec = None
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parent / YUNET_FILE)
    candidates += [Path(p) for p in also]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"the YuNet face detector file {candidates[0]} is missing (grefel_hf installs it; a "
                                "folder saved by grefel_hf carries a copy): reinstall grefel_hf, or use "
                                "face_detector='haar'")
    return check_yunet_file(path)


ROLL_FACE_SIDE = 160
"""Side, in pixels, a face is scaled to while its roll is estimated: YuNet's eye landmarks follow a face's rotation
at that size (its eye line turned 15.4° to -1.9° as the astronaut was turned -10° to 10°), but hardly at 90 px
(0.8° for 10°)."""

ROLL_STEPS = 4
"""Most refinements of a face's roll estimate (each stops early once the eye line is within half a degree)."""


class YuNetFaceDetector(_WorkingSizeDetector):
    """Faces, scores and five landmarks (`LANDMARK_NAMES`) from YuNet through OpenCV's `cv2.FaceDetectorYN`.

    Args:
        score_threshold, nms_threshold, detection_size: see `FaceOptions`.
        estimate_roll: also estimate each face's in-plane rotation (`FaceBox.roll`), for alignment: the face is
            scaled to `ROLL_FACE_SIDE`, turned by the rotation found so far and its eye line measured again, up to
            `ROLL_STEPS` times (YuNet's landmarks read a tilted face as less tilted than it is, so one reading is
            not enough).
        model_path: the YuNet ONNX file (None: the shipped one, `yunet_model_path()`); it is checked against
            `YUNET_SHA256` unless `check=False` (for a YuNet file of your own).
        top_k: most candidate boxes kept before non-maximum suppression.
    """

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3, detection_size: int = 640,
                 estimate_roll: bool = False, model_path: str | os.PathLike | None = None, top_k: int = 5000,
                 check: bool = True):
        _require_cv2("face detection with YuNet", "FaceDetectorYN")
        self.model_path = yunet_model_path() if model_path is None else Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"YuNet model file not found: {self.model_path}")
        if check:
            check_yunet_file(self.model_path)
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        self.detection_size, self.estimate_roll = detection_size, estimate_roll
        self._net = None
        self._input_size = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_net"], state["_input_size"] = None, None  # an OpenCV network is made again in each process
        return state

    def _network(self, width: int, height: int):
        if self._net is None:
            try:
                self._net = cv2.FaceDetectorYN.create(str(self.model_path), "", (width, height), self.score_threshold,
                                                      self.nms_threshold, self.top_k)
            except cv2.error as err:
                raise ValueError(f"OpenCV cannot load the YuNet model {self.model_path}: {err}") from err
        if self._input_size != (width, height):
            self._net.setInputSize((width, height))
            self._input_size = (width, height)
        return self._net

    def _find(self, image: np.ndarray) -> list[FaceBox]:
        bgr = np.ascontiguousarray(image[..., ::-1]) if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        _, rows = self._network(bgr.shape[1], bgr.shape[0]).detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            x, y, w, h = (float(v) for v in row[:4])
            if w <= 0 or h <= 0:
                continue
            landmarks = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
            faces.append(FaceBox(round(x), round(y), max(1, round(w)), max(1, round(h)), float(row[14]), landmarks))
        return faces

    def _roll(self, image: np.ndarray, face: FaceBox) -> float | None:
        """The face's roll (radians), refined on views of it turned by the estimate so far (see `estimate_roll`)."""
        centre = (face.x + face.w / 2.0, face.y + face.h / 2.0)
        scale, side = ROLL_FACE_SIDE / max(face.w, face.h), round(ROLL_FACE_SIDE * 2.2)
        total = None
        for _ in range(ROLL_STEPS):
            turn = cv2.getRotationMatrix2D(centre, math.degrees(total or 0.0), scale)
            turn[:, 2] += np.array([side / 2.0, side / 2.0]) - centre
            view = cv2.warpAffine(image, turn, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            near = [f for f in self._find(view) if abs(f.x + f.w / 2 - side / 2) < side / 4
                    and abs(f.y + f.h / 2 - side / 2) < side / 4]
            if not near:
                break
            step = eye_angle(max(near, key=lambda f: f.score).landmarks)
            total = (total or 0.0) + step
            if abs(step) < math.radians(0.5):
                break
        return total

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        faces = self._find(image)
        if self.estimate_roll:
            faces = [replace(face, roll=self._roll(image, face)) for face in faces]
        return faces


def _number(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"the face detector returned a {what} that is not finite: {value!r}")
    return number


def _face_from_output(item: Any, index: int) -> FaceBox:
    """A `FaceBox` from one item a detector callable returned: (x, y, w, h) or a dict with "box"."""
    data = item if isinstance(item, dict) else {"box": item}
    box = data.get("box")
    try:
        x, y, w, h = (_number(v, "box value") for v in np.asarray(box, dtype=float).reshape(-1))
    except (TypeError, ValueError) as err:
        raise ValueError(f"the face detector's face {index} is {item!r}; expected (x, y, w, h) or a dict with "
                         f"'box': (x, y, w, h) and optionally 'landmarks' and 'score' ({err})") from err
    if w <= 0 or h <= 0:
        raise ValueError(f"the face detector's face {index} has width {w} and height {h}; both must be positive")
    landmarks = data.get("landmarks")
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=float)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2 or not np.isfinite(points).all():
            raise ValueError(f"the face detector's face {index} has landmarks of shape {points.shape}; expected at "
                             "least 2 finite (x, y) points, the eyes first")
        landmarks = tuple((float(px), float(py)) for px, py in points)
    score = data.get("score")
    return FaceBox(round(x), round(y), max(1, round(w)), max(1, round(h)),
                   None if score is None else _number(score, "score"), landmarks)


class CallableFaceDetector:
    """Wraps a user's detector: `detect(rgb_uint8_array)` returns a sequence (or (N, 4) array) of (x, y, w, h)
    boxes, or of dicts `{"box": (x, y, w, h), "landmarks": [(x, y), ...], "score": s}` (landmarks and score
    optional; the first two landmarks are the eyes)."""

    def __init__(self, detect: Callable[[np.ndarray], Any]):
        self.detect = detect

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        found = self.detect(image)
        if found is None:
            return []
        if isinstance(found, np.ndarray) and found.ndim == 2:
            found = list(found)
        if isinstance(found, (str, bytes, dict)) or not isinstance(found, (Sequence, np.ndarray)):
            raise ValueError(f"the face detector returned a {type(found).__name__}; expected a list of (x, y, w, h) "
                             "boxes or of dicts with 'box'")
        return [_face_from_output(item, i) for i, item in enumerate(found)]


def as_face_detector(spec: str | Callable | None, find_eyes: bool = False, options: FaceOptions | None = None,
                     yunet_file: str | os.PathLike | None = None) -> Callable[[np.ndarray], list[FaceBox]] | None:
    """The detector for `spec`: a name from `FACE_DETECTORS`, a callable (see `CallableFaceDetector`), or None.

    `None` and `"none"` mean no detection: the whole image is one face (for images that are already crops).
    `find_eyes` prepares the detector for alignment (it costs time): the Haar detectors look for the eyes, YuNet
    estimates each face's roll from its eye landmarks. `options` supplies the built-in detectors' working size and
    YuNet's thresholds; `yunet_file` where YuNet's model is (None: `yunet_model_path()`).
    """
    if spec is None or isinstance(spec, (_WorkingSizeDetector, CallableFaceDetector)):
        return spec
    if isinstance(spec, str):
        if spec not in FACE_DETECTORS:
            raise ValueError(f"face_detector must be one of {FACE_DETECTORS} or a callable, got {spec!r}")
        options = options or FaceOptions()
        if spec == "none":
            return None
        if spec == "yunet":
            return YuNetFaceDetector(options.score_threshold, options.nms_threshold, options.detection_size,
                                     estimate_roll=find_eyes, model_path=yunet_file)
        return HaarFaceDetector(profile=spec == "haar_profile", find_eyes=find_eyes,
                                detection_size=options.detection_size)
    if callable(spec):
        return CallableFaceDetector(spec)
    raise ValueError(f"face_detector must be one of {FACE_DETECTORS} or a callable, got a {type(spec).__name__}")


def build_face_detector(options: FaceOptions,
                        yunet_file: str | os.PathLike | None = None) -> Callable[[np.ndarray], list[FaceBox]] | None:
    """The detector `options` describe (prepared for alignment only when `options.align` asks for it)."""
    return as_face_detector(options.face_detector, find_eyes=options.align, options=options, yunet_file=yunet_file)


def face_crop_box(face: FaceBox, width: int, height: int, margin: float = DEFAULT_MARGIN,
                  square: bool = True) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) region cut out for `face` in a width x height image.

    The box grows by `margin` times its size on every side; with `square`, its longer side sets both. A square that
    fits in the image is moved inside it whole (so it stays square); one that does not, and any non-square region,
    is clipped to the image.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    side_w, side_h = face.w * (1 + 2 * margin), face.h * (1 + 2 * margin)
    if square:
        side_w = side_h = max(side_w, side_h)
    cx, cy = face.x + face.w / 2.0, face.y + face.h / 2.0
    sides = []
    for centre, side, limit in ((cx, side_w, width), (cy, side_h, height)):
        side = max(1, round(side))
        start = round(centre - side / 2.0)
        if square and side <= min(width, height):
            start = min(max(start, 0), limit - side)
        low, high = max(0, start), min(limit, start + side)
        sides.append((low, max(high, low + 1)))
    (left, right), (top, bottom) = sides
    return left, top, right, bottom


def _bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`image` (H, W, C) sampled at float pixel coordinates, edges replicated."""
    height, width = image.shape[:2]
    xs, ys = np.clip(xs, 0, width - 1), np.clip(ys, 0, height - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    pixels = image.astype(np.float32)
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x1] * fx
    bottom = pixels[y1, x0] * (1 - fx) + pixels[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def eye_angle(landmarks: Sequence[tuple[float, float]]) -> float:
    """The angle (radians) of the line from the left eye to the right eye; 0 when the eyes are level."""
    (lx, ly), (rx, ry) = sorted(landmarks[:2])
    return math.atan2(ry - ly, rx - lx)


def aligned_crop(image: np.ndarray, face: FaceBox, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """A square crop of `face`, rotated about the box centre by its roll (`face.roll`, or else the eye line of
    `face.landmarks`), so that its eyes are level.

    The crop has the side `face_crop_box` would give (before clipping) and the dtype of `image`; pixels beyond
    the image repeat its edge.
    """
    if face.roll is None and face.landmarks is None:
        raise ValueError("aligning a face needs its eye landmarks or its estimated roll")
    angle = face.roll if face.roll is not None else eye_angle(face.landmarks)
    side = max(1, round(max(face.w, face.h) * (1 + 2 * margin)))
    cx, cy = face.x + face.w / 2.0, face.y + face.h / 2.0
    grid = np.arange(side, dtype=np.float32) - (side - 1) / 2.0
    u, v = np.meshgrid(grid, grid)
    cos, sin = math.cos(angle), math.sin(angle)
    xs, ys = cx + cos * u - sin * v, cy + sin * u + cos * v
    array = image if image.ndim == 3 else image[..., None]
    crop = _bilinear(array, xs, ys)
    if np.issubdtype(image.dtype, np.integer):
        crop = np.clip(crop.round(), 0, np.iinfo(image.dtype).max)
    crop = crop.astype(image.dtype)
    return crop if image.ndim == 3 else crop[..., 0]


def crop_face(image: np.ndarray, face: FaceBox, margin: float = DEFAULT_MARGIN, square: bool = True,
              align: bool = False) -> np.ndarray:
    """The face region of an (H, W[, C]) array: `face_crop_box`, or `aligned_crop` when `align` is set and the
    face has a roll estimate or eye landmarks (faces without either are cropped unrotated)."""
    if align and (face.roll is not None or face.landmarks is not None):
        return aligned_crop(image, face, margin)
    left, top, right, bottom = face_crop_box(face, image.shape[1], image.shape[0], margin, square)
    return image[top:bottom, left:right]


def select_faces(faces: Sequence[FaceBox], width: int, height: int, min_face_size: int = 0,
                 max_faces: int | None = None) -> list[FaceBox]:
    """The faces kept from a detector's output, left to right: inside the image, at least `min_face_size` pixels on
    their shorter side, and (with `max_faces`) only the largest `max_faces`."""
    kept = [f for f in faces if min(f.w, f.h) >= min_face_size]
    kept = [f for f in kept if f.x < width and f.y < height and f.x + f.w > 0 and f.y + f.h > 0]
    if max_faces is not None:
        kept = sorted(kept, key=lambda f: f.area, reverse=True)[:max_faces]
    return sorted(kept, key=lambda f: (f.x, f.y))


def extract_faces(image: np.ndarray, detector: Callable | None, margin: float = DEFAULT_MARGIN, align: bool = False,
                  min_face_size: int = 0, square: bool = True,
                  max_faces: int | None = None) -> list[tuple[FaceBox, np.ndarray]]:
    """The faces of an (H, W, 3) RGB array and their crops, left to right.

    Args:
        detector: from `as_face_detector`; None takes the whole image as one face (no margin, no alignment).
        margin, square, align: how each face is cut out (see `crop_face`).
        min_face_size, max_faces: which faces are kept (see `select_faces`).
    """
    height, width = image.shape[:2]
    if detector is None:
        return [(FaceBox(0, 0, width, height), image)]
    faces = select_faces(detector(to_uint8_rgb(image)), width, height, min_face_size, max_faces)
    return [(face, crop_face(image, face, margin, square, align)) for face in faces]


def faces_with_options(image: np.ndarray, detector: Callable | None,
                       options: FaceOptions) -> list[tuple[FaceBox, np.ndarray]]:
    """`extract_faces` with the crop and selection settings of `options` (`detector` from `build_face_detector`)."""
    return extract_faces(image, detector, margin=options.margin, align=options.align,
                         min_face_size=options.min_face_size, max_faces=options.max_faces)


__all__ = ["DEFAULT_MARGIN", "DETECTION_MIN_SIDE", "FACE_DETECTORS", "LANDMARK_NAMES", "OPENCV_HINT", "ROLL_FACE_SIDE",
           "ROLL_STEPS", "YUNET_FILE", "YUNET_SHA256", "CallableFaceDetector", "FaceBox", "FaceOptions",
           "HaarFaceDetector", "YuNetFaceDetector", "aligned_crop", "as_face_detector", "box_iou",
           "build_face_detector", "check_yunet_file", "crop_face", "detection_scale", "extract_faces",
           "eye_angle", "face_crop_box", "faces_with_options", "file_sha256", "merge_overlapping",
           "select_faces", "to_uint8_rgb", "yunet_model_path"]
