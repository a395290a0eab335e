"""The Ray engine: ReFace's heavy stages on a cluster, with the numbers of the in-process run.

ReFace runs in-process by default (``engine="local"``: nothing to start). ``engine="ray"``
runs the stages that outgrow one machine on a Ray cluster (docs/CLUSTER.md: why Ray, how
it works, and a wall-time model for galleries of millions of images):

* **Features** (:func:`ray_cached_features`): the image list is cut at the feature
  cache's chunk boundaries and each chunk the cache lacks is a task for a pool of Ray
  actors that load the model once (one per GPU, or per ``cpus_per_worker`` CPU slots).
  A finished chunk comes back through the object store and this process writes it into
  the cache entry the in-process run uses (same key, same file, atomic rename), so a
  chunk is never computed twice: a restarted job, local or Ray, resumes at the missing
  chunks, and a worker that dies (node lost, out of memory, ``ray.kill``) is replaced and
  only its chunk runs again. Workers need the image paths (a shared file system, as for
  the dataset itself), not the cache.
* **Retrieval** (:func:`run_retrieval_ray`): the block-wise post-feature stage
  (:func:`reface_utils.method.retrieval.run_retrieval`) runs contiguous ranges of its query
  blocks as tasks, the gallery, the enriched gallery and the queries put once in the
  object store (tasks read them zero-copy). Each task returns per-query metric state; the
  merge is exact: integer counts (CMC histogram, evaluated, skipped) are summed, the
  per-query AP values are placed in query order and summed once, as in-process, so every
  number is bit-for-bit the in-process one.
* **Custom videos** (:func:`track_videos_ray`): one task per video for detection,
  tracking and crops (the crops folder must be on a file system the workers share).

Bit-for-bit equality needs the workers to compute what the driver would: same code and
library versions (the feature cache key holds the versions, and the workers' key is the
one used), same device type, and for CPU features the same number of torch threads
(``threads_per_worker``; oneDNN's reductions depend on it, 1.4e-7 apart on the demo).

Ray is an optional extra (``pip install 'reface[cluster]'``) imported only here, lazily.
"""
from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


from ..core import cache
from ..core.files import atomic_savez
from ..core.images import ImageLike, UnreadableImagesWarning, describe, warn_unreadable
from ..core.progress import progress_bar
from ..method.retrieval import (
    BlockScores,
    EnrichedGallery,
    FeatureSet,
    QueryBlock,
    RetrievalConfig,
    RetrievalPlan,
    RetrievalResult,
    Workspace,
    merge_blocks,
    plan_retrieval,
    query_blocks,
    score_block,
)

__all__ = ["ENGINES", "check_engine", "connect", "FeatureModelSpec", "FeatureRun", "ray_cached_features",
           "reid_features_ray", "face_features_ray", "run_retrieval_ray", "track_videos_ray"]

#: ``engine`` values of the pipeline functions: in-process (default) or on a Ray cluster.
ENGINES = ("local", "ray")
#: Ray-actor name prefix of the feature workers (``ray.util.list_named_actors()`` shows them).
WORKER_PREFIX = "reface-features"
# compute_features joins Ray from two threads at once (face and ReID jobs): one of them
# must start it and the other must wait, or ray.init runs twice and fails.
_CONNECT_LOCK = threading.Lock()


