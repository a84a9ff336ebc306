"""URL map with only the accounts and imaging routes, so these tests do not depend on other apps' views."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("portal.accounts.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("portal.accounts.api_urls")),
    path("api/", include("portal.imaging.api_urls")),
]
