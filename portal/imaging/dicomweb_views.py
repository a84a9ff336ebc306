"""DICOMweb HTTP endpoints (QIDO-RS, WADO-RS, STOW-RS) as thin Django views over the dicomweb_* modules.

Every view authenticates (session cookie, or ``Authorization: Token <key>``),
answers 401 without credentials and 404 for anything outside the user's
scope, exactly as the raw-ASGI fast path (``portal.imaging.fastpath``) does
for the binary endpoints it serves first under uvicorn/daphne.
"""
from __future__ import annotations

import functools

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from portal.accounts.scoping import managed_sites
from portal.imaging import dicomweb_access as access
from portal.imaging import dicomweb_json as dj
from portal.imaging import dicomweb_multipart as mp
from portal.imaging import dicomweb_query as qido
from portal.imaging import dicomweb_render as render
from portal.imaging import dicomweb_stow as stow
from portal.imaging.models import Instance

DICOM_JSON = "application/dicom+json"
CHUNK = 1 << 20


def error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Token realm="dicomweb"'
    return response


def base_url(request) -> str:
    """Absolute /dicomweb URL for RetrieveURL and BulkDataURI values.

    dicomweb-client sends ``Host`` without the port; when that host is the
    address the server itself listens on (a direct connection, not a proxy),
    the listening port is put back so the URLs resolve.
    """
    url = request.build_absolute_uri(reverse("dicomweb-studies"))[: -len("/studies")]
    host = request.META.get("HTTP_HOST", "")
    port = str(request.META.get("SERVER_PORT", ""))
    if host and ":" not in host and host == request.META.get("SERVER_NAME") and port not in ("", "80", "443"):
        url = url.replace(f"://{host}", f"://{host}:{port}", 1)
    return url


def authenticate(request):
    """(user, via_session); NotAuthenticated when neither a valid token nor a logged-in session is presented."""
    key = access.token_from_header(request.META.get("HTTP_AUTHORIZATION"))
    if key is not None:
        return access.user_for_token(key), False
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        return user, True
    raise access.NotAuthenticated("authentication required: log in or send 'Authorization: Token <key>'")


def endpoint(*methods):
    """Method check, authentication (CSRF for session-authenticated writes) and request.dicomweb_user."""

    def wrap(view):
        @csrf_exempt
        @functools.wraps(view)
        def inner(request, *args, **kwargs):
            if request.method not in methods:
                response = error(405, f"{request.method} is not supported here")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                user, via_session = authenticate(request)
            except access.NotAuthenticated as exc:
                return error(401, str(exc))
            if via_session and request.method not in ("GET", "HEAD", "OPTIONS"):
                rejected = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
                if rejected is not None:
                    return error(403, "CSRF check failed: send the X-CSRFToken header with a session login")
            request.dicomweb_user = user
            return view(request, *args, **kwargs)

        return inner

    return wrap


def _dicom_json_response(data) -> HttpResponse:
    return HttpResponse(dj.dumps(data), content_type=DICOM_JSON)


def _wants_json(request) -> bool:
    return mp.accepts(request.META.get("HTTP_ACCEPT"), DICOM_JSON, "application/json")


# ---------------------------------------------------------------- QIDO-RS


def _search(request, level, study_uid=None, series_uid=None):
    if not _wants_json(request):
        return error(406, "search results are available as application/dicom+json only")
    try:
        query = qido.parse_query(request.GET, level)
    except qido.QueryError as exc:
        return error(400, str(exc))
    results = qido.cached_search(request.dicomweb_user, query, base_url(request), study_uid=study_uid, series_uid=series_uid)
    response = _dicom_json_response(results)
    if query.fuzzy:
        response["Warning"] = '299 ContextRT: "The fuzzymatching parameter is not supported. Only literal matching has been performed."'
    return response


@endpoint("GET", "POST")
def studies(request):
    if request.method == "POST":
        return _store(request, None)
    return _search(request, "studies")


@endpoint("GET")
def search_series(request, study_uid=None):
    return _search(request, "series", study_uid=study_uid)


@endpoint("GET")
def search_instances(request, study_uid=None, series_uid=None):
    return _search(request, "instances", study_uid=study_uid, series_uid=series_uid)


# ---------------------------------------------------------------- WADO-RS retrieve


