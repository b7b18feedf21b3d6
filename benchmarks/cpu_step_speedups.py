"""What the two CPU training-step fixes buy: the per-tap depthwise weight gradient and reusing freed memory.
(Benchmark, not a test.)

`--fast_depthwise_grad` (grefel_hf/training/depthwise.py) replaces PyTorch's CPU weight gradient of depthwise
convolutions whose kernel is larger than their input map, which is pathologically slow; `--cpu_reuse_memory`
(grefel_hf/training/cpu_memory.py) stops glibc from mapping activations of 32 MiB or more afresh at every step. This
times the channels-last forward+backward+AdamW step of the plain head and of GReFEL (as `head_cost.py` configures them)
on EfficientNet-Lite0, each with PyTorch's depthwise gradient and with the per-tap one, interleaved in one run so that
machine noise hits every model alike. It times them first with glibc's default malloc, then again after
`reuse_freed_memory()`, a process-wide setting that cannot be undone, so those two phases run one after the other.

    python benchmarks/cpu_step_speedups.py --image_sizes 64 80 --frozen_groups 3
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import statistics
import sys
import time

import torch
from fer_cpu_budget import cpu_model_name, current_commit, write_report
from head_cost import BACKBONE, BASE_SETTINGS, BATCH, LABELS, build, objective
from model_overhead import time_train_steps

from grefel_hf.training.cpu_memory import reuse_freed_memory
from grefel_hf.training.depthwise import depthwise_weight_grad, use_fast_depthwise_weight_grad
from grefel_hf.training.freezing import freeze_backbone_groups

VARIANTS = ("native", "fast")  # PyTorch's depthwise weight gradient, the per-tap one


def build_models(image_size: int, frozen_groups: int) -> dict[str, torch.nn.Module]:
    """`<setup>/<variant>` models in channels-last; both variants of a setup start from the same weights."""
    models = {}
    for setup in ("plain", "grefel"):
        torch.manual_seed(0)
        model = build(setup, LABELS, image_size, BASE_SETTINGS if setup == "grefel" else None)
        freeze_backbone_groups(model, frozen_groups)
        model.to(memory_format=torch.channels_last)
        fast = copy.deepcopy(model)
        use_fast_depthwise_weight_grad(fast)
        models[f"{setup}/native"], models[f"{setup}/fast"] = model, fast
    return models


def time_phase(image_size: int, frozen_groups: int, steps: int) -> dict[str, float]:
    """Median step seconds of every `<setup>/<variant>` model."""
    models = build_models(image_size, frozen_groups)
    objectives = {name: objective(name.split("/")[0], BASE_SETTINGS) for name in models}
    times = time_train_steps(models, image_size, steps, batch=BATCH,
                             memory_formats=dict.fromkeys(models, torch.channels_last), optimizer="adamw",
                             objectives=objectives)
    return {name: statistics.median(values) for name, values in times.items()}


def median_ms(function, repeats: int = 9) -> float:
    """Median wall time of `function()` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def time_depthwise_layer(channels: int = 1152, size: int = 3, kernel: int = 5) -> dict[str, float]:
    """One depthwise layer of EfficientNet-Lite0's 1152-channel stage at 80 px (5x5 kernel over a 3x3 map), batch
    64, channels-last: its forward pass, PyTorch's input and weight gradients, and the per-tap weight gradient."""
    layout = torch.channels_last
    inputs = torch.randn(BATCH, channels, size, size).contiguous(memory_format=layout)
    weight = torch.randn(channels, 1, kernel, kernel).contiguous(memory_format=layout)
    pad = kernel // 2
    grad = torch.randn_like(torch.nn.functional.conv2d(inputs, weight, padding=pad, groups=channels))

    def pytorch_grad(mask):
        return lambda: torch.ops.aten.convolution_backward(grad, inputs, weight, None, [1, 1], [pad, pad], [1, 1],
                                                           False, [0, 0], channels, mask)

    return {"shape": [BATCH, channels, size, size], "kernel": kernel,
            "forward_ms": median_ms(lambda: torch.nn.functional.conv2d(inputs, weight, padding=pad, groups=channels)),
            "pytorch_input_grad_ms": median_ms(pytorch_grad([True, False, False])),
            "pytorch_weight_grad_ms": median_ms(pytorch_grad([False, True, False])),
            "per_tap_weight_grad_ms": median_ms(lambda: depthwise_weight_grad(inputs, grad, (kernel, kernel), (1, 1),
                                                                             (pad, pad), (1, 1)))}


