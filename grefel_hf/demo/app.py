"""The demo's Gradio page and server (`build_demo`, `launch_demo`).

One page: the model and face-detection settings at the top, then three tabs. Photo: the annotated photo, a table
with one row per face (label, score, reliability, every class probability), a bar chart of the face selected in the
table, and saliency overlays on request. Video: the annotated video, the emotion-over-time plot, the summary and a
table per processed frame, with a frame-stride control and a progress bar. Webcam: a live stream with each face's
label drawn over it, at an interval the machine keeps up with.

It runs offline: Gradio's analytics are turned off (`GRADIO_ANALYTICS_ENABLED=False`, set before Gradio is
imported), models are loaded from local folders only, and the server binds 127.0.0.1 unless told otherwise. Every
error reaches the page as a message, never as a stack trace (the server's log keeps the details).

Gradio is imported inside the functions here (an optional extra: `pip install "grefel_hf[demo]"`).
"""

import functools
import logging
import os
from pathlib import Path

from ..inference.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from ..pretrained import BUNDLED_MODELS, DEFAULT_MODEL
from .analysis import (
    DemoInputError,
    ModelStore,
    ScratchSpace,
    analyse_frame,
    analyse_photo,
    analyse_video,
    check_upload,
    measure_stream_interval,
    probabilities,
    saliency_overlays,
    table_columns,
)
from .options import DemoOptions, face_controls, face_kwargs

logger = logging.getLogger(__name__)

GRADIO_HINT = 'pip install "grefel_hf[demo]" (Gradio)'

UPLOAD_CEILING = 4
"""Gradio itself refuses uploads above this many times `max_upload_mb` before they are sent; files between the
limit and the ceiling arrive and are refused with their size named."""

INTRO = ("Facial expressions of every face in a photo, a video or the webcam, by GReFEL. Faces are found, cut out "
         "and classified on this machine; nothing is sent anywhere else.")


def require_gradio():
    """The gradio module, imported with its analytics turned off; an ImportError that says what to install."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f"the demo needs Gradio: {GRADIO_HINT}") from err
    return gradio


def in_page_errors(gr, fn):
    """`fn`, with every exception turned into a `gr.Error` (a message in the page): the visitor's own mistakes as
    they are, anything else as one line, its traceback left to the server's log."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OSError, ImportError) as err:  # DemoInputError, bad settings, unreadable files
            logger.warning("%s: %s", fn.__name__, err)
            raise gr.Error(str(err), title="Cannot do that", print_exception=False) from None
        except Exception as err:
            logger.exception("%s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(err).__name__}: {err}); the server's log has the details.",
                           title="Error", print_exception=False) from None

    return wrapper


class _Page:
    """What the page's handlers share: the options, the models, the scratch folders and the face controls."""

    def __init__(self, options: DemoOptions):
        self.options = options
        self.store = ModelStore(options.device, options.local_models)
        self.webcam_store = ModelStore(options.device, options.local_models, keep=1)  # its own copy: no waiting
        self.scratch = ScratchSpace()
        self.controls = face_controls()
        self.defaults = [control.default for control in self.controls]
        self.model_choices = list(BUNDLED_MODELS)
        self.initial_model = options.model or DEFAULT_MODEL
        if self.initial_model not in self.model_choices:
            self.store.resolve(self.initial_model)  # the operator's own model folder: refused early when wrong
            self.model_choices.append(self.initial_model)

    def model(self, choice: str | None, folder: str | None, store: ModelStore | None = None):
        """(model folder, pipeline) of the page's model settings."""
        store = store or self.store
        if choice not in self.model_choices and not (folder and folder.strip()):
            raise DemoInputError(f"unknown model {choice!r}; choose one of {', '.join(self.model_choices)}")
        path = store.resolve(choice, folder)
        return path, store.pipeline(path)

    def examples(self, extensions: frozenset) -> list[str]:
        folder = self.options.examples_dir
        if folder is None or not Path(folder).is_dir():
            return []
        return [str(p) for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in extensions]


def uploaded_file(payload) -> str | None:
    """The server-side path of an upload as the handlers receive it (unprocessed, so that reading it is this
    package's work and its errors are plain messages): Gradio's file data, or a path."""
    if payload is None or isinstance(payload, str):
        return payload
    path = payload.get("path") if isinstance(payload, dict) else None
    if not path:
        raise DemoInputError("the upload did not arrive as a file; upload it again")
    return path


def _bar_chart(gr, labels: list[str] | None = None, probs: list[float] | None = None, title: str = ""):
    """The chart of one face's class probabilities, in class order (empty without `labels`: Gradio draws no bars
    into a chart that was given an empty table, so an empty chart has no value at all)."""
    import pandas as pd

    frame = None if labels is None else pd.DataFrame({"label": labels, "probability": probs})
    return gr.BarPlot(value=frame, x="label", y="probability", title=title or "Select a face in the table",
                      y_lim=[0, 1], sort=labels, elem_id="photo-bar")


