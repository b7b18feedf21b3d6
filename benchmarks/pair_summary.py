"""Summarise paired `fer_cpu_budget.py` runs: GReFEL against the plain head, one row per report, and the mean gap.

Each report (a JSON file that `fer_cpu_budget.py --setups grefel plain` wrote) holds one GReFEL run and one plain-head
run made under the same protocol and seed. This reads the figures of the model each run would save, the weights and
(for GReFEL) the inference mode picked on validation, as `train_hf.py` picks them, and prints them side by side with
GReFEL's gap in points and in faces. No test split is read: the reports only hold validation figures.

    python benchmarks/pair_summary.py benchmarks/results/fer2013_pairs_partclip/seed*.json
    python benchmarks/pair_summary.py benchmarks/results/fer2013_pairs_partclip/seed*.json \\
        --output benchmarks/results/fer2013_pairs_partclip/summary.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

FIGURES = ("accuracy", "tta_accuracy", "macro_f1")


def selected_figures(result: dict) -> dict:
    """The validation figures of the model a run would save: its selected weights, in its selected inference mode.

    Raises ValueError for a report written before `fer_cpu_budget.py` recorded the selected model's accuracy.
    """
    if "validation_selected_accuracy" not in result:
        raise ValueError(f"the {result.get('setup')!r} result has no 'validation_selected_accuracy': it predates "
                         "the selection of weights and inference mode on validation, so it cannot be summarised")
    weights = result["final_weights"]
    if result.get("final_inference_mode") == "primary":
        macro_f1 = result["validation_primary_head"]["macro_f1"]
    else:
        macro_f1 = result["validation_macro_f1" if weights == "raw" else "validation_ema_macro_f1"]
    return {"accuracy": result["validation_selected_accuracy"], "tta_accuracy": result["validation_tta_accuracy"],
            "macro_f1": macro_f1, "weights": weights, "inference_mode": result.get("final_inference_mode"),
            "steps": result["steps"]}


def pair_row(report: dict, source: str) -> dict:
    """One paired report as a row: each setup's selected figures and GReFEL's gap (GReFEL − plain).

    Raises ValueError, naming `source`, where the report does not hold exactly one GReFEL and one plain-head run.
    """
    by_setup = {}
    for result in report.get("results", []):
        by_setup.setdefault(result["setup"], []).append(result)
    if sorted(by_setup) != ["grefel", "plain"] or any(len(runs) != 1 for runs in by_setup.values()):
        found = {setup: len(runs) for setup, runs in by_setup.items()}
        raise ValueError(f"{source}: expected one 'grefel' and one 'plain' result, found {found or 'none'}")
    try:
        grefel, plain = (selected_figures(by_setup[setup][0]) for setup in ("grefel", "plain"))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    images = by_setup["grefel"][0]["validation_images"]
    gap = {name: grefel[name] - plain[name] for name in FIGURES}
    return {"source": source, "dataset": report.get("dataset"), "seed": report.get("seed"),
            "commit": report.get("commit"), "protocol": (report.get("protocol") or {}).get("mode", "sequential"),
            "validation_images": images, "grefel": grefel, "plain": plain, "gap": gap,
            "gap_faces": round(gap["accuracy"] * images)}


def summarise(rows: list[dict]) -> dict:
    """The mean of each setup's figures and of GReFEL's gap over the rows, and in how many rows GReFEL is ahead,
    level or behind on the selected accuracy. Rows of different datasets are refused: their means mean nothing."""
    if not rows:
        raise ValueError("no reports to summarise")
    datasets = sorted({str(row["dataset"]) for row in rows})
    if len(datasets) != 1:
        raise ValueError(f"reports of different datasets cannot share a mean: {datasets}")
    mean = {setup: {name: statistics.fmean(row[setup][name] for row in rows) for name in FIGURES}
            for setup in ("grefel", "plain", "gap")}
    faces = [row["gap_faces"] for row in rows]
    return {"dataset": datasets[0], "pairs": len(rows), "mean": mean, "gap_spread": gap_spread(rows),
            "grefel_ahead": sum(f > 0 for f in faces), "level": sum(f == 0 for f in faces),
            "grefel_behind": sum(f < 0 for f in faces)}


def gap_spread(rows: list[dict]) -> dict | None:
    """The sample standard deviation of GReFEL's gap over the pairs and the standard error of its mean, per figure;
    None for a single pair, whose spread is unknown."""
    if len(rows) < 2:
        return None
    spread = {}
    for name in FIGURES:
        stdev = statistics.stdev(row["gap"][name] for row in rows)
        spread[name] = {"stdev": stdev, "standard_error": stdev / len(rows) ** 0.5}
    return spread


def format_table(rows: list[dict], summary: dict) -> str:
    """A Markdown table of the rows, their mean and, for two rows or more, the standard error (and standard deviation)
    of GReFEL's gap (percentages; gaps in points)."""
    def pct(value: float) -> str:
        return f"{100 * value:.2f}"

    def points(value: float) -> str:
        return f"{100 * value:+.2f}"

    lines = ["| seed | commit | GReFEL acc / TTA / mF1 | plain acc / TTA / mF1 | gap acc (faces) / TTA / mF1 "
             "| steps G / plain |", "|---|---|---|---|---|---|"]
    for row in rows:
        g, p, d = row["grefel"], row["plain"], row["gap"]
        lines.append(f"| {row['seed']} | {row['commit']} | {' / '.join(pct(g[n]) for n in FIGURES)} "
                     f"| {' / '.join(pct(p[n]) for n in FIGURES)} "
                     f"| {points(d['accuracy'])} ({row['gap_faces']:+d}) / {points(d['tta_accuracy'])} / "
                     f"{points(d['macro_f1'])} | {g['steps']} / {p['steps']} |")
    m = summary["mean"]
    lines.append(f"| mean of {summary['pairs']} | | {' / '.join(pct(m['grefel'][n]) for n in FIGURES)} "
                 f"| {' / '.join(pct(m['plain'][n]) for n in FIGURES)} "
                 f"| {' / '.join(points(m['gap'][n]) for n in FIGURES)} | |")
    spread = summary["gap_spread"]
    if spread is not None:
        cells = " / ".join(f"{100 * spread[n]['standard_error']:.2f} ({100 * spread[n]['stdev']:.2f})" for n in FIGURES)
        lines.append(f"| standard error (deviation) of the gap | | | | {cells} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path, help="fer_cpu_budget.py JSON reports of one dataset")
    parser.add_argument("--output", type=Path, default=None, help="also write the rows and summary as JSON here")
    args = parser.parse_args()
    rows = []
    for path in args.reports:
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            parser.error(f"cannot read the report {path}: {err}")
        try:
            rows.append(pair_row(report, str(path)))
        except ValueError as err:
            parser.error(str(err))
    try:
        summary = summarise(rows)
    except ValueError as err:
        parser.error(str(err))
    print(format_table(rows, summary))
    print(f"GReFEL ahead in {summary['grefel_ahead']}, level in {summary['level']}, behind in "
          f"{summary['grefel_behind']} of {summary['pairs']} pairs (selected weights, validation accuracy)")
    if args.output:
        args.output.write_text(json.dumps({"benchmark": "pair_summary", "rows": rows, "summary": summary}, indent=2))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
