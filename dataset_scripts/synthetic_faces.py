"""Procedural grayscale face drawings whose expression shows in the geometry real expressions differ in.

An expression is a handful of numbers (`Expression`): mouth curve, opening, width and asymmetry, eyebrow angle
and height, eye opening. Every class has a prototype (`PROTOTYPES`, in `FER2013_LABELS` order); an image
blends the neutral face towards its class prototype with a random intensity and adds per-image noise, so weak
expressions look close to neutral and neighbouring classes (fear / surprise, angry / disgust, sad / neutral)
overlap, as they do in real data. Identity varies independently: face shape, position, scale, rotation, skin
and background brightness, hair, sensor noise, blur and occluders (a hand-like block or dark glasses).

Faces are drawn with PIL at 4x the output size and downsampled, which keeps thin strokes smooth at 48x48.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Expression:
    """Expression geometry in face-relative units (the face half-width is 1).

    Attributes:
        mouth_curve: positive lifts the mouth corners (smile), negative drops them.
        mouth_open: vertical opening of the lips.
        mouth_width: half-width of the mouth.
        mouth_asym: lifts one corner and drops the other (the one-sided sneer of disgust).
        brow_angle: positive lowers the inner ends (frown, anger); negative raises them (sadness, fear).
        brow_height: raises both eyebrows.
        eye_open: eye height relative to a neutral eye.
    """

    mouth_curve: float
    mouth_open: float
    mouth_width: float
    mouth_asym: float
    brow_angle: float
    brow_height: float
    eye_open: float


# Class prototypes in FER2013 order: angry, disgust, fear, happy, sad, surprise, neutral.
PROTOTYPES = (
    Expression(-0.12, 0.04, 0.40, 0.00, 0.38, -0.10, 0.65),  # angry: V brows, narrowed eyes, pressed lips
    Expression(-0.18, 0.08, 0.38, 0.22, 0.18, -0.12, 0.45),  # disgust: lowered brows, squint, sneer
    Expression(-0.12, 0.30, 0.52, 0.00, -0.30, 0.14, 1.35),  # fear: raised inner brows, wide eyes, stretched
    Expression(0.42, 0.16, 0.56, 0.00, 0.00, 0.02, 0.75),  # happy: smile, slightly narrowed eyes
    Expression(-0.38, 0.00, 0.40, 0.00, -0.34, -0.02, 0.75),  # sad: dropped corners, raised inner brows
    Expression(0.00, 0.55, 0.28, 0.00, -0.04, 0.22, 1.50),  # surprise: O mouth, high brows, wide eyes
    Expression(0.00, 0.00, 0.42, 0.00, 0.00, 0.00, 1.00),  # neutral
)
NEUTRAL_INDEX = 6
# Per-image noise on each expression field (same order as the dataclass fields).
_EXPRESSION_NOISE = Expression(0.07, 0.05, 0.05, 0.06, 0.09, 0.05, 0.15)


def sample_expression(rng: np.random.Generator, label: int) -> Expression:
    """Blend neutral towards the class prototype with a random intensity, then jitter every field."""
    proto, neutral = PROTOTYPES[label], PROTOTYPES[NEUTRAL_INDEX]
    intensity = rng.uniform(0.6, 1.15)
    values = {}
    for f in fields(Expression):
        p, n, s = getattr(proto, f.name), getattr(neutral, f.name), getattr(_EXPRESSION_NOISE, f.name)
        values[f.name] = n + intensity * (p - n) + rng.normal(0.0, s)
    values["mouth_open"] = max(values["mouth_open"], 0.0)
    values["eye_open"] = max(values["eye_open"], 0.15)
    values["mouth_width"] = max(values["mouth_width"], 0.15)
    if rng.random() < 0.5:  # the sneer can be on either side
        values["mouth_asym"] = -values["mouth_asym"]
    return Expression(**values)


@dataclass(frozen=True)
class Identity:
    """Everything about an image that is not the expression (all in canvas pixels or gray levels)."""

    cx: float
    cy: float
    half_w: float
    half_h: float
    skin: int
    feature: int
    background: tuple[int, int]
    eye_spacing: float
    eye_y: float
    mouth_y: float
    hair: bool
    glasses: bool
    occluder: tuple[float, float, float, float, int] | None


def sample_identity(rng: np.random.Generator, canvas: int) -> Identity:
    """Random face shape, placement, gray levels and accessories on a `canvas`-pixel square."""
    half_w = canvas * rng.uniform(0.27, 0.36)
    skin = int(rng.uniform(110, 215))
    occluder = None
    if rng.random() < 0.12:  # a hand-like block over a random part of the face (may hide the mouth or an eye)
        w, h = canvas * rng.uniform(0.15, 0.35), canvas * rng.uniform(0.15, 0.35)
        x, y = rng.uniform(0, canvas - w), rng.uniform(canvas * 0.2, canvas - h)
        occluder = (x, y, x + w, y + h, int(rng.uniform(60, 230)))
    return Identity(
        cx=canvas / 2 + canvas * rng.uniform(-0.07, 0.07),
        cy=canvas / 2 + canvas * rng.uniform(-0.05, 0.07),
        half_w=half_w,
        half_h=half_w * rng.uniform(1.15, 1.45),
        skin=skin,
        feature=int(skin * rng.uniform(0.1, 0.35)),
        background=(int(rng.uniform(0, 255)), int(rng.uniform(0, 255))),
        eye_spacing=rng.uniform(0.36, 0.48),
        eye_y=rng.uniform(-0.30, -0.18),
        mouth_y=rng.uniform(0.42, 0.58),
        hair=bool(rng.random() < 0.5),
        glasses=bool(rng.random() < 0.05),
        occluder=occluder,
    )


def _background(identity: Identity, canvas: int) -> Image.Image:
    """A vertical gray gradient between the identity's two background levels."""
    top, bottom = identity.background
    column = np.linspace(top, bottom, canvas, dtype=np.float32)[:, None]
    return Image.fromarray(np.repeat(column, canvas, axis=1).astype(np.uint8), mode="L")


