"""Inference from photographs and videos: the batch `grefel-hf predict` command, ONNX export and explanations.

Modules: `default_model` (the model used when none is given), `sources` (which files an INPUT names), `video`
(reading and writing videos), `backends` (PyTorch or ONNX Runtime), `writers` (CSV and JSONL rows),
`summaries` (per-video summaries and plots), `annotate` (boxes and labels drawn on copies), `predict` (the
command's run), `onnx_export`, `explain`, and `commands` (the three subcommands' options and runs). Face
detection and the pipeline live in the flat remote-code files `grefel_hf.face_detection_grefel` and
`grefel_hf.pipeline_grefel`.
"""

from .default_model import default_model_path

__all__ = ["default_model_path"]
