"""URL routes of the reading app."""
urlpatterns = []
