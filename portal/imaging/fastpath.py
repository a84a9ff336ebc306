"""Raw-ASGI hot path for DICOMweb reads: frames, bulk data, instance/series/study retrieval, QIDO and metadata.

Django's request machinery costs ~10x the work of serving a 512 KB frame, so
these GET requests are answered here, below Django, with the same rules as
``portal.imaging.dicomweb_views``: session cookie or ``Authorization: Token``
(401 otherwise), scoping through ``portal.accounts.scoping`` (404 outside the
user's sites), the same Accept negotiation and the same multipart framing.
Frames are read with one ``pread`` at the byte range recorded at ingest. A
(credential, instance) decision is remembered for ``dicomweb_access.AUTH_TTL``
seconds, so a hot frame request touches neither the database nor a thread
pool. QIDO searches and metadata are answered here too, with the logic in
``dicomweb_query`` / ``dicomweb_views.metadata_for``. Every other request
(rendered, STOW, other methods) passes to Django unchanged.
"""
from __future__ import annotations

import os
import re
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

from django.http import QueryDict
from django.http.request import split_domain_port, validate_host

from portal.imaging import dicomweb_access as access
from portal.imaging import dicomweb_json as dj
from portal.imaging import dicomweb_multipart as mp

_UID = r"[0-9][0-9.]{0,63}"
_ROUTE = re.compile(
    rf"^/dicomweb/studies/(?P<study>{_UID})(?:/series/(?P<series>{_UID})(?:/instances/(?P<sop>{_UID})"
    rf"(?:/(?:frames/(?P<frames>[0-9,]+)|bulkdata/(?P<tag>[0-9A-Fa-f]{{8}})))?)?)?/?$"
)
_QIDO = re.compile(
    rf"^/dicomweb(?:/studies/(?P<study>{_UID})(?:/series/(?P<series>{_UID}))?)?/(?P<level>studies|series|instances)/?$"
)
_METADATA = re.compile(
    rf"^/dicomweb/studies/(?P<study>{_UID})(?:/series/(?P<series>{_UID})(?:/instances/(?P<sop>{_UID}))?)?/metadata/?$"
)
DICOM_JSON = "application/dicom+json"
_decisions: dict = {}
_MAX_DECISIONS = 20000
RETRIEVE_BLOCK = 4 << 20  # bytes per write of a study/series retrieve


def clear_cache() -> None:
    _decisions.clear()
    _paths.clear()
    _encodings.clear()
    _encoded_bytes[0] = 0


def wrap_http(django_app):
    """The ASGI app for HTTP: DICOMweb binary GETs served here, everything else by ``django_app``."""

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            match = _ROUTE.match(path)
            if match is not None:
                await _serve(match, scope, send)
                return
            match = _QIDO.match(path)
            if match is not None and _valid_search(match):
                await _serve_json(scope, send, _search_json, match.groupdict())
                return
            match = _METADATA.match(path)
            if match is not None:
                await _serve_json(scope, send, _metadata_json, match.groupdict())
                return
        await django_app(scope, receive, send)

    return app


# ---------------------------------------------------------------- responses


async def _respond(send, status: int, body: bytes, content_type: str, extra=()) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send, status: int, message: str) -> None:
    extra = [(b"www-authenticate", b'Token realm="dicomweb"')] if status == 401 else []
    await _respond(send, status, dj.dumps({"error": message}), "application/json", extra)


def _credentials(headers: dict) -> tuple[str, str]:
    """("token"|"session", key); NotAuthenticated when there is neither."""
    key = access.token_from_header(headers.get(b"authorization", b"").decode("latin-1") or None)
    if key is not None:
        return "token", key
    cookie_name = settings.SESSION_COOKIE_NAME
    for item in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = item.strip().partition("=")
        if name == cookie_name and value:
            return "session", value.strip('"')
    raise access.NotAuthenticated("authentication required: log in or send 'Authorization: Token <key>'")


def _user(kind: str, key: str):
    return access.user_for_token(key) if kind == "token" else access.user_for_session(key)


