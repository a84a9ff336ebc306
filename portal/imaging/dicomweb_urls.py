"""URL routes of the DICOMweb server (PS3.18)."""
urlpatterns = []
