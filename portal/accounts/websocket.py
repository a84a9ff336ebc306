"""Websocket authentication: the session cookie (browser) or an API token in ``?token=`` (scripts, workers).

The token follows the REST rules (DRF token, expiry ``CONTEXTRT_TOKEN_TTL``,
active user). Consumers still check ``scope["user"].is_authenticated`` and
reject anonymous connections themselves.
"""
from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware


@database_sync_to_async
def user_for_token(key: str):
    from django.contrib.auth.models import AnonymousUser
    from rest_framework.exceptions import AuthenticationFailed

    from portal.accounts.authentication import ExpiringTokenAuthentication

    try:
        user, _ = ExpiringTokenAuthentication().authenticate_credentials(key)
    except AuthenticationFailed:
        return AnonymousUser()
    return user


class TokenQueryAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            token = (query.get("token") or [""])[0]
            if token:
                scope = dict(scope, user=await user_for_token(token))
        return await super().__call__(scope, receive, send)


def WebsocketAuthMiddleware(inner):
    return AuthMiddlewareStack(TokenQueryAuthMiddleware(inner))
