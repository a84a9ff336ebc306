"""QIDO-RS (PS3.18 10.6): parsing search parameters and matching them against the scoped catalogue.

Matching follows PS3.4 C.2.2.2: an empty value matches everything; UI
attributes take a list of UIDs (``\\`` or ``,`` separated); DA/TM/DT take a
value or a range (``20200101-20201231``, ``-2020…``, ``2020…-``); string
attributes take ``*``/``?`` wildcards; PN matches case-insensitively. Keys that
the catalogue has columns for are matched in the database; any other DICOM
attribute is matched against the stored DICOM JSON of the study's/series'
first instance (or the instance itself). ``fuzzymatching`` is accepted and
ignored (literal matching is performed, as PS3.18 allows).
"""
from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass, field

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Count, Min

from portal.accounts.scoping import scope_series
from portal.imaging import dicomweb_json as dj
from portal.imaging.models import Instance, Series, Study

LEVELS = ("studies", "series", "instances")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CONTROL_PARAMS = {"limit", "offset", "includefield", "fuzzymatching", "site"}
MAX_LIMIT = 10000


class QueryError(ValueError):
    """A bad QIDO parameter; the message names it (answered with 400)."""


@dataclass
class Filter:
    tag: str
    vr: str
    raw: str


@dataclass
class QidoQuery:
    level: str
    filters: list[Filter] = field(default_factory=list)
    include_all: bool = False
    include_tags: list[str] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False


