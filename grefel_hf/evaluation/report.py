"""Markdown and LaTeX reports of evaluation metrics (overall table, per-class table, confusion matrix, selective
prediction).

Both formats are rendered from the same table model (headers + rows of cells), so they always show the
same numbers. ``metrics`` is one ``metrics.json`` dict or several named variants side by side, e.g.
``{"raw": metrics, "ema": metrics}``. Fractions are shown as percentages with two decimals; a score that
is undefined (null in metrics.json) is shown as a dash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grefel_hf.metrics.classification import as_variants
from grefel_hf.metrics.selective import RANKING_NAMES, ordered_rankings

logger = logging.getLogger(__name__)

# (metrics key, row label, formatter); rows that no variant has a value for are left out.
_OVERALL_ROWS: list[tuple[str, str, str]] = [
    ("num_images", "Images", "int"),
    ("accuracy", "Accuracy (%)", "percent"),
    ("balanced_accuracy", "Balanced accuracy (%)", "percent"),
    ("macro_f1", "Macro-F1 (%)", "percent"),
    ("weighted_f1", "Weighted-F1 (%)", "percent"),
    ("ece", "ECE (%)", "percent"),
    ("mean_reliability_correct", "Mean reliability, correct", "fraction"),
    ("mean_reliability_wrong", "Mean reliability, wrong", "fraction"),
]
_PER_CLASS_COLUMNS: list[tuple[str, str]] = [("precision", "Precision"), ("accuracy", "Acc."), ("f1", "F1")]


@dataclass
class Table:
    """A table as plain cells: ``None`` cells are undefined values, rendered as a dash."""

    headers: list[str]
    rows: list[list[str | None]]


def format_value(value: Any, kind: str) -> str | None:
    """Format one number: ``percent`` (fraction -> 2-decimal %), ``fraction`` (3 decimals) or ``int``."""
    if value is None:
        return None
    if kind == "percent":
        return f"{100.0 * float(value):.2f}"
    if kind == "fraction":
        return f"{float(value):.3f}"
    return str(int(value))


def _check_same_labels(variants: dict[str, dict[str, Any]]) -> list[str]:
    """Return the shared class names of all variants; raise ValueError if they differ."""
    labels = [list(v["labels"]) for v in variants.values()]
    if any(names != labels[0] for names in labels):
        raise ValueError(f"metric variants {list(variants)} have different class names: {labels}")
    return labels[0]


def overall_table(metrics: dict[str, Any]) -> Table:
    """Overall metrics, one column per variant."""
    variants = as_variants(metrics)
    headers = ["Metric"] + [name or "Value" for name in variants]
    rows = []
    for key, label, kind in _OVERALL_ROWS:
        if any(v.get(key) is not None for v in variants.values()):
            rows.append([label] + [format_value(v.get(key), kind) for v in variants.values()])
    return Table(headers, rows)


def per_class_table(metrics: dict[str, Any]) -> Table:
    """Per-class support, precision, accuracy (= recall) and F1 in %, one group of columns per variant."""
    variants = as_variants(metrics)
    labels = _check_same_labels(variants)
    supports = [[v["per_class"][name]["support"] for name in labels] for v in variants.values()]
    # Raw and EMA runs on one split share the support column; different splits each get their own.
    shared_support = all(s == supports[0] for s in supports)
    headers = ["Class"] + (["Support"] if shared_support else [])
    for name in variants:
        suffix = f" {name}" if name else ""
        if not shared_support:
            headers.append(f"Support{suffix}")
        headers += [f"{title} (%){suffix}" for _, title in _PER_CLASS_COLUMNS]
    rows = []
    for index, label in enumerate(labels):
        row: list[str | None] = [label] + ([str(supports[0][index])] if shared_support else [])
        for variant in variants.values():
            scores = variant["per_class"][label]
            if not shared_support:
                row.append(str(scores["support"]))
            row += [format_value(scores[key], "percent") for key, _ in _PER_CLASS_COLUMNS]
        rows.append(row)
    return Table(headers, rows)


def confusion_table(metrics: dict[str, Any]) -> Table:
    """The confusion matrix of one metrics dict: rows = true class, columns = predicted class."""
    labels = list(metrics["labels"])
    matrix = metrics["confusion_matrix"]
    if len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
        raise ValueError(f"confusion_matrix must be {len(labels)}x{len(labels)} to match labels {labels}")
    rows = [[label] + [str(int(count)) for count in row] for label, row in zip(labels, matrix, strict=True)]
    return Table(["True / Predicted"] + labels, rows)


def _selective_variants(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `selective` entry of each variant that has one."""
    return {name: v["selective"] for name, v in as_variants(metrics).items() if v.get("selective")}


def _ranking_label(ranking: str, variant: str, best: bool) -> str:
    return RANKING_NAMES.get(ranking, ranking) + (" (best)" if best else "") + (f", {variant}" if variant else "")


