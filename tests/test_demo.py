"""The Gradio demo (`grefel-hf demo`): started on a free local port and driven with Gradio's own client on the
astronaut photo and a short generated clip, its tables checked against `grefel-hf predict` on the same files; its
error messages, its drawing of uncertain faces, its webcam frames, its options and its import hygiene."""

import csv
import ipaddress
import json
import os
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT
from inference_support import astronaut, write_astronaut_video

pytest.importorskip("gradio", reason="the demo needs Gradio: pip install 'grefel_hf[demo]'")
pytest.importorskip("gradio_client", reason="the demo tests drive it with gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from grefel_hf.cli import main as cli_main  # noqa: E402
from grefel_hf.demo import analysis  # noqa: E402
from grefel_hf.demo.analysis import (  # noqa: E402
    UNCERTAIN_COLOUR,
    ModelStore,
    analyse_frame,
    draw_entries,
    face_caption,
    face_rows,
    measure_stream_interval,
)
from grefel_hf.demo.app import launch_demo  # noqa: E402
from grefel_hf.demo.options import DemoOptions, face_controls, face_kwargs  # noqa: E402
from grefel_hf.face_detection_grefel import FACE_DETECTORS, FaceOptions  # noqa: E402
from grefel_hf.inference.annotate import BOX_COLOUR  # noqa: E402
from grefel_hf.inference.predict import PredictOptions, run_predict  # noqa: E402
from grefel_hf.pretrained import DEFAULT_MODEL  # noqa: E402

ASTRONAUT = os.path.join(REPO_ROOT, "examples", "astronaut.jpg")
UPLOAD_LIMIT_MB = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OutsideConnections:
    """Records (and refuses) every connection and name lookup that would leave this machine."""

    def __init__(self):
        self.attempts: list[str] = []

    @staticmethod
    def _local(host) -> bool:
        if host in ("localhost", None) or str(host).startswith("/"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def patch(self, monkeypatch) -> None:
        connect, lookup = socket.socket.connect, socket.getaddrinfo

        def guarded_connect(sock, address):
            host = address[0] if isinstance(address, tuple) else address
            if not self._local(host):
                self.attempts.append(f"connect {address}")
                raise OSError("the demo tests refuse connections that leave this machine")
            return connect(sock, address)

        def guarded_lookup(host, *args, **kwargs):
            if not self._local(host.decode() if isinstance(host, bytes) else host):
                self.attempts.append(f"lookup {host}")
                raise socket.gaierror(f"the demo tests refuse looking up {host}")
            return lookup(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)


@pytest.fixture(scope="module")
def outside():
    recorder = OutsideConnections()
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder.patch(monkeypatch)
        yield recorder


@pytest.fixture(scope="module")
def server(outside):
    """The demo with its default host, on a free port, with a 2 MB upload limit."""
    options = DemoOptions(port=free_port(), max_upload_mb=UPLOAD_LIMIT_MB, stream_interval=0.5)
    demo = launch_demo(options, block=False)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server.local_url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("client")))


def _settings(**changes):
    """The page's model and face settings as the API takes them: its defaults, `changes` applied."""
    values = {control.name: control.default for control in face_controls()}
    values.update(changes)
    return [DEFAULT_MODEL, "", *values.values()]


def _predict_rows(tmp_path, source, **options):
    out = tmp_path / "predict" / "rows.csv"
    report = run_predict(PredictOptions(inputs=[str(source)], output=str(out), progress=False, num_workers=0,
                                        **options))
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle)), report


def _same_row(shown: dict, written: dict, first: str) -> None:
    """A demo table row against `grefel-hf predict`'s CSV row for the same face."""
    for name in ("box_x", "box_y", "box_w", "box_h", "label"):
        assert str(shown[name] if shown[name] is not None else "") == written[name], name
    for name, value in shown.items():
        if value is None:  # a frame without a face: predict leaves the cell empty
            assert written[name] == "", name
        elif name in ("score", "reliability") or name.startswith("prob_"):
            assert value == pytest.approx(float(written[name]), abs=2e-4), name
    if first == "frame":
        assert str(shown["frame"]) == written["frame"]