# ---------------------------------------------------------------- decisions (sync; run in Django's thread when not cached)

KEEP_CONNECTION_S = 60.0  # how long the fast path reuses one database connection (see _ready_connection)


def _ready_connection() -> None:
    """Django's per-request connection check, but a healthy connection is kept for KEEP_CONNECTION_S.

    All of the fast path's database work runs on asgiref's one shared sync thread
    (it enters no per-request thread context), so that thread's connection can
    serve request after request, as CONN_MAX_AGE would. With the embedded SQLite
    default (CONN_MAX_AGE 0) Django would reconnect for every request: connect,
    pragmas and SQL function registration cost about as much as the search itself.
    Broken connections, connections left in a transaction and those past their
    age are still closed by ``close_old_connections``.
    """
    close_old_connections()
    if connection.connection is None and not connection.settings_dict.get("CONN_MAX_AGE"):
        connection.ensure_connection()
        connection.close_at = time.monotonic() + KEEP_CONNECTION_S


def _instance_decision(kind, key, study, series, sop):
    """(StoredInstance, absolute path) the credential may read, or None (-> 404)."""
    _ready_connection()
    user = _user(kind, key)
    entry = access.find_instance(study, series, sop)
    if entry is None or not access.can_read(user, entry):
        return None
    return entry, entry.absolute_path()


def _retrieve_decision(kind, key, study, series):
    """[(absolute path, size)] of the visible instances of a study/series in retrieve order ([] -> 404).

    The listing is remembered per (credential, study, series) for AUTH_TTL and
    reused only while the catalogue generation is unchanged, so a store shows
    in the next retrieve at once; a hit costs one small query instead of three
    queries, a path resolution and a stat per instance.
    """
    from portal.imaging.dicomweb_query import catalogue_generation

    _ready_connection()
    user = _user(kind, key)
    generation = catalogue_generation()
    cache_key = ("retrieve", kind, key, study, series, str(settings.CONTEXTRT_STORAGE))
    hit = _decisions.get(cache_key)
    if hit is not None and hit[0] == generation and hit[1] > time.monotonic():
        return hit[2]
    files = []
    for entry in access.instances_for(user, study, series):
        path = _stored_path(entry)
        files.append((path, os.stat(path).st_size))
    if len(_decisions) >= _MAX_DECISIONS:
        _decisions.clear()
    _decisions[cache_key] = (generation, time.monotonic() + access.AUTH_TTL, files)
    return files


_paths: dict = {}


def _stored_path(entry) -> str:
    """The resolved path of a stored instance (stored files never move, so a resolution is kept)."""
    cache_key = (str(settings.CONTEXTRT_STORAGE), entry.file_path)
    path = _paths.get(cache_key)
    if path is None:
        if len(_paths) >= _MAX_DECISIONS:
            _paths.clear()
        path = _paths[cache_key] = entry.absolute_path()
    return path


async def _decide_instance(kind, key, study, series, sop):
    cache_key = (kind, key, study, series, sop, str(settings.CONTEXTRT_STORAGE))
    hit = _decisions.get(cache_key)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    decision = await _in_thread["_instance_decision"](kind, key, study, series, sop)
    if len(_decisions) >= _MAX_DECISIONS:
        _decisions.clear()
    _decisions[cache_key] = (decision, time.monotonic() + access.AUTH_TTL)
    return decision


# ---------------------------------------------------------------- serving


async def _serve(match, scope, send) -> None:
    headers = dict(scope["headers"])
    accept = headers.get(b"accept", b"").decode("latin-1") or None
    try:
        kind, key = _credentials(headers)
        groups = match.groupdict()
        if groups["frames"] is not None or groups["tag"] is not None:
            await _serve_pixels(send, kind, key, groups, accept)
        else:
            await _serve_instances(send, kind, key, groups, accept)
    except access.NotAuthenticated as exc:
        await _error(send, 401, str(exc))
    except OSError:
        await _error(send, 500, "a stored file could not be read")


