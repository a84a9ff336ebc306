"""Websocket URL routes for job, case and study events."""
from django.urls import path, re_path

from portal.jobs import consumers

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", consumers.JobConsumer.as_asgi()),
    path("ws/cases/<int:case_id>/", consumers.CaseConsumer.as_asgi()),
    re_path(r"^ws/studies/(?P<study_key>[A-Za-z0-9_.-]{1,64})/$", consumers.StudyConsumer.as_asgi()),
]
