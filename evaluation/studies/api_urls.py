"""URL routes of the validation-study REST API (mounted under /api/)."""
from django.urls import path

from evaluation.studies import api_views as v

urlpatterns = [
    path("studies/", v.StudyListView.as_view(), name="study-list"),
    path("studies/<int:pk>/", v.StudyDetailView.as_view(), name="study-detail"),
    path("studies/<int:pk>/run/", v.StudyRunView.as_view(), name="study-run"),
    path("studies/<int:pk>/collect/", v.StudyCollectView.as_view(), name="study-collect"),
    path("studies/<int:pk>/results/", v.StudyResultsView.as_view(), name="study-results"),
    path("studies/<int:pk>/export.<str:fmt>", v.StudyExportView.as_view(), name="study-export"),
]
