"""Browser page routes."""
from django.urls import path

from portal.web import views

urlpatterns = [
    path("", views.case_list, name="web-case-list"),
    path("case/<int:pk>/", views.case_page, name="web-case"),
    path("case/<int:pk>/compare/", views.compare_page, name="web-compare"),
]
