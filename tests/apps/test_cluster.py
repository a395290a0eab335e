"""The Ray engine (cluster.py) on a local 2-CPU Ray: the demo's features and every metric
are those of the in-process run, bit for bit, and a feature job survives a killed worker
without recomputing the chunks it had finished."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from reface_utils.core import cache
from reface_utils.apps import cluster  # noqa: E402
from reface_utils.data.datasets import load_dataset  # noqa: E402
from reface_utils.apps.pipeline import compute_features, evaluate, run_enrichment, settings_for  # noqa: E402
from reface_utils.models.reid import load_reid_model  # noqa: E402
from reface_utils.method.retrieval import EnrichedGallery, RetrievalConfig, run_retrieval  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (its start-up costs seconds): 2 CPUs, no dashboard,
    no usage reporting, nothing reached beyond this machine."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def demo():
    settings = settings_for(dataset="demo")
    dataset = load_dataset("demo")
    features = compute_features(dataset, settings, progress=False)  # in-process (its cache is reused)
    return settings, dataset, features


def test_engine_names_are_checked():
    with pytest.raises(ValueError, match="engine must be one of"):
        cluster.check_engine("spark")


def test_demo_features_identical_to_in_process(ray_session, demo, tmp_path):
    settings, dataset, local = demo
    # torch threads as in this process: CPU features depend on them (module docstring)
    options = {"cache_dir": tmp_path, "threads_per_worker": torch.get_num_threads()}
    remote = compute_features(dataset, settings, progress=False, engine="ray", ray_options=options)
    assert remote.reid.dtype == local.reid.dtype and np.array_equal(remote.reid, local.reid)
    for name, value in local.faces.to_arrays().items():
        assert np.array_equal(remote.faces.to_arrays()[name], value, equal_nan=True), name
    assert len(list(tmp_path.rglob("chunk_*.npz"))) == 2  # one ReID and one face chunk, in the cache
    assert not ray.util.list_named_actors()  # the workers are gone


def test_demo_metrics_identical_to_in_process(ray_session, demo):
    settings, dataset, features = demo
    enrichment = run_enrichment(dataset, features, settings)
    local = evaluate(dataset, features, enrichment, settings, progress=False)
    remote = evaluate(dataset, features, enrichment, settings, progress=False, engine="ray")
    pd.testing.assert_frame_equal(remote.table, local.table, check_exact=True)
    for key, res in local.retrieval["query"].results.items():
        other = remote.retrieval["query"].results[key]
        assert np.array_equal(other.cmc, res.cmc) and other.mAP == res.mAP
        assert np.array_equal(other.first_good_rank, res.first_good_rank)
    for name, top in local.retrieval["query"].topk.items():
        assert np.array_equal(remote.retrieval["query"].topk[name], top)


def test_query_blocks_merge_exactly(ray_session, demo):
    """Several tasks of uneven size, both enrichments, own copies left out: the merged
    per-query states give the numbers of one in-process pass with the same blocks."""
    settings, dataset, features = demo
    enrichment = run_enrichment(dataset, features, settings)
    gallery = features.feature_set("gallery", settings.det_threshold)
    query = features.feature_set("query", settings.det_threshold)
    enriched = EnrichedGallery.from_table(enrichment.samples, query, gallery)
    assert len(enriched) > 0
    configs = [RetrievalConfig("reid", 1.0), RetrievalConfig("face", 0.0), RetrievalConfig("fused", 0.75),
               RetrievalConfig("min", 0.75, "min"), RetrievalConfig("min-self", 0.75, "min", exclude_self=True),
               RetrievalConfig("append", 0.75, "append", exclude_self=True, cc_skip_enriched_only=False)]
    common = dict(modes=("standard", "CC", "SC"), enriched=enriched, block_size=16, topk=7)
    local = run_retrieval(query, gallery, configs, progress=False, **common)
    remote = cluster.run_retrieval_ray(query, gallery, configs, tasks=3, progress=False, **common)
    pd.testing.assert_frame_equal(remote.table, local.table, check_exact=True)
    for key, res in local.results.items():
        other = remote.results[key]
        assert np.array_equal(other.cmc, res.cmc) and other.mAP == res.mAP, key
        assert (other.num_evaluated, other.num_skipped) == (res.num_evaluated, res.num_skipped)
        assert np.array_equal(other.first_good_rank, res.first_good_rank)
    for name, top in local.topk.items():
        assert np.array_equal(remote.topk[name], top), name


def test_killed_worker_still_finishes_without_recomputing(ray_session, demo, tmp_path):
    """96 images in chunks of 32 on 2 actors; one actor is killed for good once a chunk
    is on disk. The job replaces it, reruns only its chunk, and the features are
    identical; a second run (a restarted job) reuses every chunk, and so does the
    in-process cache."""
    settings, dataset, local = demo
    paths = dataset.images["path"].tolist()[:96]
    spec = cluster.FeatureModelSpec("reid", settings.reid_model, {"device": "cpu"}, batch_size=settings.batch_size)
    options = dict(cache_dir=tmp_path, chunk_size=32, workers=2, threads_per_worker=torch.get_num_threads(),
                   progress=False)
    written_before_kill: dict[str, int] = {}
    killed = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            chunks = list(tmp_path.rglob("chunk_*.npz"))
            if chunks:
                written_before_kill.update({str(p): p.stat().st_mtime_ns for p in chunks})
                name = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                              if a["name"].startswith(cluster.WORKER_PREFIX))[0]
                ray.kill(ray.get_actor(name))  # no restart: the job must cope on its own
                killed.append(name)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    arrays, run = cluster.ray_cached_features(spec, paths, **options)
    killer.join()
    assert killed and run.lost_workers == 1
    assert np.array_equal(arrays["features"], local.reid[:96])
    n_chunks = -(-len(paths) // 32)
    assert run.chunks == n_chunks and sorted(set(run.computed)) == list(range(n_chunks))
    assert len(run.computed) == n_chunks  # every chunk computed exactly once, the lost one included
    for path, mtime in written_before_kill.items():  # finished chunks were not written again
        assert os.stat(path).st_mtime_ns == mtime
    again, rerun = cluster.ray_cached_features(spec, paths, **options)
    assert rerun.computed == [] and rerun.reused == list(range(n_chunks))
    assert np.array_equal(again["features"], local.reid[:96])
    assert {p.name for p in run.entry.iterdir()} >= {cache.chunk_file(run.entry, i, 32).name for i in range(n_chunks)}

    def must_not_compute(part, bar):
        raise AssertionError("the in-process cache recomputed a chunk the Ray job wrote")

    # an in-process run with the same model and chunking finds the Ray job's chunks
    key = load_reid_model(settings.reid_model, device="cpu").model_key
    in_process = cache.cached_features(key, paths, must_not_compute, cache_dir=tmp_path, chunk_size=32, progress=False)
    assert np.array_equal(in_process["features"], local.reid[:96])


def test_videos_tracked_one_task_each(ray_session, tmp_path):
    """Two clips of the demo video (frame folders), one Ray task each: the same tables and
    crops as tracking them here."""
    import cv2

    from reface_utils.data import demo_video
    from reface_utils.apps import tracking

    clips = [tmp_path / "clip-a", tmp_path / "clip-b"]
    for clip in clips:
        clip.mkdir()
    for index, frame in tracking.iter_frames(demo_video.make_demo_video().video):
        if index >= 24:
            break
        cv2.imwrite(str(clips[index // 12] / f"{index:04d}.png"), frame[:, :, ::-1])

    def jobs(root):
        return [dict(source=clip, fps=10.0, name=clip.name, crops_dir=root / clip.name) for clip in clips]

    local = [tracking.track_video(**job, progress=False) for job in jobs(tmp_path / "local")]
    remote = cluster.track_videos_ray(jobs(tmp_path / "ray"), progress=False)
    assert sum(len(t) for t in local) > 0
    for a, b in zip(local, remote):
        pd.testing.assert_frame_equal(b.drop(columns="crop"), a.drop(columns="crop"), check_exact=True)
        assert list(b["crop"].str.replace("/ray/", "/local/")) == list(a["crop"])
    crops = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.jpg"))
    assert crops == sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.jpg"))
