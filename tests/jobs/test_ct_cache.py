"""The worker keeps decoded CTs by content: a what-if (or a second model) on the same series downloads nothing,
and a changed series is never served from memory."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_worker.client import InProcessClient
from gpu_worker.ct_cache import CTCache
from gpu_worker.model_cache import ModelCache
from gpu_worker.runner import run_job


def _volume(value: float):
    return np.full((2, 3, 4), value, np.float32), f"grid-{value}"


def test_cache_serves_by_fingerprint_evicts_the_oldest_and_keeps_volumes_read_only():
    cache = CTCache(capacity=2)
    loads = []

    def loader(value):
        def load():
            loads.append(value)
            return _volume(value)
        return load

    hu, grid, reused = cache.get("a", loader(1.0))
    assert not reused and grid == "grid-1.0" and loads == [1.0]
    again, _, reused = cache.get("a", loader(99.0))
    assert reused and again is hu and loads == [1.0]
    with pytest.raises(ValueError):
        again[0, 0, 0] = 5.0  # shared between jobs: nobody may write into it
    cache.get("b", loader(2.0))
    cache.get("a", loader(99.0))  # "a" is now the most recent
    cache.get("c", loader(3.0))  # evicts "b"
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2
    assert cache.hits == 2 and cache.loads == 3
    # No fingerprint (an older portal) or a cache turned off: always a fresh load, nothing kept.
    _, _, reused = cache.get(None, loader(4.0))
    off = CTCache(capacity=0)
    off.get("a", loader(5.0))
    _, _, reused_off = off.get("a", loader(5.0))
    assert not reused and not reused_off and len(off) == 0 and loads[-3:] == [4.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="CONTEXTRT_CT_CACHE_SIZE"):
        CTCache(capacity=-1)


def test_capacity_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONTEXTRT_CT_CACHE_SIZE", "0")
    assert CTCache().capacity == 0
    monkeypatch.setenv("CONTEXTRT_CT_CACHE_SIZE", "5")
    assert CTCache().capacity == 5


@pytest.mark.django_db
def test_series_fingerprint_follows_the_stored_content(sts_case):
    from portal.imaging.volume import series_fingerprint

    series = sts_case.ct_series
    first = series_fingerprint(series)
    assert first == series_fingerprint(series) and len(first) == 64
    instance = series.instances.order_by("sop_uid").first()
    original = instance.source_sha256
    instance.source_sha256 = "0" * 64
    instance.save(update_fields=["source_sha256"])
    assert series_fingerprint(series) != first
    instance.source_sha256 = original
    instance.save(update_fields=["source_sha256"])
    assert series_fingerprint(series) == first


class CountingClient(InProcessClient):
    def __init__(self):
        self.ct_loads = 0

    def load_ct(self, spec):
        self.ct_loads += 1
        return super().load_ct(spec)


@pytest.mark.django_db(transaction=True)
def test_a_what_if_after_a_full_run_reads_the_ct_once_and_gives_the_fresh_result(sts_case, users, checkpoints):
    from portal.jobs import services
    from portal.jobs.models import Job, State

    client, models, cts = CountingClient(), ModelCache(capacity=1, device="cpu"), CTCache(capacity=2)
    full, _ = services.submit_job(users["coordinator"], "inference", sts_case, dispatch=False)
    assert run_job(full.pk, "", client=client, cache=models, ct_cache=cts)["state"] == "succeeded"
    right = dict(sts_case.context_versions.order_by("-version").first().data, laterality="right")
    what_if, _ = services.submit_job(users["coordinator"], "what_if", sts_case, params={"context": right},
                                     dispatch=False)
    assert run_job(what_if.pk, "", client=client, cache=models, ct_cache=cts)["state"] == "succeeded"
    assert client.ct_loads == 1 and cts.hits == 1
    full, what_if = Job.objects.get(pk=full.pk), Job.objects.get(pk=what_if.pk)
    assert full.state == what_if.state == State.SUCCEEDED
    assert full.result_info["ct_reused"] is False and what_if.result_info["ct_reused"] is True
    # The model's cached image features were reused too: no preprocessing on the second job.
    assert "preprocess" in full.result_info["timings"] and "preprocess" not in what_if.result_info["timings"]

    # It is the contour a fresh model gives for the new context on the CT read from the store.
    from portal.imaging import storage
    from portal.imaging.volume import load_ct_volume
    from portal.jobs.services import checkpoint_path
    from segmentation.inference import Segmenter

    hu, grid = load_ct_volume(sts_case.ct_series)
    fresh = Segmenter.from_checkpoint(checkpoint_path(what_if.checkpoint)).predict(
        hu.astype(np.float32), grid.spacing_zyx, "breast", right)
    what_if_mask = storage.load_mask(what_if.mask_path)
    assert np.array_equal(what_if_mask, fresh.mask) and what_if_mask.any()

    # The full run's RTSTRUCT is written with its result; the what-if's is built when someone asks for it.
    assert full.rtstruct_path and not what_if.rtstruct_path and what_if.result_info["rtstruct_on_request"]
    import io

    import pydicom

    from rest_framework.test import APIClient

    coordinator = APIClient()
    coordinator.force_authenticate(users["coordinator"])
    detail = coordinator.get(f"/api/jobs/{what_if.pk}/").json()
    url = detail["results"]["export_urls"]["rtstruct"]
    assert url == f"/api/cases/{sts_case.pk}/export/rtstruct/?job={what_if.pk}"
    response = coordinator.get(url)
    assert response.status_code == 200, response.content[:300]
    exported = pydicom.dcmread(io.BytesIO(b"".join(response.streaming_content) if response.streaming else response.content))
    assert exported.Modality == "RTSTRUCT" and len(exported.ROIContourSequence[0].ContourSequence) > 0
