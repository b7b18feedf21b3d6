"""The `grefel-hf demo` subcommand: its options, and how it runs (`grefel_hf.demo.app.launch_demo`).

A wrong option, a missing model, a port that cannot be bound or a missing Gradio is one log line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging

from ..pretrained import BUNDLED_MODELS, DEFAULT_MODEL
from .options import DEFAULT_HOST, DEFAULT_PORT, DEVICES, DemoOptions

logger = logging.getLogger("grefel_hf")

_DEFAULTS = DemoOptions()


def add_demo_parser(subparsers) -> None:
    """Add the `demo` subcommand to the `grefel-hf` parser."""
    p = subparsers.add_parser(
        "demo", help="a web page (Gradio) to try the model on photos, videos and the webcam",
        description="Serves the demo page until Ctrl+C. Needs Gradio: pip install 'grefel_hf[demo]'. Runs offline, "
                    "on this machine only unless --host says otherwise.")
    p.add_argument("--model", default=None,
                   help="the model selected when the page opens: a saved model folder, or the name of a bundled "
                        f"model ({', '.join(BUNDLED_MODELS)}); default: {DEFAULT_MODEL}")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind: {DEFAULT_HOST} (this machine only, the default) or 0.0.0.0 (every network "
                        "interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default: {DEFAULT_PORT})")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where the model runs (default: auto)")
    p.add_argument("--max_upload_mb", type=float, default=_DEFAULTS.max_upload_mb,
                   help=f"larger photos and videos are refused (default: {_DEFAULTS.max_upload_mb:g} MB)")
    p.add_argument("--max_video_frames", type=int, default=_DEFAULTS.max_video_frames,
                   help="at most this many frames of a video are analysed, after the frame stride "
                        f"(default: {_DEFAULTS.max_video_frames})")
    p.add_argument("--no_local_models", action="store_true",
                   help="do not offer the box for a model folder on this machine (for a public server)")
    p.add_argument("--stream_interval", type=float, default=None,
                   help="seconds between webcam frames analysed (default: measured at start so the machine keeps "
                        "up)")
    p.add_argument("--examples", default=None, metavar="DIR",
                   help="a folder whose photos and videos the page offers as examples")


def demo_options(args: argparse.Namespace) -> DemoOptions:
    """The `DemoOptions` of parsed `grefel-hf demo` arguments."""
    return DemoOptions(model=args.model, host=args.host, port=args.port, device=args.device,
                       max_upload_mb=args.max_upload_mb, max_video_frames=args.max_video_frames,
                       local_models=not args.no_local_models, stream_interval=args.stream_interval,
                       examples_dir=args.examples)


def run_demo_command(args: argparse.Namespace) -> int:
    """Run `grefel-hf demo` until interrupted; user errors are one log line and exit status 2."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests, one line each
    try:
        from .app import launch_demo

        launch_demo(demo_options(args))
    except (ValueError, OSError, ImportError) as err:
        logger.error("grefel-hf demo: %s", err)
        return 2
    return 0


__all__ = ["add_demo_parser", "demo_options", "run_demo_command"]
