"""Who may do what in reading studies, and which CT series a rater may read over DICOMweb."""
from __future__ import annotations

from portal.accounts.models import Role
from portal.accounts.scoping import role_of


def is_coordinator_or_admin(user) -> bool:
    return role_of(user) in (Role.COORDINATOR, Role.ADMIN)


def coordinator_site_ids(user) -> set[int] | None:
    """Sites whose reading studies ``user`` manages; None means all (admin)."""
    role = role_of(user)
    if role == Role.ADMIN:
        return None
    if role == Role.COORDINATOR:
        return set(user.profile.sites.values_list("pk", flat=True))
    return set()


def managed_studies(user, queryset):
    sites = coordinator_site_ids(user)
    if sites is None:
        return queryset
    return queryset.filter(site_id__in=sites)


def rater_series_ids(user) -> set[int]:
    """CT series of the items assigned to ``user`` in open reading studies (for DICOMweb scoping)."""
    from portal.reading.models import RaterItem, ReadingStudy

    if not getattr(user, "is_authenticated", False):
        return set()
    return set(
        RaterItem.objects.filter(assignment__rater=user, assignment__study__state=ReadingStudy.State.OPEN)
        .values_list("item__ct_series_id", flat=True)
        .distinct()
    )
