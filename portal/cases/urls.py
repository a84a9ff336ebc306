"""URL routes of the cases app."""
urlpatterns = []
