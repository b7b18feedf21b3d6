"""Copies of images and video frames with each face's box and label drawn on them (`--annotate DIR`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..face_detection_grefel import to_uint8_rgb
from ..pipeline_grefel import ImageFaces

BOX_COLOUR = (255, 64, 64)
TEXT_COLOUR = (255, 255, 255)
KEPT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Image formats an annotated copy keeps; other images are written as PNG."""


def draw_faces(image: np.ndarray, result: ImageFaces, labels: list[str]) -> np.ndarray:
    """An RGB uint8 copy of `image` with every face's box and "label score" drawn on it."""
    canvas = Image.fromarray(to_uint8_rgb(image))
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 300))
    font = ImageFont.load_default()
    for face, probs in zip(result.faces, result.probabilities, strict=True):
        best = int(probs.argmax())
        text = f"{labels[best]} {probs[best]:.2f}"
        draw.rectangle((face.x, face.y, face.x + face.w - 1, face.y + face.h - 1), outline=BOX_COLOUR, width=width)
        left, top, right, bottom = draw.textbbox((face.x, face.y), text, font=font)
        top_of_label = max(0, face.y - (bottom - top) - 4)
        draw.rectangle((face.x, top_of_label, face.x + right - left + 4, top_of_label + bottom - top + 4),
                       fill=BOX_COLOUR)
        draw.text((face.x + 2, top_of_label + 2 - (top - face.y)), text, fill=TEXT_COLOUR, font=font)
    return np.asarray(canvas)


class UniqueNames:
    """File names in one folder that never collide: `name.ext`, then `name_1.ext`, `name_2.ext`, ..."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._taken: set[str] = set()

    def path(self, stem: str, suffix: str) -> Path:
        name, count = f"{stem}{suffix}", 0
        while name in self._taken:
            count += 1
            name = f"{stem}_{count}{suffix}"
        self._taken.add(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name


def annotated_image_path(names: UniqueNames, source: Path) -> Path:
    """Where the annotated copy of the image `source` goes."""
    suffix = source.suffix.lower() if source.suffix.lower() in KEPT_SUFFIXES else ".png"
    return names.path(source.stem, suffix)


__all__ = ["UniqueNames", "annotated_image_path", "draw_faces"]
