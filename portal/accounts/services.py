"""Creating accounts with a role and site memberships (used by the management command and fixtures)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from portal.accounts.models import Profile, Role, Site


class AccountError(ValueError):
    pass


def get_or_create_site(code: str, name: str | None = None) -> Site:
    site, _ = Site.objects.get_or_create(code=code, defaults={"name": name or code})
    return site


@transaction.atomic
def create_account(username: str, password: str, role: str, site_codes=(), *, email: str = "", update: bool = False):
    """Create (or with ``update`` reset) a user with a profile; unknown role or site raises AccountError."""
    if role not in Role.values:
        raise AccountError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    sites = []
    for code in site_codes:
        site = Site.objects.filter(code=code).first()
        if site is None:
            raise AccountError(f"unknown site {code!r}")
        sites.append(site)
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None and not update:
        raise AccountError(f"user {username!r} already exists")
    if user is None:
        user = User.objects.create_user(username=username, password=password, email=email)
    else:
        user.set_password(password)
        user.save()
    user.is_staff = role == Role.ADMIN
    user.is_superuser = role == Role.ADMIN
    user.save(update_fields=["is_staff", "is_superuser"])
    profile, _ = Profile.objects.get_or_create(user=user, defaults={"role": role})
    profile.role = role
    profile.save()
    profile.sites.set(sites)
    return user
