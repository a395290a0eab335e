"""Where a demo person is seen: each camera's scene (wall, floor, objects, colour cast),
sprites blended onto it, and the finished ReID crop (:func:`render_person`) in one of the
:data:`VIEWS`: the face shown, the back, far away (low resolution), or occluded.

Only ``front`` shows a usable face: the others are what makes the face branch abstain.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .people import RGB, Identity, Outfit
from .sprite import person_layer

__all__ = ["DEFAULT_SIZE", "VIEWS", "camera_background", "blend_sprite", "render_person"]

#: (width, height) of a demo crop: the usual 1:2 ReID proportions.
DEFAULT_SIZE = (128, 256)
#: How a crop shows the person. Only "front" shows a usable face.
VIEWS = ("front", "back", "small", "occluded")

# A far-away crop (view "small") is drawn at this fraction of the crop size, smeared by
# motion blur over _FAR_BLUR of its pixels and sensor noise, then upscaled: the head is
# a few pixels of blur, as in real low-resolution detections. Measured with
# face.load_face_model("sface") (YuNet, which upscales crops to 320x640): a face with
# score >= 0.6 in ~1-3% of them, against ~70% for a plain 1/5-size crop.
_FAR_SCALE = (0.15, 0.20)
_FAR_BLUR = 5
_FAR_NOISE = 6.0


@lru_cache(maxsize=64)
def _camera_scene(camera: int) -> tuple[RGB, RGB, float, tuple]:
    """A camera's fixed look: wall and floor colours, horizon, a few objects, a colour cast."""
    r = np.random.default_rng(10_007 + camera)
    wall = tuple(int(v) for v in r.integers(70, 210, 3))
    floor = tuple(int(v) for v in r.integers(50, 170, 3))
    horizon = float(r.uniform(0.55, 0.78))
    objects = tuple((float(r.uniform(-0.2, 1.0)), float(r.uniform(0.0, 0.5)), float(r.uniform(0.15, 0.6)),
                     float(r.uniform(0.1, 0.4)), tuple(int(v) for v in r.integers(30, 240, 3)))
                    for _ in range(int(r.integers(2, 5))))
    cast = tuple(float(v) for v in r.uniform(0.88, 1.12, 3))
    return wall, floor, horizon, objects, cast


