"""Every parameter of the custom-video app, checked before any work: :class:`VideoSettings`
(in the pipeline's vocabulary), :func:`video_settings` (defaults with some replaced), and
the custom-video notebook's settings from its variables (:func:`settings_from_namespace`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Mapping

from ...core.checks import flag, integer, notebook_values, number, refuse_unknown, text
from ..cluster import check_engine
from ..tracking import TRACKERS

__all__ = ["VideoSettings", "video_settings", "NOTEBOOK_INPUTS", "settings_from_namespace"]


@dataclass
class VideoSettings:
    """Every parameter of :func:`~reface_utils.apps.custom.identify_people`, checked, in the
    pipeline's vocabulary (:class:`reface_utils.apps.pipeline.Settings`: ``det_threshold``,
    ``sim_threshold``, ``alpha``, ``engine``...). ``face_model``/``reid_model``: a backend
    name (normalised as its registry keys it) or a loaded model.
    """

    face_model: Any = "sface"
    reid_model: Any = "mobilenetv2-imagenet"
    reid_checkpoint: str | os.PathLike | None = None
    device: str = "auto"
    alpha: float = 0.75                # ReID weight in the fused score (paper: 0.75)
    det_threshold: float = 0.6         # faces detected with a lower score are ignored
    sim_threshold: float = 0.5         # face similarity for a crop to vote in enrichment
    unknown_threshold: float = 0.75    # match_score below it: "unknown" (apps.custom docstring, step 5)
    enrich: bool = True                # gallery enrichment from the video's own tracks
    leave_own_track_out: bool = False  # score a track without its own enriched crops
    tracker: str | Callable[[float], Any] = "bytetrack"
    tracker_options: Mapping[str, Any] | None = None
    min_track_frames: int = 10         # shorter tracks are dropped
    max_crops_per_track: int | None = 8   # crops scored per track, evenly spaced (None: all)
    crop_every: int = 1                # save every n-th crop
    fps: float | None = None           # frame rate of frames folders (None: 25)
    engine: str = "local"              # "ray": each video tracked by its own Ray task
    ray_address: str | None = None

    def __post_init__(self) -> None:
        self.alpha = number("alpha", self.alpha, 0.0, 1.0)
        self.det_threshold = number("det_threshold", self.det_threshold, 0.0, 1.0)
        self.sim_threshold = number("sim_threshold", self.sim_threshold, -1.0, 1.0)
        self.unknown_threshold = number("unknown_threshold", self.unknown_threshold, -2.0, 2.0)
        self.min_track_frames = integer("min_track_frames", self.min_track_frames, 1)
        self.max_crops_per_track = integer("max_crops_per_track", self.max_crops_per_track, 1, optional=True)
        self.crop_every = integer("crop_every", self.crop_every, 1)
        self.fps = number("fps", self.fps, 1e-3, 1e4, optional=True)
        self.engine = check_engine(self.engine)
        self.enrich = flag("enrich", self.enrich)
        self.leave_own_track_out = flag("leave_own_track_out", self.leave_own_track_out)
        # Names and the device are checked here, before a video is opened: a wrong one must
        # not cost a whole tracking pass first. A loaded model (not a name) is taken as it is.
        from ...core.runtime import torch_device
        from ...models.names import face_model_name, reid_model_name

        if isinstance(self.face_model, str):
            self.face_model = face_model_name(self.face_model)
        if isinstance(self.reid_model, str):
            self.reid_model = reid_model_name(self.reid_model)
        self.device = text("device", self.device).lower()
        try:
            torch_device(self.device)
        except RuntimeError as err:
            raise ValueError(f"parameter device: {err}") from None
        if isinstance(self.tracker, str):
            key = self.tracker.lower().replace("-", "").replace("_", "")
            if key not in TRACKERS:
                raise ValueError(f"parameter tracker must be one of {TRACKERS} (or a callable fps -> tracker), "
                                 f"got {self.tracker!r}")
        elif not callable(self.tracker):
            raise ValueError(f"parameter tracker must be a name in {TRACKERS} or a callable, got {self.tracker!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (v if v is None or isinstance(v, (bool, int, float, str)) else repr(v))
                for f in fields(self) for v in [getattr(self, f.name)]}


def video_settings(settings: VideoSettings | None = None, **parameters: Any) -> VideoSettings:
    """``settings`` (default: the defaults) with ``parameters`` replaced; unknown names are an
    error with the closest known one."""
    refuse_unknown(parameters, [f.name for f in fields(VideoSettings)])
    return replace(settings or VideoSettings(), **parameters)


#: The custom-video notebook's own parameters; every other one is a :class:`VideoSettings` field.
NOTEBOOK_INPUTS = ("gallery_root", "videos", "name", "detector", "results_root")


def settings_from_namespace(namespace: Mapping[str, Any]) -> VideoSettings:
    """The custom-video notebook's :class:`VideoSettings` from its variables (``globals()``
    after the parameters cell), every one checked. Plain values (None, bool, number, text)
    with public names are parameters: a misspelt papermill ``-p aplha 0.5`` (injected as a
    variable) is refused with the closest name, before any video is opened."""
    values = notebook_values(namespace, own=NOTEBOOK_INPUTS)
    refuse_unknown(values, [f.name for f in fields(VideoSettings)] + list(NOTEBOOK_INPUTS))
    return video_settings(**values)