def _multipart_dicom(entries, request) -> StreamingHttpResponse:
    boundary = mp.new_boundary()

    def parts():
        for k, entry in enumerate(entries):
            yield mp.part_header(boundary, "application/dicom", first=k == 0)
            with open(entry.absolute_path(), "rb") as fh:
                while block := fh.read(CHUNK):
                    yield block
        yield mp.closing(boundary)

    response = StreamingHttpResponse(parts(), content_type=mp.content_type("application/dicom", boundary))
    return response


def _retrieve(request, study_uid, series_uid=None, sop_uid=None):
    if not mp.accepts_multipart(request.META.get("HTTP_ACCEPT"), "application/dicom",
                                (mp.EXPLICIT_VR_LE, mp.IMPLICIT_VR_LE)):
        return error(406, 'instances are served as multipart/related; type="application/dicom" in explicit VR little endian')
    if sop_uid is not None:
        entry = access.find_instance(study_uid, series_uid, sop_uid)
        entries = [entry] if entry is not None and access.can_read(request.dicomweb_user, entry) else []
    else:
        entries = access.instances_for(request.dicomweb_user, study_uid, series_uid)
    if not entries:
        return error(404, "no such instance, series or study (or it is outside your sites)")
    return _multipart_dicom(entries, request)


@endpoint("GET", "POST")
def study(request, study_uid):
    if request.method == "POST":
        return _store(request, study_uid)
    return _retrieve(request, study_uid)


@endpoint("GET")
def series(request, study_uid, series_uid):
    return _retrieve(request, study_uid, series_uid)


@endpoint("GET")
def instance(request, study_uid, series_uid, sop_uid):
    return _retrieve(request, study_uid, series_uid, sop_uid)


# ---------------------------------------------------------------- WADO-RS metadata


def metadata_for(user, base: str, study_uid, series_uid=None, sop_uid=None) -> list[dict] | None:
    """WADO-RS metadata of the visible instances at this level (None when nothing is visible)."""
    if sop_uid is not None:
        entry = access.find_instance(study_uid, series_uid, sop_uid)
        if entry is None or not access.can_read(user, entry):
            return None
        qs = Instance.objects.filter(pk=entry.pk)
    else:
        qs = Instance.objects.filter(series__study__study_uid=study_uid)
        if series_uid is not None:
            qs = qs.filter(series__series_uid=series_uid)
        allowed = access.visible_series_ids(user, set(qs.values_list("series_id", flat=True).distinct()))
        if not allowed:
            return None
        qs = qs.filter(series_id__in=allowed)
    rows = list(qs.order_by("series_id", "slice_index", "instance_number", "pk")
                .values_list("sop_uid", "series__series_uid", "series__study__study_uid", "pixel_offset", "metadata"))
    if not rows:
        return None
    return [dj.with_bulkdata_uri(meta, f"{base}/studies/{st}/series/{se}/instances/{sop}", offset is not None)
            for sop, se, st, offset, meta in rows]


def _metadata(request, study_uid, series_uid=None, sop_uid=None):
    if not _wants_json(request):
        return error(406, "metadata is available as application/dicom+json only")
    out = metadata_for(request.dicomweb_user, base_url(request), study_uid, series_uid, sop_uid)
    if out is None:
        return error(404, "no such instance, series or study (or it is outside your sites)")
    return _dicom_json_response(out)


@endpoint("GET")
def study_metadata(request, study_uid):
    return _metadata(request, study_uid)


@endpoint("GET")
def series_metadata(request, study_uid, series_uid):
    return _metadata(request, study_uid, series_uid)


@endpoint("GET")
def instance_metadata(request, study_uid, series_uid, sop_uid):
    return _metadata(request, study_uid, series_uid, sop_uid)


# ---------------------------------------------------------------- frames, bulk data, rendered


def _readable_instance(request, study_uid, series_uid, sop_uid):
    entry = access.find_instance(study_uid, series_uid, sop_uid)
    if entry is None or not access.can_read(request.dicomweb_user, entry):
        return None
    return entry


def frames_payload(entry, numbers: list[int]) -> tuple[list[bytes], str | None]:
    """The requested frames' bytes, or an error message naming the bad frame number."""
    if entry.pixel_offset is None or not entry.frame_length:
        return [], "the instance has no pixel data"
    bad = [n for n in numbers if n > entry.number_of_frames]
    if bad:
        return [], f"frame {bad[0]} does not exist (the instance has {entry.number_of_frames})"
    path = entry.absolute_path()
    return [access.read_range(path, *entry.frame_range(n)) for n in numbers], None


