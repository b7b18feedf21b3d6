"""Face detection, crop geometry, eye alignment and pluggable detectors (grefel_hf.face_detection_grefel)."""

import hashlib
import importlib.util
import math

import numpy as np
import pytest
from inference_support import ASTRONAUT_FACE, astronaut, chelsea, paste_on_canvas, shared_fer_faces
from PIL import Image

from grefel_hf import face_detection_grefel as fd
from grefel_hf.face_detection_grefel import (
    DETECTION_MIN_SIDE,
    LANDMARK_NAMES,
    FaceBox,
    FaceOptions,
    HaarFaceDetector,
    YuNetFaceDetector,
    aligned_crop,
    as_face_detector,
    box_iou,
    build_face_detector,
    crop_face,
    detection_scale,
    extract_faces,
    eye_angle,
    face_crop_box,
    faces_with_options,
)


def test_astronaut_has_exactly_one_face_overlapping_hers_and_the_cat_none():
    detector = HaarFaceDetector()
    faces = detector(astronaut())
    assert len(faces) == 1
    assert box_iou(faces[0], ASTRONAUT_FACE) >= 0.5
    assert detector(chelsea()) == []
    assert extract_faces(chelsea(), detector) == []


def test_profile_option_still_finds_her_once():
    faces = HaarFaceDetector(profile=True)(astronaut())
    assert len(faces) == 1 and box_iou(faces[0], ASTRONAUT_FACE) >= 0.5


HEAD = (115, 0, 330, 235)
"""Her head with some context, inside the photo: (left, top, right, bottom)."""


def _paste_faces(scales_and_places, size=(1000, 520)):
    """A noisy grey canvas with the astronaut's head pasted at several scales; returns it and the face boxes."""
    left, top, right, bottom = HEAD
    head = astronaut()[top:bottom, left:right]
    canvas = paste_on_canvas([(head, scale, place) for scale, place in scales_and_places], size)
    f = ASTRONAUT_FACE
    expected = [FaceBox(round(x + (f.x - left) * scale), round(y + (f.y - top) * scale), round(f.w * scale),
                        round(f.h * scale)) for scale, (x, y) in scales_and_places]
    return canvas, expected


def _assert_one_box_each(found, expected):
    assert len(found) == len(expected), (found, expected)
    for box in expected:
        assert max(box_iou(box, face) for face in found) >= 0.5, (box, found)


