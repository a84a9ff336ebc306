"""REST routes of the reading module under /api/reading/."""
from django.urls import path

from portal.reading import api_views as v

urlpatterns = [
    path("reading/my/studies/", v.MyAssignmentsView.as_view(), name="reading-my-studies"),
    path("reading/my/studies/<int:study_id>/items/", v.MyWorklistView.as_view(), name="reading-my-worklist"),
    path("reading/items/<str:token>/", v.RaterItemView.as_view(), name="reading-item"),
    path("reading/items/<str:token>/draft/", v.RaterItemDraftView.as_view(), name="reading-item-draft"),
    path("reading/items/<str:token>/submit/", v.RaterItemSubmitView.as_view(), name="reading-item-submit"),
    path("reading/items/<str:token>/contour/", v.RaterItemContourView.as_view(), name="reading-item-contour"),
    path("reading/items/<str:token>/reference/", v.RaterItemReferenceView.as_view(), name="reading-item-reference"),
    path("reading/rubrics/", v.RubricSetListView.as_view(), name="reading-rubrics"),
    path("reading/studies/", v.ReadingStudyListView.as_view(), name="reading-studies"),
    path("reading/studies/<int:study_id>/", v.ReadingStudyDetailView.as_view(), name="reading-study"),
    path("reading/studies/<int:study_id>/open/", v.ReadingStudyTransitionView.as_view(action="open"), name="reading-study-open"),
    path("reading/studies/<int:study_id>/close/", v.ReadingStudyTransitionView.as_view(action="close"), name="reading-study-close"),
    path("reading/studies/<int:study_id>/unblinded/", v.UnblindedView.as_view(), name="reading-study-unblinded"),
    path("reading/studies/<int:study_id>/results/", v.ResultsView.as_view(), name="reading-study-results"),
]
