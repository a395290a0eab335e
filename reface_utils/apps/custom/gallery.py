"""The labelled gallery folder of the custom-video app: ``<root>/<identity name>/<image>``
-> one row per image (:func:`load_gallery`), checked before any video is opened."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from ...core.images import UnreadableImageError, read_rgb
from ..tracking import FRAME_SUFFIXES

__all__ = ["GalleryError", "load_gallery"]


class GalleryError(ValueError):
    """A gallery folder that cannot be used (missing, empty, unreadable image)."""


# --------------------------------------------------------------------------- gallery
def load_gallery(root: str | os.PathLike, *, check_images: bool = True) -> pd.DataFrame:
    """The labelled people: ``<root>/<identity name>/<image>`` -> a table.

    Returns one row per image, columns ``path`` (absolute), ``identity`` (the folder
    name) and ``pid`` (0-based, identities in sorted order), sorted by identity and
    file name. Files with other suffixes than :data:`~reface_utils.apps.tracking.FRAME_SUFFIXES` are ignored;
    images placed directly in ``root`` are ignored with a warning. With
    ``check_images`` every image is decoded once, so a broken file fails here, named.
    Raises :class:`GalleryError` for a missing or empty folder, an identity folder
    without images, or an unreadable image.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise GalleryError(f"gallery folder {root} does not exist (expected <root>/<identity name>/*.jpg)")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if loose:
        warnings.warn(f"gallery {root}: {len(loose)} image(s) directly in the folder are ignored "
                      f"({', '.join(loose[:3])}...); put each person's images in <root>/<name>/", stacklevel=2)
    if not folders:
        raise GalleryError(f"gallery folder {root} has no identity folders: expected one sub-folder per "
                           "person, <root>/<identity name>/*.jpg")
    rows = []
    for pid, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
        if not images:
            raise GalleryError(f"identity folder {folder} has no images ({', '.join(FRAME_SUFFIXES)}): "
                               "add crops of this person or remove the folder")
        for image in images:
            if check_images:
                try:
                    read_rgb(image)
                except UnreadableImageError as e:
                    raise GalleryError(f"gallery image {image} is unreadable ({e}); replace or remove it") from None
            rows.append((str(image.absolute()), folder.name, pid))
    return pd.DataFrame(rows, columns=["path", "identity", "pid"])

