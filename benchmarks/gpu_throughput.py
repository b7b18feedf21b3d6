"""Training throughput on one GPU in bf16, and a short FER+ run's validation accuracy. (Benchmark, not a test.)

Prepared for a session with a GPU; none was available when it was written, so it has not been run (docs/gpu.md). In
about 8 minutes on one GPU it measures:

1. training throughput, in images/s: forward, backward and AdamW step under bf16 autocast, channels-last, on random
   images (median of timed windows after a warm-up), of
   - the CPU recipe's model (`recipes/grefel_cpu_ferplus.yaml`: GReFEL on EfficientNet-Lite0 at 80 px, its objective
     and frozen stem) at the recipe's batch of 64 and at --batch;
   - the same GReFEL on a ViT-S/16 (`vit_small_patch16_224`, random weights) at 112 and 224 px, at --batch;
2. a short FER+ run: train_hf.py's job with that recipe and `--bf16 true` on the shared FER+ data, for --epochs
   epochs or --train_minutes minutes, whichever ends first, and the validation accuracy of the model it saves
   (FER2013Valid, majority labels; never a test split).

It writes benchmarks/results/gpu_throughput/<GPU name>.json with the GPU's name, the versions and every figure.

    python benchmarks/gpu_throughput.py [--epochs 3] [--train_minutes 4] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback, set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fer_cpu_budget import current_commit, unpack  # noqa: E402

from grefel_hf import create_model  # noqa: E402
from grefel_hf.training.argument_parser import parse_training_arguments  # noqa: E402
from grefel_hf.training.freezing import freeze_backbone_groups  # noqa: E402
from grefel_hf.training.model_arguments import MODEL_CONFIGS  # noqa: E402
from grefel_hf.training.run import finish, prepare_run  # noqa: E402
from grefel_hf.training.trainer import build_objective, objective_loss  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPE = REPO_ROOT / "recipes" / "grefel_cpu_ferplus.yaml"
LABELS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


def recipe_model(overrides: list[str]):
    """The recipe's model (random weights: throughput does not depend on them) with its frozen groups, the objective
    it trains with, and its input size."""
    model_args, _, training_args = parse_training_arguments([str(RECIPE), *overrides])
    id2label = dict(enumerate(LABELS))
    config = MODEL_CONFIGS[model_args.model_type](id2label=id2label, label2id={n: i for i, n in id2label.items()},
                                                  **model_args.config_overrides())
    model = create_model(config)
    freeze_backbone_groups(model, training_args.backbone_frozen_groups)
    return model, build_objective(config, training_args), config.image_size


def images_per_second(model, objective, image_size: int, batch: int, windows: int = 5, steps: int = 10) -> float:
    """Median images/s of bf16-autocast training steps over `windows` timed windows of `steps` steps."""
    model = model.cuda().train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    pixels = torch.randn(batch, 3, image_size, image_size, device="cuda").contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, len(LABELS), (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = objective_loss(objective, model, {"pixel_values": pixels, "labels": labels}, trust=1.0)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(5):  # warm-up: cuDNN autotuning, allocator
        step()
    rates = []
    for _ in range(windows):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        rates.append(steps * batch / (time.perf_counter() - start))
    return statistics.median(rates)


class StopAfter(TrainerCallback):
    """Ends training after `seconds` of wall time (the run must fit the session's device time)."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.start > self.seconds:
            control.should_training_stop = True


def short_ferplus_run(args) -> dict:
    """train_hf.py's job with the CPU recipe in bf16 on the shared FER+ data; its figures, or why it was skipped."""
    try:
        data_dir = unpack("ferplus", Path(args.work_dir))
    except FileNotFoundError as err:
        return {"skipped": str(err)}
    workers = min(8, os.cpu_count() or 1)
    model_args, data_args, training_args = parse_training_arguments([
        str(RECIPE), "--data_dir", str(data_dir), "--bf16", "true", "--num_train_epochs", str(args.epochs),
        "--output_dir", str(Path(args.work_dir) / "ferplus-bf16"), "--dataloader_num_workers", str(workers),
        "--dataloader_pin_memory", "true", "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm",
        "true", "--report_to", "none"])
    set_seed(training_args.seed)
    try:
        trainer = prepare_run(model_args, data_args, training_args)
    except ValueError as err:  # e.g. the offline EfficientNet-Lite0 weights are not installed here
        return {"skipped": str(err)}
    trainer.add_callback(StopAfter(args.train_minutes * 60))
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    summary = finish(trainer, trainer.processing_class, result, training_args, data_args)
    return {"recipe": str(RECIPE.relative_to(REPO_ROOT)), "bf16": True, "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch, "train_seconds": seconds,
            "train_images_per_second": result.metrics.get("train_samples_per_second"),
            "validation_accuracy": summary.validation_accuracy, "selected_weights": summary.selected_weights,
            "inference_mode": summary.inference_mode, "dataloader_num_workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="batch of the throughput measurements")
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs of the short FER+ run")
    parser.add_argument("--train_minutes", type=float, default=4.0, help="wall-time cap of the short FER+ run")
    parser.add_argument("--work_dir", default="/tmp/grefel_gpu_throughput")
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/gpu_throughput/<GPU name>.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_throughput.py: error: no CUDA GPU is visible; this benchmark measures a GPU")
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name(0)
    throughput = []
    for name, overrides, batches in (
        ("cpu_recipe_efficientnet_lite0@80", [], (64, args.batch)),
        ("vit_small_patch16@112", ["--backbone", "vit_small_patch16_224", "--image_size", "112"], (args.batch,)),
        ("vit_small_patch16@224", ["--backbone", "vit_small_patch16_224", "--image_size", "224"], (args.batch,)),
    ):
        for batch in batches:
            torch.manual_seed(0)
            model, objective, image_size = recipe_model(overrides)
            rate = images_per_second(model, objective, image_size, batch)
            throughput.append({"model": name, "image_size": image_size, "batch": batch, "images_per_second": rate})
            print(f"{gpu}: {name}, batch {batch}: {rate:.0f} images/s (bf16 training step)", flush=True)
            del model
            torch.cuda.empty_cache()
    ferplus = short_ferplus_run(args)
    print(f"short FER+ run: {json.dumps(ferplus)}", flush=True)
    report = {"benchmark": "gpu_throughput", "gpu": gpu, "gpu_count": torch.cuda.device_count(),
              "commit": current_commit(), "command": shlex.join(sys.argv), "torch": torch.__version__,
              "cuda": torch.version.cuda, "machine": platform.machine(), "precision": "bf16 autocast",
              "throughput": throughput, "ferplus_short_run": ferplus}
    slug = re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_").lower()
    path = Path(args.output or REPO_ROOT / "benchmarks" / "results" / "gpu_throughput" / f"{slug}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
