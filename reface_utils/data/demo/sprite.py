"""A demo person as an RGBA sprite: :func:`person_layer` draws the body an :class:`Outfit`
dresses (legs, skirt or shorts, torso with its pattern, arms swinging with a walking phase)
and puts the identity's real face on the head (front) or hair (back).

The sprite is what both the demo crops (:mod:`.scenes`) and the demo video
(:mod:`reface_utils.data.demo_video`) composite onto a background.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .people import RGB, Identity, Outfit

__all__ = ["person_layer"]


def _pattern(kind: str, shape: tuple[int, int], base: RGB, accent: RGB, unit: float) -> np.ndarray:
    """A clothes texture of ``shape`` (h, w): ``unit`` is the person height in pixels."""
    h, w = shape
    img = np.empty((h, w, 3), np.uint8)
    img[:] = base
    step = max(3, int(round(unit * 0.035)))
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "stripes":
        img[(yy // step) % 2 == 1] = accent
    elif kind == "checks":
        band = ((yy // (2 * step)) % 3 == 0) | ((xx // (2 * step)) % 3 == 0)
        img[band] = (np.asarray(base) * 0.45 + np.asarray(accent) * 0.55).astype(np.uint8)
        img[((yy // (2 * step)) % 3 == 0) & ((xx // (2 * step)) % 3 == 0)] = accent
    elif kind == "dots":
        r = max(1, step // 2)
        for y in range(step, h, 2 * step):
            off = step if (y // (2 * step)) % 2 else 0
            for x in range(off, w, 2 * step):
                cv2.circle(img, (x, y), r, accent, -1, cv2.LINE_AA)
    return img


def person_layer(identity: Identity, outfit: Outfit, height_px: int, *, facing: str = "front",
                 walk_phase: float = 0.0, face_angle: float = 0.0, face_flip: bool = False) -> np.ndarray:
    """An RGBA sprite of the person, ``height_px`` tall from head top to soles.

    ``facing``: ``front`` (the identity's real face on the head) or ``back`` (hair
    only). ``walk_phase`` in [0, 1) swings legs and arms (0 = standing still), so a
    sequence of phases animates a walk. ``face_angle`` (degrees) and ``face_flip``
    vary the head pose. The sprite's width is ``height_px // 2``.
    """
    u = float(height_px) * identity.height
    H, W = int(height_px), max(8, int(height_px) // 2)
    rgb = np.zeros((H, W, 3), np.uint8)
    alpha = np.zeros((H, W), np.uint8)
    top = H - u                       # shorter people leave room above the head
    cx = W / 2.0
    b = identity.build
    s = 16.0                          # fixed-point scale for cv2 shift=4 drawing

    def P(x: float, y: float) -> tuple[int, int]:
        return int(round(x * s)), int(round(y * s))

    def poly(mask: np.ndarray, pts: Sequence[tuple[float, float]]) -> None:
        cv2.fillPoly(mask, [np.array([P(x, y) for x, y in pts], np.int32)], 255, cv2.LINE_AA, 4)

    def limb(mask: np.ndarray, a: tuple[float, float], c: tuple[float, float], width: float) -> None:
        cv2.line(mask, P(*a), P(*c), 255, max(1, int(round(width))), cv2.LINE_AA, 4)

    def paint(mask: np.ndarray, colour_or_img) -> None:
        x, y, w, h = cv2.boundingRect(mask)  # blend only where the part is
        if w == 0 or h == 0:
            return
        win = (slice(y, y + h), slice(x, x + w))
        m = mask[win].astype(np.float32)[:, :, None] / 255.0
        src = np.asarray(colour_or_img, np.float32)
        src = src[win] if src.ndim == 3 else src
        rgb[win] = (rgb[win] * (1 - m) + src * m).astype(np.uint8)
        np.maximum(alpha[win], mask[win], out=alpha[win])

    def new() -> np.ndarray:
        return np.zeros((H, W), np.uint8)

    hh = u * 0.155                    # head height (slightly large: a readable face)
    hw = hh * 0.80
    head_c = (cx, top + hh * 0.55)
    y_sh = top + hh * 1.12            # shoulders
    y_hip = top + u * 0.53
    y_ankle = top + u * 0.955
    sw = u * 0.125 * b                # half shoulder width
    ww = u * 0.098 * b                # half waist width
    swing = np.sin(2 * np.pi * walk_phase)
    stride = u * 0.07 * swing
    arm_w, leg_w = u * 0.055 * b, u * 0.08 * b

    # --- legs and shoes (behind the torso)
    legs, shins = new(), new()
    for side, sgn in ((-1, 1), (1, -1)):
        hip = (cx + side * ww * 0.5, y_hip - u * 0.02)
        knee = (cx + side * ww * 0.5 + sgn * stride * 0.5, top + u * 0.75)
        ankle = (cx + side * ww * 0.45 + sgn * stride, y_ankle)
        limb(legs, hip, knee, leg_w)
        limb(shins, knee, ankle, leg_w * 0.88)
        shoe = new()
        cv2.ellipse(shoe, P(ankle[0] + u * 0.012, ankle[1] + u * 0.012),
                    (int(u * 0.045 * s), int(u * 0.022 * s)), 0, 0, 360, 255, -1, cv2.LINE_AA, 4)
        paint(shoe, outfit.shoes)
    if outfit.bottom_kind == "trousers":
        paint(np.maximum(legs, shins), outfit.bottom)
    elif outfit.bottom_kind == "shorts":
        paint(shins, identity.skin)
        paint(legs, outfit.bottom)
    else:  # skirt over bare legs
        paint(np.maximum(legs, shins), identity.skin)
        skirt = new()
        poly(skirt, [(cx - ww * 1.02, y_hip - u * 0.05), (cx + ww * 1.02, y_hip - u * 0.05),
                     (cx + ww * 1.5, top + u * 0.73), (cx - ww * 1.5, top + u * 0.73)])
        paint(skirt, outfit.bottom)

    # --- long hair falls behind the shoulders
    if identity.long_hair:
        hair_back = new()
        poly(hair_back, [(cx - hw * 0.62, head_c[1]), (cx + hw * 0.62, head_c[1]),
                         (cx + hw * 0.7, y_sh + u * 0.09), (cx - hw * 0.7, y_sh + u * 0.09)])
        paint(hair_back, identity.hair)

    # --- torso and arms, with the outfit's texture and a side light
    neck = new()
    limb(neck, (cx, head_c[1]), (cx, y_sh + u * 0.01), hw * 0.42)
    paint(neck, identity.skin)
    torso = new()
    poly(torso, [(cx - sw * 0.78, y_sh), (cx + sw * 0.78, y_sh), (cx + sw, y_sh + u * 0.05),
                 (cx + ww, y_hip), (cx - ww, y_hip), (cx - sw, y_sh + u * 0.05)])
    sleeves, forearms, hands = new(), new(), new()
    for side, sgn in ((-1, -1), (1, 1)):
        shoulder = (cx + side * sw * 0.9, y_sh + u * 0.035)
        elbow = (cx + side * (sw + u * 0.012) + sgn * stride * 0.35, top + u * 0.37)
        wrist = (cx + side * (sw + u * 0.005) + sgn * stride * 0.7, top + u * 0.51)
        limb(sleeves, shoulder, elbow, arm_w)
        limb(sleeves if outfit.sleeves == "long" else forearms, elbow, wrist, arm_w * 0.85)
        cv2.circle(hands, P(*wrist), int(arm_w * 0.55 * s), 255, -1, cv2.LINE_AA, 4)
    paint(forearms, identity.skin)
    paint(hands, identity.skin)
    cloth = np.maximum(torso, sleeves)
    texture = _pattern(outfit.pattern, (H, W), outfit.top, outfit.accent, u)
    if outfit.pattern == "logo":  # a print on the chest (front) or the back
        x0, y0 = cx - sw * 0.35, y_sh + u * 0.07
        cv2.rectangle(texture, P(x0, y0), P(x0 + sw * 0.7, y0 + u * 0.07), outfit.accent, -1, cv2.LINE_AA, 4)
    light = np.linspace(1.12, 0.82, W, dtype=np.float32)[None, :, None]
    paint(cloth, np.clip(texture * light, 0, 255))

    # --- head: hair, then the real face (front) or more hair (back)
    hair = new()
    cv2.ellipse(hair, P(head_c[0], head_c[1] - hh * 0.06), (int(hw * 0.6 * s), int(hh * 0.58 * s)),
                0, 0, 360, 255, -1, cv2.LINE_AA, 4)
    paint(hair, identity.hair)
    if facing == "front" and identity.face is not None:
        _paste_face(rgb, alpha, identity, center=(head_c[0], head_c[1] + hh * 0.05),
                    face_h=hh * 0.84, angle=face_angle, flip=face_flip)
    elif facing == "back":
        nape = new()
        cv2.ellipse(nape, P(head_c[0], head_c[1] + hh * 0.12), (int(hw * 0.5 * s), int(hh * 0.42 * s)),
                    0, 0, 360, 255, -1, cv2.LINE_AA, 4)
        paint(nape, tuple(int(v * 0.85) for v in identity.hair))
    return np.dstack([rgb, alpha])


def _paste_face(rgb: np.ndarray, alpha: np.ndarray, identity: Identity, center: tuple[float, float],
                face_h: float, angle: float, flip: bool) -> None:
    """Warp the identity's face texture so that its face box is ``face_h`` tall at ``center``."""
    tex = identity.face[:, ::-1] if flip else identity.face
    fw, fh = identity.face_box
    scale = face_h / fh
    side = tex.shape[0]  # the square texture load_identities cuts
    c = side / 2
    m = cv2.getRotationMatrix2D((c, c), angle, scale)
    m[:, 2] += np.array(center) - c
    H, W = alpha.shape
    face = cv2.warpAffine(tex, m, (W, H), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    # An elliptic, feathered window just larger than the face box: the real face with
    # a little of its own hair, blended into the drawn head.
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (int(c), int(c - fh * 0.06)), (int(fw * 0.6), int(fh * 0.62)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, fw * 0.06))
    m_img = cv2.warpAffine(mask, m, (W, H))[:, :, None]
    rgb[:] = (rgb * (1 - m_img) + face * m_img).astype(np.uint8)
    np.maximum(alpha, (m_img[:, :, 0] * 255).astype(np.uint8), out=alpha)