@pytest.mark.slow
def test_the_demo_binds_this_machine_only_and_offers_the_clis_detectors(server, client):
    assert server.local_url.startswith("http://127.0.0.1:")
    api = client.view_api(return_format="dict")["named_endpoints"]
    assert {"/photo", "/video", "/webcam"} <= set(api)
    detector = next(p for p in api["/photo"]["parameters"] if p["component"] == "Dropdown"
                    and p["parameter_default"] == FaceOptions().face_detector)
    assert set(detector["type"]["enum"]) == set(FACE_DETECTORS)


@pytest.mark.slow
def test_photo_table_is_what_grefel_hf_predict_writes(client, outside, tmp_path):
    annotated, message, table, bar, overlays = client.predict(handle_file(ASTRONAUT), True, *_settings(),
                                                              api_name="/photo")
    shown = [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]
    written, _ = _predict_rows(tmp_path, ASTRONAUT)
    assert len(shown) == len(written) == 1
    _same_row(shown[0], written[0], "face")
    assert shown[0]["label"] == "happiness" and message.startswith("1 face: happiness")
    probabilities = dict(bar["value"]["data"])
    assert probabilities["happiness"] == pytest.approx(shown[0]["prob_happiness"], abs=1e-4)
    picture = cv2.cvtColor(cv2.imread(annotated), cv2.COLOR_BGR2RGB)
    box = shown[0]
    top_edge = picture[box["box_y"], box["box_x"] + 5: box["box_x"] + box["box_w"] - 5]
    assert np.all(np.abs(top_edge.astype(int) - BOX_COLOUR).sum(axis=1) < 60), "the face box is not drawn"
    assert len(overlays) == 1 and os.path.getsize(overlays[0]["image"]) > 0
    assert "happiness" in overlays[0]["caption"]
    assert outside.attempts == []