def selective_table(metrics: dict[str, Any]) -> Table | None:
    """Accuracy at each coverage and the AURC (both in %) per ranking, the best (lowest AURC) marked, and the AURC
    of the ideal ranking; None when no variant has selective-prediction metrics."""
    variants = _selective_variants(metrics)
    if not variants:
        return None
    coverages = next(iter(variants.values()))["coverages"]
    headers = ["Ranking", *(f"Acc. at {100 * c:g} %" for c in coverages), "AURC"]
    rows: list[list[str | None]] = []
    for name, selective in variants.items():
        for ranking, summary in ordered_rankings(selective["rankings"]):
            rows.append([_ranking_label(ranking, name, ranking == selective["best_ranking"]),
                         *(format_value(summary["accuracy_at"].get(str(c)), "percent") for c in coverages),
                         format_value(summary["aurc"], "percent")])
        rows.append([_ranking_label("ideal ranking", name, False), *([None] * len(coverages)),
                     format_value(selective["optimal_aurc"], "percent")])
    return Table(headers, rows)


_THRESHOLD_OPTIONS = {"top_probability": "--min_score", "reliability": "--min_reliability"}
"""The `grefel-hf predict` option that thresholds each ranking's score."""


def threshold_table(metrics: dict[str, Any]) -> Table | None:
    """Per threshold: the share of images answered and the accuracy on them (both in %) with `--min_score` (top
    probability) and `--min_reliability` at that value; None without selective metrics."""
    variants = _selective_variants(metrics)
    if not variants:
        return None
    headers, rows = ["Threshold"], []
    options = [ranking for ranking in _THRESHOLD_OPTIONS
               if any(ranking in selective["rankings"] for selective in variants.values())]
    for ranking in options:
        headers += [f"{_THRESHOLD_OPTIONS[ranking]}: answered", f"{_THRESHOLD_OPTIONS[ranking]}: accuracy"]
    thresholds = next(iter(variants.values()))["rankings"]["top_probability"]["at_threshold"]
    for name, selective in variants.items():
        for threshold in thresholds:
            row: list[str | None] = [threshold + (f", {name}" if name else "")]
            for ranking in options:
                summary = selective["rankings"].get(ranking)  # a variant without reliability scores has no column
                kept = summary["at_threshold"][threshold] if summary else {"coverage": None, "accuracy": None}
                row += [format_value(kept["coverage"], "percent"), format_value(kept["accuracy"], "percent")]
            rows.append(row)
    return Table(headers, rows)


def render_markdown(table: Table) -> str:
    """Render a table as GitHub-flavoured Markdown (first column left-aligned, the rest right-aligned)."""
    def cell(text: str | None) -> str:
        return "–" if text is None else text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in table.headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(table.headers) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (``_``, ``%``, ``&``, ...) in plain text."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def render_latex(table: Table, caption: str, label: str) -> str:
    """Render a table as a booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    def cell(text: str | None) -> str:
        return "--" if text is None else latex_escape(text)

    spec = "l" + "r" * (len(table.headers) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(cell(h) for h in table.headers) + r" \\",
             r"\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _write(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _sections(metrics: dict[str, Any], emit: Callable[[str, Table], str]) -> list[str]:
    """Render the overall, per-class and (per variant) confusion tables with ``emit(title, table)``."""
    parts = [emit("Overall", overall_table(metrics)), emit("Per class", per_class_table(metrics))]
    for name, variant in as_variants(metrics).items():
        title = f"Confusion matrix ({name})" if name else "Confusion matrix"
        parts.append(emit(title, confusion_table(variant)))
    selective, thresholds = selective_table(metrics), threshold_table(metrics)
    if selective is not None:
        parts.append(emit("Selective prediction", selective))
        parts.append(emit("Abstention thresholds", thresholds))
    return parts


def write_markdown_report(metrics: dict[str, Any], path: str | Path, title: str = "Evaluation results") -> Path:
    """Write overall, per-class and confusion-matrix tables as Markdown; return the path."""
    intro = ("Accuracy, precision, F1 and ECE in %. Per-class accuracy is the fraction of the class's images "
             "classified correctly (recall). Confusion matrix rows are true classes, columns predicted. Selective "
             "prediction: the images ranked by a score, most confident first; the accuracy of the first 90 %, 80 %, "
             "50 %, and the area under the risk-coverage curve (AURC, in %: lower is better; \"best\" marks the "
             "lowest). Abstention thresholds: the share of images a `grefel-hf predict --min_score` or "
             "`--min_reliability` threshold answers (the others become `uncertain`) and the accuracy on them.")
    parts = [f"# {title}", intro]
    parts += _sections(metrics, lambda heading, table: f"## {heading}\n\n{render_markdown(table)}")
    return _write(path, "\n\n".join(parts) + "\n")


def write_latex_report(
    metrics: dict[str, Any], path: str | Path, caption: str = "Evaluation results", label_prefix: str = "tab:grefel"
) -> Path:
    """Write overall, per-class and confusion-matrix tables as booktabs LaTeX tables; return the path.

    Table labels are ``<label_prefix>-overall``, ``-per-class`` and ``-confusion[-<variant>]``.
    """
    def emit(heading: str, table: Table) -> str:
        slug = heading.lower().replace(" (", "-").replace(")", "").replace(" ", "-")
        slug = slug.replace("confusion-matrix", "confusion")
        return render_latex(table, f"{caption}: {heading.lower()}.", f"{label_prefix}-{slug}")

    header = "% Generated by grefel_hf.evaluation.report; requires \\usepackage{booktabs}.\n"
    return _write(path, header + "\n\n".join(_sections(metrics, emit)) + "\n")
