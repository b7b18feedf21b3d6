"""The `grefel-hf predict`, `export-onnx` and `explain` subcommands: their options and how each runs.

Every error a user can cause (a missing file, a bad option, a path that cannot be written, a missing optional
package) is one log line and exit status 2; `predict` also exits 2 when nothing at all could be processed, and
130 (SIGINT) or 143 (SIGTERM) when a signal stopped it (after writing what was done).
"""

from __future__ import annotations

import argparse
import logging
import signal
from dataclasses import asdict

from ..face_detection_grefel import FACE_DETECTORS, FaceOptions
from ..pretrained import BUNDLED_MODELS, DEFAULT_MODEL, resolve_model_path
from .interrupt import exit_status

logger = logging.getLogger("grefel_hf")

USER_ERRORS = (OSError, ValueError, ImportError)
"""What a user can cause: a missing or unreadable file, a broken model folder, a folder that cannot be written
(OSError, FileNotFoundError among them), a bad option or input (ValueError), a missing package (ImportError)."""

_MODEL_HELP = ("saved model folder (train_hf.py or save_grefel_folder output){}, or the name of a model bundled with "
               "grefel_hf (" + ", ".join(BUNDLED_MODELS) + "); default: " + DEFAULT_MODEL)


_FACE_DEFAULTS = FaceOptions()


def _face_options(p: argparse.ArgumentParser) -> None:
    """The options of how faces are found and cut out; their defaults are `FaceOptions`'."""
    d = _FACE_DEFAULTS
    p.add_argument("--face_detector", default=d.face_detector, choices=FACE_DETECTORS,
                   help="yunet: the YuNet CNN detector that ships with grefel_hf (finds faces and 5 landmarks); "
                        "haar: OpenCV's frontal-face Haar cascade; haar_profile: also faces in profile; none: each "
                        f"image is already one face crop (default: {d.face_detector})")
    p.add_argument("--detection_size", type=int, default=d.detection_size,
                   help="photos are scaled to this long side (pixels) to find faces, boxes are mapped back; 0: full "
                        f"resolution (default: {d.detection_size})")
    p.add_argument("--score_threshold", type=float, default=d.score_threshold,
                   help=f"YuNet's smallest face score kept, in (0, 1) (default: {d.score_threshold})")
    p.add_argument("--nms_threshold", type=float, default=d.nms_threshold,
                   help=f"YuNet's overlap above which two boxes are one face, in (0, 1) (default: {d.nms_threshold})")
    p.add_argument("--min_face_size", type=int, default=d.min_face_size,
                   help=f"smallest face side in pixels (default: {d.min_face_size})")
    p.add_argument("--max_faces", type=int, default=d.max_faces,
                   help="keep only the N largest faces of each image or frame (default: all)")
    p.add_argument("--margin", type=float, default=d.margin,
                   help=f"margin around each face box, as a fraction of its size (default: {d.margin})")
    p.add_argument("--align", action="store_true", help="rotate each face so that its eyes are level")


def face_options_from(args) -> FaceOptions:
    """The `FaceOptions` of parsed command-line arguments (a bad value is a ValueError naming its option)."""
    values = {name: getattr(args, name) for name in asdict(_FACE_DEFAULTS)}
    try:
        return FaceOptions(**values)
    except ValueError as err:
        raise ValueError(f"--{err}") from err


def _predict_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="expressions of every face in images, folders, globs and videos",
        description="Writes one row per face (source, frame, box_x, box_y, box_w, box_h, label, score, reliability, "
                    "prob_<label>...), or one no_face row per image or frame without a face; per video a summary "
                    "and an emotion-over-time plot; and <output stem>.summary.json with what was skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive), globs, videos")
    p.add_argument("--model", default=None, help=_MODEL_HELP.format(", or a .onnx file from export-onnx"))
    p.add_argument("--output", required=True, help="the rows file, .csv or .jsonl")
    p.add_argument("--format", default=None, choices=("csv", "jsonl"), help="default: from --output's extension")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                   help="auto: onnx for a .onnx --model, torch otherwise")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--batch_size", type=int, default=32, help="faces per forward pass, across files and frames")
    p.add_argument("--num_workers", type=int, default=None,
                   help="processes that read files and find faces while faces are classified (default: none on "
                        "2 cores or fewer, else one per CPU core but one, at most 4)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads that classify faces (default: one per core not given to a worker)")
    p.add_argument("--frame_stride", type=int, default=1, help="process every N-th video frame (default: 1)")
    p.add_argument("--max_frames", type=int, default=None, help="at most this many processed frames per video")
    _face_options(p)
    p.add_argument("--landmarks", action="store_true",
                   help="also write the detector's face score and its five landmarks (eyes, nose tip, mouth "
                        "corners) as columns")
    p.add_argument("--annotate", default=None, metavar="DIR",
                   help="write copies of the images (and videos, as mp4) with boxes and labels to DIR")
    p.add_argument("--summary_dir", default=None,
                   help="where per-video summaries and plots go (default: <output stem>_videos beside --output)")
    p.add_argument("--tta_views", type=int, default=1, help="test-time augmentation views, 1..6 (1: none)")
    p.add_argument("--tta_shift", type=float, default=0.05, help="TTA shift as a fraction of the face size")
    p.add_argument("--min_score", type=float, default=None,
                   help="label a face 'uncertain' when its score (top class probability) is below this, in [0, 1]; "
                        "its probabilities and scores are written all the same. How many faces a threshold keeps "
                        "and how often those are right: `grefel-hf evaluate`'s selective-prediction table on your "
                        "validation data (docs/pretrained.md gives the bundled models')")
    p.add_argument("--min_reliability", type=float, default=None,
                   help="label a face 'uncertain' when its reliability is below this, in [0, 1] (with --min_score: "
                        "when either is below)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help="replace an existing --output (and its summaries and annotated copies) instead of "
                               "refusing to start")
    existing.add_argument("--resume", action="store_true",
                          help="continue the --output of an interrupted run of the same command: inputs (and video "
                               "frames) whose rows it holds are skipped, the rest appended, so that it ends as an "
                               "uninterrupted run's would; without an --output yet, a new run")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def _export_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export-onnx", help="export a saved model to ONNX (dynamic batch) and check it against PyTorch",
        description="Fails (exit status 2, nothing written) when a class probability differs from PyTorch by "
                    "more than --tolerance.")
    p.add_argument("--model", default=None, help=_MODEL_HELP.format(""))
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output (kept if the new export "
                                                             "fails its check)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted difference (default: 1e-4)")


