"""How much does GReFEL cost on top of its bare backbone? (CPU benchmark, not a test.)

For each setup it measures, in the same run and interleaved so that machine noise hits both equally:
- the forward+backward training step time of GReFEL divided by that of the same timm backbone with a plain linear
  head and cross-entropy (batch 32);
- the inference throughput (images/s) of `pipeline("image-classification")` for both models, on 48x48 grayscale
  faces, and its ratio.

Targets (issue 2): training step ratio <= 1.10, inference throughput ratio >= 0.9.

    python benchmarks/model_overhead.py [--steps 8] [--output benchmarks/results/step_overhead/model_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import pipeline

from grefel_hf import (
    BaselineConfig,
    BaselineForImageClassification,
    GReFELConfig,
    GReFELForImageClassification,
    build_image_processor,
)
from grefel_hf.training.trainer import objective_loss

SETUPS = {
    "resnet18@112": {"backbone": "resnet18", "image_size": 112},
    "vit_small@112": {"backbone": "vit_small_patch16_224", "image_size": 112},
}
BATCH = 32


def build_pair(backbone: str, image_size: int):
    """GReFEL and the plain-head baseline over the same (randomly initialised) backbone."""
    torch.manual_seed(0)
    grefel = GReFELForImageClassification(GReFELConfig(backbone=backbone, image_size=image_size))
    plain = BaselineForImageClassification(BaselineConfig(backbone=backbone, image_size=image_size))
    return grefel, plain


OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


def time_train_steps(models: dict, image_size: int, steps: int, batch: int = BATCH,
                     memory_formats: dict[str, torch.memory_format] | None = None,
                     optimizer: str = "sgd", objectives: dict | None = None) -> dict[str, list[float]]:
    """Interleaved forward+backward+update step times (seconds) per model.

    `memory_formats` maps a model's name to the layout its input batch gets (default: contiguous NCHW). `optimizer`
    is "sgd" or "adamw" (what the real-data benchmarks train with; its per-tensor update costs more). `objectives`
    maps a model's name to the objective it trains with, as `GReFELTrainer` computes it; a model without one trains
    on the default loss its forward pass returns.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    pixels = torch.randn(batch, 3, image_size, image_size)
    labels = torch.randint(0, 7, (batch,))
    inputs = {name: pixels.contiguous(memory_format=(memory_formats or {}).get(name, torch.contiguous_format))
              for name in models}
    optimizers = {name: OPTIMIZERS[optimizer](m.parameters(), lr=1e-4) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(steps + 2):
        for name, model in models.items():
            model.train()
            start = time.perf_counter()
            optimizers[name].zero_grad(set_to_none=True)
            objective = (objectives or {}).get(name)
            if objective is None:
                model(pixel_values=inputs[name], labels=labels).loss.backward()
            else:
                batch_inputs = {"pixel_values": inputs[name], "labels": labels}
                objective_loss(objective, model, batch_inputs, trust=1.0)[0].backward()
            optimizers[name].step()
            if step >= 2:  # the first two steps warm up allocators and kernels
                times[name].append(time.perf_counter() - start)
    return times


def time_pipelines(models: dict, processor, repeats: int, num_images: int = 96) -> dict[str, list[float]]:
    """Interleaved pipeline throughputs (images/s) per model on 48x48 grayscale faces."""
    rng = np.random.default_rng(0)
    faces = [Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8), "L") for _ in range(num_images)]
    pipes = {name: pipeline("image-classification", model=m.eval(), image_processor=processor)
             for name, m in models.items()}
    for pipe in pipes.values():
        pipe(faces[:BATCH], batch_size=BATCH)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, pipe in pipes.items():
            start = time.perf_counter()
            pipe(faces, batch_size=BATCH)
            rates[name].append(num_images / (time.perf_counter() - start))
    return rates


def run_setup(name: str, setup: dict, steps: int, repeats: int) -> dict:
    grefel, plain = build_pair(**setup)
    models = {"grefel": grefel, "plain": plain}
    train = time_train_steps(models, setup["image_size"], steps)
    processor = build_image_processor(grefel.config)
    infer = time_pipelines(models, processor, repeats)
    step_g, step_p = statistics.median(train["grefel"]), statistics.median(train["plain"])
    ips_g, ips_p = statistics.median(infer["grefel"]), statistics.median(infer["plain"])
    result = {
        "setup": name, **setup, "batch_size": BATCH,
        "train_step_ratio": step_g / step_p,
        "train_step_s_median": {"grefel": step_g, "plain": step_p},
        "pipeline_images_per_s_median": {"grefel": ips_g, "plain": ips_p},
        "pipeline_throughput_ratio": ips_g / ips_p,
        "params_millions": {"grefel": sum(p.numel() for p in grefel.parameters()) / 1e6,
                            "plain": sum(p.numel() for p in plain.parameters()) / 1e6},
    }
    print(f"{name}: train step ratio {result['train_step_ratio']:.3f} (target <= 1.10), "
          f"pipeline throughput ratio {result['pipeline_throughput_ratio']:.3f} (target >= 0.9); "
          f"grefel {ips_g:.1f} img/s vs plain {ips_p:.1f} img/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per model and setup")
    parser.add_argument("--repeats", type=int, default=3, help="timed pipeline passes per model and setup")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--output", default="benchmarks/results/step_overhead/model_overhead.json")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    results = [run_setup(name, SETUPS[name], args.steps, args.repeats) for name in args.setups]
    report = {
        "benchmark": "model_overhead", "device": "cpu", "threads": args.threads, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "results": results,
        "targets": {"train_step_ratio_max": 1.10, "pipeline_throughput_ratio_min": 0.9},
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
