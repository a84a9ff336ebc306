"""URL map with only the accounts, imaging API and DICOMweb routes, so these tests do not depend on other apps' views."""
from django.urls import include, path

urlpatterns = [
    path("accounts/", include("portal.accounts.urls")),
    path("api/", include("portal.accounts.api_urls")),
    path("dicomweb/", include("portal.imaging.dicomweb_urls")),
]