def _non_negative_int(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", value or ""):
        raise QueryError(f"query parameter {name!r} must be a non-negative integer, got {value!r}")
    return int(value)


def parse_query(params, level: str) -> QidoQuery:
    """``params`` is a Django QueryDict (or any mapping with ``getlist``)."""
    query = QidoQuery(level=level)
    for name in params.keys():
        values = params.getlist(name)
        if name == "limit":
            query.limit = _non_negative_int("limit", values[-1])
            if query.limit > MAX_LIMIT:
                raise QueryError(f"query parameter 'limit' must be at most {MAX_LIMIT}")
        elif name == "offset":
            query.offset = _non_negative_int("offset", values[-1])
        elif name == "fuzzymatching":
            if values[-1].lower() not in ("true", "false"):
                raise QueryError(f"query parameter 'fuzzymatching' must be true or false, got {values[-1]!r}")
            query.fuzzy = values[-1].lower() == "true"
        elif name == "includefield":
            for value in values:
                for item in value.split(","):
                    item = item.strip()
                    if not item:
                        continue
                    if item == "all":
                        query.include_all = True
                        continue
                    try:
                        query.include_tags.append(dj.attribute_tag(item.split(".")[0]))
                    except dj.AttributeError400 as exc:
                        raise QueryError(f"includefield: {exc}") from None
        elif name == "site":
            continue  # STOW's site selector; meaningless (and ignored) on a search
        else:
            try:
                tag = dj.attribute_tag(name)
            except dj.AttributeError400 as exc:
                raise QueryError(f"query parameter: {exc}") from None
            vr = dj.attribute_vr(tag)
            if vr in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
                raise QueryError(f"attribute {name} ({vr}) cannot be used as a matching key")
            for value in values:
                query.filters.append(_checked_filter(name, tag, vr, value))
    return query


_DATE_RE = {"DA": re.compile(r"^[0-9]{8}$"), "TM": re.compile(r"^[0-9]{2,6}(\.[0-9]{1,6})?$"),
            "DT": re.compile(r"^[0-9]{4,14}(\.[0-9]{1,6})?([+-][0-9]{4})?$")}


def _checked_filter(name: str, tag: str, vr: str, value: str) -> Filter:
    if vr in _DATE_RE and value:
        low, sep, high = value.partition("-")  # DT UTC offsets are not supported in ranges
        for part in (low, high):
            if part and not _DATE_RE[vr].match(part):
                raise QueryError(f"{name}: {value!r} is not a {vr} value or range (e.g. 20200101-20201231)")
        if vr == "DA":
            for part in (low, high):
                if part:
                    try:
                        dt.datetime.strptime(part, "%Y%m%d")
                    except ValueError:
                        raise QueryError(f"{name}: {part!r} is not a valid date") from None
        if sep and not (low or high):
            raise QueryError(f"{name}: an empty range {value!r}")
    elif vr == "UI" and value:
        for uid in re.split(r"[\\,]", value):
            if not _UID_RE.match(uid) or len(uid) > 64:
                raise QueryError(f"{name}: {uid!r} is not a valid UID")
    elif vr in ("IS", "US", "SS", "UL", "SL", "DS", "FL", "FD") and value:
        if "*" in value or "?" in value:
            raise QueryError(f"{name}: wildcards are not allowed for numeric attributes")
        try:
            float(value)
        except ValueError:
            raise QueryError(f"{name}: {value!r} is not a number") from None
    return Filter(tag=tag, vr=vr, raw=value)


# ---------------------------------------------------------------- database matching (hand-written SQL)

# tag -> (level the attribute belongs to, column on that level's table, kind). PatientID lives on the patient
# table and is matched through the study's patient_id.
_DB_FIELDS = {
    "00100020": ("studies", "patient.pseudo_id", "str"),
    "0020000D": ("studies", "study_uid", "uid"),
    "00080020": ("studies", "study_date", "date"),
    "00080050": ("studies", "accession_number", "str"),
    "00200010": ("studies", "study_id", "str"),
    "00081030": ("studies", "description", "str"),
    "0020000E": ("series", "series_uid", "uid"),
    "00080060": ("series", "modality", "str"),
    "00080061": ("series", "modality", "list"),  # ModalitiesInStudy: any (visible) series with one of the modalities
    "00200011": ("series", "series_number", "int"),
    "0008103E": ("series", "description", "str"),
    "00080018": ("instances", "sop_uid", "uid"),
    "00080016": ("instances", "sop_class_uid", "uid"),
    "00200013": ("instances", "instance_number", "int"),
}
_MODELS = {"studies": Study, "series": Series, "instances": Instance}
_PARENT_FK = {"series": "study_id", "instances": "series_id"}  # column pointing at the level above
_ORDER = {"studies": "id", "series": "study_id, series_number, id", "instances": "series_id, slice_index, instance_number, id"}


def _table(level: str) -> str:
    return connection.ops.quote_name(_MODELS[level]._meta.db_table)


def _wildcard_regex(value: str) -> str:
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value) + "$"


def _condition(flt: Filter) -> tuple[str, str, list]:
    """(attribute level, SQL condition on that level's table, params) for a filter the catalogue has a column for."""
    attr_level, column, kind = _DB_FIELDS[flt.tag]
    value = flt.raw
    if kind in ("uid", "list"):
        items = re.split(r"[\\,]", value)
        sql, params = f"{column} IN ({', '.join(['%s'] * len(items))})", items
    elif kind == "date":
        low, sep, high = value.partition("-")
        as_date = lambda s: connection.ops.adapt_datefield_value(dt.datetime.strptime(s, "%Y%m%d").date())  # noqa: E731
        if not sep:
            sql, params = f"{column} = %s", [as_date(low)]
        else:
            parts = ([(f"{column} >= %s", as_date(low))] if low else []) + ([(f"{column} <= %s", as_date(high))] if high else [])
            sql, params = " AND ".join(p[0] for p in parts), [p[1] for p in parts]
    elif kind == "int":
        sql, params = f"{column} = %s", [int(float(value))]
    elif "*" in value or "?" in value:
        # Django's own regex operator for the backend (SQLite: its registered REGEXP function; PostgreSQL: ~).
        sql, params = f"{column} {connection.operators['regex'] % '%s'}", [_wildcard_regex(value)]
    else:
        sql, params = f"{column} = %s", [value]
    if column.startswith("patient."):
        patients = connection.ops.quote_name(Study._meta.get_field("patient").related_model._meta.db_table)
        sql = f"patient_id IN (SELECT id FROM {patients} WHERE {sql.removeprefix('patient.')})"
    return attr_level, sql, params


