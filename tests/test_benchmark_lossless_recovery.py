"""The FER2013 benchmark's recovery of lossless training pixels (benchmarks/fer2013_lossless_train.py)."""

import os
import sys

import numpy as np
from conftest import REPO_ROOT
from PIL import Image, ImageFilter

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from fer2013_lossless_train import BLUR_SIGMA, MAX_MATCH_RMSE, match_lossless  # noqa: E402


def _faces(count: int, seed: int) -> np.ndarray:
    """Grayscale 48x48 images with face-scale structure (upsampled 6x6 noise) plus fine detail."""
    rng = np.random.default_rng(seed)
    coarse = [Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).resize((48, 48), Image.BILINEAR)
              for _ in range(count)]
    detail = rng.normal(0, 20, (count, 48, 48))
    return np.clip(np.stack([np.asarray(c, dtype=np.float64) for c in coarse]) + detail, 0, 255).astype(np.uint8)


def test_blurred_copies_find_their_lossless_originals():
    lossless = _faces(60, seed=0)
    order = np.random.default_rng(1).permutation(60)[:40]
    blurred = np.stack([np.asarray(Image.fromarray(lossless[i]).filter(ImageFilter.GaussianBlur(BLUR_SIGMA)))
                        for i in order])
    best, rmse = match_lossless(blurred, lossless)
    np.testing.assert_array_equal(best, order)
    assert rmse.max() < 0.5  # the same blur of the same pixels


def test_a_face_missing_from_the_lossless_set_has_no_close_match():
    lossless = _faces(30, seed=0)
    stranger = _faces(1, seed=99)[0]
    blurred = np.asarray(Image.fromarray(stranger).filter(ImageFilter.GaussianBlur(BLUR_SIGMA)))[None]
    _, rmse = match_lossless(blurred, lossless)
    assert rmse[0] > MAX_MATCH_RMSE
