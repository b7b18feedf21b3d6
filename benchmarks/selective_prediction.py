"""Which score ranks a bundled model's answers best, and what calibration does to its probabilities (issue 34).

One pass over a validation split records, per face, everything a candidate score can be built from: the final
distribution before calibration, GReFEL's parts (primary p, anchor path g, attentive path t, confidences c, c_g,
c_t), Monte Carlo dropout samples of p (the inference-time masks of the model, `--mc_samples` of them) and the
final distribution of the mirrored face. The pass is cached (`--cache`, outside the repository), so the analysis can
be rerun without the model.

The analysis splits the faces into two interleaved halves (even and odd positions): calibrations are fitted and the
best score is chosen on the even half, then confirmed on the odd half. Every ranking is scored by the area under the
risk-coverage curve (AURC, lower is better) and the accuracy at 90 / 80 / 50 / 20 / 10 / 5 % coverage, with the
definitions of `grefel_hf.metrics.selective`. Calibrations compared: temperature only, and temperature plus a per-class bias.

    python benchmarks/selective_prediction.py --model grefel-ferplus --dataset ferplus \\
        --data_dir /tmp/fer/ferplus/data --cache /tmp/selective/ferplus.npz \\
        --output benchmarks/results/selective_prediction/grefel-ferplus.json

Validation splits only (FER+ Valid, FER2013 PublicTest): nothing here reads a test split.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("selective_prediction")

STUDY_COVERAGES = (1.0, 0.9, 0.8, 0.5, 0.2, 0.1, 0.05)
"""The coverages the study reports accuracy at: those of `grefel-hf evaluate`, and the most confident 20, 10, 5 %."""

FIELDS = ("labels", "log_final", "primary", "corrected", "anchor", "attentive", "confidences", "mc_primary",
          "flipped_final")
"""The arrays of a cached pass."""


def load_uncalibrated(model_name: str):
    """The model and its processor, with any stored calibration set to identity (the pass records raw outputs)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import grefel_hf  # noqa: F401
    from grefel_hf.pretrained import resolve_model_path

    folder = resolve_model_path(model_name)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    model.config.calibration_temperature = 1.0
    model.config.calibration_bias = None
    return model, AutoImageProcessor.from_pretrained(folder), str(folder)


def validation_loader(model, processor, dataset: str, data_dir: str, batch_size: int):
    from torch.utils.data import DataLoader

    from grefel_hf.data.augmentation import build_eval_transform
    from grefel_hf.data.collators import GReFELEvalCollator
    from grefel_hf.evaluation.runner import EvaluationOptions, load_split

    options = EvaluationOptions(model_dir="-", dataset=dataset, output_dir="/tmp", data_dir=data_dir,
                                split="validation")
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    split = load_split(options, names)
    return DataLoader(split.with_transform(build_eval_transform(processor)), batch_size=batch_size,
                      collate_fn=GReFELEvalCollator())


@torch.no_grad()
def record_pass(model, loader, mc_samples: int) -> dict[str, np.ndarray]:
    """Every field of `FIELDS` for every face of `loader` (see the module docstring)."""
    hidden_inputs = []
    hook = model.primary_head.classifier.register_forward_hook(lambda m, args, out: hidden_inputs.append(args[0]))
    model.config.mc_dropout_samples = mc_samples
    parts = {name: [] for name in FIELDS}
    try:
        for batch in loader:
            pixels = batch["pixel_values"]
            hidden_inputs.clear()
            out = model(pixel_values=pixels)
            hidden = hidden_inputs[0]
            parts["labels"].append(batch["labels"].numpy())
            parts["log_final"].append(out.logits.float().numpy())
            for name, value in (("primary", out.primary_probs), ("corrected", out.corrected_probs),
                                ("anchor", out.anchor_probs), ("attentive", out.attentive_probs),
                                ("confidences", out.confidences)):
                parts[name].append(value.float().numpy())
            parts["mc_primary"].append(model._mc_dropout_probs(hidden).float().permute(1, 0, 2).numpy())
            parts["flipped_final"].append(model(pixel_values=pixels.flip(-1)).logits.float().exp().numpy())
    finally:
        hook.remove()
    return {name: np.concatenate(values) for name, values in parts.items()}