def _explain_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="nearest class anchors and a saliency overlay for every face of an image",
        description="Writes <stem>_face<i>_saliency.png per face and <stem>_explanation.json to --output_dir.")
    p.add_argument("image", help="the image file")
    p.add_argument("--model", default=None, help=_MODEL_HELP.format(""))
    p.add_argument("--output_dir", required=True)
    p.add_argument("--anchors", type=int, default=5, help="nearest anchors listed per face (default: 5)")
    _face_options(p)


def add_inference_parsers(subparsers) -> None:
    """Add the predict, export-onnx and explain subcommands to the `grefel-hf` parser."""
    _predict_parser(subparsers)
    _export_parser(subparsers)
    _explain_parser(subparsers)


def _predict(args) -> int:
    from .predict import PredictOptions, run_predict

    options = PredictOptions(
        inputs=args.inputs, output=args.output, model=args.model, format=args.format, backend=args.backend,
        device=args.device, batch_size=args.batch_size, num_workers=args.num_workers, threads=args.threads,
        frame_stride=args.frame_stride, max_frames=args.max_frames, faces=face_options_from(args),
        landmarks=args.landmarks, annotate_dir=args.annotate, summary_dir=args.summary_dir,
        tta_views=args.tta_views, tta_shift=args.tta_shift, min_score=args.min_score,
        min_reliability=args.min_reliability, overwrite=args.overwrite, resume=args.resume,
        progress=not args.no_progress,
    )
    report = run_predict(options)
    if report.process_index > 0:  # one of several processes: the main process reports the run
        return exit_status(signal.Signals[report.summary.stopped_by]) if report.summary.interrupted else 0
    if report.summary.interrupted:
        logger.error("grefel-hf predict: stopped by %s after %d images and %d video frames; their rows are in %s "
                     "and %s says what was done; run the same command with --resume to finish",
                     report.summary.stopped_by, report.summary.images, report.summary.frames, report.output,
                     report.summary_file)
        return exit_status(signal.Signals[report.summary.stopped_by])
    if report.summary.processed == 0:
        logger.error("grefel-hf predict: nothing could be processed (%s); see %s", report.summary.describe(),
                     report.summary_file)
        return 2
    logger.info("wrote %s and %s", report.output, report.summary_file)
    return 0


def _export(args) -> int:
    from .onnx_export import check_export_output, export_onnx

    check_export_output(args.output, args.overwrite)
    report = export_onnx(resolve_model_path(args.model), args.output, args.opset, args.tolerance)
    logger.info("%s", report.describe())
    logger.info("wrote %s", report.path)
    return 0


def _explain(args) -> int:
    from .explain import explain_image
    from .targets import check_output_paths, check_writable

    check_output_paths(folders={"--output_dir": args.output_dir})
    check_writable("--output_dir", args.output_dir, folder=True)
    report = explain_image(args.image, resolve_model_path(args.model), args.output_dir, face_options_from(args),
                           args.anchors)
    if not report.faces:
        logger.info("no face found in %s", args.image)
    for face in report.faces:
        near = ", ".join(f"{n.label}#{n.anchor} ({n.distance:.3f})" for n in face.nearest_anchors[:3])
        logger.info("face %s: %s %.2f, nearest anchors %s; %s", face.box, face.label, face.score, near,
                    face.saliency_file)
    logger.info("wrote %s", report.json_file)
    return 0


COMMANDS = {"predict": _predict, "export-onnx": _export, "explain": _explain}


def run_inference_command(args) -> int:
    """Run the subcommand `args.command`; user errors are one log line and exit status 2."""
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as err:
        if getattr(err, "reported_by_main", False):  # one of several processes: the main process logs it
            logger.debug("grefel-hf %s: %s", args.command, err)
        else:
            logger.error("grefel-hf %s: %s", args.command, err)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a run that stops cleanly
        logger.error("grefel-hf %s: interrupted (SIGINT); what was written so far is kept", args.command)
        return exit_status(signal.SIGINT)


__all__ = ["COMMANDS", "add_inference_parsers", "run_inference_command"]
