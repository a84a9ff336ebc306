"""API token authentication with expiry."""
from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token.created < timezone.now() - settings.CONTEXTRT_TOKEN_TTL:
            raise exceptions.AuthenticationFailed("Token has expired; request a new one.")
        return user, token
