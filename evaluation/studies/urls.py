"""URL routes of the validation-study pages (mounted under /studies/)."""
from django.urls import path

from evaluation.studies import views

app_name = "studies"
urlpatterns = [
    path("", views.study_list, name="list"),
    path("<int:pk>/", views.study_results, name="results"),
]