def check_engine(engine: str) -> str:
    """``engine`` itself, or a ValueError naming the choices."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("engine='ray' needs Ray: pip install 'reface[cluster]' (or 'ray>=2.40')") from exc
    return ray


def connect(address: str | None = None, *, ship_code: bool = False, **init_options: Any) -> Any:
    """Ray, connected: an already initialised Ray is used as it is; otherwise
    ``ray.init(address)`` joins the cluster at ``address`` (or at ``$RAY_ADDRESS``), and
    with neither a Ray is started on this machine (no dashboard). Returns the ``ray`` module.

    ``ship_code=True`` sends this checkout's ``reface_utils`` to the workers (Ray's
    ``py_modules``), so that they run exactly the driver's code; the libraries (torch,
    OpenCV, ...) must be installed on every node either way (``pip install 'reface[cluster]'``).
    """
    ray = _ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None and threading.current_thread() is not threading.main_thread() and not ray.is_initialized():
        # A local Ray's processes die with the thread that started them (Linux parent-death
        # signal): start it from the main thread, or join a running cluster.
        warnings.warn("starting a local Ray from a worker thread: it stops when this thread ends; "
                      "call reface_utils.apps.cluster.connect() from the main thread first", RuntimeWarning,
                      stacklevel=2)
    with _CONNECT_LOCK:
        if ray.is_initialized():
            return ray
        options: dict[str, Any] = {"logging_level": "WARNING"}
        if address is None:
            options["include_dashboard"] = False
        if ship_code:
            options["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parent)]}
        try:
            ray.init(address=address, **{**options, **init_options})
        except (ConnectionError, RuntimeError) as exc:
            if address is None:
                raise
            # Ray >= 2.5x: `ray start --head` turns token authentication on, and a driver
            # only sends the token when told to (docs/CLUSTER.md).
            hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                    "; a cluster started with `ray start` uses token authentication: set RAY_AUTH_MODE=token "
                    "(the token is read from ~/.ray/auth_token or RAY_AUTH_TOKEN)")
            raise ConnectionError(f"could not join the Ray cluster at {address} (ray_address or "
                                  f"$RAY_ADDRESS){hint}: {str(exc).splitlines()[-1] if str(exc) else exc!r}") from exc
    return ray


def _slots(ray: Any, resource: str, per_worker: float) -> int:
    total = float(ray.cluster_resources().get(resource, 0.0))
    return max(1, int(total // per_worker)) if per_worker > 0 else 1


# ------------------------------------------------------------------------------ features
@dataclass(frozen=True)
class FeatureModelSpec:
    """How a worker builds a feature extractor: a name and options, not a loaded model
    (a model would be pickled to every worker; a recipe is a few bytes).

    kind: ``"reid"`` (``load_reid_model(name, **options)``) or ``"face"``
    (``load_face_model(name, **options)``). ``batch_size``/``num_workers`` are those of
    the in-process ``extract`` call whose chunks this reproduces.
    """

    kind: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    num_workers: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("reid", "face"):
            raise ValueError(f"FeatureModelSpec.kind must be 'reid' or 'face', got {self.kind!r}")

    def load(self) -> Any:
        if self.kind == "reid":
            from ..models.reid import load_reid_model
            return load_reid_model(self.name, **self.options)
        from ..models.face import load_face_model
        return load_face_model(self.name, **self.options)

    def chunk(self, model: Any, images: Sequence[ImageLike]) -> dict[str, np.ndarray]:
        """The arrays the in-process ``extract`` caches for these images (one cache chunk)."""
        with warnings.catch_warnings():  # the driver warns once, over the whole list
            warnings.simplefilter("ignore", UnreadableImagesWarning)
            if self.kind == "reid":
                return {"features": model.extract(images, batch_size=self.batch_size, num_workers=self.num_workers,
                                                  cache_dir=None, progress=False)}
            return model._compute(images, None, 64 if self.batch_size is None else self.batch_size)


class _FeatureWorker:
    """A Ray actor: loads the model once, then computes cache chunks."""

    def __init__(self, spec: FeatureModelSpec, threads: int | None, env: Mapping[str, str]) -> None:
        os.environ.update(env)  # this actor's own process: REFACE_HOME for the weights
        if threads:
            import torch
            torch.set_num_threads(int(threads))
        self.spec = spec
        self.model = spec.load()

    def model_key(self) -> dict:
        return self.model.model_key

    def compute(self, images: list[str]) -> dict[str, np.ndarray]:
        return self.spec.chunk(self.model, images)


#: Arrays in which NaN is a value, per feature kind (as the extractors pass to the cache):
#: a face box and landmarks are NaN where nothing was detected.
_ALLOW_NAN = {"face": ("bbox", "kps"), "reid": ()}


@dataclass
class FeatureRun:
    """What a Ray feature job did: chunks found in the cache, chunks the workers computed
    (completion order), workers lost and replaced, and the cache entry (None: no cache)."""

    chunks: int
    reused: list[int]
    computed: list[int]
    lost_workers: int
    entry: Path | None


def _as_path(image: ImageLike, index: int) -> str:
    if isinstance(image, np.ndarray):
        raise TypeError(f"engine='ray' extracts features of image files; image {index} is an in-memory array "
                        "(save it to a file the workers can read, or use engine='local')")
    return os.fspath(image)


def ray_cached_features(spec: FeatureModelSpec, images: Sequence[ImageLike], *,
                        cache_dir: str | os.PathLike | None = cache.DEFAULT, chunk_size: int = 1024,
                        workers: int | None = None, cpus_per_worker: float = 1.0,
                        gpus_per_worker: float | None = None, threads_per_worker: int | None = None,
                        max_attempts: int = 3, address: str | None = None, progress: bool = True,
                        desc: str = "features") -> tuple[dict[str, np.ndarray], FeatureRun]:
    """``cache.cached_features`` with the chunks computed by Ray actors; same arrays, same files.

    workers: actors (default: as many as the cluster's GPUs, or its CPUs // cpus_per_worker,
        hold, and no more than the chunks to compute). gpus_per_worker: default 1 for a
        ReID model when the cluster has GPUs, else 0. threads_per_worker: torch threads per
        actor (default ``cpus_per_worker``). max_attempts: runs of one chunk whose worker
        died before the job gives up (a chunk that kills every worker is a bad input).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    paths = [_as_path(im, i) for i, im in enumerate(images)]
    ray = connect(address)
    if gpus_per_worker is None:
        device = str(spec.options.get("device", "auto"))
        has_gpu = float(ray.cluster_resources().get("GPU", 0.0)) > 0
        gpus_per_worker = 1.0 if spec.kind == "reid" and has_gpu and not device.startswith("cpu") else 0.0
    threads = threads_per_worker if threads_per_worker is not None else max(1, int(cpus_per_worker))
    env = {k: os.environ[k] for k in ("REFACE_HOME",) if k in os.environ}
    actor_class = ray.remote(_FeatureWorker)
    run_id = uuid.uuid4().hex[:8]
    pool: list[Any] = []

    def start_worker() -> Any:
        # no Ray-side restarts: a dead worker is replaced here, and its chunk's attempts counted
        actor = actor_class.options(name=f"{WORKER_PREFIX}-{run_id}-{len(pool) + lost}", num_cpus=cpus_per_worker,
                                    num_gpus=gpus_per_worker, max_restarts=0).remote(spec, threads, env)
        pool.append(actor)
        return actor

    lost = 0
    try:
        first = start_worker()
        key = ray.get(first.model_key.remote())  # the workers' key: their device and libraries
        n = len(paths)
        if n == 0:  # the extractor says what an empty result looks like (0 x D arrays)
            return ray.get(first.compute.remote([])), FeatureRun(0, [], [], 0, None)
        root = None if cache_dir is None else (cache.features_cache_dir() if cache_dir is cache.DEFAULT
                                               else Path(cache_dir))
        entry = cache.cache_entry_dir(root, key, paths) if root is not None else None
        bounds = [(number, start, min(start + chunk_size, n)) for number, start in enumerate(range(0, n, chunk_size))]
        if entry is not None:
            entry.mkdir(parents=True, exist_ok=True)
            todo = [b for b in bounds
                    if cache._load_chunk(cache.chunk_file(entry, b[0], chunk_size), b[2] - b[1], None,
                                         _ALLOW_NAN[spec.kind])[0] is None]
        else:
            todo = list(bounds)
        reused = sorted(set(b[0] for b in bounds) - set(b[0] for b in todo))
        capacity = workers or (_slots(ray, "GPU", gpus_per_worker) if gpus_per_worker
                               else _slots(ray, "CPU", cpus_per_worker))
        while len(pool) < min(capacity, len(todo)):
            start_worker()

        held: dict[int, dict[str, np.ndarray]] = {}  # finished chunks when there is no cache
        computed: list[int] = []
        attempts: Counter[int] = Counter()
        pending, idle = deque(todo), list(pool)
        inflight: dict[Any, tuple[tuple[int, int, int], Any]] = {}
        with progress_bar(total=n, initial=n - sum(b[2] - b[1] for b in todo), desc=f"{desc} (ray)", unit="img",
                  disable=not progress, leave=False) as bar:
            while pending or inflight:
                while idle and pending:
                    actor, b = idle.pop(), pending.popleft()
                    inflight[actor.compute.remote(paths[b[1]:b[2]])] = (b, actor)
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                b, actor = inflight.pop(ref)
                try:
                    arrays = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # the worker died: replace it, rerun its chunk
                    attempts[b[0]] += 1
                    if attempts[b[0]] >= max_attempts:
                        raise RuntimeError(
                            f"{desc}: chunk {b[0]} (images {b[1]}..{b[2] - 1}, from {paths[b[1]]}) lost its worker "
                            f"{attempts[b[0]]} times; look for an image that crashes the model, or for workers "
                            "running out of memory (fewer threads or a smaller batch_size)") from exc
                    pool.remove(actor)
                    ray.kill(actor)  # if it is only unreachable, it must not come back and compute twice
                    lost += 1
                    pending.appendleft(b)
                    idle.append(start_worker())
                    continue
                bad = {k: len(v) for k, v in arrays.items() if len(v) != b[2] - b[1]}
                if bad:
                    raise ValueError(f"{desc}: a worker returned {bad} rows for a chunk of {b[2] - b[1]} images")
                if entry is not None:
                    atomic_savez(cache.chunk_file(entry, b[0], chunk_size), arrays)
                else:
                    held[b[0]] = arrays
                computed.append(b[0])
                bar.update(b[2] - b[1])
                idle.append(actor)
    finally:
        for actor in pool:
            ray.kill(actor)

    order = iter(sorted(held))

    def from_workers(part: Sequence[ImageLike], bar: Any) -> Mapping[str, np.ndarray]:
        if entry is not None:
            raise RuntimeError(f"{desc}: a finished chunk of {entry} disappeared while the job ran "
                               "(is something cleaning the cache?); run again, it resumes")
        return held[next(order)]

    arrays = cache.cached_features(key, paths, from_workers, cache_dir=root, chunk_size=chunk_size,
                                   desc=desc, progress=False, allow_nan=_ALLOW_NAN[spec.kind])
    return arrays, FeatureRun(len(bounds), reused, computed, lost, entry)


