"""Face detection, crop geometry, eye alignment and pluggable detectors (grefel_hf.face_detection_grefel)."""

import math

import numpy as np
import pytest
from inference_support import ASTRONAUT_FACE, astronaut, chelsea
from PIL import Image

from grefel_hf import face_detection_grefel as fd
from grefel_hf.face_detection_grefel import (
    FaceBox,
    HaarFaceDetector,
    aligned_crop,
    as_face_detector,
    box_iou,
    crop_face,
    extract_faces,
    eye_angle,
    face_crop_box,
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


def _paste_faces(scales_and_places):
    """A noisy grey canvas with the astronaut's head pasted at several scales; returns it and the face boxes."""
    left, top, right, bottom = 115, 0, 330, 235  # her head with some context, inside the photo
    head = Image.fromarray(astronaut()).crop((left, top, right, bottom))
    canvas = Image.fromarray(np.random.default_rng(0).integers(90, 140, (520, 1000, 3), dtype=np.uint8))
    expected = []
    for scale, (x, y) in scales_and_places:
        size = (round(head.width * scale), round(head.height * scale))
        canvas.paste(head.resize(size, Image.Resampling.BILINEAR), (x, y))
        f = ASTRONAUT_FACE
        expected.append(FaceBox(round(x + (f.x - left) * scale), round(y + (f.y - top) * scale),
                                round(f.w * scale), round(f.h * scale)))
    return np.asarray(canvas), expected


def test_canvas_with_several_faces_gives_one_entry_per_face_at_its_place():
    canvas, expected = _paste_faces([(0.6, (30, 300)), (1.0, (250, 40)), (1.5, (620, 150))])
    found = [face for face, _ in extract_faces(canvas, HaarFaceDetector())]
    assert len(found) == len(expected)
    for box in expected:
        assert max(box_iou(box, face) for face in found) >= 0.5, (box, found)


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
        as_face_detector("yunet")
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
