"""URL routes of the cases API (mounted under /api/)."""
from django.urls import path

from portal.cases import api_views

urlpatterns = [
    path("cases/", api_views.CaseListView.as_view(), name="case-list"),
    path("cases/<int:pk>/", api_views.CaseDetailView.as_view(), name="case-detail"),
    path("cases/<int:pk>/contexts/", api_views.ContextVersionsView.as_view(), name="case-context-versions"),
    path("cases/<int:pk>/contexts/diff/", api_views.ContextDiffView.as_view(), name="case-context-diff"),
    path("cases/<int:pk>/contexts/<int:version>/", api_views.ContextVersionDetailView.as_view(),
         name="case-context-version"),
    path("cases/<int:pk>/prompt-preview/", api_views.PromptPreviewView.as_view(), name="case-prompt-preview"),
    path("cases/<int:pk>/extract-note/", api_views.NoteExtractionView.as_view(), name="case-extract-note"),
    path("cases/<int:pk>/rois/<int:roi_id>/payload/", api_views.RoiPayloadView.as_view(), name="case-roi-payload"),
    path("cases/<int:pk>/export/<str:fmt>/", api_views.ExportView.as_view(), name="case-export"),
    path("context-schema/<str:cancer_type>/", api_views.ContextSchemaView.as_view(), name="context-schema"),
]
