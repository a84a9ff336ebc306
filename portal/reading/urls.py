"""URL routes of the reading pages (mounted at /reading/)."""
from django.urls import path

from portal.reading import views

urlpatterns = [
    path("", views.worklist, name="reading-worklist"),
    path("items/<str:token>/", views.score_page, name="reading-score"),
    path("studies/", views.manage_list, name="reading-manage-list"),
    path("studies/new/", views.manage_new, name="reading-manage-new"),
    path("studies/<int:pk>/", views.manage_detail, name="reading-manage-detail"),
    path("studies/<int:pk>/results/", views.manage_results, name="reading-manage-results"),
    path("studies/<int:pk>/unblinded/", views.manage_unblinded, name="reading-manage-unblinded"),
    path("rubrics/", views.manage_rubrics, name="reading-manage-rubrics"),
]
