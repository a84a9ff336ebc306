"""REST views of jobs (thin: the logic is in ``portal.jobs.services``)."""
from __future__ import annotations

import json

from django.http import FileResponse
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.accounts import scoping
from portal.jobs import services
from portal.jobs.models import Job, Kind, State


class IsWorker(BasePermission):
    message = "worker accounts only"

    def has_permission(self, request, view):
        return scoping.is_worker(request.user)


def _error(exc: services.JobError) -> Response:
    return Response({"detail": str(exc), "field": exc.field}, status=exc.status)


def job_json(job: Job, *, with_results: bool = True) -> dict:
    data = services.events.job_state(job)
    data.update({"params": job.params, "queue": job.queue, "attempts": job.attempts, "worker": job.worker_id,
                 "url": f"/api/jobs/{job.pk}/"})
    if with_results and job.state == State.SUCCEEDED:
        data["results"] = {
            "mask": bool(job.mask_path), "probability": bool(job.probability_path),
            "rtstruct": bool(job.rtstruct_path), "metrics": job.metrics, "info": job.result_info,
            "contour_url": f"/api/jobs/{job.pk}/contour/",
        }
        if job.case_id:
            data["results"]["export_urls"] = {fmt: f"/api/cases/{job.case_id}/export/{fmt}/?job={job.pk}"
                                              for fmt in ("rtstruct", "seg", "nifti")}
    return data


def _int_or_error(value, field: str):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError({field: f"expected an integer id, got {value!r}"}) from None


def _visible_job(user, pk) -> Job:
    job = services.visible_jobs(user).filter(pk=pk).first()
    if job is None:
        raise NotFound("job not found")
    return job


