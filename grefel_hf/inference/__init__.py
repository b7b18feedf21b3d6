"""Inference from photographs and videos: the batch `grefel-hf predict` command, ONNX export and explanations.

Modules: `sources` (which files an INPUT names), `video` (reading and writing videos), `backends` (PyTorch or ONNX
Runtime, and the one pipeline every entry point uses), `writers` (CSV and JSONL rows), `summaries` (per-video
summaries and plots), `annotate` (boxes and labels drawn on copies), `predict` (the command's run), `onnx_export`,
`explain`, and `commands` (the subcommands' options and runs). Face detection and the pipeline live in the flat
remote-code files `grefel_hf.face_detection_grefel` and `grefel_hf.pipeline_grefel`; the model used when none is
given in `grefel_hf.pretrained`.
"""
