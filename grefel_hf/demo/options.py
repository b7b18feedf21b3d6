"""The demo's settings (`DemoOptions`) and the face-detection controls its page offers (`face_controls`).

The controls are read at run time from the face options the pipeline and `grefel-hf predict` take
(`grefel_hf.face_detection_grefel.FaceOptions`), with their defaults, and the detector names from `FACE_DETECTORS`:
the page offers the CLI's choices and starts from its defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ..image_processing_grefel import MIN_IMAGE_SIDE

DEFAULT_HOST = "127.0.0.1"
"""The address the demo binds by default: this machine only."""

DEFAULT_PORT = 7860
"""Gradio's usual port."""

MEGABYTE = 1_000_000
"""Upload limits are in MB of 10^6 bytes."""

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class DemoOptions:
    """Settings of one `grefel-hf demo` run (the command-line options of the same names).

    Args:
        model: the model selected when the page opens: a bundled model's name or a saved model folder; None: the
            bundled default model. The page also offers every bundled model.
        host: the address the server binds: 127.0.0.1 (this machine only, the default) or 0.0.0.0 (every network
            interface, for a server or a Space).
        port: the server's port.
        device: where the model runs: "auto" (cuda, then mps, then cpu), "cpu", "cuda" or "mps".
        max_upload_mb: photos and videos larger than this many MB are refused, with their size named.
        max_video_frames: at most this many frames of a video are processed (after the frame stride).
        local_models: whether the page offers a box for a model folder on the server's disk (turn it off on a
            public server: it lets visitors load any model folder the server can read).
        stream_interval: seconds between the webcam frames sent for analysis; None: measured at start, so that the
            machine keeps up (about 1.5 times the time one frame takes, between 0.1 and 2 s).
        examples_dir: a folder whose photos and videos the page offers as examples (None: no examples).
    """

    model: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    device: str = "auto"
    max_upload_mb: float = 100.0
    max_video_frames: int = 300
    local_models: bool = True
    stream_interval: float | None = None
    examples_dir: str | None = None

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {DEVICES}, got {self.device!r}")
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0):
            raise ValueError(f"--max_upload_mb must be a positive number of MB, got {self.max_upload_mb}")
        if self.max_video_frames < 1:
            raise ValueError(f"--max_video_frames must be >= 1, got {self.max_video_frames}")
        if self.stream_interval is not None and not 0 < self.stream_interval <= 10:
            raise ValueError(f"--stream_interval must be in (0, 10] seconds, got {self.stream_interval}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MEGABYTE)


@dataclass(frozen=True)
class FaceControl:
    """One face-detection setting the page offers.

    Args:
        name: the pipeline's (and `grefel-hf predict`'s) option of that name.
        kind: "choice" (a drop-down of `choices`), "number" (a slider from `minimum` to `maximum` by `step`),
            "integer" (a whole-number box, at least `minimum`) or "checkbox".
        default: its value when the page opens (the pipeline's default).
        label, info: what the page calls it and the line of help under it.
    """

    name: str
    kind: str
    default: Any
    label: str
    info: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()


_CONTROLS: dict[str, dict[str, Any]] = {
    "face_detector": dict(kind="choice", label="Face detector",
                          info="none: the photo is already one face crop"),
    "detection_size": dict(kind="integer", minimum=0, label="Detection size (px)",
                           info="the photo's long side is scaled to this for detection; 0: full resolution"),
    "score_threshold": dict(kind="number", minimum=0.05, maximum=0.95, step=0.05, label="Score threshold",
                            info="YuNet's smallest face score kept"),
    "nms_threshold": dict(kind="number", minimum=0.05, maximum=0.95, step=0.05, label="Overlap threshold",
                          info="YuNet: boxes overlapping more than this are one face"),
    "min_face_size": dict(kind="integer", minimum=MIN_IMAGE_SIDE, label="Smallest face (px)",
                          info="smaller faces are left out"),
    "max_faces": dict(kind="integer", minimum=0, label="At most N faces", info="the largest N; 0: all"),
    "margin": dict(kind="number", minimum=0.0, maximum=2.0, step=0.05, label="Margin",
                   info="added around each face box, as a fraction of its size"),
    "align": dict(kind="checkbox", label="Level the eyes", info="rotate each face so that its eyes are level"),
}
"""How each known face option is offered; options the pipeline takes that are not listed here keep their defaults."""


def face_option_defaults() -> dict[str, Any]:
    """The face options the pipeline takes (the fields of `face_detection_grefel.FaceOptions`), with their
    defaults."""
    from ..face_detection_grefel import FaceOptions

    defaults = FaceOptions()
    return {f.name: getattr(defaults, f.name) for f in fields(FaceOptions)}


def face_controls() -> list[FaceControl]:
    """The face-detection controls the page offers, in the pipeline's order, detector names from
    `FACE_DETECTORS` as it is now."""
    from ..face_detection_grefel import FACE_DETECTORS

    controls = []
    for name, default in face_option_defaults().items():
        spec = _CONTROLS.get(name)
        if spec is None:
            continue
        if name == "max_faces" and default is None:
            default = 0
        choices = tuple(FACE_DETECTORS) if spec["kind"] == "choice" else ()
        controls.append(FaceControl(name=name, default=default, choices=choices, **spec))
    return controls


def face_kwargs(controls: list[FaceControl], values: list[Any]) -> dict[str, Any]:
    """The pipeline's keyword arguments from the controls' values, as the page sends them (whole numbers arrive
    as floats; `max_faces` 0 means all)."""
    if len(values) != len(controls):
        raise ValueError(f"expected {len(controls)} face-detection settings, got {len(values)}")
    kwargs = {}
    for control, value in zip(controls, values, strict=True):
        if value is None:
            raise ValueError(f"{control.label}: a value is needed")
        if control.kind == "integer":
            if float(value) != int(value) or value < control.minimum:
                raise ValueError(f"{control.label} must be a whole number >= {control.minimum:g}, got {value}")
            value = int(value)
        elif control.kind == "number":
            value = float(value)
        elif control.kind == "checkbox":
            value = bool(value)
        elif value not in control.choices:
            raise ValueError(f"{control.label} must be one of {', '.join(control.choices)}, got {value!r}")
        kwargs[control.name] = value
    if kwargs.get("max_faces") == 0:
        kwargs["max_faces"] = None
    return kwargs


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DEVICES", "MEGABYTE", "DemoOptions", "FaceControl", "face_controls",
           "face_kwargs", "face_option_defaults"]
