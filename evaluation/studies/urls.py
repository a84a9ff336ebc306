"""URL routes of the validation-study pages (mounted under /studies/)."""
from django.urls import path

from evaluation.studies import views

app_name = "studies"
urlpatterns = [
    path("", views.study_list, name="list"),
    path("<int:pk>/", views.study_results, name="results"),
    path("<int:pk>/run/", views.study_run, name="run"),
    path("<int:pk>/collect/", views.study_collect, name="collect"),
]
