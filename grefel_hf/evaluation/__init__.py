"""Evaluation of GReFEL predictions: metrics (``metrics``), figures (``plots``) and tables (``report``)."""

from grefel_hf.metrics.classification import (
    compute_classification_metrics,
    hard_label_metrics,
    read_metrics_json,
    write_metrics_json,
)

__all__ = ["compute_classification_metrics", "hard_label_metrics", "read_metrics_json", "write_metrics_json"]
