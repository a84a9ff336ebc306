"""URL routes of the jobs app."""
urlpatterns = []
