"""Websocket URL routes for job and case events."""
websocket_urlpatterns = []
