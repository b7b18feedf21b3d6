"""GReFEL versus the plain baseline on real FER data under the same CPU time budget (not a test).

A recipe gives the GReFEL setup (`recipes/grefel_cpu_fer2013.yaml`, `recipes/grefel_cpu_ferplus.yaml`: model,
objective, augmentation, optimiser, EMA); arguments after it override its values, exactly as with train_hf.py. The
plain setup is the baseline model (`grefel_hf.modeling_baseline`) with the recipe's backbone, backbone weights and
input size, a linear head, and the same training settings. Both setups get the same wall-clock training budget. The
schedule runs on the clock (time_budget.py): the learning rate warms up and decays to zero over the budget, however
fast the machine is. Each setup trains on the train split and reports accuracy and macro-F1 on the validation split
(FER2013 PublicTest / FER+ Valid), for the raw and the EMA weights; for GReFEL also its primary head p alone and each
of its other distributions (g, t, r, q) alone. No test split is used at all.

    python benchmarks/fer_cpu_budget.py recipes/grefel_cpu_fer2013.yaml --budget_minutes 15 --concurrent 1
    python benchmarks/fer_cpu_budget.py recipes/grefel_cpu_ferplus.yaml --budget_minutes 15 --seed 1

The protocol owns a few training settings: the output folders (under --work_dir), one evaluation after training and
no checkpoints, the CPU, and the step count (the budget's); the recipe's values of these are replaced, and giving
them on the command line is refused. The recipe's dataset (fer2013 or ferplus) is read from ../shared/data (the
archives are unpacked into --work_dir). Without --output the report goes to benchmarks/results/early_pairs/<dataset>.json;
runs of another configuration name their study's folder with --output (see benchmarks/RESULTS.md).

The shared FER2013 archive's training JPEGs are blurred (its PublicTest JPEGs are not), so by default the FER2013 run
trains on the same faces with their lossless pixels recovered from FER+ and FER2013's own labels
(fer2013_lossless_train.py); pass --fer2013_train_pixels archive to train on the blurred JPEGs as shipped.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import time
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from transformers import set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from concurrent_setups import run_concurrently  # noqa: E402
from fer2013_lossless_train import build_lossless_fer2013  # noqa: E402
from time_budget import TimeBudgetTrainer  # noqa: E402

from dataset_scripts import load_expression_dataset  # noqa: E402
from grefel_hf import build_image_processor  # noqa: E402
from grefel_hf.evaluation.runner import predict  # noqa: E402
from grefel_hf.metrics.classification import flat_summary, hard_label_metrics  # noqa: E402
from grefel_hf.training.argument_parser import RECIPE_SUFFIXES, ArgumentError, parse_training_arguments  # noqa: E402
from grefel_hf.training.arguments import PROJECT_ARGUMENT_GROUPS, DataArguments  # noqa: E402
from grefel_hf.training.data import (  # noqa: E402
    TrainingData,
    attach_transforms,
    load_dataset_dict,
    prepare_training_data,
)
from grefel_hf.training.ema import swap_weights  # noqa: E402
from grefel_hf.training.model_arguments import MODEL_CONFIGS, architecture_fields  # noqa: E402
from grefel_hf.training.run import build_model, build_trainer, class_balance_weights  # noqa: E402
from grefel_hf.training.trainer import objective_loss  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ARCHIVES = {"fer2013": "fer2013_kaggle_trainval.tar.gz", "ferplus": "ferplus_trainval.tar.gz"}
logger = logging.getLogger("fer_cpu_budget")


def unpack(dataset: str, work_dir: Path) -> Path:
    """Unpack the shared archive once; return the data_dir for the builder."""
    target = work_dir / dataset
    if not (target / ".unpacked").is_file():
        archive = SHARED_DATA / ARCHIVES[dataset]
        if not archive.is_file():
            raise FileNotFoundError(f"{archive} not found: this benchmark needs the project's shared real data")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        (target / ".unpacked").touch()
    return target / "data" if (target / "data").is_dir() else target


def measure_step_seconds(trainer, steps: int = 30, warmup: int = 5) -> float:
    """Mean wall time of a training step (forward, backward, AdamW update), data loading included."""
    loader = iter(trainer.get_train_dataloader())
    model = copy.deepcopy(trainer.model).train()  # BatchNorm statistics of the real model stay untouched
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # the update's cost, without changing weights
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        batch = trainer._prepare_inputs(next(loader))  # the layout (channels-last) training uses
        objective_loss(trainer.objective, model, batch, trust=1.0)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sum(times[warmup:]) / len(times[warmup:])


PROTOCOL_ARGUMENTS = {
    "output_dir": "--work_dir", "max_steps": "--budget_minutes", "num_train_epochs": "--budget_minutes",
    "eval_strategy": "the protocol (one evaluation after training)", "save_strategy": "the protocol (no checkpoints)",
    "use_cpu": "the protocol (CPU)",
}
"""Training arguments the protocol sets itself (and what sets them); the command line may not give them."""


def protocol_tokens(output_dir: Path) -> list[str]:
    """The protocol's training arguments, as command-line arguments after the recipe's and the user's: one evaluation
    after training (no evaluation or checkpoint during it), on the CPU, writing to `output_dir`. The step count is
    the budget's, set once the step time is measured."""
    return ["--output_dir", str(output_dir), "--eval_strategy", "no", "--save_strategy", "no", "--use_cpu", "true",
            "--load_best_model_at_end", "false", "--disable_tqdm", "true", "--report_to", "none"]


