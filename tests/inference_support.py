"""Shared pieces of the inference and pipeline tests: a tiny saved GReFEL model and real photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import tiny_grefel_config
from PIL import Image

from grefel_hf import GReFELForImageClassification, build_image_processor, save_grefel_folder
from grefel_hf.face_detection_grefel import FaceBox

ASTRONAUT_FACE = FaceBox(175, 60, 95, 105)
"""The astronaut's face in `skimage.data.astronaut()` (512 x 512), marked by hand: hairline to chin, ear to ear."""


def save_tiny_model(folder: Path, backbone: str = "test_resnet", seed: int = 0, **overrides) -> Path:
    """A random tiny GReFEL model saved as a self-contained folder (48 px input)."""
    torch.manual_seed(seed)
    model = GReFELForImageClassification(tiny_grefel_config(backbone, **overrides)).eval()
    return save_grefel_folder(model, build_image_processor(model.config), folder)


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def chelsea() -> np.ndarray:
    from skimage import data

    return data.chelsea()


def write_astronaut_video(path: Path, frames: int = 6, side: int = 256, fps: float = 10.0) -> Path:
    """A short mp4 (OpenCV VideoWriter) of the astronaut photo drifting sideways."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (side, side))
    photo = cv2.cvtColor(cv2.resize(astronaut(), (side, side)), cv2.COLOR_RGB2BGR)
    for i in range(frames):
        writer.write(np.roll(photo, 2 * i, axis=1))
    writer.release()
    return path


def write_odd_format_files(folder: Path) -> list[Path]:
    """Face-crop files in the modes photos come in (16-bit, RGBA, LA, palette, int32 and float TIFF)."""
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    rgb = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    images = {
        "gray16.png": Image.fromarray(gray.astype(np.uint16) * 257),
        "rgba.png": Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (40, 40), dtype=np.uint8)]), "RGBA"),
        "la.png": Image.fromarray(np.dstack([gray, rng.integers(0, 256, (40, 40), dtype=np.uint8)]), "LA"),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "int32.tif": Image.fromarray((gray.astype(np.int32) * 200), "I"),
        "float.tif": Image.fromarray(gray.astype(np.float32) / 255.0, "F"),
    }
    paths = []
    for name, image in images.items():
        image.save(folder / name)
        paths.append(folder / name)
    return paths


def shared_fer_faces(shared_data: str, count: int) -> list[np.ndarray]:
    """The first `count` FER+ training faces (48x48 grayscale) from the shared real-data archive, as RGB arrays."""
    import io
    import tarfile

    faces = []
    with tarfile.open(Path(shared_data) / "ferplus_trainval.tar.gz") as archive:
        for member in archive:
            if member.name.endswith(".png"):
                gray = np.asarray(Image.open(io.BytesIO(archive.extractfile(member).read())).convert("L"))
                faces.append(np.stack([gray] * 3, axis=-1))
                if len(faces) == count:
                    break
    return faces


def paste_on_canvas(pieces: list[tuple[np.ndarray, float, tuple[int, int]]], size: tuple[int, int],
                    seed: int = 0) -> np.ndarray:
    """A noisy grey (width, height) canvas with each (image, scale, (x, y)) pasted, resized by `scale`, at (x, y)."""
    width, height = size
    canvas = Image.fromarray(np.random.default_rng(seed).integers(90, 140, (height, width, 3), dtype=np.uint8))
    for image, scale, place in pieces:
        picture = Image.fromarray(image)
        resized = picture.resize((round(picture.width * scale), round(picture.height * scale)),
                                 Image.Resampling.BILINEAR)
        canvas.paste(resized, place)
    return np.asarray(canvas)


def write_decompression_bomb(path: Path, side: int = 30000) -> Path:
    """A tiny PNG whose header states `side` x `side` pixels (900 million by default, over twice PIL's
    decompression-bomb limit), so PIL refuses it when opening it."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", side, side)  # the IHDR chunk's width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path
