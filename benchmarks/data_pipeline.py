"""The data side of training: preparation time of the real datasets and throughput of the training input path.

Prints and writes JSON with:
- the time to prepare FER2013 and FER+ from the shared data (cold cache, via `data_prepare.py`);
- images/s of the full training input path — decode, face-preserving augmentation, resize to the model size,
  normalise, CutMix/Mixup collate — on one core (no workers, 1 thread) and on two (2 DataLoader workers);
- images/s of the forward+backward step of a resnet18 GReFEL at the same resolution on the same machine (2
  threads), and the ratio input path / training step (target: at least 5).

    python benchmarks/data_pipeline.py [--image_size 112] [--batches 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_prepare import measure, unpack  # noqa: E402

from dataset_scripts import load_fer2013, load_ferplus, load_synthetic  # noqa: E402
from grefel_hf import GReFELConfig, GReFELForImageClassification, build_image_processor  # noqa: E402
from grefel_hf.data.augmentation import build_train_transform  # noqa: E402
from grefel_hf.data.collators import GReFELMixCollator  # noqa: E402
from grefel_hf.training.data import add_sample_index  # noqa: E402
from grefel_hf.training.seeding import IndexSeededCollator, IndexSeededTransform  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
BATCH = 64


def input_path_rate(dataset, processor, workers: int, batches: int) -> float:
    """Images/s through decode → augment → resize/normalise → mixing collate."""
    transformed = add_sample_index(dataset).with_transform(IndexSeededTransform(build_train_transform(processor), 0))
    collator = IndexSeededCollator(GReFELMixCollator(7, prob=1.0), 0)
    loader = DataLoader(transformed, batch_size=BATCH, shuffle=True, num_workers=workers, collate_fn=collator,
                        persistent_workers=False, generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)
    next(iterator)  # start-up (worker spawn, first decode) is not steady-state throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH / (time.perf_counter() - start)


def training_step_rate(image_size: int, steps: int) -> float:
    """Images/s of forward+backward+SGD of a resnet18 GReFEL at `image_size` (2 threads)."""
    model = GReFELForImageClassification(GReFELConfig(backbone="resnet18", image_size=image_size)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    pixels, labels = torch.randn(BATCH, 3, image_size, image_size), torch.randint(0, 7, (BATCH,))
    for _ in range(2):
        model(pixels, labels=labels).loss.backward()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model(pixels, labels=labels).loss.backward()
        optimizer.step()
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output",
                        default=str(REPO_ROOT / "benchmarks" / "results" / "data_pipeline" / "data_pipeline.json"))
    args = parser.parse_args()
    datasets.disable_progress_bars()
    report: dict = {"benchmark": "data_pipeline", "machine": platform.machine(), "cpu_count": os.cpu_count(),
                    "image_size": args.image_size, "batch_size": BATCH}
    with tempfile.TemporaryDirectory(prefix="data-pipeline-") as tmp:
        scratch = Path(tmp)
        if Path(args.data_dir).is_dir():
            unpack(Path(args.data_dir) / "fer2013_kaggle_trainval.tar.gz", scratch / "fer2013")
            unpack(Path(args.data_dir) / "ferplus_trainval.tar.gz", scratch / "ferplus")
            fer = measure("fer2013", lambda c: load_fer2013(str(scratch / "fer2013"), cache_dir=c), scratch)
            ferplus = measure("ferplus", lambda c: load_ferplus(str(scratch / "ferplus"), cache_dir=c), scratch)
            report["prepare_seconds"] = {"fer2013": fer["cold_s"], "ferplus_majority": ferplus["cold_s"]}
            train = load_fer2013(str(scratch / "fer2013"), cache_dir=str(scratch / "cache-fer2013"))["train"]
            report["input_dataset"] = "fer2013 train (real 48x48 JPEGs)"
        else:
            train = load_synthetic(cache_dir=str(scratch / "cache-synthetic"))["train"]
            report["input_dataset"] = "synthetic train (real data not found)"
        processor = build_image_processor(GReFELConfig(backbone="resnet18", image_size=args.image_size))
        torch.set_num_threads(1)
        one_core = input_path_rate(train, processor, workers=0, batches=args.batches)
        two_cores = input_path_rate(train, processor, workers=2, batches=args.batches)
    torch.set_num_threads(2)
    model_rate = training_step_rate(args.image_size, args.steps)
    report.update({
        "input_images_per_s": {"one_core": one_core, "two_cores": two_cores},
        "grefel_resnet18_train_images_per_s_2_threads": model_rate,
        "input_over_training_ratio": {"one_core": one_core / model_rate, "two_cores": two_cores / model_rate},
        "target_ratio_min": 5.0,
    })
    for name, seconds in report.get("prepare_seconds", {}).items():
        print(f"prepare {name}: {seconds:.1f} s (target <= 60 s)")
    print(f"input path at {args.image_size}px: {one_core:.0f} img/s on one core, {two_cores:.0f} img/s on two; "
          f"resnet18 GReFEL forward+backward: {model_rate:.0f} img/s → ratio {one_core / model_rate:.1f}x "
          f"(one core), {two_cores / model_rate:.1f}x (two cores), target >= 5x")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
