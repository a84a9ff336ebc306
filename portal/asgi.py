"""ASGI entry point: HTTP goes to Django, websockets to the Channels consumers.

Served by daphne (``manage.py runserver`` with the daphne app) or uvicorn.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from portal.accounts.websocket import WebsocketAuthMiddleware  # noqa: E402
from portal.imaging.fastpath import wrap_http  # noqa: E402
from portal.jobs.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The DICOMweb frame/bulk-data hot path is served below Django's
        # request machinery (same authentication and scoping) for speed.
        "http": wrap_http(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