def camera_background(camera: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A background crop of camera ``camera``'s scene, ``size`` = (width, height), RGB.

    The scene (wall, floor, objects) is fixed per camera; ``rng`` moves the crop a little
    and adds sensor noise, as successive detections in one camera would.
    """
    w, h = size
    wall, floor, horizon, objects, _ = _camera_scene(camera)
    img = np.empty((h, w, 3), np.float32)
    y_h = int(h * (horizon + rng.uniform(-0.03, 0.03)))
    ramp = np.linspace(1.08, 0.9, h, dtype=np.float32)[:, None, None]
    img[:y_h] = wall
    img[y_h:] = floor
    img *= ramp
    dx = rng.uniform(-0.15, 0.15)
    for ox, oy, ow, oh, colour in objects:
        x0, y0 = int((ox + dx) * w), int(oy * h)
        cv2.rectangle(img, (x0, y0), (x0 + int(ow * w), y0 + int(oh * h)), colour, -1)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def blend_sprite(image: np.ndarray, sprite: np.ndarray, x: int, y: int, *,
                 rim_shade: float = 0.0) -> tuple[int, int, int, int] | None:
    """Alpha-blend an RGBA sprite onto the RGB uint8 ``image`` in place, its top-left at
    (x, y), clipped to the image. ``rim_shade`` > 0 darkens a soft rim around the
    silhouette by up to that fraction first (stage lighting: real people stand out from the
    background by their outline, which is what a HOG detector keys on). Returns the
    visible region ``(x0, y0, x1, y1)``, None when the sprite lies outside the image."""
    H, W = image.shape[:2]
    h, w = sprite.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    part = sprite[y0 - y:y1 - y, x0 - x:x1 - x]
    a = part[:, :, 3:4].astype(np.float32) / 255.0
    region = image[y0:y1, x0:x1].astype(np.float32)
    if rim_shade:
        rim = cv2.GaussianBlur(cv2.dilate(part[:, :, 3], np.ones((5, 5), np.uint8)), (0, 0), 1.5)
        region = region * (1 - rim_shade * rim[:, :, None].astype(np.float32) / 255.0)
    image[y0:y1, x0:x1] = (region * (1 - a) + part[:, :, :3].astype(np.float32) * a).astype(np.uint8)
    return x0, y0, x1, y1


def _composite(background: np.ndarray, sprite: np.ndarray, x: int, y: int) -> np.ndarray:
    """A copy of ``background`` with the RGBA sprite blended in at (x, y)."""
    out = background.copy()
    blend_sprite(out, sprite, x, y)
    return out


def render_person(identity: Identity, outfit: Outfit, rng: np.random.Generator,
                  size: tuple[int, int] = DEFAULT_SIZE, *, view: str = "front",
                  camera: int = 1, background: np.ndarray | None = None,
                  walk_phase: float | None = None) -> np.ndarray:
    """A finished ReID crop (RGB uint8, ``size`` = (width, height)) of one person.

    ``view`` (see :data:`VIEWS`): ``front`` shows the real face; ``back`` the back of
    the head; ``small`` is a far-away detection (drawn at 15-20% of the size, blurred,
    noisy, upscaled: no usable face); ``occluded`` puts a pole or a passer-by in front
    of the face. ``rng`` varies scale, position, head pose, brightness, blur and noise.
    ``background`` (RGB, resized to the crop) defaults to
    ``camera_background(camera, ...)``; the camera's colour cast is applied either way.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    w, h = size
    scale = rng.uniform(*_FAR_SCALE) if view == "small" else 1.0
    cw, ch = max(8, int(round(w * scale))), max(16, int(round(h * scale)))
    bg = background if background is not None else camera_background(camera, (w, h), rng)
    if (bg.shape[1], bg.shape[0]) != (cw, ch):
        bg = cv2.resize(bg, (cw, ch), interpolation=cv2.INTER_AREA)
    height = int(ch * rng.uniform(0.88, 0.97))
    phase = float(rng.uniform(0, 1)) if walk_phase is None else walk_phase
    sprite = person_layer(identity, outfit, height, facing="back" if view == "back" else "front",
                          walk_phase=phase, face_angle=float(rng.uniform(-9, 9)),
                          face_flip=bool(rng.random() < 0.3))
    x = int(round((cw - sprite.shape[1]) / 2 + rng.uniform(-0.07, 0.07) * cw))
    y = int(round(ch - height - rng.uniform(0.0, 0.03) * ch))
    img = _composite(bg, sprite, x, y)
    if view == "occluded":
        _occlude_face(img, identity, x, y, sprite.shape[1], height, rng)
    if view == "small":
        img = _far_away(img, (w, h), rng)
    # Camera colour cast, exposure, focus and sensor noise.
    cast = np.asarray(_camera_scene(camera)[4], np.float32)
    img = img.astype(np.float32) * cast * rng.uniform(0.7, 1.25)
    sigma = rng.uniform(0.0, 0.9)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, 2.5, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _far_away(img: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Motion blur and noise at the crop's native (low) resolution, then upscale to ``size``."""
    kernel = np.zeros((_FAR_BLUR, _FAR_BLUR), np.float32)
    kernel[_FAR_BLUR // 2, :] = 1.0 / _FAR_BLUR
    low = cv2.filter2D(img.astype(np.float32), -1, kernel)
    low += rng.normal(0, _FAR_NOISE, low.shape).astype(np.float32)
    return cv2.resize(np.clip(low, 0, 255).astype(np.uint8), size, interpolation=cv2.INTER_LINEAR)


def _occlude_face(img: np.ndarray, identity: Identity, x: int, y: int, sw: int, height: int,
                  rng: np.random.Generator) -> None:
    """Cover the head with a pole or a passer-by's head and shoulder (in place)."""
    u = height * identity.height
    top = y + height - u
    hh = u * 0.155
    fx, fy = x + sw / 2, top + hh * 0.6
    colour = tuple(int(v) for v in rng.integers(20, 200, 3))
    if rng.random() < 0.5:  # a pole or sign post, wider than the face
        half = hh * rng.uniform(0.5, 0.62)
        cv2.rectangle(img, (int(fx - half), 0), (int(fx + half), img.shape[0]), colour, -1, cv2.LINE_AA)
    else:                   # a passer-by's head and shoulder in front
        hair = tuple(int(v) for v in rng.integers(10, 90, 3))
        cv2.ellipse(img, (int(fx + hh * 0.45), int(fy + hh * 1.45)), (int(hh * 0.95), int(hh * 0.8)),
                    0, 0, 360, colour, -1, cv2.LINE_AA)
        cv2.ellipse(img, (int(fx + hh * 0.05), int(fy + hh * 0.05)), (int(hh * 0.62), int(hh * 0.66)),
                    0, 0, 360, hair, -1, cv2.LINE_AA)