async def _serve_pixels(send, kind, key, groups, accept) -> None:
    if groups["tag"] is not None and groups["tag"].upper() != dj.PIXEL_DATA:
        # Authenticate before saying anything about the resource.
        await _in_thread["_user"](kind, key)
        await _error(send, 404, f"no bulk data for attribute {groups['tag']} (only PixelData, 7FE00010, is held as bulk data)")
        return
    numbers = None
    if groups["frames"] is not None:
        try:
            numbers = mp.parse_frame_list(groups["frames"])
        except ValueError as exc:
            await _error(send, 400, str(exc))
            return
    decision = await _decide_instance(kind, key, groups["study"], groups["series"], groups["sop"])
    if decision is None:
        await _error(send, 404, "no such instance (or it is outside your sites)")
        return
    if not mp.accepts_multipart(accept, "application/octet-stream"):
        await _error(send, 406, 'pixel data is served uncompressed as multipart/related; type="application/octet-stream" '
                                f"with transfer-syntax={mp.EXPLICIT_VR_LE}")
        return
    entry, path = decision
    if entry.pixel_offset is None or not entry.frame_length:
        await _error(send, 404, "the instance has no pixel data")
        return
    if numbers is None:
        ranges = [(entry.pixel_offset, entry.pixel_length)]
    else:
        bad = [n for n in numbers if n > entry.number_of_frames]
        if bad:
            await _error(send, 404, f"frame {bad[0]} does not exist (the instance has {entry.number_of_frames})")
            return
        ranges = [entry.frame_range(n) for n in numbers]
    boundary = mp.new_boundary()
    part_type = mp.octet_part_type(mp.EXPLICIT_VR_LE)
    pieces = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for k, (offset, length) in enumerate(ranges):
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise OSError("short read")
            pieces.append(mp.part_header(boundary, part_type, first=k == 0))
            pieces.append(data)
    finally:
        os.close(fd)
    pieces.append(mp.closing(boundary))
    await _respond(send, 200, b"".join(pieces), mp.content_type("application/octet-stream", boundary, mp.EXPLICIT_VR_LE))