def plain_model_arguments(model_args):
    """The plain setup's model arguments: the baseline model with the recipe's backbone, backbone weights and input
    size (every field GReFEL's config shares with the baseline's), and the baseline's plain head."""
    baseline_fields = architecture_fields(MODEL_CONFIGS["baseline"])
    grefel_only = {name: None for name in architecture_fields(MODEL_CONFIGS["grefel"]) if name not in baseline_fields}
    return dataclasses.replace(model_args, model_type="baseline", **grefel_only)


def setup_arguments(setup: str, args) -> tuple:
    """(model arguments, training arguments) of `setup`: the recipe, the user's overrides, then the protocol."""
    output_dir = Path(args.work_dir) / f"{args.recipe_data_args.dataset}-{setup}"
    model_args, _, training_args = parse_training_arguments([*args.recipe_argv, *protocol_tokens(output_dir)])
    return (plain_model_arguments(model_args) if setup == "plain" else model_args), training_args


def validation_summary(metrics: dict) -> dict:
    """Accuracy and macro-F1 (raw and EMA) and per-class accuracy from GReFELTrainer.evaluate()'s metrics."""
    return {
        "validation_accuracy": metrics["eval_accuracy"], "validation_macro_f1": metrics["eval_macro_f1"],
        "validation_ema_accuracy": metrics.get("eval_ema_accuracy"),
        "validation_ema_macro_f1": metrics.get("eval_ema_macro_f1"),
        "per_class_accuracy": {k[len("eval_accuracy_"):]: v for k, v in metrics.items()
                               if k.startswith("eval_accuracy_")},
    }


def validation_predictions_metrics(trainer, weights: str, label_names: list[str], tta: bool = False) -> dict:
    """Flat hard-label metrics (accuracy, macro-F1, accuracy_<class>) of the model's predictions on the validation
    split with the raw or the EMA weights, optionally with the evaluation CLI's test-time augmentation."""
    model = trainer.model.eval()
    with swap_weights(model, trainer.ema_callback.ema) if weights == "ema" else nullcontext():
        labels, probs, _ = predict(model, trainer.get_eval_dataloader(), tta_views=6 if tta else 1, progress=False)
    return flat_summary(hard_label_metrics(labels, probs.argmax(axis=1), label_names))


