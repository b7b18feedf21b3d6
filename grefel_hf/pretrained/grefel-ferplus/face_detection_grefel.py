"""Finding faces in a photograph and cutting them out for the expression model.

- `HaarFaceDetector`: OpenCV's Haar cascades (frontal faces, profile faces as an option, eyes for alignment). The
  cascade files ship inside `opencv-python-headless` 4.x, so detection works fully offline.
- Any callable that takes an (H, W, 3) uint8 RGB array and returns boxes (and optionally landmarks) works as a
  detector too (`as_face_detector`), so a user can bring YuNet, MTCNN or RetinaFace.
- `face_crop_box` and `crop_face`: a margin around the box, squared, kept inside the image; `crop_face` can also
  rotate the face so the eyes are level.

Boxes are (x, y, w, h) in pixels of the input image. Finding no face is an empty list, never a made-up box.

This file is saved next to checkpoints as remote code: it imports only numpy and, optionally, OpenCV (inside
`try`, so a machine without OpenCV can still load the model and use a callable detector).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import cv2
except ImportError:  # detection with Haar cascades needs OpenCV; everything else here does not
    cv2 = None

OPENCV_HINT = "pip install 'opencv-python-headless>=4.8,<5' (OpenCV 5 no longer ships the Haar cascades)"
"""What to install when OpenCV or its Haar cascades are missing."""

FACE_DETECTORS = ("haar", "haar_profile", "none")
"""Detector names `as_face_detector` accepts: frontal Haar cascade, frontal plus profile, or no detection (the
whole image is one face, for images that are already face crops)."""


@dataclass(frozen=True)
class FaceBox:
    """One detected face.

    Args:
        x, y, w, h: the box in pixels of the input image (left, top, width, height).
        score: the detector's confidence, when it gives one.
        landmarks: facial landmarks as (x, y) pixel pairs, when known; the first two are the eyes (either order),
            which alignment uses. Five-point detectors give eyes, nose tip and mouth corners.
    """

    x: int
    y: int
    w: int
    h: int
    score: float | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None

    def as_dict(self) -> dict[str, int]:
        """The box as `{"x", "y", "w", "h"}`."""
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


def box_iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, width) * max(0, height)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def _require_cv2(what: str):
    if cv2 is None or not hasattr(cv2, "CascadeClassifier"):
        found = "OpenCV is not installed" if cv2 is None else f"OpenCV {cv2.__version__} has no Haar cascades"
        raise ImportError(f"{what} needs OpenCV's Haar cascades, but {found}: {OPENCV_HINT}")
    return cv2


def _load_cascade(filename: str):
    cv = _require_cv2("face detection")
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


class HaarFaceDetector:
    """Faces from OpenCV's Haar cascades (bundled with opencv-python-headless 4.x; no download).

    Args:
        profile: also look for faces in profile (both directions), besides frontal faces.
        find_eyes: look for the two eyes inside each face, as landmarks for alignment (a face whose eyes are not
            both found keeps `landmarks=None`).
        scale_factor: how much the search window grows between scales (smaller: slower, finds more).
        min_neighbors: how many overlapping detections a face needs (larger: fewer false faces).
        min_size: smallest face side searched for, in pixels.
    """

    def __init__(self, profile: bool = False, find_eyes: bool = False, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 24):
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be above 1, got {scale_factor}")
        if min_neighbors < 0 or min_size < 1:
            raise ValueError(f"min_neighbors must be >= 0 and min_size >= 1, got {min_neighbors}, {min_size}")
        self.profile, self.find_eyes = profile, find_eyes
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
        self._frontal = _load_cascade("haarcascade_frontalface_default.xml")
        self._side = _load_cascade("haarcascade_profileface.xml") if profile else None
        self._eyes = _load_cascade("haarcascade_eye.xml") if find_eyes else None

    def _detect(self, cascade, gray: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
        found = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                         minSize=(min_size, min_size))
        return [tuple(int(v) for v in box) for box in found]

    def _eye_centres(self, gray: np.ndarray, box: tuple[int, int, int, int]):
        """The two largest eyes found in the upper part of the face, as (x, y) centres sorted left to right."""
        x, y, w, h = box
        upper = gray[y : y + int(h * 0.6), x : x + w]
        eyes = self._detect(self._eyes, upper, max(4, w // 10))
        if len(eyes) < 2:
            return None
        eyes = sorted(eyes, key=lambda e: e[2] * e[3], reverse=True)[:2]
        centres = sorted((x + ex + ew / 2.0, y + ey + eh / 2.0) for ex, ey, ew, eh in eyes)
        return tuple(centres)

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        """The faces in an (H, W, 3) RGB or (H, W) gray uint8 array."""
        cv = _require_cv2("face detection")
        gray = image if image.ndim == 2 else cv.cvtColor(np.ascontiguousarray(image), cv.COLOR_RGB2GRAY)
        gray = cv.equalizeHist(np.ascontiguousarray(gray))
        boxes = self._detect(self._frontal, gray, self.min_size)
        if self._side is not None:
            width = gray.shape[1]
            side = self._detect(self._side, gray, self.min_size)
            mirrored = self._detect(self._side, np.ascontiguousarray(gray[:, ::-1]), self.min_size)
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


def as_face_detector(spec: str | Callable | None,
                     find_eyes: bool = False) -> Callable[[np.ndarray], list[FaceBox]] | None:
    """The detector for `spec`: a name from `FACE_DETECTORS`, a callable (see `CallableFaceDetector`), or None.

    `None` and `"none"` mean no detection: the whole image is one face (for images that are already crops).
    `find_eyes` makes the Haar detectors look for eye landmarks too (for alignment; it costs time).
    """
    if spec is None or isinstance(spec, (HaarFaceDetector, CallableFaceDetector)):
        return spec
    if isinstance(spec, str):
        if spec not in FACE_DETECTORS:
            raise ValueError(f"face_detector must be one of {FACE_DETECTORS} or a callable, got {spec!r}")
        return None if spec == "none" else HaarFaceDetector(profile=spec == "haar_profile", find_eyes=find_eyes)
    if callable(spec):
        return CallableFaceDetector(spec)
    raise ValueError(f"face_detector must be one of {FACE_DETECTORS} or a callable, got a {type(spec).__name__}")


def face_crop_box(face: FaceBox, width: int, height: int, margin: float = 0.2,
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


def aligned_crop(image: np.ndarray, face: FaceBox, margin: float = 0.2) -> np.ndarray:
    """A square crop of `face`, rotated about the box centre so that its eyes (`face.landmarks`) are level.

    The crop has the side `face_crop_box` would give (before clipping) and the dtype of `image`; pixels beyond
    the image repeat its edge.
    """
    if face.landmarks is None:
        raise ValueError("aligning a face needs its eye landmarks")
    angle = eye_angle(face.landmarks)
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


def crop_face(image: np.ndarray, face: FaceBox, margin: float = 0.2, square: bool = True,
              align: bool = False) -> np.ndarray:
    """The face region of an (H, W[, C]) array: `face_crop_box`, or `aligned_crop` when `align` is set and the
    face has eye landmarks (faces without them are cropped unrotated)."""
    if align and face.landmarks is not None:
        return aligned_crop(image, face, margin)
    left, top, right, bottom = face_crop_box(face, image.shape[1], image.shape[0], margin, square)
    return image[top:bottom, left:right]


def extract_faces(image: np.ndarray, detector: Callable | None, margin: float = 0.2, align: bool = False,
                  min_face_size: int = 0, square: bool = True) -> list[tuple[FaceBox, np.ndarray]]:
    """The faces of an (H, W, 3) RGB array and their crops, left to right.

    Args:
        detector: from `as_face_detector`; None takes the whole image as one face (no margin, no alignment).
        margin, square, align: how each face is cut out (see `crop_face`).
        min_face_size: faces whose shorter side is below this many pixels are left out.
    """
    height, width = image.shape[:2]
    if detector is None:
        return [(FaceBox(0, 0, width, height), image)]
    faces = [f for f in detector(to_uint8_rgb(image)) if min(f.w, f.h) >= min_face_size]
    faces = [f for f in faces if f.x < width and f.y < height and f.x + f.w > 0 and f.y + f.h > 0]
    faces.sort(key=lambda f: (f.x, f.y))
    return [(face, crop_face(image, face, margin, square, align)) for face in faces]


__all__ = ["FACE_DETECTORS", "OPENCV_HINT", "CallableFaceDetector", "FaceBox", "HaarFaceDetector", "aligned_crop",
           "as_face_detector", "box_iou", "crop_face", "extract_faces", "eye_angle", "face_crop_box",
           "merge_overlapping", "to_uint8_rgb"]
