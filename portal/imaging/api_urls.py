"""URL routes of the imaging app."""
urlpatterns = []
