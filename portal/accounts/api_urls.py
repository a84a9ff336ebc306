"""URL routes of the accounts API."""
from django.urls import path

from portal.accounts import api_views

urlpatterns = [
    path("auth/token/", api_views.ObtainTokenView.as_view(), name="api-token"),
    path("auth/me/", api_views.MeView.as_view(), name="api-me"),
]