def _linked(level: str, attr_level: str, sql: str, params: list, scope) -> tuple[str, list]:
    """``sql`` (a condition on ``attr_level``'s table) as a condition on ``level``'s table, through IN subqueries.

    Unqualified column names in a subquery resolve to its own table, so no aliases are needed. Going down from
    studies to series only visible series count (a hidden series must not make its study match).
    """
    here, there = LEVELS.index(level), LEVELS.index(attr_level)
    if here == there:
        return sql, params
    if there < here:  # the attribute belongs to a level above: follow the foreign key up
        inner, inner_params = _linked(LEVELS[here - 1], attr_level, sql, params, scope)
        return f"{_PARENT_FK[level]} IN (SELECT id FROM {_table(LEVELS[here - 1])} WHERE {inner})", inner_params
    child = LEVELS[here + 1]
    inner, inner_params = _linked(child, attr_level, sql, params, scope)
    if child == "series" and scope.sql is not None:
        inner, inner_params = f"{inner} AND id IN ({scope.sql})", [*inner_params, *scope.params]
    return f"id IN (SELECT {_PARENT_FK[child]} FROM {_table(child)} WHERE {inner})", inner_params


def matching_ids(scope, level: str, filters: list[Filter], study_uid: str | None = None, series_uid: str | None = None,
                 limit: int | None = None, offset: int = 0) -> list[int]:
    """Primary keys of the ``level`` rows the scope may see that match the catalogue-column ``filters``, in result order.

    One hand-written query: building and compiling the equivalent ORM query cost more than running it.
    """
    if scope.empty:
        return []
    where, params = [], []
    if scope.sql is not None:
        own = {"studies": f"id IN (SELECT study_id FROM {_table('series')} WHERE id IN ({scope.sql}))",
               "series": f"id IN ({scope.sql})", "instances": f"series_id IN ({scope.sql})"}[level]
        where.append(own)
        params += scope.params
    for uid, attr_level, column in ((study_uid, "studies", "study_uid"), (series_uid, "series", "series_uid")):
        if uid is not None:
            sql, sql_params = _linked(level, attr_level, f"{column} = %s", [uid], scope)
            where.append(sql)
            params += sql_params
    for flt in filters:
        attr_level, sql, sql_params = _condition(flt)
        sql, sql_params = _linked(level, attr_level, sql, sql_params, scope)
        where.append(sql)
        params += sql_params
    query = f"SELECT id FROM {_table(level)}"
    if where:
        query += " WHERE " + " AND ".join(f"({w})" for w in where)
    query += f" ORDER BY {_ORDER[level]}"
    if limit is not None or offset:
        query += " " + connection.ops.limit_offset_sql(offset, None if limit is None else offset + limit)
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return [row[0] for row in cursor.fetchall()]


# ---------------------------------------------------------------- matching on stored DICOM JSON


def _strings(item: dict | None) -> list[str]:
    if not item:
        return []
    out = []
    for value in item.get("Value") or []:
        if isinstance(value, dict):  # PN
            out.append(str(value.get("Alphabetic", "")))
        else:
            out.append(str(value))
    return out


