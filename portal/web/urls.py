"""Browser page routes."""
urlpatterns = []
