"""DRF permission classes built on portal.accounts.scoping."""
from rest_framework.permissions import BasePermission

from portal.accounts import scoping


class IsAdminRole(BasePermission):
    message = "administrators only"

    def has_permission(self, request, view):
        return scoping.is_admin(request.user)


class IsCoordinatorOrAdmin(BasePermission):
    message = "study coordinators and administrators only"

    def has_permission(self, request, view):
        return scoping.is_coordinator(request.user)