def time_large_elementwise_op(shape=(BATCH, 96, 40, 40)) -> float:
    """Milliseconds of an elementwise op (x + 1) that allocates its output: a 39 MiB activation of EfficientNet-Lite0's
    second stage at 80 px, batch 64. With glibc's default malloc each output is a fresh mapping."""
    activation = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    return median_ms(lambda: activation + 1)


def summarise(image_size: int, default: dict[str, float], reuse: dict[str, float]) -> dict:
    row = {"image_size": image_size, "median_step_seconds": {"default_malloc": default, "reuse_memory": reuse}}
    for setup in ("plain", "grefel"):
        row[f"{setup}_fast_over_native_default_malloc"] = default[f"{setup}/fast"] / default[f"{setup}/native"]
        row[f"{setup}_fast_over_native_reuse_memory"] = reuse[f"{setup}/fast"] / reuse[f"{setup}/native"]
        row[f"{setup}_reuse_over_default_malloc_native"] = reuse[f"{setup}/native"] / default[f"{setup}/native"]
        row[f"{setup}_both_over_neither"] = reuse[f"{setup}/fast"] / default[f"{setup}/native"]
    for phase, medians in (("default_malloc", default), ("reuse_memory", reuse)):
        for variant in VARIANTS:
            row[f"grefel_over_plain_{variant}_{phase}"] = medians[f"grefel/{variant}"] / medians[f"plain/{variant}"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_sizes", type=int, nargs="+", default=[64, 80])
    parser.add_argument("--frozen_groups", type=int, default=3, help="backbone groups frozen, as in the FER runs")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per model and phase")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/cpu_step_speedups/cpu_step_speedups.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    commit = current_commit()
    layer = time_depthwise_layer()
    elementwise = {"default_malloc_ms": time_large_elementwise_op()}
    default = {size: time_phase(size, args.frozen_groups, args.steps) for size in args.image_sizes}
    if not reuse_freed_memory():
        raise SystemExit("reuse_freed_memory() did not take effect (not glibc?): nothing to compare")
    elementwise["reuse_memory_ms"] = time_large_elementwise_op()
    reuse = {size: time_phase(size, args.frozen_groups, args.steps) for size in args.image_sizes}
    print(f"depthwise layer {layer['shape']}, {layer['kernel']}x{layer['kernel']} kernel: forward "
          f"{layer['forward_ms']:.1f} ms, PyTorch's input gradient {layer['pytorch_input_grad_ms']:.1f} ms and weight "
          f"gradient {layer['pytorch_weight_grad_ms']:.1f} ms, per-tap weight gradient "
          f"{layer['per_tap_weight_grad_ms']:.1f} ms; x + 1 on a 39 MiB activation: "
          f"{elementwise['default_malloc_ms']:.1f} ms fresh, {elementwise['reuse_memory_ms']:.1f} ms reused", flush=True)
    results = [summarise(size, default[size], reuse[size]) for size in args.image_sizes]
    for row in results:
        print(f"{row['image_size']} px: per-tap depthwise gradient {row['plain_fast_over_native_reuse_memory']:.2f}x "
              f"(plain) / {row['grefel_fast_over_native_reuse_memory']:.2f}x (GReFEL) of PyTorch's step; reused "
              f"memory {row['plain_reuse_over_default_malloc_native']:.2f}x / "
              f"{row['grefel_reuse_over_default_malloc_native']:.2f}x; both {row['plain_both_over_neither']:.2f}x / "
              f"{row['grefel_both_over_neither']:.2f}x; GReFEL / plain with both "
              f"{row['grefel_over_plain_fast_reuse_memory']:.3f}x", flush=True)
    report = {"benchmark": "cpu_step_speedups", "commit": commit, "command": shlex.join(sys.argv),
              "backbone": BACKBONE, "batch": BATCH, "optimizer": "adamw", "frozen_groups": args.frozen_groups,
              "grefel_settings": BASE_SETTINGS, "steps": args.steps, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.machine(), "processor": cpu_model_name(),
              "depthwise_layer": layer, "elementwise_39mib": elementwise, "results": results}
    print(f"wrote {write_report(report, args.output, 'cpu_step_speedups/cpu_step_speedups.json')}")


if __name__ == "__main__":
    main()