def primary_validation_metrics(trainer, weights: str, label_names: list[str]) -> dict:
    """GReFEL's primary head p alone (inference_mode "primary") on the validation split, with the raw or EMA
    weights: whether the reliability balancing helps or hurts the primary head's predictions."""
    config = trainer.model.config
    mode, config.inference_mode = config.inference_mode, "primary"
    try:
        metrics = validation_predictions_metrics(trainer, weights, label_names)
    finally:
        config.inference_mode = mode
    return {"weights": weights, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "per_class_accuracy": {name: metrics[f"accuracy_{name}"] for name in label_names}}


def path_validation_metrics(trainer, weights: str, label_names: list[str]) -> dict:
    """Each of GReFEL's distributions alone on the validation split (primary p, anchor path g, attentive path t, their
    blend r, corrected q), and how often p and r pick the same class: q can only improve on p where r is right and
    differs from it."""
    model = trainer.model.eval()
    captured: dict[str, torch.Tensor] = {}
    hook = model.reliability.register_forward_hook(
        lambda _module, _inputs, out: captured.update(r=out[0], g=out[1], t=out[2]))
    probs: dict[str, list[torch.Tensor]] = {name: [] for name in "pgtrq"}
    references = []
    try:
        with swap_weights(model, trainer.ema_callback.ema) if weights == "ema" else nullcontext(), torch.no_grad():
            for batch in trainer.get_eval_dataloader():
                batch = trainer._prepare_inputs(batch)
                output = model(pixel_values=batch["pixel_values"])
                for name, value in (("p", output.primary_probs), ("q", output.corrected_probs), *captured.items()):
                    probs[name].append(value.float().cpu())
                labels = batch["labels"]
                references.append((labels.argmax(dim=-1) if labels.dim() == 2 else labels).cpu())
    finally:
        hook.remove()
    references = torch.cat(references).numpy()
    predictions = {name: torch.cat(values).argmax(dim=-1).numpy() for name, values in probs.items()}
    report: dict = {"weights": weights}
    for name, predicted in predictions.items():
        metrics = hard_label_metrics(references, predicted, label_names)
        report[name] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    report["p_r_agreement"] = float((predictions["p"] == predictions["r"]).mean())
    return report


def selected_accuracy(metrics: dict, weights: str, mode: dict) -> float:
    """Validation accuracy of the final model: the selected weights in the selected inference mode (if any)."""
    if mode.get("inference_mode"):
        return mode["inference_mode_scores"][mode["inference_mode"]]
    return metrics["eval_accuracy" if weights == "raw" else "eval_ema_accuracy"]