def metadata_matches(metadata: dict, flt: Filter) -> bool:
    value = flt.raw
    candidates = _strings(metadata.get(flt.tag))
    if flt.vr == "UI":
        wanted = set(re.split(r"[\\,]", value))
        return any(c in wanted for c in candidates)
    if flt.vr in _DATE_RE:
        low, sep, high = value.partition("-")
        if not sep:
            return any(c.startswith(low) or c == low for c in candidates)
        return any((not low or c[: len(low)] >= low) and (not high or c[: len(high)] <= high) for c in candidates)
    if flt.vr in ("IS", "US", "SS", "UL", "SL", "DS", "FL", "FD"):
        try:
            return any(float(c) == float(value) for c in candidates)
        except ValueError:
            return False
    flags = re.IGNORECASE if flt.vr == "PN" else 0
    if "*" in value or "?" in value:
        pattern = re.compile(_wildcard_regex(value), flags | re.DOTALL)
        return any(pattern.match(c) for c in candidates)
    if flt.vr == "PN":
        return any(c.lower() == value.lower() for c in candidates)
    return value in candidates


# ---------------------------------------------------------------- the search


def visible_series(user):
    """The user's visible series, or None when the scope does not restrict them (admins, workers).

    ``scope_series`` hands back the very queryset it was given when it adds no
    restriction; skipping the subquery then saves most of a search's work.
    """
    everything = Series.objects.all()
    scoped = scope_series(user, everything)
    return None if scoped is everything else scoped


def _restrict(qs, field: str, series_qs):
    return qs if series_qs is None else qs.filter(**{f"{field}__in": series_qs.values("pk")})


@dataclass
class Scope:
    """What a user may see, as SQL: ``sql`` selects the visible series ids (None: everything; ``empty``: nothing).

    ``key`` tells memo entries of different scopes apart (None for the unrestricted scope, shared by admins
    and workers). ``series_qs`` is the same scope as a queryset, for the ORM-built parts.
    """
    key: int | None
    series_qs: object
    sql: str | None = None
    params: tuple = ()
    empty: bool = False


_scopes: dict = {}