class JobListView(APIView):
    def get(self, request):
        jobs = services.visible_jobs(request.user).select_related("case")
        params = request.query_params
        if "case" in params:
            jobs = jobs.filter(case_id=_int_or_error(params["case"], "case"))
        if "study" in params:
            jobs = jobs.filter(study_key=params["study"])
        if "state" in params:
            if params["state"] not in State.values:
                raise ValidationError({"state": f"choose one of {', '.join(State.values)}"})
            jobs = jobs.filter(state=params["state"])
        if "kind" in params:
            jobs = jobs.filter(kind=params["kind"])
        limit = min(_int_or_error(params.get("limit", 100), "limit"), 500)
        offset = _int_or_error(params.get("offset", 0), "offset")
        total = jobs.count()
        rows = [job_json(j, with_results=False) for j in jobs[offset:offset + limit]]
        return Response({"count": total, "results": rows})

    def post(self, request):
        from portal.cases.models import Case, ClinicalContextVersion

        body = request.data
        kind = body.get("kind", Kind.INFERENCE)
        case = None
        if body.get("case") is not None:
            case = scoping.scope_cases(request.user, Case.objects.all()).filter(
                pk=_int_or_error(body["case"], "case")).first()
            if case is None:
                raise NotFound("case not found")
        version = None
        if body.get("context_version") is not None:
            version = ClinicalContextVersion.objects.filter(pk=_int_or_error(body["context_version"],
                                                                             "context_version")).first()
            if version is None or case is None or version.case_id != case.pk:
                raise ValidationError({"context_version": "not a context version of this case"})
        params = body.get("params") or {}
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError:
                raise ValidationError({"params": "not valid JSON"}) from None
        if not isinstance(params, dict):
            raise ValidationError({"params": "expected an object"})
        try:
            job, created = services.submit_job(request.user, kind, case, body.get("checkpoint") or None, version,
                                               params=params, study_key=body.get("study") or "",
                                               queue=body.get("queue") or None)
        except services.JobError as exc:
            return _error(exc)
        return Response(job_json(job), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class BatchView(APIView):
    def post(self, request):
        from portal.cases.models import Case

        ids = request.data.get("cases")
        if not isinstance(ids, list) or not ids:
            raise ValidationError({"cases": "a non-empty list of case ids"})
        ids = [_int_or_error(v, "cases") for v in ids]
        cases = list(scoping.scope_cases(request.user, Case.objects.all()).filter(pk__in=ids))
        missing = sorted(set(ids) - {c.pk for c in cases})
        if missing:
            raise NotFound(f"cases not found: {missing}")
        try:
            batch = services.submit_batch(request.user, cases, request.data.get("checkpoint") or None,
                                          study_key=request.data.get("study") or "")
        except services.JobError as exc:
            return _error(exc)
        return Response(job_json(batch), status=status.HTTP_201_CREATED)


class JobDetailView(APIView):
    def get(self, request, pk):
        return Response(job_json(_visible_job(request.user, pk)))


class JobCancelView(APIView):
    def post(self, request, pk):
        job = _visible_job(request.user, pk)
        try:
            job = services.cancel_job(request.user, job)
        except services.JobError as exc:
            return _error(exc)
        return Response(job_json(Job.objects.get(pk=job.pk)))


class JobContourView(APIView):
    """The finished contour in the compact payload the viewer draws (same as the websocket event)."""

    def get(self, request, pk):
        job = _visible_job(request.user, pk)
        payload = services.contour_payload(job)
        if payload is None:
            raise NotFound(f"job {job.pk} has no finished contour ({job.state})")
        return Response(payload)


# ------------------------------------------------------------ worker protocol

class WorkerView(APIView):
    permission_classes = [IsWorker]

    def worker_of(self, request) -> str:
        worker = request.data.get("worker")
        if not isinstance(worker, str) or not worker:
            raise ValidationError({"worker": "the worker's identity string is required"})
        return f"{request.user.username}/{worker}"[:128]


class WorkerClaimView(WorkerView):
    def post(self, request, pk):
        try:
            return Response(services.claim_job(pk, self.worker_of(request)))
        except services.JobError as exc:
            return _error(exc)


class WorkerProgressView(WorkerView):
    def post(self, request, pk):
        try:
            return Response(services.record_progress(pk, self.worker_of(request), request.data.get("percent"),
                                                     request.data.get("message", "")))
        except services.JobError as exc:
            return _error(exc)


class WorkerResultView(WorkerView):
    def post(self, request, pk):
        from gpu_worker.client import ResultShapeError, check_probability_npz, decode_mask_npz

        worker = self.worker_of(request)
        upload = request.FILES.get("mask")
        if upload is None:
            raise ValidationError({"mask": "the mask file (.npz, packed bits + shape) is required"})
        try:
            grid_shape = services.result_shape(pk)  # checked against the headers before anything is allocated
        except services.JobError as exc:
            return _error(exc)
        try:
            mask = decode_mask_npz(upload.read(), shape=grid_shape)
        except ResultShapeError as exc:
            return _error(services.JobError(str(exc), field="mask"))
        except Exception as exc:  # noqa: BLE001 - any decoding failure is bad input
            raise ValidationError({"mask": f"not a packed-bits mask .npz: {exc}"}) from None
        probability = None
        if "probability" in request.FILES:
            try:
                # Checked, then stored as the worker sent it: no second decode and compression of the map.
                probability = check_probability_npz(request.FILES["probability"].read(), shape=grid_shape)
            except ResultShapeError as exc:
                return _error(services.JobError(str(exc), field="probability"))
            except Exception as exc:  # noqa: BLE001
                raise ValidationError({"probability": f"not a valid probability .npz (uint8 levels): {exc}"}) from None
        try:
            info = json.loads(request.data.get("info") or "{}")
        except ValueError:
            raise ValidationError({"info": "not valid JSON"}) from None
        try:
            job = services.store_result(pk, worker, mask, probability, info if isinstance(info, dict) else {})
        except services.JobError as exc:
            return _error(exc)
        return Response({"job": job.pk, "state": job.state})


class WorkerCheckpointUploadView(WorkerView):
    """A training job's resulting checkpoint (.pt upload) plus its metrics as JSON ``info``."""

    def post(self, request, pk):
        worker = self.worker_of(request)
        upload = request.FILES.get("checkpoint")
        if upload is None:
            raise ValidationError({"checkpoint": "the checkpoint file (.pt) is required"})
        try:
            info = json.loads(request.data.get("info") or "{}")
        except ValueError:
            raise ValidationError({"info": "not valid JSON"}) from None
        try:
            job = services.store_checkpoint(pk, worker, upload.read(), info if isinstance(info, dict) else {})
        except services.JobError as exc:
            return _error(exc)
        return Response({"job": job.pk, "state": job.state, "checkpoint": job.result_info.get("checkpoint")})


class WorkerFailureView(WorkerView):
    def post(self, request, pk):
        try:
            job = services.record_failure(pk, self.worker_of(request), request.data.get("error", ""))
        except services.JobError as exc:
            return _error(exc)
        return Response({"job": job.pk, "state": job.state})


class WorkerCancelledView(WorkerView):
    def post(self, request, pk):
        try:
            job = services.record_cancelled(pk, self.worker_of(request))
        except services.JobError as exc:
            return _error(exc)
        return Response({"job": job.pk, "state": job.state})


class WorkerCheckpointView(APIView):
    """Checkpoint download for workers with no shared disk (by plain file name only)."""

    permission_classes = [IsWorker]

    def get(self, request, name):
        try:
            path = services.checkpoint_path(name)
        except services.JobError as exc:
            return Response({"detail": str(exc), "field": exc.field}, status=404)
        return FileResponse(open(path, "rb"), content_type="application/octet-stream")