def _photo_handlers(gr, page: _Page):
    import pandas as pd

    def photo(image, saliency, model, folder, *face_values):
        path = check_upload(uploaded_file(image), page.options.max_upload_bytes, "photo")
        face_options = face_kwargs(page.controls, list(face_values))
        model_path, pipe = page.model(model, folder)
        result = analyse_photo(pipe, path, face_options)
        table = pd.DataFrame(result.rows, columns=table_columns(result.labels, "face"))
        faces = {"labels": result.labels, "probabilities": [probabilities(e, result.labels) for e in result.entries]}
        bar = _bar_chart(gr, result.labels, faces["probabilities"][0], "face 1") if result.entries else _bar_chart(gr)
        overlays = []
        if saliency and result.entries:
            overlays = saliency_overlays(path, model_path, face_options, page.scratch.new("saliency"))
        return result.annotated, result.message, table, bar, overlays, faces

    def select_face(faces, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not faces or not 0 <= row < len(faces["probabilities"]):
            return _bar_chart(gr)
        return _bar_chart(gr, faces["labels"], faces["probabilities"][row], f"face {row + 1}")

    return in_page_errors(gr, photo), in_page_errors(gr, select_face)


def _photo_tab(gr, page: _Page, settings: list) -> None:
    photo, select_face = _photo_handlers(gr, page)
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"],
                             label="Photo", elem_id="photo-input")
            saliency = gr.Checkbox(False, label="Saliency overlay (where the model looked; slower)",
                                   elem_id="photo-saliency")
            button = gr.Button("Find the expressions", variant="primary", elem_id="photo-button")
            if page.examples(IMAGE_EXTENSIONS):
                gr.Examples(page.examples(IMAGE_EXTENSIONS), inputs=[image], cache_examples=False)
        annotated = gr.Image(type="numpy", format="png", label="Faces", interactive=False, elem_id="photo-output")
    status = gr.Markdown(elem_id="photo-status")
    table = gr.Dataframe(label="One row per face (select one for its chart)", interactive=False,
                         elem_id="photo-table")
    with gr.Row():
        bar = _bar_chart(gr)
        overlays = gr.Gallery(label="Saliency overlays", columns=3, height=260, object_fit="contain", fit_columns=False,
                              interactive=False, elem_id="photo-overlays")
    faces = gr.State(None)
    outputs = [annotated, status, table, bar, overlays, faces]
    inputs = [image, saliency, *settings]
    events = dict(preprocess=False, concurrency_id="model")  # inputs as sent: files are read here, not by Gradio
    button.click(photo, inputs, outputs, api_name="photo", **events)
    image.upload(photo, inputs, outputs, api_name=False, **events)
    table.select(select_face, [faces], [bar], api_name=False)


def _video_handler(gr, page: _Page):
    import pandas as pd

    tracker = gr.Progress()  # Gradio hands each call its progress bar through this default

    def video(path, frame_stride, model, folder, *face_values, progress=tracker):
        path = check_upload(uploaded_file(path), page.options.max_upload_bytes, "video")
        face_options = face_kwargs(page.controls, list(face_values))
        _, pipe = page.model(model, folder)
        progress(0, desc="Reading the video")

        def report(done, expected):
            progress((done, expected), desc="Analysing frames", unit="frames")

        if frame_stride is None or float(frame_stride) != int(frame_stride):
            raise DemoInputError(f"the frame stride must be a whole number, got {frame_stride}")
        stride = int(frame_stride)
        result = analyse_video(pipe, path, face_options, page.scratch.new("video"), stride,
                               page.options.max_video_frames, report)
        table = pd.DataFrame(result.rows, columns=table_columns(result.labels, "frame"))
        return str(result.video), result.message, str(result.plot), result.summary, table

    return in_page_errors(gr, video)


def _video_tab(gr, page: _Page, settings: list) -> None:
    video = _video_handler(gr, page)
    with gr.Row():
        with gr.Column():
            clip = gr.Video(sources=["upload"], label="Video", elem_id="video-input")
            stride = gr.Slider(1, 30, value=1, step=1, label="Frame stride",
                               info="analyse every N-th frame (faster for long videos)")
            button = gr.Button("Analyse the video", variant="primary")
            if page.examples(VIDEO_EXTENSIONS):
                gr.Examples(page.examples(VIDEO_EXTENSIONS), inputs=[clip], cache_examples=False)
        annotated = gr.Video(label="Faces", interactive=False)
    status = gr.Markdown()
    with gr.Row():
        plot = gr.Image(type="filepath", label="Emotion over time (the largest face)", interactive=False)
        summary = gr.JSON(label="Summary")
    table = gr.Dataframe(label="One row per face and frame", interactive=False)
    button.click(video, [clip, stride, *settings], [annotated, status, plot, summary, table], api_name="video",
                 preprocess=False, concurrency_id="model")