def read_cached_pass(cache: Path, model: str, dataset: str):
    """(the arrays, the info) of a pass over `model` and `dataset` cached in `cache`, or None when it holds none."""
    if not cache.is_file():
        return None
    stored = np.load(cache, allow_pickle=False)
    info = json.loads(str(stored["info"]))
    if info["model"] != model or info["dataset"] != dataset:
        return None
    logger.info("using the cached pass %s", cache)
    return stored, info


def recorded_pass(args) -> tuple[dict[str, np.ndarray], dict]:
    """The cached pass when `--cache` holds one for this model and split, else a new one (then cached)."""
    cache = Path(args.cache)
    cached = read_cached_pass(cache, args.model, args.dataset)
    if cached is not None:
        stored, info = cached
        return {name: stored[name] for name in FIELDS}, info
    model, processor, folder = load_uncalibrated(args.model)
    torch.set_num_threads(args.threads)
    start = time.time()
    arrays = record_pass(model, validation_loader(model, processor, args.dataset, args.data_dir, args.batch_size),
                         args.mc_samples)
    info = {"model": args.model, "folder": str(Path(folder).resolve().relative_to(REPO_ROOT)),
            "dataset": args.dataset, "split": "validation", "mc_samples": args.mc_samples,
            "mc_dropout_rate": model.config.mc_dropout_rate, "labels": [model.config.id2label[i] for i in
                                                                        range(model.config.num_labels)],
            "pass_seconds": round(time.time() - start, 1)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, info=json.dumps(info), **arrays)
    return arrays, info


# ---------------------------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------------------------


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, None))).sum(-1) / np.log(probs.shape[-1])


def js_divergence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence / log 2, in [0, 1]."""
    mean = (a + b) / 2

    def kl(u, v):
        return (u * (np.log(np.clip(u, 1e-12, None)) - np.log(np.clip(v, 1e-12, None)))).sum(-1)

    return 0.5 * (kl(a, mean) + kl(b, mean)) / np.log(2)


def candidate_scores(arrays: dict[str, np.ndarray], probs: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate score, higher = more likely right, for calibrated final distributions `probs`. All but the
    `flip:` ones come from one forward pass; the flip ones need the mirrored face too (two passes)."""
    predicted = probs.argmax(1)
    rows = np.arange(len(predicted))

    def at_answer(distribution):
        return distribution[rows, predicted]

    p, g, t, mc = arrays["primary"], arrays["anchor"], arrays["attentive"], arrays["mc_primary"]
    final, flipped = np.exp(arrays["log_final"]), arrays["flipped_final"]
    ranked = np.sort(probs, axis=1)
    return {
        "top_probability": probs.max(1),
        "one_minus_entropy_of_final (earlier reliability)": 1 - normalized_entropy(final),
        "one_minus_entropy_of_calibrated": 1 - normalized_entropy(probs),
        "margin_top1_top2": ranked[:, -1] - ranked[:, -2],
        "c (primary confidence)": arrays["confidences"][:, 0],
        "c_g (anchor path confidence)": arrays["confidences"][:, 1],
        "c_t (attentive path confidence)": arrays["confidences"][:, 2],
        "p at the answer": at_answer(p),
        "g at the answer (anchor path)": at_answer(g),
        "t at the answer (attentive path)": at_answer(t),
        "top_probability x t at the answer": probs.max(1) * at_answer(t),
        "top_probability x g at the answer": probs.max(1) * at_answer(g),
        "agreement p-g (1 - JS)": 1 - js_divergence(p, g),
        "agreement p-t (1 - JS)": 1 - js_divergence(p, t),
        "mc dropout: mean p at the answer": mc[rows, :, predicted].mean(1),
        "mc dropout: - std of p at the answer": -mc[rows, :, predicted].std(1),
        "mc dropout: - mutual information": -(normalized_entropy(mc.mean(1)) - normalized_entropy(mc).mean(1)),
        "flip: final of the mirror at the answer": at_answer(flipped),
        "flip: mean of both at the answer": at_answer((final + flipped) / 2),
    }


