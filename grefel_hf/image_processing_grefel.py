"""GReFEL image processors: a torchvision backend and its PIL-backend twin (transformers 5 backends).

Before the standard resize → rescale → normalise pipeline, every input is checked and brought to 3-channel
RGB in height-width-channel layout: 48x48 grayscale FER faces, RGBA, CMYK, palette and 16-bit images all become
RGB; things that are not images are rejected with a `ValueError` that names the input and the problem.

This file is saved next to checkpoints as remote code: it imports only numpy, PIL and transformers.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend, TorchvisionBackend
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling

MIN_IMAGE_SIDE = 8
"""Smallest accepted image side in pixels: anything smaller cannot hold a face."""

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_WIDE_INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def link_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with `path` if it is a symbolic link that leads nowhere ("is a symbolic link to X, which does
    not exist" or "is a symbolic link loop"); None for anything else."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop (following it never reaches a file)"
        raise
    return None


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file the way the GReFEL processors read images: decoded in full, turned upright by its EXIF
    orientation, and left in its own mode (16-bit, RGBA, palette, float), so that the processor, not a blind
    `.convert("RGB")`, decides how to bring it to RGB.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image PIL can read, it is truncated or corrupt, it has more pixels than
            PIL's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`), or it is a dangling or looping symbolic
            link (the message names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        problem = link_problem(path)
        if problem is not None:
            raise ValueError(f"{path} {problem}")
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            upright.load()
    except UnidentifiedImageError as err:
        raise ValueError(f"{path} is not an image file PIL can read") from err
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path} is refused as a possible decompression bomb: {err}") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports truncated and corrupt data as these
        raise ValueError(f"{path} is truncated or corrupt: {err}") from err
    upright.filename = path  # kept so later errors can name the file
    return upright


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten an image with an alpha channel (0-255) onto a white background, as PIL-based processors do."""
    weight = alpha.astype(np.float32)[..., None] / 255.0
    return (rgb.astype(np.float32) * weight + 255.0 * (1.0 - weight)).round().astype(np.uint8)


def _integer_to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """Map 8-bit or 16-bit integer pixels to uint8; refuse values outside 0..65535."""
    if array.dtype == np.uint8:
        return array
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 65535:
        raise ValueError(f"{where} has integer pixel values in [{low}, {high}]; expected 8-bit (0-255) or "
                         "16-bit (0-65535) values")
    if array.dtype == np.uint16 or high > 255:
        return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)
    return array.astype(np.uint8)


def _float_to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """Floating-point pixels are intensities in [0, 1] (torchvision's convention), whatever their container (numpy,
    torch or a PIL "F" image): 0 is black, 1 is white. Anything outside [0, 1] is refused rather than guessed at."""
    if not np.isfinite(array).all():
        raise ValueError(f"{where} contains NaN or infinite pixel values")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{where} has floating-point pixel values in [{low:g}, {high:g}]; floating-point images "
                         "must be in [0, 1] (divide 0-255 values by 255, or pass them as uint8)")
    return np.round(array * 255.0).astype(np.uint8)


def _pil_to_rgb_array(image: Image.Image, where: str) -> np.ndarray:
    """Convert a PIL image of any common mode to an (H, W, 3) uint8 array."""
    if image.mode in _WIDE_INTEGER_MODES:
        gray = _integer_to_uint8(np.asarray(image), where)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        gray = _float_to_uint8(np.asarray(image, dtype=np.float32), where)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "RGB":
        return np.array(image)
    if image.mode in _TRANSPARENT_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"))
        return _composite_on_white(rgba[..., :3], rgba[..., 3])
    return np.array(image.convert("RGB"))


def _channels_last(array: np.ndarray, layout: str | None, where: str) -> np.ndarray:
    """Return an (H, W, C) view of a 2-D or 3-D array; `layout` is "channels_first", "channels_last" or None.

    With `layout=None` an ambiguous shape such as (3, 3, 3) is read as channels-last, numpy's convention.
    """
    if array.ndim == 2:
        return array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{where} has shape {array.shape}; expected (H, W), (H, W, C) or (C, H, W)")
    if layout is None:
        # numpy images are (H, W, C) unless only the first axis looks like channels
        first, last = array.shape[0] in (1, 3, 4), array.shape[-1] in (1, 3, 4)
        layout = "channels_first" if first and not last else "channels_last"
    return np.moveaxis(array, 0, -1) if str(layout).endswith("first") else array


def _array_to_rgb(array: np.ndarray, layout: str | None, where: str) -> np.ndarray:
    """Validate a numpy image and convert it to (H, W, 3) uint8 (float input must be in [0, 1])."""
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{where} has dtype {array.dtype}; expected integer or floating-point pixels")
    if array.size == 0:
        raise ValueError(f"{where} is empty (shape {array.shape})")
    array = _channels_last(array, layout, where)
    if array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{where} has {array.shape[-1]} channels; expected 1 (gray), 3 (RGB) or 4 (RGBA)")
    if np.issubdtype(array.dtype, np.floating):
        array = _float_to_uint8(array.astype(np.float32), where)
    else:
        array = _integer_to_uint8(array, where)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        array = _composite_on_white(array[..., :3], array[..., 3])
    return array


