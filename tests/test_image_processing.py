"""GReFELImageProcessor and its PIL twin: input kinds, colour modes, and clear errors for non-images."""

import numpy as np
import pytest
import torch
from PIL import Image

from grefel_hf import GReFELImageProcessor, GReFELImageProcessorPil

SIZE = {"height": 64, "width": 64}


@pytest.fixture(params=[GReFELImageProcessor, GReFELImageProcessorPil], ids=["torchvision", "pil"])
def processor(request):
    return request.param(size=SIZE)


def _gray_face(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def _pixels(processor, images, **kwargs):
    return processor(images, return_tensors="pt", **kwargs)["pixel_values"]


def test_grayscale_fer_image_becomes_normalised_rgb(processor):
    gray = _gray_face()
    out = _pixels(processor, Image.fromarray(gray, "L"))
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 1], out[0, 2])
    # (x/255 - 0.5) / 0.5 keeps values in [-1, 1]
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5


def test_pil_numpy_hwc_and_torch_chw_inputs_match(processor):
    rgb = np.random.default_rng(1).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    from_pil = _pixels(processor, Image.fromarray(rgb, "RGB"))
    from_numpy = _pixels(processor, rgb)
    from_torch = _pixels(processor, torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
    torch.testing.assert_close(from_pil, from_numpy)
    torch.testing.assert_close(from_pil, from_torch)
    gray = _gray_face(2)
    torch.testing.assert_close(_pixels(processor, Image.fromarray(gray, "L")), _pixels(processor, gray))
    torch.testing.assert_close(_pixels(processor, gray), _pixels(processor, torch.from_numpy(gray)[None]))


def test_backends_agree_within_rounding():
    images = [Image.fromarray(_gray_face(i), "L") for i in range(3)]
    fast = _pixels(GReFELImageProcessor(size=SIZE), images)
    pil = _pixels(GReFELImageProcessorPil(size=SIZE), images)
    assert fast.shape == pil.shape == (3, 3, 64, 64)
    assert (fast - pil).abs().max() < 0.05


def test_rgba_cmyk_palette_and_16_bit_images_are_converted(processor):
    rgb = np.random.default_rng(3).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    reference = _pixels(processor, Image.fromarray(rgb, "RGB"))
    opaque = Image.fromarray(np.dstack([rgb, np.full((48, 48), 255, np.uint8)]), "RGBA")
    torch.testing.assert_close(_pixels(processor, opaque), reference)
    transparent = Image.fromarray(np.dstack([rgb, np.zeros((48, 48), np.uint8)]), "RGBA")
    assert torch.allclose(_pixels(processor, transparent), torch.ones(1, 3, 64, 64))  # white background
    cmyk = Image.fromarray(rgb, "RGB").convert("CMYK")
    assert _pixels(processor, cmyk).shape == (1, 3, 64, 64)
    palette = Image.fromarray(rgb, "RGB").convert("P")
    assert _pixels(processor, palette).shape == (1, 3, 64, 64)
    gray8 = _gray_face(4)
    gray16 = gray8.astype(np.uint16) * 257
    expected = _pixels(processor, Image.fromarray(gray8, "L"))
    sixteen_bit = Image.fromarray(gray16)
    assert sixteen_bit.mode.startswith("I;16")
    torch.testing.assert_close(_pixels(processor, sixteen_bit), expected)
    torch.testing.assert_close(_pixels(processor, gray16), expected)


def test_batches_and_lists(processor):
    faces = [Image.fromarray(_gray_face(i), "L") for i in range(4)]
    assert _pixels(processor, faces).shape == (4, 3, 64, 64)
    batch = np.stack([np.asarray(f) for f in faces])[..., None]
    torch.testing.assert_close(_pixels(processor, list(batch)), _pixels(processor, faces))


@pytest.mark.parametrize(
    ("bad_input", "message"),
    [
        ([], "empty list"),
        ("not an image", "image 0 is a str that names no image file"),
        ({"pixels": 1}, "image 0 is a dict"),
        (Image.new("L", (1, 1)), "image 0 is 1x1 pixels"),
        (np.zeros((1, 1, 3), np.uint8), "1x1 pixels"),
        (torch.full((3, 48, 48), float("nan")), "NaN or infinite"),
        (np.full((48, 48), np.inf, np.float32), "NaN or infinite"),
        (np.zeros((48, 48, 5), np.uint8), "5 channels"),
        (np.zeros((2, 48, 48, 3, 1), np.uint8), "image 0 is a ndarray|shape"),
        (np.full((48, 48), -3, np.int16), "integer pixel values"),
        (np.zeros((48, 48), bool), "dtype bool"),
    ],
)
def test_non_images_are_rejected_with_a_clear_value_error(processor, bad_input, message):
    with pytest.raises(ValueError, match=message):
        processor(bad_input, return_tensors="pt")


def test_the_bad_image_is_named_in_a_batch(processor):
    good = Image.fromarray(_gray_face(), "L")
    with pytest.raises(ValueError, match="image 2 is 4x4 pixels"):
        processor([good, good, Image.new("L", (4, 4))], return_tensors="pt")


def test_save_and_reload_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    reloaded = type(processor).from_pretrained(tmp_path)
    face = Image.fromarray(_gray_face(), "L")
    torch.testing.assert_close(_pixels(processor, face), _pixels(reloaded, face))