def test_yunet_finds_her_face_with_five_landmarks_on_it_and_nothing_on_the_cat():
    detector = YuNetFaceDetector()
    faces = detector(astronaut())
    assert len(faces) == 1 and box_iou(faces[0], ASTRONAUT_FACE) >= 0.5
    face = faces[0]
    assert len(face.landmarks) == len(LANDMARK_NAMES) == 5 and 0.6 < face.score <= 1
    for x, y in face.landmarks:
        assert face.x <= x <= face.x + face.w and face.y <= y <= face.y + face.h
    (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = face.landmarks
    assert rx < nx < lx and max(ry, ly) < ny < min(mry, mly)  # eyes above the nose above the mouth
    assert detector(chelsea()) == []
    assert extract_faces(chelsea(), build_face_detector(FaceOptions())) == []


def test_canvas_of_four_faces_gives_four_boxes_and_no_fifth():
    canvas, expected = _paste_faces([(0.5, (30, 330)), (0.8, (220, 60)), (1.0, (560, 250)), (1.5, (950, 60))],
                                    size=(1400, 600))
    found = [face for face, _ in extract_faces(canvas, build_face_detector(FaceOptions()))]
    _assert_one_box_each(found, expected)


def test_canvas_of_four_real_fer_faces(shared_data_dir):
    first = shared_fer_faces(shared_data_dir, 6)
    faces = [first[i] for i in (0, 1, 4, 5)]  # the third and fourth hide most of the face behind a hand
    places = [(40, 60), (300, 200), (600, 40), (860, 260)]
    scales = [2.0, 3.0, 4.0, 2.5]
    canvas = paste_on_canvas([(face, s, p) for face, s, p in zip(faces, scales, places, strict=True)],
                             (1100, 520), seed=1)
    found = [face for face, _ in extract_faces(canvas, build_face_detector(FaceOptions()))]
    # a FER crop is the face: its box is the pasted square, trimmed by the detector to forehead and chin
    expected = [FaceBox(x + round(6 * s), y + round(6 * s), round(36 * s), round(38 * s))
                for s, (x, y) in zip(scales, places, strict=True)]
    _assert_one_box_each(found, expected)


def test_haar_at_full_resolution_still_finds_every_face_of_the_canvas():
    canvas, expected = _paste_faces([(0.6, (30, 300)), (1.0, (250, 40)), (1.5, (620, 150))])
    found = [face for face, _ in extract_faces(canvas, HaarFaceDetector(detection_size=0))]
    _assert_one_box_each(found, expected)


def test_a_photo_above_the_working_size_gives_boxes_in_its_own_pixels():
    canvas, expected = _paste_faces([(1.0, (250, 40)), (1.5, (620, 150))], size=(1600, 800))
    big = YuNetFaceDetector(detection_size=640)(canvas)
    _assert_one_box_each(big, expected)
    small = YuNetFaceDetector(detection_size=0)(np.asarray(Image.fromarray(canvas).resize((640, 320))))
    scaled = [FaceBox(round(f.x * 2.5), round(f.y * 2.5), round(f.w * 2.5), round(f.h * 2.5)) for f in small]
    for face in big:  # the same faces as on a copy the user scaled down by hand, in the original frame
        assert max(box_iou(face, other) for other in scaled) >= 0.9
        assert all(face.x <= x <= face.x + face.w for x, _ in face.landmarks)
    assert detection_scale(1600, 800, 640) == 0.4 and detection_scale(500, 400, 640) == 1.0
    assert detection_scale(48, 48, 640) == DETECTION_MIN_SIDE / 48  # tiny photos are scaled up, not further


def test_max_faces_keeps_the_largest_and_boxes_stay_left_to_right():
    canvas, expected = _paste_faces([(0.5, (30, 330)), (0.8, (220, 60)), (1.0, (560, 250)), (1.5, (950, 60))],
                                    size=(1400, 600))
    detector = build_face_detector(FaceOptions())
    one = [face for face, _ in extract_faces(canvas, detector, max_faces=1)]
    assert len(one) == 1 and box_iou(one[0], expected[3]) >= 0.5
    two = [face for face, _ in extract_faces(canvas, detector, max_faces=2)]
    assert len(two) == 2 and two[0].x < two[1].x
    assert box_iou(two[0], expected[2]) >= 0.5 and box_iou(two[1], expected[3]) >= 0.5


def test_align_uses_yunets_eye_landmarks_to_level_a_tilted_face():
    photo = astronaut()
    centre = (ASTRONAUT_FACE.x + ASTRONAUT_FACE.w / 2, ASTRONAUT_FACE.y + ASTRONAUT_FACE.h / 2)
    tilted = np.asarray(Image.fromarray(photo).rotate(20, center=centre, resample=Image.Resampling.BILINEAR))
    options = FaceOptions(align=True, margin=0.3)
    detector = build_face_detector(options)
    assert isinstance(detector, YuNetFaceDetector) and detector.estimate_roll  # YuNet's landmarks, no eye cascade
    (upright, upright_crop), = faces_with_options(photo, detector, options)
    (turned, turned_crop), = faces_with_options(tilted, detector, options)
    # turned 20 degrees counter-clockwise, her eye line reads 20 degrees less, within 5
    assert math.degrees(upright.roll - turned.roll) == pytest.approx(20, abs=5)
    def match(a, b):  # correlation of the two crops' grey levels, at one size
        a, b = (np.asarray(Image.fromarray(x).convert("L").resize((112, 112)), dtype=float).ravel() for x in (a, b))
        return np.corrcoef(a, b)[0, 1]

    (_, plain_crop), = faces_with_options(tilted, detector, FaceOptions(margin=0.3))
    assert match(upright_crop, turned_crop) > match(upright_crop, plain_crop) + 0.1  # comes out as she stands


def test_the_shipped_yunet_file_is_checked_and_a_missing_or_altered_one_is_one_line(tmp_path, monkeypatch):
    assert fd.yunet_model_path().name == "face_detection_yunet_2023mar.onnx"
    assert hashlib.sha256(fd.yunet_model_path().read_bytes()).hexdigest() == fd.YUNET_SHA256
    package = tmp_path / "copy"
    target = package / fd.YUNET_FILE
    target.parent.mkdir(parents=True)
    monkeypatch.setattr(fd, "__file__", str(package / "face_detection_grefel.py"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as missing:
        YuNetFaceDetector()
    assert str(target) in str(missing.value) and "\n" not in str(missing.value)
    data = bytearray(fd.YUNET_FILE.name.encode())  # anything but the shipped bytes
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="altered") as altered:
        YuNetFaceDetector()
    assert str(target) in str(altered.value) and "\n" not in str(altered.value)


def test_face_options_are_checked_naming_the_option():
    for changes, name in [({"detection_size": -1}, "detection_size"), ({"score_threshold": 1.5}, "score_threshold"),
                          ({"nms_threshold": 0}, "nms_threshold"), ({"max_faces": 0}, "max_faces"),
                          ({"min_face_size": 0}, "min_face_size"), ({"margin": 3}, "margin"),
                          ({"face_detector": "mtcnn"}, "face_detector")]:
        with pytest.raises(ValueError, match=name):
            FaceOptions(**changes)
    assert FaceOptions().updated(max_faces=2, margin=None).max_faces == 2


def test_crop_box_adds_the_margin_and_squares_around_the_centre():
    box = face_crop_box(FaceBox(100, 100, 40, 60), 400, 300, margin=0.25)
    left, top, right, bottom = box
    assert right - left == bottom - top == 90  # the longer side 60 plus 2 x 25 %
    assert (left + right) / 2 == pytest.approx(120, abs=0.5) and (top + bottom) / 2 == pytest.approx(130, abs=0.5)


def test_crop_box_near_an_edge_moves_inside_and_stays_square():
    left, top, right, bottom = face_crop_box(FaceBox(0, 250, 40, 40), 400, 300, margin=0.5)
    assert (left, top, right, bottom) == (0, 220, 80, 300)


def test_crop_box_larger_than_the_image_is_clipped_and_unsquared_crops_keep_their_shape():
    assert face_crop_box(FaceBox(10, 10, 90, 90), 100, 60, margin=0.5) == (0, 0, 100, 60)
    left, top, right, bottom = face_crop_box(FaceBox(100, 100, 40, 60), 400, 300, margin=0.0, square=False)
    assert (right - left, bottom - top) == (40, 60)
    with pytest.raises(ValueError, match="margin"):
        face_crop_box(FaceBox(0, 0, 10, 10), 50, 50, margin=-0.1)


def _tilted_eyes(angle_degrees: float):
    """A white image with two black eye dots on a line tilted by `angle_degrees` about (100, 100)."""
    image = np.full((200, 200, 3), 255, dtype=np.uint8)
    angle = math.radians(angle_degrees)
    eyes = [(100 + s * 25 * math.cos(angle), 100 + s * 25 * math.sin(angle)) for s in (-1, 1)]
    yy, xx = np.mgrid[:200, :200]
    for ex, ey in eyes:
        image[(xx - ex) ** 2 + (yy - ey) ** 2 <= 16] = 0
    return image, eyes


def _dark_blobs(crop):
    """Centres (x, y) of the dark pixels in the left and right half of a crop."""
    dark = crop[..., 0] < 100
    half = crop.shape[1] // 2
    centres = []
    for part, offset in ((dark[:, :half], 0), (dark[:, half:], half)):
        ys, xs = np.nonzero(part)
        centres.append((xs.mean() + offset, ys.mean()))
    return centres


def test_alignment_levels_the_eyes():
    image, eyes = _tilted_eyes(20)
    face = FaceBox(60, 60, 80, 80, landmarks=tuple(eyes))
    assert math.degrees(eye_angle(face.landmarks)) == pytest.approx(20, abs=0.01)
    (lx, ly), (rx, ry) = _dark_blobs(crop_face(image, face, margin=0.1, align=False))
    assert ry - ly > 10  # tilted before
    crop = aligned_crop(image, face, margin=0.1)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    (lx, ly), (rx, ry) = _dark_blobs(crop)
    assert abs(ry - ly) < 1.0 and rx - lx == pytest.approx(50, abs=1.5)


def test_alignment_needs_landmarks_and_crop_face_falls_back_without_them():
    image, _ = _tilted_eyes(10)
    with pytest.raises(ValueError, match="landmarks"):
        aligned_crop(image, FaceBox(60, 60, 80, 80))
    plain = crop_face(image, FaceBox(60, 60, 80, 80), margin=0.0, align=True)
    np.testing.assert_array_equal(plain, image[60:140, 60:140])


def test_a_callable_detector_plugs_in_with_boxes_dicts_or_arrays():
    image = astronaut()
    seen = []

    def boxes(rgb):
        seen.append(rgb.shape)
        return [(10, 20, 50, 60), {"box": [200, 100, 80, 80], "score": 0.9,
                                   "landmarks": [[220, 130], [260, 130], [240, 150], [225, 165], [255, 165]]}]

    faces = [face for face, _ in extract_faces(image, as_face_detector(boxes), margin=0.0)]
    assert seen == [(512, 512, 3)]
    assert [f.as_dict() for f in faces] == [{"x": 10, "y": 20, "w": 50, "h": 60}, {"x": 200, "y": 100, "w": 80, "h": 80}]
    assert faces[1].score == 0.9 and len(faces[1].landmarks) == 5
    array_faces = as_face_detector(lambda rgb: np.array([[5, 6, 30, 30]]))(image)
    assert array_faces == [FaceBox(5, 6, 30, 30)]
    assert as_face_detector(lambda rgb: None)(image) == []


@pytest.mark.parametrize("output, message", [
    ("face", "expected a list"),
    ([(1, 2, 3)], "expected \\(x, y, w, h\\)"),
    ([(1, 2, 0, 5)], "positive"),
    ([{"box": (1, 2, 3, 4), "landmarks": [(1, 2)]}], "landmarks"),
    ([(1, 2, float("nan"), 4)], "not finite"),
])
def test_bad_detector_output_is_a_clear_error(output, message):
    with pytest.raises(ValueError, match=message):
        as_face_detector(lambda rgb: output)(astronaut())


def test_unknown_detector_names_and_small_faces():
    with pytest.raises(ValueError, match="haar_profile"):
        as_face_detector("mtcnn")
    assert as_face_detector("none") is None
    whole = extract_faces(chelsea(), None)
    assert len(whole) == 1 and whole[0][0] == FaceBox(0, 0, 451, 300)
    tiny = extract_faces(astronaut(), as_face_detector(lambda rgb: [(0, 0, 10, 10), (50, 50, 40, 40)]),
                         min_face_size=24)
    assert [face.w for face, _ in tiny] == [40]


def test_missing_opencv_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(fd, "cv2", None)
    with pytest.raises(ImportError, match="opencv-python-headless"):
        HaarFaceDetector()
