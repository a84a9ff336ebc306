"""Top-level URL map of the portal. Each app owns its own ``urls.py``."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("portal.accounts.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("portal.accounts.api_urls")),
    path("api/", include("portal.imaging.api_urls")),
    path("api/", include("portal.cases.api_urls")),
    path("api/", include("portal.jobs.api_urls")),
    path("api/", include("portal.reading.api_urls")),
    path("api/", include("evaluation.studies.api_urls")),
    path("dicomweb/", include("portal.imaging.dicomweb_urls")),
    path("reading/", include("portal.reading.urls")),
    path("studies/", include("evaluation.studies.urls")),
    path("", include("portal.cases.urls")),
    path("", include("portal.web.urls")),
]
