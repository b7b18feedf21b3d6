"""Recover sharp pixels for the FER2013 training images of the shared archive (benchmark helper, not a test).

The shared `fer2013_kaggle_trainval.tar.gz` has sharp PublicTest JPEGs (1.7 grey levels RMSE from the lossless
pixels) but blurred training JPEGs: their Laplacian energy is about 19 times lower, and a Gaussian blur of σ = 3
pixels applied to the lossless FER+ PNGs of the same faces reproduces them to about 3.5 grey levels RMSE.
Trained on them, a model is evaluated on a different kind of image than it learnt from.

The FER+ archive holds the same FER2013 training faces, lossless (`data/FER2013Train/*.png`). This module finds
each blurred FER2013 training image's lossless face by blurring the PNGs the same way and taking the nearest one,
keeps FER2013's own label (the folder the JPEG is in) and drops the images whose best match is not close
(FER+ left 151 FER2013 training rows out). Several matched images can share one PNG: FER2013 holds duplicate faces
(identical JPEGs, sometimes with different labels). Validation stays the archive's untouched PublicTest split.

`benchmarks/fer_cpu_budget.py --dataset fer2013` trains on the recovered split by default and records this
module's `MatchReport` in its JSON; `--fer2013_train_pixels archive` trains on the blurred JPEGs instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import PIL.ImageFilter
import torch
from torch.nn import functional as F

from grefel_hf.training.split_checks import split_sharpness

logger = logging.getLogger("fer2013_lossless_train")

BLUR_SIGMA = 3.0  # fitted: σ = 2, 3, 4 give 9.7, 3.5, 5.1 grey levels median RMSE on 200 matched faces
MAX_MATCH_RMSE = 8.0  # grey levels between a blurred JPEG and its blurred PNG match; the median is 3.5
PNG_NAME = re.compile(r"^(\S+\.png)\b")  # what a recovered row's source starts with


def lossless_source(png_name: str, archive_source: str) -> str:
    """The `source` of a recovered row: the lossless FER+ PNG's name, then the archive row whose label it keeps."""
    return f"{png_name} (label of {archive_source})"


def lossless_png_name(source: str) -> str | None:
    """The FER+ PNG name a recovered row's `source` starts with, or None when it starts with none."""
    match = PNG_NAME.match(source)
    return None if match is None else match.group(1)


@dataclass
class MatchReport:
    """What the recovery found, for the benchmark's JSON."""

    train_images: int
    matched: int
    dropped_no_close_match: int
    distinct_lossless_faces: int
    match_rmse_median: float
    match_rmse_p99: float
    blur_sigma: float
    max_match_rmse: float
    sharpness_archive_train: float
    sharpness_archive_validation: float
    sharpness_lossless_train: float


def _gray_stack(images) -> np.ndarray:
    return np.stack([np.asarray(image.convert("L")) for image in images])


def _blurred(pixels: np.ndarray) -> torch.Tensor:
    blur = PIL.ImageFilter.GaussianBlur(BLUR_SIGMA)
    return torch.from_numpy(np.stack([np.asarray(PIL.Image.fromarray(p).filter(blur)) for p in pixels])).float()


def match_lossless(blurred_jpegs: np.ndarray, lossless_pngs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every blurred image, the index of its nearest blurred lossless image and the pixel RMSE between them."""
    query = torch.from_numpy(np.array(blurred_jpegs, dtype=np.float32))
    reference = _blurred(lossless_pngs)
    signature = lambda x: F.avg_pool2d(x.unsqueeze(1), 4).flatten(1)  # noqa: E731  (12x12 = 144 numbers)
    query_sig, reference_sig = signature(query), signature(reference)
    best = torch.empty(len(query), dtype=torch.long)
    for start in range(0, len(query), 2048):
        best[start:start + 2048] = torch.cdist(query_sig[start:start + 2048], reference_sig).argmin(1)
    rmse = ((query - reference[best]) ** 2).mean((1, 2)).sqrt()
    return best.numpy(), rmse.numpy()


def build_lossless_fer2013(archive_splits: datasets.DatasetDict, ferplus_train_dir: Path,
                           output_dir: Path) -> MatchReport:
    """Save a DatasetDict (train: lossless FER2013 training faces with FER2013 labels; validation: the archive's
    PublicTest) to `output_dir` and return what the matching found."""
    train, validation = archive_splits["train"], archive_splits["validation"]
    png_paths = sorted(ferplus_train_dir.glob("*.png"))
    if not png_paths:
        raise FileNotFoundError(f"no FER+ training PNGs in {ferplus_train_dir}")
    lossless = np.stack([np.asarray(PIL.Image.open(path).convert("L")) for path in png_paths])
    best, rmse = match_lossless(_gray_stack(train["image"]), lossless)
    keep = np.flatnonzero(rmse <= MAX_MATCH_RMSE)
    logger.info("matched %d of %d FER2013 training images to lossless FER+ faces; dropped %d without a close match",
                len(keep), len(train), len(train) - len(keep))
    repaired = datasets.Dataset.from_dict(
        {"image": [PIL.Image.fromarray(lossless[best[i]]) for i in keep],
         "label": [train[int(i)]["label"] for i in keep],
         "source": [lossless_source(png_paths[best[i]].name, train[int(i)]["source"]) for i in keep]},
        features=train.features,
    )
    datasets.DatasetDict({"train": repaired, "validation": validation}).save_to_disk(str(output_dir))
    return MatchReport(
        train_images=len(train), matched=len(keep), dropped_no_close_match=len(train) - len(keep),
        distinct_lossless_faces=len(set(best[keep].tolist())), match_rmse_median=float(np.median(rmse)),
        match_rmse_p99=float(np.percentile(rmse, 99)), blur_sigma=BLUR_SIGMA, max_match_rmse=MAX_MATCH_RMSE,
        sharpness_archive_train=split_sharpness(train), sharpness_archive_validation=split_sharpness(validation),
        sharpness_lossless_train=split_sharpness(repaired),
    )