def reid_features_ray(spec: FeatureModelSpec, images: Sequence[ImageLike], **options: Any) -> np.ndarray:
    """``ReIDModel.extract`` on Ray: ``(N, dim)`` float32 (options: :func:`ray_cached_features`)."""
    arrays, _ = ray_cached_features(spec, images, desc=f"ReID {spec.name}", **options)
    from ..method.features import unreadable_mask

    features = arrays["features"].astype(np.float32, copy=False)
    bad = np.flatnonzero(unreadable_mask(features))
    warn_unreadable([describe(images[i], int(i)) for i in bad], f"ReID ({spec.name})")
    return features


def face_features_ray(spec: FeatureModelSpec, images: Sequence[ImageLike], **options: Any) -> Any:
    """``FaceModel.extract`` on Ray: a ``FaceFeatures`` (options: :func:`ray_cached_features`)."""
    from ..method.features import FaceFeatures

    arrays, _ = ray_cached_features(spec, images, desc=f"faces ({spec.name})", **options)
    unreadable = np.flatnonzero(arrays.get("unreadable", np.zeros(len(images), bool)))
    warn_unreadable([describe(images[i], int(i)) for i in unreadable], f"face features ({spec.name})")
    return FaceFeatures.from_arrays(arrays)


# ----------------------------------------------------------------------------- retrieval
def _blas_threads() -> int:
    """This process's BLAS threads (OpenBLAS rounds a matrix product differently with
    another thread count: 4e-7 apart on the demo)."""
    from threadpoolctl import threadpool_info
    return max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"], default=1)


