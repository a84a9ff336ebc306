"""Who sees what: every app narrows its querysets through these functions (roles x sites).

Rules (issue 2): admins see everything; coordinators see the data of their
sites; trainees see teaching cases (``Case.teaching``) of their sites only;
oncologists (raters) see no case here and, among series, only the CT
series of their items in open reading studies (``portal.reading.access``);
worker machine accounts see what jobs need (all cases and series, read-only
by convention of the worker API).
"""
from __future__ import annotations

from django.db.models import QuerySet

from portal.accounts.models import Role, Site


def role_of(user) -> str | None:
    """The user's role, ``admin`` for superusers, None for anonymous or profile-less users."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    if user.is_superuser:
        return Role.ADMIN
    profile = getattr(user, "profile", None)
    return profile.role if profile is not None else None


def is_admin(user) -> bool:
    return role_of(user) == Role.ADMIN


def is_coordinator(user) -> bool:
    """Coordinator of at least its own sites (admins count as coordinators everywhere)."""
    return role_of(user) in (Role.COORDINATOR, Role.ADMIN)


def is_worker(user) -> bool:
    return role_of(user) == Role.WORKER


def is_trainee(user) -> bool:
    return role_of(user) == Role.TRAINEE


def is_rater(user) -> bool:
    return role_of(user) == Role.ONCOLOGIST


def member_site_ids(user) -> set[int]:
    profile = getattr(user, "profile", None)
    if profile is None:
        return set()
    return set(profile.sites.values_list("pk", flat=True))


def visible_sites(user) -> QuerySet:
    """Sites whose data the user may see (all for admins and workers)."""
    role = role_of(user)
    if role in (Role.ADMIN, Role.WORKER):
        return Site.objects.all()
    if role in (Role.COORDINATOR, Role.TRAINEE):
        return Site.objects.filter(pk__in=member_site_ids(user))
    return Site.objects.none()


def managed_sites(user) -> QuerySet:
    """Sites into which the user may upload and which it administers (coordinators, admins)."""
    role = role_of(user)
    if role == Role.ADMIN:
        return Site.objects.all()
    if role == Role.COORDINATOR:
        return Site.objects.filter(pk__in=member_site_ids(user))
    return Site.objects.none()


def can_manage_site(user, site) -> bool:
    return site is not None and managed_sites(user).filter(pk=site.pk).exists()


def scope_cases(user, queryset: QuerySet) -> QuerySet:
    """Narrow a ``Case`` queryset to what the user may see."""
    role = role_of(user)
    if role in (Role.ADMIN, Role.WORKER):
        return queryset
    if role == Role.COORDINATOR:
        return queryset.filter(site_id__in=member_site_ids(user))
    if role == Role.TRAINEE:
        return queryset.filter(teaching=True, site_id__in=member_site_ids(user))
    return queryset.none()


def _scope_by_patient_site(user, queryset: QuerySet, site_path: str, series_path: str) -> QuerySet:
    from portal.cases.models import Case

    role = role_of(user)
    if role in (Role.ADMIN, Role.WORKER):
        return queryset
    if role == Role.COORDINATOR:
        return queryset.filter(**{f"{site_path}__in": member_site_ids(user)})
    if role == Role.TRAINEE:
        # Trainees see imaging only through teaching cases they may see.
        series_ids = scope_cases(user, Case.objects.all()).values("ct_series_id")
        return queryset.filter(**{f"{series_path}__in": series_ids}).distinct()
    return queryset.none()


def scope_patients(user, queryset: QuerySet) -> QuerySet:
    return _scope_by_patient_site(user, queryset, "site_id", "studies__series__id")


def scope_studies(user, queryset: QuerySet) -> QuerySet:
    return _scope_by_patient_site(user, queryset, "patient__site_id", "series__id")


def scope_series(user, queryset: QuerySet) -> QuerySet:
    """Narrow a ``Series`` queryset (CT and RTSTRUCT series alike) to what the user may see."""
    from portal.cases.models import Case

    role = role_of(user)
    if role == Role.ONCOLOGIST:
        # Raters see exactly the CT series of their items in open reading studies (granted by the reading app).
        from portal.reading.access import rater_series_ids

        return queryset.filter(pk__in=rater_series_ids(user))
    if role == Role.TRAINEE:
        # A trainee sees the CT of a teaching case and the structure-set series on it.
        ct_ids = scope_cases(user, Case.objects.all()).values("ct_series_id")
        from django.db.models import Q

        return queryset.filter(Q(pk__in=ct_ids) | Q(instances__structure_set__ct_series_id__in=ct_ids)).distinct()
    return _scope_by_patient_site(user, queryset, "study__patient__site_id", "id")


def scope_instances(user, queryset: QuerySet) -> QuerySet:
    from portal.imaging.models import Series

    if role_of(user) in (Role.ADMIN, Role.WORKER):
        return queryset
    return queryset.filter(series__in=scope_series(user, Series.objects.all()))


def can_view_case(user, case) -> bool:
    from portal.cases.models import Case

    return case is not None and scope_cases(user, Case.objects.filter(pk=case.pk)).exists()


def can_view_series(user, series) -> bool:
    from portal.imaging.models import Series

    return series is not None and scope_series(user, Series.objects.filter(pk=series.pk)).exists()
