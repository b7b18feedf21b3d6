"""Tiny datasets written in the exact on-disk layouts of FER2013, FER+ and RAF-DB, for tests.

The real datasets cannot ship with the project (RAF-DB not at all), so tests build miniature copies with the
same file names, headers and folder structure. Every writer returns what it wrote, so a test can compare a
builder's output with the fixture instead of with hard-coded numbers.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .common import FER2013_LABELS

FERPLUS_VOTE_HEADER = "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
_FER_USAGE = {"train": "Training", "validation": "PublicTest", "test": "PrivateTest"}


def random_face(rng: np.random.Generator, size: int = 48, channels: int = 1) -> np.ndarray:
    """A random uint8 image (a smooth gradient plus noise, so that JPEG files stay small)."""
    ramp = np.linspace(0, 200, size)[None, :] + rng.normal(0, 20, (size, size))
    image = np.clip(ramp, 0, 255).astype(np.uint8)
    return image if channels == 1 else np.repeat(image[:, :, None], channels, axis=2)


def write_fer2013_csv(root: str, per_split: dict[str, Sequence[int]], seed: int = 0) -> list[tuple[str, int]]:
    """Write `root/fer2013.csv` with the given labels per split, rows interleaved in the file.

    Args:
        root: output folder (created).
        per_split: class ids for "train", "validation", "test" (Training, PublicTest, PrivateTest).

    Returns:
        (split, label) for every data row, in file order.
    """
    rng = np.random.default_rng(seed)
    rows = [(split, label) for split, labels in per_split.items() for label in labels]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "fer2013.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for split, label in rows:
            pixels = " ".join(str(v) for v in random_face(rng).ravel())
            writer.writerow([label, pixels, _FER_USAGE[split]])
    return rows


def write_fer2013_folders(
    root: str, per_split: dict[str, Sequence[int]], prefixes: bool = True, seed: int = 0
) -> dict[str, list[str]]:
    """Write the Kaggle layout: `train/<class>/Training_<id>.jpg`, `test/<class>/PublicTest_<id>.jpg` ...

    Args:
        root: output folder.
        per_split: class ids for "train", "validation" (PublicTest) and "test" (PrivateTest).
        prefixes: False writes names without the split prefix (`<id>.jpg`), as some copies do.

    Returns:
        The relative paths written per split.
    """
    rng = np.random.default_rng(seed)
    written: dict[str, list[str]] = {}
    for split, labels in per_split.items():
        folder = "train" if split == "train" else "test"
        written[split] = []
        for index, label in enumerate(labels):
            name = (
                f"{_FER_USAGE[split]}_{1000 * (seed + 1) + index}.jpg" if prefixes else f"{split}{index}.jpg"
            )
            relpath = os.path.join(folder, FER2013_LABELS[label], name)
            os.makedirs(os.path.dirname(os.path.join(root, relpath)), exist_ok=True)
            Image.fromarray(random_face(rng)).save(os.path.join(root, relpath), quality=90)
            written[split].append(relpath)
    return written


def write_ferplus_folders(root: str, per_split: dict[str, Sequence[Sequence[int]]], seed: int = 0) -> None:
    """Write Microsoft's generated layout: `FER2013{Train,Valid,Test}/fer<n>.png` plus headerless `label.csv`.

    Args:
        root: output folder.
        per_split: the 10 vote counts of every image, for "train", "validation" and "test".
    """
    rng = np.random.default_rng(seed)
    folders = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}
    index = 0
    for split, vote_rows in per_split.items():
        folder = os.path.join(root, folders[split])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "label.csv"), "w", newline="") as handle:
            writer = csv.writer(handle)
            for votes in vote_rows:
                name = f"fer{index:07d}.png"
                Image.fromarray(random_face(rng)).save(os.path.join(folder, name))
                writer.writerow([name, "(0, 0, 48, 48)", *votes])
                index += 1


def write_ferplus_csvs(root: str, rows: Sequence[tuple[str, str, Sequence[int]]], seed: int = 0) -> None:
    """Write `fer2013new.csv` and a matching `fer2013.csv` (same rows, same Usage, random pixels).

    Args:
        root: output folder.
        rows: (split, image name or "" for a non-face row, 10 vote counts) per row.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    with (
        open(os.path.join(root, "fer2013new.csv"), "w", newline="") as new,
        open(os.path.join(root, "fer2013.csv"), "w", newline="") as old,
    ):
        new_writer, old_writer = csv.writer(new), csv.writer(old)
        new_writer.writerow(["Usage", "Image name", *FERPLUS_VOTE_HEADER.split(",")])
        old_writer.writerow(["emotion", "pixels", "Usage"])
        for split, name, votes in rows:
            new_writer.writerow([_FER_USAGE[split], name, *votes])
            pixels = " ".join(str(v) for v in random_face(rng).ravel())
            old_writer.writerow([int(rng.integers(0, 7)), pixels, _FER_USAGE[split]])


def write_rafdb(root: str, per_split: dict[str, Sequence[int]], seed: int = 0) -> list[tuple[str, int]]:
    """Write RAF-DB basic: `basic/EmoLabel/list_patition_label.txt` and aligned (100x100) + original images.

    Args:
        root: output folder (the one that holds `basic/`).
        per_split: 0-based class ids for "train" and "test" (written 1-based, as the real file has them).

    Returns:
        (name in the label file, 0-based label) per line.
    """
    rng = np.random.default_rng(seed)
    basic = os.path.join(root, "basic")
    for sub in ("EmoLabel", os.path.join("Image", "aligned"), os.path.join("Image", "original")):
        os.makedirs(os.path.join(basic, sub), exist_ok=True)
    lines = []
    for split, labels in per_split.items():
        digits = 5 if split == "train" else 4
        for index, label in enumerate(labels, start=1):
            name = f"{split}_{index:0{digits}d}.jpg"
            Image.fromarray(random_face(rng, 100, 3)).save(
                os.path.join(basic, "Image", "aligned", name[:-4] + "_aligned.jpg")
            )
            Image.fromarray(random_face(rng, 120, 3)).save(os.path.join(basic, "Image", "original", name))
            lines.append((name, label))
    with open(os.path.join(basic, "EmoLabel", "list_patition_label.txt"), "w") as handle:
        handle.writelines(f"{name} {label + 1}\n" for name, label in lines)
    return lines