@pytest.mark.slow
def test_video_table_and_summary_are_what_grefel_hf_predict_writes(client, outside, tmp_path):
    clip = write_astronaut_video(tmp_path / "clip.mp4", frames=6, side=256)
    video, message, plot, summary, table = client.predict(handle_file(str(clip)), 2, *_settings(),
                                                          api_name="/video")
    shown = [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]
    written, report = _predict_rows(tmp_path, clip, frame_stride=2)
    assert [row["frame"] for row in shown] == [0, 2, 4]
    assert len(shown) == len(written)
    for mine, theirs in zip(shown, written, strict=True):
        _same_row(mine, theirs, "frame")
    (expected,) = report.videos
    for name in ("frames_processed", "frames_without_face", "faces", "dominant_label", "label_shares"):
        assert summary[name] == getattr(expected, name), name
    assert summary["mean_probabilities"] == pytest.approx(expected.mean_probabilities, abs=2e-4)
    assert message.startswith("3 frames analysed")
    assert video.endswith(".webm")
    written_video = cv2.VideoCapture(video)
    assert int(written_video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    written_video.release()
    assert cv2.imread(plot) is not None
    assert outside.attempts == []


@pytest.mark.slow
def test_bad_input_is_a_message_naming_the_problem(client, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(AppError, match=r"^notes\.mp4: OpenCV cannot open this file as a video$"):
        client.predict(handle_file(str(text)), 1, *_settings(), api_name="/video")
    fake = tmp_path / "holiday.png"
    fake.write_text("not a photo")
    with pytest.raises(AppError, match=r"^cannot read this photo: holiday\.png is not an image file PIL can read$"):
        client.predict(handle_file(str(fake)), False, *_settings(), api_name="/photo")
    with pytest.raises(AppError, match=r"Smallest face \(px\) must be a whole number >= \d+, got 3"):
        client.predict(handle_file(ASTRONAUT), False, *_settings(min_face_size=3), api_name="/photo")
    with pytest.raises(AppError, match="no photo given"):
        client.predict(None, False, *_settings(), api_name="/photo")


@pytest.mark.slow
def test_an_upload_over_the_limit_is_refused_with_its_size(client, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3_100_000))
    with pytest.raises(AppError, match=r"^this video is 3\.1 MB; the demo takes files up to 2\.0 MB$"):
        client.predict(handle_file(str(big)), 1, *_settings(), api_name="/video")


def test_an_uncertain_face_is_drawn_grey_with_a_question():
    picture = np.full((200, 300, 3), 30, dtype=np.uint8)
    sure = {"box": {"x": 20, "y": 60, "w": 100, "h": 100}, "label": "happiness", "score": 0.9, "reliability": 0.8,
            "top_k": [{"label": "happiness", "score": 0.9}, {"label": "neutral", "score": 0.1}]}
    unsure = {"box": {"x": 170, "y": 60, "w": 100, "h": 100}, "label": "uncertain", "score": 0.41,
              "reliability": 0.3, "top_k": [{"label": "neutral", "score": 0.41}, {"label": "happiness", "score": 0.4}]}
    drawn = draw_entries(picture, [sure, unsure])
    assert tuple(drawn[159, 70]) == BOX_COLOUR  # bottom edges: below the captions
    assert tuple(drawn[159, 220]) == UNCERTAIN_COLOUR
    assert face_caption(unsure) == "uncertain? (neutral 0.41)"
    assert face_caption(sure) == "happiness 0.90"
    rows = face_rows([sure, unsure], ["neutral", "happiness"])
    assert [row[5] for row in rows] == ["happiness", "uncertain"]
    assert rows[1][-2:] == [0.41, 0.4]


@pytest.fixture(scope="module")
def pipe():
    store = ModelStore(device="cpu")
    return store.pipeline(store.resolve(DEFAULT_MODEL))


def _defaults():
    return face_kwargs(face_controls(), [control.default for control in face_controls()])


@pytest.mark.slow
def test_a_video_reports_its_progress_in_frames(pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(analysis, "FRAMES_PER_CALL", 4)
    clip = write_astronaut_video(tmp_path / "clip.mp4", frames=10, side=128)
    calls = []
    result = analysis.analyse_video(pipe, clip, _defaults(), tmp_path, frame_stride=1, max_frames=9,
                                    on_progress=lambda done, expected: calls.append((done, expected)))
    assert calls == [(4, 9), (8, 9), (9, 9)]
    assert result.message.startswith("9 frames analysed") and "the demo's limit" in result.message


@pytest.mark.slow
def test_webcam_frames_get_labels_and_the_stream_interval_is_measured(pipe):
    frame = astronaut()
    defaults = _defaults()
    labelled, entries = analyse_frame(pipe, frame, defaults)
    assert [entry["label"] for entry in entries] == ["happiness"]
    assert labelled.shape == frame.shape and not np.array_equal(labelled, frame)
    assert 0.1 <= measure_stream_interval(pipe, defaults) <= 2.0


def test_face_settings_from_the_page_become_pipeline_options():
    controls = face_controls()
    assert [c.name for c in controls][0] == "face_detector" and controls[0].choices == tuple(FACE_DETECTORS)
    values = {c.name: c.default for c in controls}
    values.update(min_face_size=30.0, max_faces=0)
    options = face_kwargs(controls, list(values.values()))
    assert options["min_face_size"] == 30 and isinstance(options["min_face_size"], int)
    assert options["max_faces"] is None
    FaceOptions().updated(**options)  # every setting is one the pipeline takes
    with pytest.raises(ValueError, match="Face detector must be one of"):
        face_kwargs(controls, ["mtcnn", *list(values.values())[1:]])


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port must be in 1..65535"),
    (["--max_upload_mb", "0"], "--max_upload_mb must be a positive number"),
    (["--model", "no/such/folder"], "is not a saved model folder"),
])
def test_bad_demo_options_are_one_line_and_exit_2(args, message, caplog):
    assert cli_main(["demo", *args]) == 2
    assert message in caplog.text


@pytest.mark.slow
def test_importing_the_package_and_its_cli_does_not_import_gradio():
    code = ("import sys, grefel_hf, grefel_hf.cli, grefel_hf.demo.command, grefel_hf.demo.analysis; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'gradio_client'))))")
    run = subprocess.run([sys.executable, "-c", f"import json; {code}"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
