"""Which GReFEL head settings close the gap to the plain linear head: short fixed-step runs on real FER data (not a
test).

`fer_cpu_budget.py` compares GReFEL with the plain head over a wall-clock budget. This script holds the number of
steps fixed instead (a step-based warm-up + cosine schedule), so the machine's speed on the day does not enter the
comparison, and trains the plain head and each GReFEL variant from the same seed on the same data, with the same
backbone, input size, optimiser and augmentation as `fer_cpu_budget.py`. A variant is a JSON object of GReFELConfig
fields; `{}` is GReFEL as that benchmark configures it, with the config's dropout default of 0.1.

    python benchmarks/head_ablation.py --steps 700 --variants '{}' '{"dropout": 0.0}' '{"path_loss_weight": 1.5}'

It reports accuracy, macro-F1 and per-class accuracy on the validation split only, and for GReFEL each of its
distributions (p, g, t, r, q) alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from transformers import set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fer_cpu_budget import (  # noqa: E402
    ARCHIVES,
    benchmark_training_arguments,
    build,
    current_commit,
    parse_variant,
    path_validation_metrics,
    training_data_source,
    validation_summary,
    write_report,
)

from grefel_hf import build_image_processor  # noqa: E402
from grefel_hf.training.data import (  # noqa: E402
    TrainingData,
    attach_transforms,
    load_dataset_dict,
    prepare_training_data,
)
from grefel_hf.training.run import build_trainer  # noqa: E402


def run_variant(setup: str, overrides: dict, args, data: TrainingData) -> dict:
    """Train one setup for `args.steps` steps and evaluate it on the validation split."""
    set_seed(args.seed)
    model, processor_config = build(setup, data.label_names, args.image_size, overrides)
    processor = build_image_processor(processor_config)
    training_args = benchmark_training_arguments(
        str(Path(args.work_dir) / "head-ablation"), args, backbone_lr_multiplier=1.0, max_steps=args.steps,
        logging_steps=100, dataloader_num_workers=0, mix_prob=0.0,
    )
    trainer = build_trainer(model, processor, attach_transforms(data, processor, training_args.augmentation_kwargs()),
                            training_args, None)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    metrics = trainer.evaluate()
    result = {"setup": setup, "grefel_overrides": overrides if setup == "grefel" else None, "steps": args.steps,
              "train_seconds": train_seconds, **validation_summary(metrics)}
    if setup == "grefel":  # each distribution alone, with the weights train_hf.py would keep (picked on validation)
        result["validation_paths"] = path_validation_metrics(trainer, trainer.select_final_weights(metrics)["selected"],
                                                             data.label_names)
    print(f"{setup} {json.dumps(overrides) if setup == 'grefel' else ''}: validation accuracy "
          f"{result['validation_accuracy']:.4f}, macro-F1 {result['validation_macro_f1']:.4f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(ARCHIVES), default="fer2013")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--variants", nargs="+", type=parse_variant, default=[{}, {"dropout": 0.0}])
    parser.add_argument("--no_plain", action="store_true", help="skip the plain linear head's run")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fer2013_train_pixels", choices=["lossless", "archive"], default="lossless")
    parser.add_argument("--work_dir", default="/tmp/grefel_fer_budget")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    args.class_balance = "none"
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 1)
    commit = current_commit()
    data_args, _ = training_data_source(args)
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    runs = [] if args.no_plain else [("plain", {})]
    runs += [("grefel", variant) for variant in args.variants]
    results = [run_variant(setup, overrides, args, data) for setup, overrides in runs]
    report = {"benchmark": "head_ablation", "dataset": args.dataset, "steps": args.steps, "seed": args.seed,
              "image_size": args.image_size, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
              "commit": commit, "command": shlex.join(sys.argv), "threads": torch.get_num_threads(),
              "results": results}
    print(f"wrote {write_report(report, args.output, f'head_ablation_{args.dataset}.json')}")


if __name__ == "__main__":
    main()