def scope_for(user) -> Scope:
    """The user's ``Scope``, compiled once per RESULT_TTL (a membership change shows within that time, as elsewhere)."""
    cache_key = (user.pk, connection.alias)
    hit = _scopes.get(cache_key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    series_qs = visible_series(user)
    if series_qs is None:
        scope = Scope(key=None, series_qs=None)
    else:
        try:
            sql, params = series_qs.values("pk").query.sql_with_params()
            scope = Scope(key=user.pk, series_qs=series_qs, sql=sql, params=tuple(params))
        except EmptyResultSet:  # e.g. a rater without open reading items
            scope = Scope(key=user.pk, series_qs=series_qs, empty=True)
    with _results_lock:
        if len(_scopes) > 2000:
            _scopes.clear()
        _scopes[cache_key] = (time.monotonic() + RESULT_TTL, scope)
    return scope


def _representative_metadata(level: str, ids: list[int], series_qs) -> dict[int, dict]:
    """The DICOM JSON of the first visible instance of each study/series (the instance itself at instance level)."""
    if not ids:
        return {}
    if level == "instances":
        return dict(Instance.objects.filter(pk__in=ids).values_list("pk", "metadata"))
    group = "series__study_id" if level == "studies" else "series_id"
    # One query: the metadata of each row's lowest-pk visible instance.
    firsts = (_restrict(Instance.objects.filter(**{f"{group}__in": ids}), "series_id", series_qs)
              .values(group).annotate(first=Min("pk")).values("first"))
    return dict(Instance.objects.filter(pk__in=firsts).values_list(group, "metadata"))


RESULT_TTL = 5.0
_results: dict = {}
_results_lock = threading.Lock()


def catalogue_generation():
    """Changes whenever an instance is stored (ingest only adds rows; series/study rows change only with them)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(id) FROM {Instance._meta.db_table}")
        return tuple(cursor.fetchone())


def clear_cache() -> None:
    with _results_lock:
        _results.clear()
        _row_memo.clear()
        _scopes.clear()


def cached_search(user, query: QidoQuery, base_url: str, study_uid: str | None = None, series_uid: str | None = None) -> list[dict]:
    """``search`` with the answer remembered for RESULT_TTL seconds per user and query.

    Viewers repeat the same searches; a cached answer is reused only while the
    catalogue generation is unchanged (any store invalidates it at once), and a
    change in the user's scope shows within RESULT_TTL, like the other cached
    access decisions (``dicomweb_access.AUTH_TTL``).
    """
    key = (user.pk, query.level, study_uid, series_uid, base_url, tuple((f.tag, f.raw) for f in query.filters),
           query.include_all, tuple(query.include_tags), query.limit, query.offset)
    generation = catalogue_generation()
    hit = _results.get(key)
    if hit is not None and hit[0] == generation and hit[1] > time.monotonic():
        return hit[2]
    results = search(user, query, base_url, study_uid=study_uid, series_uid=series_uid, generation=generation)
    with _results_lock:
        if len(_results) > 2000:
            _results.clear()
        _results[key] = (generation, time.monotonic() + RESULT_TTL, results)
    return results


def search(user, query: QidoQuery, base_url: str, study_uid: str | None = None, series_uid: str | None = None,
           generation=None) -> list[dict]:
    """The QIDO-RS response body (a list of DICOM JSON datasets) for ``query`` as ``user`` sees the catalogue.

    With the catalogue ``generation`` given, study/series rows are reused from
    the row summary memo (see ``_summaries``) instead of being recomputed.
    """
    level = query.level
    scope = scope_for(user)
    db_filters = [f for f in query.filters if f.raw and f.tag in _DB_FIELDS]
    python_filters = [f for f in query.filters if f.raw and f.tag not in _DB_FIELDS]  # empty value: universal matching
    if query.limit == 0:
        return []
    end = None if query.limit is None else query.offset + query.limit
    if python_filters:
        ids = matching_ids(scope, level, db_filters, study_uid, series_uid)
        metadata = _representative_metadata(level, ids, scope.series_qs)
        ids = [i for i in ids if all(metadata_matches(metadata.get(i, {}), f) for f in python_filters)][query.offset:end]
        metadata = {i: metadata.get(i, {}) for i in ids}
    else:
        ids = matching_ids(scope, level, db_filters, study_uid, series_uid, limit=query.limit, offset=query.offset)
        metadata = None  # loaded by _summaries for the rows the memo lacks
    bodies = _summaries(level, ids, metadata, scope.series_qs, base_url, scope.key, generation)
    return _render(ids, bodies, query)


# Row summary memo: (level, scope, base URL, pk) -> (generation, expiry, meta, row).
# A study/series row (representative metadata, counts, modalities, URL) depends
# only on the catalogue and on the user's scope, so un-repeated searches (another
# limit/offset/filter) reuse rows already built instead of 3-4 grouped queries.
# Validity is the catalogue generation (any store invalidates it) and, for
# site-scoped users, RESULT_TTL (a scope change shows as in cached_search).
_row_memo: dict = {}
_MAX_MEMO_ROWS = 50000


def clear_row_memo() -> None:
    _row_memo.clear()


def _summaries(level, ids, metadata, series_qs, base_url, scope_key, generation) -> dict[int, tuple[dict, dict]]:
    if not ids:
        return {}
    if generation is None or level == "instances":
        if metadata is None:
            metadata = _representative_metadata(level, ids, series_qs)
        return _row_bodies(level, ids, metadata, series_qs, base_url)
    now = time.monotonic()
    found, missing = {}, []
    for pk in ids:
        hit = _row_memo.get((level, scope_key, base_url, pk))
        if hit is not None and hit[0] == generation and hit[1] > now:
            found[pk] = (hit[2], hit[3])
        else:
            missing.append(pk)
    if missing:
        if metadata is None:
            metadata = _representative_metadata(level, missing, series_qs)
        built = _row_bodies(level, missing, metadata, series_qs, base_url)
        expiry = float("inf") if scope_key is None else now + RESULT_TTL
        with _results_lock:
            if len(_row_memo) + len(built) > _MAX_MEMO_ROWS:
                _row_memo.clear()
            for pk, (meta, out) in built.items():
                _row_memo[(level, scope_key, base_url, pk)] = (generation, expiry, meta, out)
        found.update(built)
    return found


def _render(ids, bodies, query) -> list[dict]:
    wanted = set(query.include_tags) | {f.tag for f in query.filters}
    result = []
    for pk in ids:
        meta, base_row = bodies[pk]
        out = dict(base_row)  # the memo's row stays untouched
        out["00080056"] = dj.element("CS", "ONLINE")
        if query.include_all:
            for tag, item in meta.items():
                out.setdefault(tag, item)
        else:
            out.update({tag: meta[tag] for tag in wanted if tag in meta and tag not in out})
        result.append(dj.sorted_dataset(out))
    return result


def _row_bodies(level, ids, metadata, series_qs, base_url) -> dict[int, tuple[dict, dict]]:
    """pk -> (representative DICOM JSON, the row's fixed attributes) for ``ids``."""
    if not ids:
        return {}
    rows = {}
    if level == "studies":
        # Series/instance counts and modalities in one grouped query over the visible series.
        counts: dict[int, list] = {}
        visible_series = _restrict(Series.objects.filter(study_id__in=ids), "pk", series_qs)
        for study_id, modality, n_series, n_instances in (visible_series.values("study_id", "modality")
                                                          .annotate(n_series=Count("pk", distinct=True), n_instances=Count("instances"))
                                                          .values_list("study_id", "modality", "n_series", "n_instances")):
            entry = counts.setdefault(study_id, [set(), 0, 0])
            entry[0].add(modality)
            entry[1] += n_series
            entry[2] += n_instances
        uids = dict(Study.objects.filter(pk__in=ids).values_list("pk", "study_uid"))
        for pk in ids:
            meta = metadata.get(pk, {})
            modalities, n_series, n_instances = counts.get(pk, [set(), 0, 0])
            out = dj.select(meta, dj.STUDY_TAGS)
            out["0020000D"] = dj.element("UI", uids[pk])
            out["00080061"] = dj.element("CS", *sorted(modalities))
            out["00201206"] = dj.element("IS", n_series)
            out["00201208"] = dj.element("IS", n_instances)
            out["00081190"] = dj.element("UR", f"{base_url}/studies/{uids[pk]}")
            rows[pk] = (meta, out)
    elif level == "series":
        info = {r["pk"]: r for r in Series.objects.filter(pk__in=ids).values("pk", "series_uid", "study__study_uid", "modality")
                .annotate(n_instances=Count("instances"))}
        for pk in ids:
            meta, row = metadata.get(pk, {}), info[pk]
            out = dj.select(meta, dj.STUDY_TAGS + dj.SERIES_TAGS)
            out["0020000D"] = dj.element("UI", row["study__study_uid"])
            out["0020000E"] = dj.element("UI", row["series_uid"])
            out["00080060"] = dj.element("CS", row["modality"])
            out["00201209"] = dj.element("IS", row["n_instances"])
            out["00081190"] = dj.element("UR", f"{base_url}/studies/{row['study__study_uid']}/series/{row['series_uid']}")
            rows[pk] = (meta, out)
    else:
        info = {r[0]: r for r in Instance.objects.filter(pk__in=ids)
                .values_list("pk", "sop_uid", "series__series_uid", "series__study__study_uid", "number_of_frames")}
        for pk in ids:
            meta = metadata.get(pk, {})
            _, sop, series_uid, study_uid, frames = info[pk]
            out = dj.select(meta, dj.STUDY_TAGS + dj.SERIES_TAGS + dj.INSTANCE_TAGS)
            out["0020000D"] = dj.element("UI", study_uid)
            out["0020000E"] = dj.element("UI", series_uid)
            out["00080018"] = dj.element("UI", sop)
            out["00081190"] = dj.element("UR", f"{base_url}/studies/{study_uid}/series/{series_uid}/instances/{sop}")
            rows[pk] = (meta, out)
    return rows
