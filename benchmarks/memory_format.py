"""Channels-last against the default (NCHW) memory format for a CPU training step. (Benchmark, not a test.)

`GReFELTrainingArguments.channels_last` (on by default) puts the model and every image batch in channels-last
layout. This measures, in one run and interleaved so that machine noise hits every variant alike, the median
forward+backward+SGD step time of GReFEL and of the plain-head baseline in both layouts, and reports:
- the speed-up channels-last gives each model (NCHW time / channels-last time);
- GReFEL's step time over the plain head's in each layout (its overhead, as in model_overhead.py).

    python benchmarks/memory_format.py [--steps 8] [--output benchmarks/results/memory_format/memory_format.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

import torch
from model_overhead import time_train_steps

from grefel_hf import (
    BaselineConfig,
    BaselineForImageClassification,
    GReFELConfig,
    GReFELForImageClassification,
)

SETUPS = {
    "tf_efficientnet_lite0@64": {"backbone": "tf_efficientnet_lite0", "image_size": 64, "embed_dim": 256},
    "resnet18@112": {"backbone": "resnet18", "image_size": 112, "embed_dim": 512},
}
BATCH = 64
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
REPO_ROOT = Path(__file__).resolve().parent.parent


def build_models(backbone: str, image_size: int, embed_dim: int) -> dict[str, torch.nn.Module]:
    """GReFEL and the plain head over the same backbone, each in both layouts (same initial weights)."""
    torch.manual_seed(0)
    grefel = GReFELForImageClassification(GReFELConfig(backbone=backbone, image_size=image_size, embed_dim=embed_dim))
    plain = BaselineForImageClassification(BaselineConfig(backbone=backbone, image_size=image_size))
    models = {}
    for model_name, model in (("grefel", grefel), ("plain", plain)):
        for layout, memory_format in LAYOUTS.items():
            copy = type(model)(model.config)
            copy.load_state_dict(model.state_dict())
            models[f"{model_name}/{layout}"] = copy.to(memory_format=memory_format).train()
    return models


def run_setup(name: str, setup: dict, steps: int) -> dict:
    models = build_models(**setup)
    layouts = {name: LAYOUTS[name.split("/")[1]] for name in models}
    times = time_train_steps(models, setup["image_size"], steps, batch=BATCH, memory_formats=layouts)
    median = {key: statistics.median(values) for key, values in times.items()}
    result = {
        "setup": name, **setup, "batch": BATCH, "median_step_seconds": median,
        "channels_last_speedup": {m: median[f"{m}/nchw"] / median[f"{m}/channels_last"] for m in ("grefel", "plain")},
        "grefel_over_plain": {layout: median[f"grefel/{layout}"] / median[f"plain/{layout}"] for layout in LAYOUTS},
    }
    print(f"{name}: channels-last speed-up GReFEL {result['channels_last_speedup']['grefel']:.2f}x, plain head "
          f"{result['channels_last_speedup']['plain']:.2f}x; GReFEL/plain step time "
          f"{result['grefel_over_plain']['nchw']:.2f} (NCHW), {result['grefel_over_plain']['channels_last']:.2f} "
          "(channels-last)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per model and layout")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--output",
                        default=str(REPO_ROOT / "benchmarks" / "results" / "memory_format" / "memory_format.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO_ROOT).stdout.strip()
    results = [run_setup(name, SETUPS[name], args.steps) for name in args.setups]
    report = {"benchmark": "memory_format", "commit": commit, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
              "steps": args.steps, "results": results}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