def aurc(correct: np.ndarray, scores: np.ndarray) -> float:
    from grefel_hf.metrics.selective import risk_coverage_curve

    return float(risk_coverage_curve(correct, scores)[1].mean())


def ranking_table(correct: np.ndarray, scores: dict[str, np.ndarray], parts: dict[str, np.ndarray],
                  bootstrap: int, seed: int = 0) -> dict[str, dict]:
    """Per part (a boolean mask) and score: AURC, accuracy at `STUDY_COVERAGES`, and the AURC difference to the
    top probability with its bootstrap standard error (resampling the part's faces); and per part the AURC of the
    ideal ranking."""
    from grefel_hf.metrics.selective import optimal_aurc, ranking_summary

    rng = np.random.default_rng(seed)
    table = {}
    for part, mask in parts.items():
        index = np.flatnonzero(mask)
        samples = [rng.choice(index, index.size) for _ in range(bootstrap)]
        base = [aurc(correct[s], scores["top_probability"][s]) for s in samples]
        rows = {}
        for name, values in scores.items():
            summary = ranking_summary(correct[index], values[index], STUDY_COVERAGES)
            differences = [aurc(correct[s], values[s]) - b for s, b in zip(samples, base, strict=True)]
            rows[name] = {"aurc": summary["aurc"], "accuracy_at": summary["accuracy_at"],
                          "aurc_minus_top_probability": summary["aurc"] - aurc(correct[index],
                                                                                scores["top_probability"][index]),
                          "bootstrap_se": float(np.std(differences))}
        table[part] = dict(sorted(rows.items(), key=lambda item: item[1]["aurc"]))
        table[part]["ideal ranking"] = {"aurc": optimal_aurc(correct[index])}
    return table


def calibration_study(arrays: dict[str, np.ndarray], even: np.ndarray) -> dict[str, dict]:
    """Each method fitted on the even half and scored on the odd half, and fitted on every face (what ships)."""
    from grefel_hf.calibration.fitting import calibrated, calibration_scores, fit_calibration
    from grefel_hf.metrics.classification import calibration_bins, expected_calibration_error

    labels, log_final = arrays["labels"], arrays["log_final"]

    def classwise_ece(probs, y):
        return float(np.mean([expected_calibration_error(calibration_bins(probs[:, k], y == k))
                              for k in range(probs.shape[1])]))

    odd_log, odd_labels = log_final[~even], labels[~even]
    ece, nll, accuracy, before = calibration_scores(odd_log, odd_labels)
    study = {"odd_half_before": {"ece": ece, "nll": nll, "accuracy": accuracy,
                                 "classwise_ece": classwise_ece(np.exp(odd_log), odd_labels)},
             "mean_top_probability_before": float(np.exp(log_final).max(1).mean()),
             "accuracy": float((log_final.argmax(1) == labels).mean())}
    for method in ("temperature", "temperature_bias"):  # the prior adjustment is prior_adjustment.py's
        fit = fit_calibration(log_final[even], labels[even], method)
        odd_after = calibrated(odd_log, fit.temperature, fit.bias)
        ece, nll, accuracy, after = calibration_scores(odd_after, odd_labels)
        whole = fit_calibration(log_final, labels, method)
        study[method] = {
            "fitted_on_even": {"temperature": fit.temperature, "bias": fit.bias},
            "odd_half_after": {"ece": ece, "nll": nll, "accuracy": accuracy,
                               "classwise_ece": classwise_ece(np.exp(odd_after), odd_labels),
                               "labels_changed": int((after != before).sum())},
            "fitted_on_all": {key: value for key, value in vars(whole).items() if key not in ("dataset", "split")},
        }
    return study


