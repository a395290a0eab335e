"""A generated clothes-changing ReID dataset built from real face photos (offline).

The whole pipeline (face detection + recognition, ReID, enrichment, fusion, metrics)
must run for real on machines without the real datasets. This package draws one:
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

The modules, each one step (this package re-exports their public names)::

    people.py     identities with their real faces (load_identities), outfits (OUTFIT_STYLES, make_outfit)
    sprite.py     person_layer: an RGBA sprite of a person, with a walking phase
    scenes.py     camera_background, blend_sprite, render_person: a finished ReID crop in one of VIEWS
    plan.py       demo_plan, render_plan, make_demo_dataset, read_manifest: the dataset and its layout
    folders.py    generator_version, build_folder: cache keys and atomic writes of every generated folder

The drawing functions are public so that other modules compose the same people into
other layouts (:mod:`reface_utils.data.demo_layouts`) and videos
(:mod:`reface_utils.data.demo_video`).
"""
from __future__ import annotations

from .folders import MANIFEST_NAME, build_folder, generator_version
from .people import FACE_SOURCES, OUTFIT_STYLES, Identity, Outfit, load_identities, make_outfit
from .plan import DEMO_VERSION, MANIFEST_COLUMNS, demo_plan, make_demo_dataset, read_manifest, render_plan
from .scenes import DEFAULT_SIZE, VIEWS, blend_sprite, camera_background, render_person
from .sprite import person_layer

__all__ = [
    "DEMO_VERSION", "MANIFEST_NAME", "MANIFEST_COLUMNS", "DEFAULT_SIZE", "VIEWS",
    "Identity", "Outfit", "OUTFIT_STYLES", "FACE_SOURCES",
    "load_identities", "make_outfit", "person_layer", "camera_background",
    "render_person", "demo_plan", "render_plan", "build_folder", "make_demo_dataset", "read_manifest",
    "generator_version", "blend_sprite",
]
