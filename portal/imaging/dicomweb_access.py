"""Who may read which stored instance over DICOMweb, and where its bytes are: credentials -> user, scope checks,
and the per-instance byte index recorded at ingest. Shared by the Django views and the raw-ASGI fast path.

Decisions are cached briefly (``AUTH_TTL`` seconds) so the hot frame path does
not hit the database on every request: a revoked token or a changed site
membership takes effect within that time. Instance locations never change once
stored, so they are cached longer.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from portal.accounts.scoping import scope_series
from portal.imaging import storage
from portal.imaging.dicomweb_json import first_value
from portal.imaging.models import Instance, Series

AUTH_TTL = 5.0
INSTANCE_TTL = 300.0
_MAX_ENTRIES = 50000


class NotAuthenticated(Exception):
    """No usable credentials (answered with 401)."""


class _TtlCache:
    def __init__(self):
        self._data: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        item = self._data.get(key)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]

    def put(self, key, value, ttl: float):
        with self._lock:
            if len(self._data) >= _MAX_ENTRIES:
                self._data.clear()  # crude but bounded; entries are cheap to rebuild
            self._data[key] = (value, time.monotonic() + ttl)

    def clear(self):
        with self._lock:
            self._data.clear()


_users = _TtlCache()
_visible = _TtlCache()
_instances = _TtlCache()


def clear_caches() -> None:
    """Forget cached decisions (tests; after changing memberships when the delay matters)."""
    _users.clear()
    _visible.clear()
    _instances.clear()


# ---------------------------------------------------------------- credentials


def token_from_header(authorization: str | None) -> str | None:
    """The key of ``Authorization: Token <key>`` (``Bearer`` accepted too, as OHIF-style clients send)."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not key.strip() or " " in key.strip():
        raise NotAuthenticated("Authorization header must be 'Token <key>'")
    return key.strip()


def user_for_token(key: str):
    """The active user owning an unexpired DRF token; NotAuthenticated otherwise."""
    cached = _users.get(("token", key))
    if cached is not None:
        return cached
    from rest_framework import exceptions

    from portal.accounts.authentication import ExpiringTokenAuthentication

    try:
        user, _ = ExpiringTokenAuthentication().authenticate_credentials(key)
    except exceptions.AuthenticationFailed as exc:
        raise NotAuthenticated(str(exc.detail)) from None
    _users.put(("token", key), user, AUTH_TTL)
    return user


def user_for_session(session_key: str):
    """The user of a Django session cookie (with Django's own session-hash check); NotAuthenticated otherwise."""
    cached = _users.get(("session", session_key))
    if cached is not None:
        return cached
    from importlib import import_module

    from django.contrib.auth import get_user
    from django.http import HttpRequest

    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(request)
    if not user.is_authenticated or not user.is_active:
        raise NotAuthenticated("the session is not logged in or has expired")
    _users.put(("session", session_key), user, AUTH_TTL)
    return user


# ---------------------------------------------------------------- stored instances


@dataclass(frozen=True)
class StoredInstance:
    pk: int
    sop_uid: str
    sop_class_uid: str
    series_id: int
    series_uid: str
    study_uid: str
    file_path: str  # relative to the store
    pixel_offset: int | None
    pixel_length: int | None
    number_of_frames: int
    frame_length: int | None
    transfer_syntax: str

    def absolute_path(self) -> str:
        return str(storage.absolute(self.file_path))

    def frame_range(self, number: int) -> tuple[int, int]:
        """(offset, length) of 1-based frame ``number`` in the stored file."""
        return self.pixel_offset + (number - 1) * self.frame_length, self.frame_length


_FIELDS = ("pk", "sop_uid", "sop_class_uid", "series_id", "series__series_uid", "series__study__study_uid", "file_path",
           "pixel_offset", "pixel_length", "number_of_frames", "transfer_syntax_uid", "metadata")


def _entry(row: dict) -> StoredInstance:
    meta = row.get("metadata") or {}
    frames = max(int(row["number_of_frames"] or 1), 1)
    frame_length = None
    if row["pixel_length"] is not None:
        rows, cols = first_value(meta, "00280010"), first_value(meta, "00280011")
        bits, samples = first_value(meta, "00280100") or 16, first_value(meta, "00280002") or 1
        if rows and cols:
            frame_length = int(rows) * int(cols) * int(samples) * int(bits) // 8
        if not frame_length or frame_length * frames > row["pixel_length"]:
            frame_length = row["pixel_length"] // frames
    return StoredInstance(pk=row["pk"], sop_uid=row["sop_uid"], sop_class_uid=row["sop_class_uid"], series_id=row["series_id"],
                          series_uid=row["series__series_uid"], study_uid=row["series__study__study_uid"],
                          file_path=row["file_path"], pixel_offset=row["pixel_offset"], pixel_length=row["pixel_length"],
                          number_of_frames=frames, frame_length=frame_length, transfer_syntax=row["transfer_syntax_uid"])


def find_instance(study_uid: str, series_uid: str, sop_uid: str) -> StoredInstance | None:
    """The stored instance at this WADO-RS path (all three UIDs must agree), not yet checked against any scope."""
    key = (str(settings.CONTEXTRT_STORAGE), sop_uid)
    entry = _instances.get(key)
    if entry is None:
        row = Instance.objects.filter(sop_uid=sop_uid).values(*_FIELDS).first()
        if row is None:
            return None
        entry = _entry(row)
        _instances.put(key, entry, INSTANCE_TTL)
    if entry.series_uid != series_uid or entry.study_uid != study_uid:
        return None
    return entry


def visible_series_ids(user, series_ids) -> set[int]:
    """Which of ``series_ids`` the user may see (cached per user and series)."""
    series_ids = set(series_ids)
    out, unknown = set(), []
    for sid in series_ids:
        cached = _visible.get((user.pk, sid))
        if cached is None:
            unknown.append(sid)
        elif cached:
            out.add(sid)
    if unknown:
        allowed = set(scope_series(user, Series.objects.filter(pk__in=unknown)).values_list("pk", flat=True))
        for sid in unknown:
            _visible.put((user.pk, sid), sid in allowed, AUTH_TTL)
        out |= allowed
    return out


def can_read(user, entry: StoredInstance) -> bool:
    return entry.series_id in visible_series_ids(user, [entry.series_id])


def instances_for(user, study_uid: str, series_uid: str | None = None) -> list[StoredInstance]:
    """Visible instances of a study (or one of its series) in series and slice order; empty if none is visible."""
    qs = Instance.objects.filter(series__study__study_uid=study_uid)
    if series_uid is not None:
        qs = qs.filter(series__series_uid=series_uid)
    series_ids = set(qs.values_list("series_id", flat=True).distinct())
    allowed = visible_series_ids(user, series_ids)
    if not allowed:
        return []
    # Whole-instance retrieval needs no frame geometry, so the (large) metadata column is not loaded.
    rows = (qs.filter(series_id__in=allowed).order_by("series_id", "slice_index", "instance_number", "pk")
            .values(*[f for f in _FIELDS if f != "metadata"]))
    return [_entry(row) for row in rows]


def read_range(path: str, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` without parsing the file (one pread)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(data) != length:
        raise OSError(f"stored file {os.path.basename(path)} is shorter than its recorded pixel data")
    return data
