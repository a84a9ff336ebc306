"""URL routes of the accounts app."""
urlpatterns = []