def second_choice(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Among wrong answers, how often the true class is the second most probable (final q and primary p)."""
    labels = arrays["labels"]
    out = {}
    for name, probs in (("final", np.exp(arrays["log_final"])), ("primary", arrays["primary"])):
        order = np.argsort(-probs, axis=1)
        wrong = order[:, 0] != labels
        out[name] = float((order[wrong, 1] == labels[wrong]).mean())
    return out


def analyse(arrays: dict[str, np.ndarray], bootstrap: int) -> dict:
    """The calibration study, then the rankings of the faces by every candidate score, with the final
    distribution calibrated by a temperature fitted on the even half."""
    from grefel_hf.calibration.fitting import calibrated, fit_calibration

    labels = arrays["labels"]
    even = np.arange(labels.size) % 2 == 0
    fit = fit_calibration(arrays["log_final"][even], labels[even], "temperature")
    probs = np.exp(calibrated(arrays["log_final"], fit.temperature))
    correct = probs.argmax(1) == labels
    scores = candidate_scores(arrays, probs)
    parts = {"even (choice)": even, "odd (check)": ~even, "all": np.ones_like(even)}
    table = ranking_table(correct, scores, parts, bootstrap)
    one_pass = [name for name in table["even (choice)"] if not name.startswith(("flip:", "ideal"))]
    return {"calibration": calibration_study(arrays, even), "second_choice_when_wrong": second_choice(arrays),
            "accuracy": float(correct.mean()), "ranking_temperature_fitted_on_even": fit.temperature,
            "rankings": table, "best_one_pass_score_on_even": one_pass[0]}


def print_report(report: dict) -> None:
    for part, rows in report["rankings"].items():
        print(f"\n{part}: AURC (%), accuracy at 80 / 50 % coverage, AURC minus top probability's (bootstrap SE)")
        for name, row in rows.items():
            if "accuracy_at" not in row:
                print(f"  {100 * row['aurc']:6.2f}  {name}")
                continue
            print(f"  {100 * row['aurc']:6.2f}  {100 * row['accuracy_at']['0.8']:6.2f} "
                  f"{100 * row['accuracy_at']['0.5']:6.2f}  {100 * row['aurc_minus_top_probability']:+6.2f} "
                  f"({100 * row['bootstrap_se']:.2f})  {name}")
    print("odd half before calibration", json.dumps(report["calibration"]["odd_half_before"]))
    for method in ("temperature", "temperature_bias"):
        print(method, "fitted on the even half, odd half after:",
              json.dumps(report["calibration"][method]["odd_half_after"]))
    print("best one-pass score on the even half:", report["best_one_pass_score_on_even"])


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="grefel-ferplus", help="a bundled model's name or a model folder")
    parser.add_argument("--dataset", default="ferplus", help="ferplus or fer2013 (their validation split)")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--cache", required=True, help="the .npz of the recorded pass (outside the repository)")
    parser.add_argument("--output", default=None, help="the JSON report")
    parser.add_argument("--mc_samples", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples of each AURC difference")
    return parser.parse_args(argv)


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True).stdout.strip()


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_arguments(argv)
    arrays, info = recorded_pass(args)
    logger.info("recorded %d faces (%s)", len(arrays["labels"]), info)
    report = analyse(arrays, args.bootstrap)
    print_report(report)
    if args.output:
        given = " ".join(argv if argv is not None else sys.argv[1:])
        command = "python benchmarks/selective_prediction.py " + given.replace(args.data_dir, "DATA_DIR").replace(
            args.cache, "CACHE.npz")  # no local paths in the report
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"commit": commit(), "command": command, **info, **report}, indent=2) + "\n")
        logger.info("wrote %s", output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