def _score_blocks_task(plan: RetrievalPlan, blocks: list[QueryBlock], blas_threads: int) -> list[BlockScores]:
    """:func:`~reface_utils.method.retrieval.score_block` for some of a run's query blocks."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(blas_threads, user_api="blas"):
        workspace = Workspace()
        return [score_block(plan, block, workspace=workspace) for block in blocks]


def run_retrieval_ray(query: FeatureSet, gallery: FeatureSet, configs: Sequence[RetrievalConfig] | None = None, *,
                      modes: Sequence[str] = ("standard",), enriched: EnrichedGallery | None = None,
                      exclude_same_camera: bool = True, block_size: int | None = None, topk: int = 0,
                      tasks: int | None = None, cpus_per_task: float = 1.0, blas_threads: int | None = None,
                      device: str = "numpy", address: str | None = None, progress: bool = True) -> RetrievalResult:
    """:func:`~reface_utils.method.retrieval.run_retrieval` with its query blocks scored by Ray
    tasks: the plan (gallery, enriched gallery, configs) is put in the object store once,
    each task scores a contiguous run of the in-process blocks (:func:`score_block`, a pure
    step), and :func:`merge_blocks` merges them exactly, so the result (table, CMC curves,
    first good ranks, top-k lists) is bit-for-bit the in-process one on the same device.

    tasks: how many runs of blocks (default: one per ``cpus_per_task`` CPU slot of the
    cluster, at most one per block). blas_threads: BLAS threads per task (default: this
    process's, which bit-for-bit equality needs). device: where tasks compute ("numpy",
    or "cuda" on GPU workers).
    """
    ray = connect(address)
    plan = plan_retrieval(query, gallery, configs, modes=modes, enriched=enriched,
                          exclude_same_camera=exclude_same_camera, topk=topk,
                          threads=max(1, int(cpus_per_task)), device=device)
    blocks = list(query_blocks(plan, query, block_size))
    if not blocks:  # no queries: the in-process merge says what empty looks like
        return merge_blocks(plan, [])
    n_tasks = max(1, min(len(blocks), tasks or _slots(ray, "CPU", cpus_per_task)))
    cuts = [len(blocks) * i // n_tasks for i in range(n_tasks + 1)]
    plan_ref = ray.put(plan)  # once, read zero-copy by every task on a node
    task = ray.remote(_score_blocks_task).options(num_cpus=cpus_per_task, max_retries=3)
    blas = int(blas_threads) if blas_threads is not None else _blas_threads()
    refs = [task.remote(plan_ref, blocks[a:b], blas) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    with progress_bar(total=len(refs), desc="retrieval (ray)", unit="task", disable=not progress, leave=False) as bar:
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            bar.update(len(done))
    return merge_blocks(plan, [scores for part in ray.get(refs) for scores in part])


# ---------------------------------------------------------------------------- custom video
def track_videos_ray(jobs: Sequence[Mapping[str, Any]], *, cpus_per_task: float = 1.0,
                     address: str | None = None, progress: bool = True) -> list[pd.DataFrame]:
    """:func:`~reface_utils.apps.tracking.track_video` ``(**job)`` for every job, one Ray task
    per video, tables in the jobs' order. Crops are written by the workers into each job's
    ``crops_dir`` (a folder the workers and this process share); a detector given in a job
    must be picklable (the default HOG detector is built by the worker)."""
    ray = connect(address)
    task = ray.remote(_track_task).options(num_cpus=cpus_per_task, max_retries=2)
    refs = [task.remote({**job, "progress": False}) for job in jobs]
    with progress_bar(total=len(refs), desc="tracking (ray)", unit="video", disable=not progress, leave=False) as bar:
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            bar.update(len(done))
    return ray.get(refs)


def _track_task(job: dict) -> pd.DataFrame:
    from .tracking import track_video
    return track_video(**job)