def _webcam_tab(gr, page: _Page, settings: list, interval: float, measured: bool) -> None:
    def webcam(frame, model, folder, *face_values):
        if frame is None:
            return None
        _, pipe = page.model(model, folder, page.webcam_store)
        return analyse_frame(pipe, frame, face_kwargs(page.controls, list(face_values)))[0]

    rate = " (measured at start: a rate this machine keeps up with)" if measured else ""
    gr.Markdown(f"The camera's picture is analysed every {interval:.2f} s{rate}.")
    with gr.Row():
        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", elem_id="webcam-input")
        labelled = gr.Image(type="numpy", label="Faces", interactive=False, elem_id="webcam-output")
    camera.stream(in_page_errors(gr, webcam), [camera, *settings], [labelled], stream_every=interval,
                  concurrency_limit=1, concurrency_id="webcam", show_progress="hidden", api_name="webcam")


def _control(gr, control):
    common = dict(label=control.label, info=control.info)
    if control.kind == "choice":
        return gr.Dropdown(list(control.choices), value=control.default, **common)
    if control.kind == "number":
        return gr.Slider(control.minimum, control.maximum, value=control.default, step=control.step, **common)
    if control.kind == "integer":
        return gr.Number(value=control.default, precision=0, minimum=control.minimum, **common)
    return gr.Checkbox(value=control.default, **common)


def _settings(gr, page: _Page) -> list:
    """The model and face-detection controls, in the order the handlers take them (model, folder, face options)."""
    with gr.Accordion("Model and face detection", open=False):
        with gr.Row():
            model = gr.Dropdown(page.model_choices, value=page.initial_model, label="Model",
                                info="the models bundled with grefel_hf, and the demo's --model")
            folder = gr.Textbox(label="Or a saved model folder on this machine", visible=page.options.local_models,
                                placeholder="path/to/model_folder (leave empty for the model above)")
        with gr.Row():
            faces = [_control(gr, control) for control in page.controls]
    return [model, folder, *faces]


def build_demo(options: DemoOptions):
    """The demo's `gr.Blocks` (not started). Loads the initial model, to measure the webcam's interval when
    `options.stream_interval` is None.

    Raises:
        ValueError: the initial model is not a saved model folder. ImportError: Gradio is not installed.
    """
    return _build(options)[0]


def _build(options: DemoOptions):
    gr = require_gradio()
    page = _Page(options)
    interval = options.stream_interval
    if interval is None:
        _, pipe = page.model(page.initial_model, None, page.webcam_store)
        interval = measure_stream_interval(pipe, face_kwargs(page.controls, page.defaults))
    with gr.Blocks(title="GReFEL facial expressions", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# GReFEL facial expressions\n{INTRO}")
        settings = _settings(gr, page)
        with gr.Tabs():
            with gr.Tab("Photo"):
                _photo_tab(gr, page, settings)
            with gr.Tab("Video"):
                _video_tab(gr, page, settings)
            with gr.Tab("Webcam"):
                _webcam_tab(gr, page, settings, interval, options.stream_interval is None)
    return demo, page


def launch_demo(options: DemoOptions, block: bool = True):
    """Build the demo and start its server on `options.host`:`options.port`; with `block`, serve until interrupted
    (Ctrl+C), then stop. Returns the `gr.Blocks` (with `block=False`, still serving: call its `close()`).

    Raises:
        OSError: the port cannot be bound. ValueError, FileNotFoundError: a wrong option or model.
        ImportError: Gradio is not installed (the message says what to install).
    """
    demo, page = _build(options)
    demo.queue().launch(
        server_name=options.host, server_port=options.port, share=False, show_error=True, ssr_mode=False,
        max_file_size=UPLOAD_CEILING * options.max_upload_bytes, prevent_thread_lock=True, quiet=True,
        allowed_paths=[str(page.scratch.root)], enable_monitoring=False, mcp_server=False, pwa=False,
    )
    logger.info("the demo is at %s%s", demo.local_url, " (Ctrl+C stops it)" if block else "")
    if block:
        demo.block_thread()  # returns once interrupted, the server closed
    return demo


__all__ = ["GRADIO_HINT", "UPLOAD_CEILING", "build_demo", "in_page_errors", "launch_demo", "require_gradio",
           "uploaded_file"]
