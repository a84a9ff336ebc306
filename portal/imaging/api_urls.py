"""URL routes of the imaging API: upload and the scoped catalogue."""
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from portal.imaging import api_views

router = SimpleRouter()
router.register("imaging/patients", api_views.PatientViewSet, basename="imaging-patient")
router.register("imaging/studies", api_views.StudyViewSet, basename="imaging-study")
router.register("imaging/series", api_views.SeriesViewSet, basename="imaging-series")
router.register("imaging/reidentification", api_views.ReidentificationViewSet, basename="imaging-reidentification")

urlpatterns = [
    path("imaging/upload/", api_views.UploadView.as_view(), name="imaging-upload"),
    path("", include(router.urls)),
]
