"""URL routes of the validation-study app."""
urlpatterns = []