def _draw_eyes_and_brows(draw: ImageDraw.ImageDraw, ident: Identity, expr: Expression) -> None:
    """Two eyes (height = openness) with pupils, and eyebrows whose inner ends move with `brow_angle`."""
    u = ident.half_w
    eye_w, eye_h = 0.17 * u, 0.085 * u * expr.eye_open
    brow_y = ident.cy + (ident.eye_y - 0.22 - expr.brow_height) * ident.half_h
    stroke = max(2, int(0.08 * u))
    for side in (-1, 1):
        ex, ey = ident.cx + side * ident.eye_spacing * u, ident.cy + ident.eye_y * ident.half_h
        draw.ellipse(
            [ex - eye_w, ey - eye_h, ex + eye_w, ey + eye_h],
            fill=min(255, ident.skin + 40),
            outline=ident.feature,
            width=max(1, stroke // 2),
        )
        pupil = min(eye_w, eye_h) * 0.8
        draw.ellipse([ex - pupil, ey - pupil, ex + pupil, ey + pupil], fill=ident.feature)
        inner = (ex - side * 0.75 * eye_w * 1.3, brow_y + expr.brow_angle * 0.35 * u)
        outer = (ex + side * 1.3 * eye_w, brow_y - expr.brow_angle * 0.12 * u)
        draw.line([inner, outer], fill=ident.feature, width=stroke)
    if ident.glasses:  # dark glasses hide the eyes but not the brows
        gy = ident.cy + ident.eye_y * ident.half_h
        for side in (-1, 1):
            ex = ident.cx + side * ident.eye_spacing * u
            draw.ellipse([ex - 1.6 * eye_w, gy - 0.2 * u, ex + 1.6 * eye_w, gy + 0.2 * u], fill=25)


def _draw_mouth(draw: ImageDraw.ImageDraw, ident: Identity, expr: Expression) -> None:
    """Lips as a curved band: the centre line bends with `mouth_curve`, the band opens with `mouth_open`."""
    u = ident.half_w
    my = ident.cy + ident.mouth_y * ident.half_h
    xs = np.linspace(-1.0, 1.0, 25)
    centre = my - (expr.mouth_curve * xs**2 + expr.mouth_asym * xs) * 0.35 * u
    gap = expr.mouth_open * (1 - xs**2) * 0.32 * u
    px = ident.cx + xs * expr.mouth_width * u
    upper = list(zip(px, centre - gap / 2, strict=True))
    lower = list(zip(px, centre + gap / 2, strict=True))
    stroke = max(2, int(0.07 * u))
    if expr.mouth_open > 0.06:
        draw.polygon(upper + lower[::-1], fill=max(0, ident.feature - 20))
    draw.line(upper, fill=ident.feature, width=stroke, joint="curve")
    draw.line(lower, fill=ident.feature, width=stroke, joint="curve")


def _draw_face(ident: Identity, expr: Expression, canvas: int) -> Image.Image:
    """The face at canvas resolution, before rotation, noise and downsampling."""
    image = _background(ident, canvas)
    draw = ImageDraw.Draw(image)
    box = [ident.cx - ident.half_w, ident.cy - ident.half_h, ident.cx + ident.half_w, ident.cy + ident.half_h]
    draw.ellipse(box, fill=ident.skin)
    if ident.hair:  # a dark cap over the top of the head, stopping above the brows
        hair_box = [
            box[0] - 0.05 * ident.half_w,
            box[1] - 0.08 * ident.half_h,
            box[2] + 0.05 * ident.half_w,
            ident.cy - 0.25 * ident.half_h,
        ]
        draw.chord(hair_box, 180, 360, fill=int(ident.feature * 0.6))
    nose_top = ident.cy + (ident.eye_y + 0.12) * ident.half_h
    nose_bottom = ident.cy + (ident.mouth_y - 0.22) * ident.half_h
    draw.line(
        [(ident.cx, nose_top), (ident.cx + 0.05 * ident.half_w, nose_bottom)],
        fill=int((ident.skin + ident.feature) / 2),
        width=max(1, int(0.04 * ident.half_w)),
    )
    _draw_eyes_and_brows(draw, ident, expr)
    _draw_mouth(draw, ident, expr)
    if ident.occluder is not None:
        x0, y0, x1, y1, level = ident.occluder
        draw.rounded_rectangle([x0, y0, x1, y1], radius=0.2 * (x1 - x0), fill=level)
    return image


def _random_pose(rng: np.random.Generator, image: Image.Image, canvas: int) -> Image.Image:
    """Rotate by up to 15 degrees, scale by 0.9-1.1 and shift a little, in one affine resampling."""
    theta = math.radians(rng.uniform(-15, 15))
    scale = rng.uniform(0.9, 1.1)
    shift_x, shift_y = rng.uniform(-0.04, 0.04, size=2) * canvas
    # PIL maps each output pixel back to its input position: x_in = M @ (x_out - centre - shift) + centre.
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    centre = canvas / 2
    ox, oy = centre + shift_x, centre + shift_y
    matrix = (cos, sin, centre - cos * ox - sin * oy, -sin, cos, centre + sin * ox - cos * oy)
    return image.transform(
        (canvas, canvas),
        Image.AFFINE,
        matrix,
        resample=Image.BILINEAR,
        fillcolor=int(np.asarray(image)[0, 0]),
    )


def draw_face(rng: np.random.Generator, label: int, size: int = 48) -> np.ndarray:
    """Draw one face of expression class `label` (FER2013 order) as a `size` x `size` uint8 array."""
    if not 0 <= label < len(PROTOTYPES):
        raise ValueError(f"label must be in 0-{len(PROTOTYPES) - 1}, got {label}")
    canvas = size * _SUPERSAMPLE
    image = _draw_face(sample_identity(rng, canvas), sample_expression(rng, label), canvas)
    image = _random_pose(rng, image, canvas).resize((size, size), Image.BOX)
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 0.9)))
    pixels = np.asarray(image, dtype=np.float32)
    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-25, 25)
    pixels = (pixels - 128) * contrast + 128 + brightness + rng.normal(0, rng.uniform(2, 8), pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)
