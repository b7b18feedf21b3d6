"""What freezing the backbone's first parameter groups saves per training step. (Benchmark, not a test.)

`--backbone_frozen_groups N` freezes the stem and the first N − 1 stages of the timm backbone (timm's coarse
`group_matcher` order), so backpropagation stops at the first trainable stage. This times, interleaved in one run so
that machine noise hits every model alike, the channels-last forward+backward+AdamW step of the plain head and of
GReFEL (as `head_cost.py` configures it) on EfficientNet-Lite0 with each count of frozen groups, and reports each
step's median time over the same setup's with nothing frozen, and GReFEL's over the plain head's.

    python benchmarks/frozen_groups.py --image_size 80 --counts 0 2 3 4
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys

import torch
from fer_cpu_budget import current_commit, write_report
from head_cost import BACKBONE, BASE_SETTINGS, BATCH, LABELS, build, objective
from model_overhead import time_train_steps

from grefel_hf.training.freezing import freeze_backbone_groups


def build_models(image_size: int, counts: list[int]) -> dict[tuple[str, int], torch.nn.Module]:
    """The plain head and GReFEL with each count of frozen backbone groups, in channels-last."""
    models = {}
    for count in counts:
        for setup in ("plain", "grefel"):
            torch.manual_seed(0)
            model = build(setup, LABELS, image_size, BASE_SETTINGS if setup == "grefel" else None)
            freeze_backbone_groups(model, count)
            models[(setup, count)] = model.to(memory_format=torch.channels_last)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_size", type=int, default=80)
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 2, 3, 4],
                        help="numbers of frozen backbone groups to time (0, nothing frozen, is always timed)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/frozen_groups/frozen_groups.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    commit = current_commit()
    counts = sorted({0, *args.counts})
    models = build_models(args.image_size, counts)
    layouts = dict.fromkeys(models, torch.channels_last)
    objectives = {(setup, count): objective(setup, BASE_SETTINGS) for setup, count in models}
    times = time_train_steps(models, args.image_size, args.steps, batch=BATCH, memory_formats=layouts,
                             optimizer="adamw", objectives=objectives)
    median = {key: statistics.median(values) for key, values in times.items()}
    results = []
    for count in counts:
        row = {"frozen_groups": count,
               "frozen_parameters_millions": sum(p.numel() for p in models[("plain", count)].parameters()
                                                 if not p.requires_grad) / 1e6}
        for setup in ("plain", "grefel"):
            row[f"{setup}_median_step_seconds"] = median[(setup, count)]
            row[f"{setup}_over_unfrozen"] = median[(setup, count)] / median[(setup, 0)]
        row["grefel_over_plain"] = median[("grefel", count)] / median[("plain", count)]
        results.append(row)
        print(f"{count} frozen groups: plain step {row['plain_over_unfrozen']:.2f}x unfrozen, GReFEL "
              f"{row['grefel_over_unfrozen']:.2f}x; GReFEL / plain {row['grefel_over_plain']:.3f}x", flush=True)
    report = {"benchmark": "frozen_groups", "commit": commit, "command": shlex.join(sys.argv), "backbone": BACKBONE,
              "image_size": args.image_size, "batch": BATCH, "optimizer": "adamw", "grefel_settings": BASE_SETTINGS,
              "steps": args.steps, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.machine(), "results": results}
    print(f"wrote {write_report(report, args.output, 'frozen_groups/frozen_groups.json')}")


if __name__ == "__main__":
    main()
