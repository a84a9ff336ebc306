"""REST endpoints of the accounts app: expiring API tokens and the caller's own identity."""
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.accounts import scoping
from portal.accounts.throttle import LoginLocked, throttled_authenticate


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires = serializers.DateTimeField()
    role = serializers.CharField(allow_null=True)


class ObtainTokenView(APIView):
    """POST username + password -> a fresh expiring token (any previous token is replaced)."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(request=TokenRequestSerializer, responses={200: TokenResponseSerializer, 400: None, 401: None, 429: None})
    def post(self, request):
        data = TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = throttled_authenticate(request, data.validated_data["username"], data.validated_data["password"])
        except LoginLocked as locked:
            return Response({"detail": str(locked)}, status=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers={"Retry-After": str(locked.retry_after_seconds)})
        if user is None:
            return Response({"detail": "invalid username or password"}, status=status.HTTP_401_UNAUTHORIZED)
        Token.objects.filter(user=user).delete()
        token = Token.objects.create(user=user)
        from django.conf import settings

        return Response({"token": token.key, "expires": token.created + settings.CONTEXTRT_TOKEN_TTL,
                         "role": scoping.role_of(user)})


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=inline_serializer("Me", {
        "username": serializers.CharField(), "role": serializers.CharField(allow_null=True),
        "sites": serializers.ListField(child=serializers.CharField()), "now": serializers.DateTimeField()}))
    def get(self, request):
        user = request.user
        return Response({"username": user.username, "role": scoping.role_of(user),
                         "sites": list(scoping.visible_sites(user).values_list("code", flat=True)), "now": timezone.now()})
