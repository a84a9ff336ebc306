"""URL routes of the reading pages (mounted at /reading/)."""
from django.urls import path

from portal.reading import views

urlpatterns = [
    path("", views.worklist, name="reading-worklist"),
]