def _describe(image: Any, index: int) -> str:
    """How errors name an input: its position, and its file when it came from one."""
    filename = getattr(image, "filename", None) if isinstance(image, Image.Image) else None
    return f"image {index} ({filename})" if filename else f"image {index}"


def _decoded(image: Image.Image, where: str) -> Image.Image:
    """The image with its pixels decoded (PIL opens files lazily); a truncated or corrupt file is a `ValueError`."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{where} is truncated or corrupt: {err}") from err
    return image


def _to_rgb(image: Any, index: int, layout: str | None) -> np.ndarray:
    """Bring one input image to an RGB (H, W, 3) array, or raise a `ValueError` naming it."""
    where = _describe(image, index)
    if isinstance(image, (str, os.PathLike)):
        try:
            image = read_image(image)
        except FileNotFoundError as err:
            raise ValueError(f"image {index} is a {type(image).__name__} that names no image file: {image!r}") from err
        except ValueError as err:
            raise ValueError(f"image {index}: {err}") from err
        where = _describe(image, index)
    if isinstance(image, Image.Image):
        array = _pil_to_rgb_array(_decoded(image, where), where)
    elif isinstance(image, np.ndarray):
        array = _array_to_rgb(image, layout, where)
    elif type(image).__module__.startswith("torch"):
        # Tensors are taken as (C, H, W) unless the caller says otherwise, as torchvision does.
        array = _array_to_rgb(image.detach().cpu().numpy(), layout or "channels_first", where)
    else:
        raise ValueError(f"{where} is a {type(image).__name__}; expected a PIL.Image.Image, a file path, a numpy "
                         "array (H, W[, C]) or a torch tensor (C, H, W)")
    if not array.flags.writeable or any(stride < 0 for stride in array.strides):
        array = array.copy()  # views of PIL images are read-only, flipped views step backwards: torch takes neither
    height, width = array.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"{where} is {width}x{height} pixels; expected a face image of at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    return array


def _flatten_images(images: Any) -> list:
    """Flatten a single image, a list (possibly nested once), or a 4-D batch array/tensor into a list."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("GReFEL image processor got an empty list; expected at least one image")
        flat = []
        for item in images:
            flat.extend(_flatten_images(item) if isinstance(item, (list, tuple)) else [item])
        return flat
    if getattr(images, "ndim", None) == 4:
        if len(images) == 0:
            raise ValueError("GReFEL image processor got an empty batch; expected at least one image")
        return list(images)
    return [images]


class _GReFELFaceInputs:
    """Input checking and RGB conversion shared by both backends; the resize/normalise pipeline is transformers'."""

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._check_settings()

    def _check_settings(self) -> None:
        """Refuse settings that would give NaN or a shape error at the first image (the message names the field)."""
        name = type(self).__name__
        for field_name in ("image_mean", "image_std"):
            values = getattr(self, field_name)
            values = [values] * 3 if isinstance(values, (int, float)) else list(values)
            if len(values) != 3 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in values):
                raise ValueError(f"{name}.{field_name} must be 3 finite numbers (one per RGB channel), got "
                                 f"{getattr(self, field_name)!r}")
        std = self.image_std
        if any(v <= 0 for v in ([std] * 3 if isinstance(std, (int, float)) else std)):
            raise ValueError(f"{name}.image_std must be positive (it divides every pixel), got {std!r}")
        size = self.size or {}
        sides = [size.get(key) for key in ("height", "width", "shortest_edge") if size.get(key) is not None]
        if not sides or any(not isinstance(v, int) or v < MIN_IMAGE_SIDE for v in sides):
            raise ValueError(f"{name}.size must give a height and width of at least {MIN_IMAGE_SIDE} pixels, got "
                             f"{dict(size)}")

    def preprocess(self, images, *args, **kwargs):
        """Check and convert `images` to RGB, then resize, rescale and normalise them.

        Accepts a PIL image, a numpy array (H, W[, C]), a torch tensor (C, H, W), a 4-D batch, or a list of these.

        Raises:
            ValueError: for an empty list, an object that is not an image, an image smaller than 8x8 pixels, or
                pixels that are NaN/infinite or out of range; the message names the offending image.
        """
        layout = kwargs.pop("input_data_format", None)
        rgb = [_to_rgb(image, i, layout) for i, image in enumerate(_flatten_images(images))]
        return super().preprocess(rgb, *args, input_data_format="channels_last", **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Serialise, writing the remote-code `auto_map` so that a machine without torchvision gets the PIL twin."""
        output = super().to_dict()
        if "AutoImageProcessor" in (output.get("auto_map") or {}):
            output["auto_map"]["AutoImageProcessor"] = {
                "torchvision": "image_processing_grefel.GReFELImageProcessor",
                "pil": "image_processing_grefel.GReFELImageProcessorPil",
            }
        return output


class GReFELImageProcessor(_GReFELFaceInputs, TorchvisionBackend):
    """GReFEL image processor (torchvision backend): RGB conversion, bilinear resize, rescale, normalise."""


class GReFELImageProcessorPil(_GReFELFaceInputs, PilBackend):
    """GReFEL image processor (PIL backend), for environments without torchvision; same outputs within rounding."""


__all__ = ["GReFELImageProcessor", "GReFELImageProcessorPil", "MIN_IMAGE_SIDE", "link_problem", "read_image"]
