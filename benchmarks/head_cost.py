"""What GReFEL's head costs per training step, per config variant, against the plain head. (Benchmark, not a test.)

`fer_cpu_budget.py` gives both setups the same wall-clock budget, so every bit of GReFEL's head that slows a step
costs it training steps. This times, interleaved in one run so that machine noise hits every model alike, the
channels-last forward+backward+update step of the plain head and of GReFEL in each variant, on that benchmark's
backbone and input size (EfficientNet-Lite0, 64 px, batch 64), and reports each variant's median step time over the
plain head's (the baseline model's default, `grefel_hf.modeling_baseline`). A variant is a JSON object of GReFELConfig
and GReFEL objective fields on top of the benchmark's GReFEL settings. The update
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
from dataclasses import fields

import torch
from fer_cpu_budget import current_commit, write_report
from model_overhead import OPTIMIZERS, time_train_steps

from grefel_hf import BaselineConfig, GReFELConfig, create_model
from grefel_hf.losses import GReFELObjective

BACKBONE = "tf_efficientnet_lite0"
BACKBONE_WEIGHTS = "efficientnet-lite0"

IMAGE_SIZE = 64
BATCH = 64
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
BASE_SETTINGS = {"embed_dim": 256, "dropout": 0.0, "path_loss_weight": 3.0, "primary_hidden_sizes": [],
                 "primary_input": "backbone"}
"""GReFEL as the latest `fer_cpu_budget.py` runs configure it; a variant's fields override these."""

OBJECTIVE_FIELDS = {f.name for f in fields(GReFELObjective)} - {"label_smoothing", "class_weights"}
"""GReFEL objective fields a variant may set besides its GReFELConfig fields."""


def parse_variant(text: str) -> dict:
    """A variant from the command line: a JSON object whose keys are GReFELConfig or GReFEL objective fields."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object of GReFELConfig or objective fields, got {text!r} "
                                         f"({err})") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of GReFELConfig or objective fields, got {text!r}")
    unknown = sorted(set(value) - set(GReFELConfig.__annotations__) - OBJECTIVE_FIELDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"{text!r} names unknown GReFELConfig or objective fields {unknown}")
    return value


def build(setup: str, labels: list[str], image_size: int, settings: dict | None = None) -> torch.nn.Module:
    """A model the speed benchmarks time, over EfficientNet-Lite0 from the offline ImageNet weights: `"plain"`, the
    baseline's plain head, or `"grefel"` with the GReFELConfig fields of `settings` (its objective fields are
    `objective`'s)."""
    id2label = dict(enumerate(labels))
    common = dict(backbone=BACKBONE, image_size=image_size, id2label=id2label,
                  label2id={name: i for i, name in id2label.items()})
    if setup == "plain":
        return create_model(BaselineConfig(**common), backbone_weights=BACKBONE_WEIGHTS)
    architecture = {name: value for name, value in (settings or {}).items() if name not in OBJECTIVE_FIELDS}
    return create_model(GReFELConfig(**common, **architecture), backbone_weights=BACKBONE_WEIGHTS)


def objective(setup: str, settings: dict | None = None) -> GReFELObjective | None:
    """The objective a `build(setup, ..., settings)` model trains with: GReFEL's from the objective fields of
    `settings`, None (the model's own default loss) for the plain head."""
    if setup == "plain":
        return None
    return GReFELObjective(**{name: value for name, value in (settings or {}).items() if name in OBJECTIVE_FIELDS})


def build_models(variants: list[dict]) -> tuple[dict[str, torch.nn.Module], dict[str, GReFELObjective | None]]:
    """The plain head and one GReFEL per variant, each named by its JSON and built as `fer_cpu_budget.py` builds
    them, in channels-last; and the objective each trains with."""
    torch.manual_seed(0)
    settings = {"plain": None, **{json.dumps(v, sort_keys=True): {**BASE_SETTINGS, **v} for v in variants}}
    models, objectives = {}, {}
    for name, variant_settings in settings.items():
        setup = "plain" if variant_settings is None else "grefel"
        models[name] = build(setup, LABELS, IMAGE_SIZE, variant_settings).to(memory_format=torch.channels_last)
        objectives[name] = objective(setup, variant_settings)
    return models, objectives


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
    models, objectives = build_models(args.variants)
    layouts = dict.fromkeys(models, torch.channels_last)
    times = time_train_steps(models, IMAGE_SIZE, args.steps, batch=BATCH, memory_formats=layouts,
                             optimizer=args.optimizer, objectives=objectives)
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