def tta_validation_metrics(trainer, weights: str, label_names: list[str]) -> dict:
    """Validation accuracy and macro-F1 of the raw or EMA weights with the evaluation CLI's test-time augmentation
    (the image, its mirror and four 5 % shifts, their distributions averaged)."""
    metrics = validation_predictions_metrics(trainer, weights, label_names, tta=True)
    return {"weights": weights, "views": 6, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def training_data_source(args) -> tuple[DataArguments, dict | None]:
    """Where the training data comes from (the recipe's data arguments with the unpacked shared data), and (FER2013
    with lossless pixels) what the recovery found."""
    dataset = args.recipe_data_args.dataset
    data_dir = unpack(dataset, Path(args.work_dir))
    if dataset != "fer2013" or args.fer2013_train_pixels == "archive":
        return dataclasses.replace(args.recipe_data_args, data_dir=str(data_dir)), None
    archive = load_expression_dataset("fer2013", data_dir=str(data_dir))
    ferplus_train = unpack("ferplus", Path(args.work_dir)) / "FER2013Train"
    folder = Path(args.work_dir) / "fer2013-lossless-train"
    report = build_lossless_fer2013(archive, ferplus_train, folder)
    return dataclasses.replace(args.recipe_data_args, dataset=str(folder), data_dir=None, label_mode=None), asdict(report)


RECORDED_TRAINER_ARGUMENTS = ("seed", "learning_rate", "weight_decay", "per_device_train_batch_size",
                              "gradient_accumulation_steps", "optim", "warmup_steps", "max_grad_norm")
"""Trainer's own arguments a report records beside the project's (schedule and protocol are in the report)."""


def recorded_settings(model_args, training_args) -> dict:
    """A setup's model arguments that are set, and its training arguments: the project's groups and a few of
    Trainer's (`RECORDED_TRAINER_ARGUMENTS`)."""
    project = {f.name for group in PROJECT_ARGUMENT_GROUPS for f in dataclasses.fields(group)}
    training = {name: value for name, value in training_args.to_dict().items()
                if name in project or name in RECORDED_TRAINER_ARGUMENTS}
    return {"model_arguments": {k: v for k, v in asdict(model_args).items() if v is not None},
            "training_arguments": training}


def train_on_budget(setup: str, args, data: TrainingData):
    """Build `setup`'s model and trainer from the recipe, measure its step time, and train it for the budget;
    returns (trainer, data with transforms, step seconds, training seconds, settings)."""
    model_args, training_args = setup_arguments(setup, args)
    set_seed(training_args.seed)
    model = build_model(model_args, data.label_names)
    processor = build_image_processor(model.config)
    class_weights, sample_weights = class_balance_weights(data, training_args)
    data = attach_transforms(data, processor, training_args.augmentation_kwargs())
    probe = build_trainer(model, processor, data, training_args, class_weights, sample_weights)
    step_seconds = measure_step_seconds(probe)
    budget = args.budget_minutes * 60
    # The schedule runs on the clock (time_budget.py); max_steps only caps the run, far above what the budget buys.
    training_args.max_steps = max(20, int(3 * budget / step_seconds))
    set_seed(training_args.seed)  # the probe consumed random numbers
    trainer = build_trainer(model, processor, data, training_args, class_weights, sample_weights,
                            trainer_cls=partial(TimeBudgetTrainer, budget_seconds=budget))
    start = time.perf_counter()
    trainer.train()
    settings = {**recorded_settings(model_args, training_args), "class_weights": class_weights}
    return trainer, data, step_seconds, time.perf_counter() - start, settings


def run_setup(setup: str, args, data: TrainingData) -> dict:
    """Train one setup for the budget and report its validation figures."""
    trainer, data, step_seconds, train_seconds, settings = train_on_budget(setup, args, data)
    metrics = trainer.evaluate()
    selection = trainer.select_final_weights(metrics)  # raw or EMA, as train_hf.py picks them: on validation
    with swap_weights(trainer.model, trainer.ema_callback.ema) if selection["selected"] == "ema" else nullcontext():
        # GReFEL's p or q, as train_hf.py picks it (--select_inference_mode): on validation, with those weights
        select_mode = trainer.args.select_inference_mode
        mode = trainer.select_inference_mode(metrics, selection["selected"]) if select_mode else {}
    tta = tta_validation_metrics(trainer, selection["selected"], data.label_names)
    result = {
        "setup": setup, **settings,
        "train_images": len(data.train), "validation_images": len(data.eval),
        "sharpness_train": data.sharpness.train, "sharpness_validation": data.sharpness.eval,
        "step_seconds_probe": step_seconds, "steps_at_probe_speed": int(args.budget_minutes * 60 / step_seconds),
        "steps": trainer.state.global_step, "epochs": trainer.state.epoch, "train_seconds": train_seconds,
        **validation_summary(metrics), "final_weights": selection["selected"],
        "final_inference_mode": mode.get("inference_mode"), "inference_mode_scores": mode.get("inference_mode_scores"),
        "validation_selected_accuracy": selected_accuracy(metrics, selection["selected"], mode),
        "validation_tta_accuracy": tta["accuracy"], "validation_tta_macro_f1": tta["macro_f1"],
    }
    if setup == "grefel":
        result["validation_primary_head"] = primary_validation_metrics(trainer, selection["selected"],
                                                                       data.label_names)
        result["validation_paths"] = path_validation_metrics(trainer, selection["selected"], data.label_names)
    print(f"[{args.recipe_data_args.dataset}] {setup}: {result['steps']} steps ({result['epochs']:.2f} epochs) in "
          f"{train_seconds / 60:.1f} min → validation accuracy {result['validation_accuracy']:.4f} "
          f"(EMA {result['validation_ema_accuracy']:.4f}), macro-F1 {result['validation_macro_f1']:.4f}; "
          f"selected ({selection['selected']} weights, {mode.get('inference_mode') or 'its only'} inference mode) "
          f"{result['validation_selected_accuracy']:.4f}, with TTA {tta['accuracy']:.4f}", flush=True)
    return result


def current_commit() -> str:
    """The short hash of the checked-out commit (read before training: the code that runs)."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=REPO_ROOT).stdout.strip()


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (these shared machines vary), or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_report(report: dict, output: str | None, default_name: str) -> Path:
    """Write a benchmark's JSON report to `output`, or to benchmarks/results/`default_name`; return the path."""
    path = Path(output or REPO_ROOT / "benchmarks" / "results" / default_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path


def parse_cpu_list(text: str) -> list[int]:
    """'0,1' → [0, 1]."""
    try:
        cpus = [int(part) for part in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated CPU ids such as 0,1; got {text!r}") from err
    if not cpus or min(cpus) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated CPU ids such as 0,1; got {text!r}")
    return cpus


def _add_benchmark_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget_minutes", type=float, default=15.0)
    parser.add_argument("--fer2013_train_pixels", choices=["lossless", "archive"], default="lossless",
                        help="lossless: the archive's FER2013 training faces, labels and all, with their sharp pixels "
                             "recovered from FER+ (see fer2013_lossless_train.py); archive: its blurred JPEGs")
    parser.add_argument("--setups", nargs="+", default=["grefel", "plain"], choices=["grefel", "plain"],
                        help="grefel: the recipe's model; plain: the baseline model with the recipe's backbone and a "
                             "linear head")
    parser.add_argument("--work_dir", default="/tmp/grefel_fer_budget")
    parser.add_argument("--output", default=None)
    parser.add_argument("--concurrent", type=int, choices=[0, 1], default=0,
                        help="1: train the setups at the same time, each in its own process on an equal share of the "
                             "cores for the budget scaled by that share (same core-minutes each; see "
                             "concurrent_setups.py), so that both meet the same moments of a shared machine")
    parser.add_argument("--cpus", type=parse_cpu_list, default=None,
                        help="comma-separated CPU ids to pin this process to (set by --concurrent for its children)")
    parser.add_argument("--data_args", type=json.loads, default=None,
                        help="DataArguments fields as JSON: data the parent of a --concurrent run prepared")


def _check_recipe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what the protocol cannot run: a non-GReFEL recipe for the GReFEL setup, a dataset without shared
    data, a schedule or stopping rule of its own."""
    if "grefel" in args.setups and args.model_args.model_type != "grefel":
        parser.error(f"the grefel setup needs a GReFEL recipe (model_type grefel), got {args.model_args.model_type}")
    if args.data_args is None and args.recipe_data_args.dataset not in ARCHIVES:
        parser.error(f"the benchmark reads the shared {sorted(ARCHIVES)} data; the recipe's dataset is "
                     f"{args.recipe_data_args.dataset!r}")
    if args.training_args.one_cycle or args.training_args.early_stopping_patience is not None:
        parser.error("the benchmark's schedule runs on the wall clock for the whole budget: a recipe with --one_cycle "
                     "or --early_stopping_patience cannot run under it")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's own options, and the recipe with the arguments that override it (`recipe_argv`), parsed as
    train_hf.py parses them (`model_args`, `recipe_data_args`, `training_args`)."""
    parser = argparse.ArgumentParser(prog="fer_cpu_budget.py", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="%(prog)s RECIPE.yaml [--ARGUMENT VALUE ...] [--budget_minutes M] "
                                           "[--setups ...] [--output FILE]")
    _add_benchmark_options(parser)
    args, recipe_argv = parser.parse_known_args(argv)
    if not recipe_argv or not recipe_argv[0].endswith(RECIPE_SUFFIXES):
        parser.error("give a recipe file first (e.g. recipes/grefel_cpu_fer2013.yaml), then arguments that override it")
    given = {token[2:].split("=")[0] for token in recipe_argv[1:] if token.startswith("--")}
    owned = sorted(given & set(PROTOCOL_ARGUMENTS))
    if owned:
        parser.error(f"{['--' + name for name in owned]} are the benchmark's to set: use "
                     + ", ".join(sorted({PROTOCOL_ARGUMENTS[name] for name in owned})))
    try:
        args.model_args, args.recipe_data_args, args.training_args = parse_training_arguments(recipe_argv)
    except (ArgumentError, ValueError) as err:
        parser.error(str(err))
    args.recipe_argv = recipe_argv
    _check_recipe(parser, args)
    if args.concurrent and len(args.setups) < 2:
        parser.error("--concurrent 1 needs at least two --setups to run side by side")
    return args


def build_report(args, commit: str, recovery: dict | None, results: list[dict], protocol: dict) -> dict:
    """The JSON report of a run: its recipe and settings, how the data was recovered, the protocol and each setup's
    results (each with its own model and training arguments)."""
    model_args, training_args = args.model_args, args.training_args
    return {"benchmark": "fer_cpu_budget", "dataset": args.recipe_data_args.dataset,
            "recipe": args.recipe_argv[0], "recipe_overrides": args.recipe_argv[1:],
            "backbone": model_args.backbone, "backbone_weights": model_args.backbone_weights,
            "budget_minutes": args.budget_minutes, "image_size": model_args.image_size,
            "batch_size": training_args.per_device_train_batch_size, "seed": training_args.seed, "commit": commit,
            "learning_rate": training_args.learning_rate, "select_inference_mode": training_args.select_inference_mode,
            "schedule": f"wall clock: linear warm-up over {training_args.warmup_steps:.0%} of the budget, then cosine "
                        "to zero",
            "protocol": protocol,
            "command": shlex.join(sys.argv),
            "fer2013_train_pixels": args.fer2013_train_pixels if args.recipe_data_args.dataset == "fer2013" else None,
            "fer2013_lossless_recovery": recovery,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
            "processor": cpu_model_name(), "results": results,
            "target": "GReFEL >= plain head; FER2013 validation accuracy >= 0.66"}


def main() -> None:
    args = parse_arguments()
    logging.basicConfig(level=logging.WARNING)
    if args.cpus is not None:
        os.sched_setaffinity(0, args.cpus)
    torch.set_num_threads(len(args.cpus) if args.cpus is not None else os.cpu_count() or 1)
    commit = current_commit()  # read before training: the code that runs
    if args.data_args is not None:  # a child of a --concurrent run: its parent prepared the data
        data_args, recovery = DataArguments(**args.data_args), None
    else:
        data_args, recovery = training_data_source(args)
    if args.concurrent:
        load_dataset_dict(data_args)  # build any dataset cache once, before the children read it
        results, protocol = run_concurrently(os.path.abspath(__file__), sys.argv[1:], args.setups,
                                             args.budget_minutes, data_args, Path(args.work_dir))
    else:
        data = prepare_training_data(load_dataset_dict(data_args), data_args)
        results = [run_setup(setup, args, data) for setup in args.setups]
        protocol = {"mode": "one after the other", "cpus": sorted(os.sched_getaffinity(0))}
    report = build_report(args, commit, recovery, results, protocol)
    print(f"wrote {write_report(report, args.output, f'early_pairs/{args.recipe_data_args.dataset}.json')}")


if __name__ == "__main__":
    main()
