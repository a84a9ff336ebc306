"""URL routes of the jobs REST API (users) and the worker protocol (worker accounts)."""
from django.urls import path

from portal.jobs import api_views as v

urlpatterns = [
    path("jobs/", v.JobListView.as_view(), name="job-list"),
    path("jobs/batch/", v.BatchView.as_view(), name="job-batch"),
    path("jobs/<int:pk>/", v.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:pk>/cancel/", v.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<int:pk>/contour/", v.JobContourView.as_view(), name="job-contour"),
    path("worker/jobs/<int:pk>/claim/", v.WorkerClaimView.as_view(), name="worker-claim"),
    path("worker/jobs/<int:pk>/progress/", v.WorkerProgressView.as_view(), name="worker-progress"),
    path("worker/jobs/<int:pk>/result/", v.WorkerResultView.as_view(), name="worker-result"),
    path("worker/jobs/<int:pk>/failure/", v.WorkerFailureView.as_view(), name="worker-failure"),
    path("worker/jobs/<int:pk>/checkpoint/", v.WorkerCheckpointUploadView.as_view(), name="worker-checkpoint-upload"),
    path("worker/jobs/<int:pk>/cancelled/", v.WorkerCancelledView.as_view(), name="worker-cancelled"),
    path("worker/checkpoints/<str:name>/", v.WorkerCheckpointView.as_view(), name="worker-checkpoint"),
]