def multipart_octets(chunks: list[bytes], transfer_syntax: str) -> tuple[bytes, str]:
    boundary = mp.new_boundary()
    part_type = mp.octet_part_type(transfer_syntax)
    body = b"".join(mp.part_header(boundary, part_type, first=k == 0) + chunk for k, chunk in enumerate(chunks)) + mp.closing(boundary)
    return body, mp.content_type("application/octet-stream", boundary, transfer_syntax)


@endpoint("GET")
def frames(request, study_uid, series_uid, sop_uid, frame_list):
    try:
        numbers = mp.parse_frame_list(frame_list)
    except ValueError as exc:
        return error(400, str(exc))
    if not mp.accepts_multipart(request.META.get("HTTP_ACCEPT"), "application/octet-stream"):
        return error(406, "frames are served uncompressed as multipart/related; type=\"application/octet-stream\" "
                          f"with transfer-syntax={mp.EXPLICIT_VR_LE}")
    entry = _readable_instance(request, study_uid, series_uid, sop_uid)
    if entry is None:
        return error(404, "no such instance (or it is outside your sites)")
    chunks, problem = frames_payload(entry, numbers)
    if problem:
        return error(404, problem)
    body, ctype = multipart_octets(chunks, mp.EXPLICIT_VR_LE)
    return HttpResponse(body, content_type=ctype)


@endpoint("GET")
def bulkdata(request, study_uid, series_uid, sop_uid, tag):
    if tag.upper() != dj.PIXEL_DATA:
        return error(404, f"no bulk data for attribute {tag} (only PixelData, 7FE00010, is held as bulk data)")
    if not mp.accepts_multipart(request.META.get("HTTP_ACCEPT"), "application/octet-stream"):
        return error(406, 'bulk data is served as multipart/related; type="application/octet-stream"')
    entry = _readable_instance(request, study_uid, series_uid, sop_uid)
    if entry is None or entry.pixel_offset is None:
        return error(404, "no such instance or it has no pixel data (or it is outside your sites)")
    data = access.read_range(entry.absolute_path(), entry.pixel_offset, entry.pixel_length)
    body, ctype = multipart_octets([data], mp.EXPLICIT_VR_LE)
    return HttpResponse(body, content_type=ctype)


@endpoint("GET")
def rendered(request, study_uid, series_uid, sop_uid, frame_number="1"):
    if not mp.accepts(request.META.get("HTTP_ACCEPT"), "image/png"):
        return error(406, "rendered images are available as image/png only")
    try:
        number = mp.parse_frame_list(frame_number)
    except ValueError as exc:
        return error(400, str(exc))
    if len(number) != 1:
        return error(400, "a rendered frame takes exactly one frame number")
    entry = _readable_instance(request, study_uid, series_uid, sop_uid)
    if entry is None:
        return error(404, "no such instance (or it is outside your sites)")
    chunks, problem = frames_payload(entry, number)
    if problem:
        return error(404, problem)
    metadata = Instance.objects.values_list("metadata", flat=True).get(pk=entry.pk)
    try:
        png = render.render_png(chunks[0], metadata, request.GET)
    except render.RenderError as exc:
        return error(400, str(exc))
    return HttpResponse(png, content_type="image/png")


# ---------------------------------------------------------------- STOW-RS


def _store(request, study_uid):
    user = request.dicomweb_user
    sites = list(managed_sites(user))
    if not sites:
        return error(403, "your role cannot store instances (coordinators and admins store into their sites)")
    code = request.GET.get("site")
    if code:
        site = next((s for s in sites if s.code == code), None)
        if site is None:
            return error(403, f"site {code!r} is unknown or not one you manage")
    elif len(sites) == 1:
        site = sites[0]
    else:
        return error(400, "you manage several sites: name the target with ?site=<code> "
                          f"({', '.join(s.code for s in sites[:10])})")
    length = request.META.get("CONTENT_LENGTH")
    try:
        body = stow.copy_body(request, int(length) if length and length.isdigit() else None)
    except stow.StowRequestError as exc:
        return error(exc.status, str(exc))
    try:
        with body:
            result = stow.store(body, request.META.get("CONTENT_TYPE", ""), site=site, user=user,
                                base_url=base_url(request), study_uid=study_uid)
    except stow.StowRequestError as exc:
        return error(exc.status, str(exc))
    response = _dicom_json_response(result.body)
    response.status_code = result.status
    if result.problems:
        # ErrorComment values are cut to 64 characters (LO); the whole problems travel here.
        response["Warning"] = stow.warning_header(result.problems)
    return response
