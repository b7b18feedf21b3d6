"""Copies of images and video frames with each face's box and label drawn on them (`--annotate DIR`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..face_detection_grefel import to_uint8_rgb
from ..pipeline_grefel import UNCERTAIN, ImageFaces
from .disk_sets import DiskSet

BOX_COLOUR = (255, 64, 64)
TEXT_COLOUR = (255, 255, 255)
UNCERTAIN_COLOUR = (150, 150, 150)
"""Box and caption colour of a face the model abstains on (label `uncertain`)."""
KEPT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Image formats an annotated copy keeps; other images are written as PNG."""


def draw_faces(image: np.ndarray, result: ImageFaces, labels: list[str]) -> np.ndarray:
    """An RGB uint8 copy of `image` with every face's box and "label score" drawn on it; a face the model abstains
    on is grey, captioned "uncertain? (best guess score)"."""
    canvas = Image.fromarray(to_uint8_rgb(image))
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 300))
    font = ImageFont.load_default()
    for face, probs, label in zip(result.faces, result.probabilities, result.face_labels(labels), strict=True):
        best = int(probs.argmax())
        text = f"{labels[best]} {probs[best]:.2f}"
        colour = BOX_COLOUR
        if label == UNCERTAIN:
            text, colour = f"uncertain? ({text})", UNCERTAIN_COLOUR
        draw.rectangle((face.x, face.y, face.x + face.w - 1, face.y + face.h - 1), outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((face.x, face.y), text, font=font)
        top_of_label = max(0, face.y - (bottom - top) - 4)
        draw.rectangle((face.x, top_of_label, face.x + right - left + 4, top_of_label + bottom - top + 4),
                       fill=colour)
        draw.text((face.x + 2, top_of_label + 2 - (top - face.y)), text, fill=TEXT_COLOUR, font=font)
    return np.asarray(canvas)


class UniqueNames:
    """File names in one folder that never collide: `name.ext`, then `name_1.ext`, `name_2.ext`, ... The same
    requests in the same order give the same names (nothing is created here). The names given are kept on disk
    (`DiskSet`), so a million of them take no memory; `close` removes them."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._taken = DiskSet()

    def close(self) -> None:
        self._taken.close()

    def reserve(self, name: str) -> None:
        """Keep `name` out of the names given (a file the run writes there itself)."""
        self._taken.add(name)

    def path(self, stem: str, suffix: str) -> Path:
        name, count = f"{stem}{suffix}", 0
        while name in self._taken:
            count += 1
            name = f"{stem}_{count}{suffix}"
        self._taken.add(name)
        return self.folder / name


def annotated_suffix(source: Path) -> str:
    """The extension of the annotated copy of the image `source` (its own when PIL writes it well, else .png)."""
    return source.suffix.lower() if source.suffix.lower() in KEPT_SUFFIXES else ".png"


__all__ = ["BOX_COLOUR", "TEXT_COLOUR", "UNCERTAIN_COLOUR", "UniqueNames", "annotated_suffix", "draw_faces"]
