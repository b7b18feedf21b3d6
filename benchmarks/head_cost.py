"""What GReFEL's head costs per training step, per config variant, against the plain linear head. (Benchmark, not a test.)

`fer_cpu_budget.py` gives both setups the same wall-clock budget, so every bit of GReFEL's head that slows a step
costs it training steps. This times, interleaved in one run so that machine noise hits every model alike, the
channels-last forward+backward+update step of the plain head and of GReFEL in each variant, on that benchmark's
backbone and input size (EfficientNet-Lite0, 64 px, batch 64), and reports each variant's median step time over the
plain head's. A variant is a JSON object of GReFELConfig fields on top of the benchmark's GReFEL settings. The update
is SGD by default; `--optimizer adamw` times the optimiser the real-data benchmarks train with, whose per-tensor update
makes GReFEL's extra parameter tensors cost more.

    python benchmarks/head_cost.py --variants '{}' '{"embed_dim": 128}' '{"feature_levels": []}'
    python benchmarks/head_cost.py --optimizer adamw --variants '{}' \\
        --output benchmarks/results/head_cost/head_cost_adamw.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys

import torch
from fer_cpu_budget import BACKBONE, build, current_commit, parse_variant, write_report
from model_overhead import OPTIMIZERS, time_train_steps

IMAGE_SIZE = 64
BATCH = 64
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
BASE_SETTINGS = {"embed_dim": 256, "dropout": 0.0, "path_loss_weight": 3.0, "primary_hidden_sizes": [],
                 "primary_input": "backbone"}
"""GReFEL as the latest `fer_cpu_budget.py` runs configure it; a variant's fields override these."""


def build_models(variants: list[dict]) -> dict[str, torch.nn.Module]:
    """The plain head and one GReFEL per variant, each named by its JSON and built as `fer_cpu_budget.py` builds
    them, in channels-last."""
    torch.manual_seed(0)
    models = {"plain": build("plain", LABELS, IMAGE_SIZE)[0]}
    for variant in variants:
        models[json.dumps(variant, sort_keys=True)] = build("grefel", LABELS, IMAGE_SIZE, {**BASE_SETTINGS, **variant})[0]
    return {name: model.to(memory_format=torch.channels_last) for name, model in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", type=parse_variant, default=[{}, {"embed_dim": 128}])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd",
                        help="the update timed with each step (fer_cpu_budget.py trains with AdamW)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/head_cost/head_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    commit = current_commit()
    models = build_models(args.variants)
    layouts = dict.fromkeys(models, torch.channels_last)
    times = time_train_steps(models, IMAGE_SIZE, args.steps, batch=BATCH, memory_formats=layouts,
                             optimizer=args.optimizer)
    median = {name: statistics.median(values) for name, values in times.items()}
    results = [{"variant": json.loads(name), "median_step_seconds": median[name],
                "over_plain": median[name] / median["plain"],
                "params_millions": sum(p.numel() for p in models[name].parameters()) / 1e6}
               for name in models if name != "plain"]
    for result in results:
        print(f"GReFEL {json.dumps(result['variant'])}: {result['over_plain']:.3f}x the plain head's step", flush=True)
    report = {"benchmark": "head_cost", "commit": commit, "command": shlex.join(sys.argv), "backbone": BACKBONE,
              "image_size": IMAGE_SIZE, "batch": BATCH, "base_settings": BASE_SETTINGS, "steps": args.steps,
              "optimizer": args.optimizer,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
              "plain_median_step_seconds": median["plain"], "results": results}
    print(f"wrote {write_report(report, args.output, 'head_cost/head_cost.json')}")


if __name__ == "__main__":
    main()