async def _serve_instances(send, kind, key, groups, accept) -> None:
    if groups["sop"] is not None:
        decision = await _decide_instance(kind, key, groups["study"], groups["series"], groups["sop"])
        files = [(decision[1], os.stat(decision[1]).st_size)] if decision is not None else []
    else:
        files = await _in_thread["_retrieve_decision"](kind, key, groups["study"], groups["series"])
    if not files:
        await _error(send, 404, "no such instance, series or study (or it is outside your sites)")
        return
    if not mp.accepts_multipart(accept, "application/dicom", (mp.EXPLICIT_VR_LE, mp.IMPLICIT_VR_LE)):
        await _error(send, 406, 'instances are served as multipart/related; type="application/dicom" in explicit VR little endian')
        return
    boundary = mp.new_boundary()
    first_head = mp.part_header(boundary, "application/dicom", first=True)
    head = mp.part_header(boundary, "application/dicom", first=False)
    closing = mp.closing(boundary)
    # A known length lets clients read the body in large blocks instead of chunk by chunk.
    length = len(first_head) + len(head) * (len(files) - 1) + len(closing) + sum(size for _, size in files)
    headers = [(b"content-type", mp.content_type("application/dicom", boundary).encode()),
               (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    # Parts are gathered into blocks of about RETRIEVE_BLOCK bytes: one write per block costs the event loop
    # and the socket less than one write per (often 512 KB) instance. Each file is read with one pread of
    # the size the Content-Length counted. Once the headers are out no error answer is possible: a file that
    # vanished or changed size aborts the response (RuntimeError; the server drops the connection mid-body).
    block, block_size = [], 0
    for k, (path, size) in enumerate(files):
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                data = os.pread(fd, size, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            raise RuntimeError(f"stored file {os.path.basename(path)} could not be read mid-response: {exc}") from exc
        if len(data) != size:
            raise RuntimeError(f"stored file {os.path.basename(path)} changed size while being served")
        block += (first_head if k == 0 else head, data)
        block_size += size
        if block_size >= RETRIEVE_BLOCK or k == 0:  # the first part goes out alone: the client starts reading sooner
            await send({"type": "http.response.body", "body": b"".join(block), "more_body": True})
            block, block_size = [], 0
    block.append(closing)
    await send({"type": "http.response.body", "body": b"".join(block)})


# ---------------------------------------------------------------- QIDO-RS and metadata (JSON; logic in plain modules)


def _valid_search(match) -> bool:
    level, study, series = match["level"], match["study"], match["series"]
    if study is None:
        return True
    return level == "instances" if series is not None else level in ("series", "instances")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _base_url(scope, headers: dict) -> str:
    """Like Django's build_absolute_uri: the Host header, checked against ALLOWED_HOSTS (see dicomweb_views.base_url)."""
    host = headers.get(b"host", b"").decode("latin-1")
    domain, port = split_domain_port(host)
    allowed = list(settings.ALLOWED_HOSTS) + ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG and not settings.ALLOWED_HOSTS else [])
    if not domain or not validate_host(domain, allowed):
        raise _BadRequest(400, f"invalid Host header {host!r}")
    server = scope.get("server")
    if server and not port and domain == server[0] and server[1] not in (80, 443):
        host = f"{domain}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}/dicomweb"


def _search_json(user, base, params, groups):
    from portal.imaging import dicomweb_query as qido

    try:
        query = qido.parse_query(params, groups["level"])
    except qido.QueryError as exc:
        raise _BadRequest(400, str(exc)) from None
    results = qido.cached_search(user, query, base, study_uid=groups["study"], series_uid=groups["series"])
    extra = []
    if query.fuzzy:
        extra.append((b"warning", b'299 ContextRT: "The fuzzymatching parameter is not supported. '
                                  b'Only literal matching has been performed."'))
    return results, extra


def _metadata_json(user, base, params, groups):
    from portal.imaging.dicomweb_views import metadata_for

    out = metadata_for(user, base, groups["study"], groups.get("series"), groups.get("sop"))
    if out is None:
        raise _BadRequest(404, "no such instance, series or study (or it is outside your sites)")
    return out, []


def _json_decision(kind, key, handler, base, query_string, groups):
    _ready_connection()
    user = _user(kind, key)
    return handler(user, base, QueryDict(query_string), groups)


async def _serve_json(scope, send, handler, groups) -> None:
    headers = dict(scope["headers"])
    accept = headers.get(b"accept", b"").decode("latin-1") or None
    try:
        kind, key = _credentials(headers)
        if not mp.accepts(accept, DICOM_JSON, "application/json"):
            await _error(send, 406, "available as application/dicom+json only")
            return
        base = _base_url(scope, headers)
        data, extra = await _in_thread["_json_decision"](kind, key, handler, base,
                                                          scope.get("query_string", b"").decode("latin-1"), groups)
    except access.NotAuthenticated as exc:
        await _error(send, 401, str(exc))
        return
    except _BadRequest as exc:
        await _error(send, exc.status, str(exc))
        return
    body = _encoded_answer(data) if handler is _search_json else dj.dumps(data)
    await _respond(send, 200, body, DICOM_JSON, extra)


_encodings: dict = {}
_encoded_bytes = [0]
_MAX_ENCODED_BYTES = 32 << 20


def _encoded_answer(data) -> bytes:
    """``dj.dumps`` of a QIDO answer, reused when ``cached_search`` hands back the very list encoded before."""
    hit = _encodings.get(id(data))
    if hit is not None and hit[0] is data:  # the entry's reference to ``data`` keeps its id from being reused
        return hit[1]
    body = dj.dumps(data)
    if _encoded_bytes[0] + len(body) > _MAX_ENCODED_BYTES:
        _encodings.clear()
        _encoded_bytes[0] = 0
    _encodings[id(data)] = (data, body)
    _encoded_bytes[0] += len(body)
    return body


# One wrapper per function, made once: building a SyncToAsync per request cost more than the cached search it ran.
_in_thread = {fn.__name__: sync_to_async(fn) for fn in (_instance_decision, _user, _retrieve_decision, _json_decision)}
