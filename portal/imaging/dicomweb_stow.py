"""STOW-RS (PS3.18 10.5): split a multipart/related application/dicom request into parts, hand them to the one
validated ingest path (``portal.imaging.ingest.ingest_files``) and build the PS3.18 store response.

Ingest is all or nothing: if any part is rejected, nothing is stored and every
part is listed in FailedSOPSequence (0xC000 with the problem for the parts at
fault, 0x0110 for the others, which were not stored because the request was
rejected as a whole); the problems are also given in ErrorComment (0000,0902). ErrorComment is an LO (at most
64 characters), so each value there is the start of the problem (``dicomweb_json.lo_text``); the whole text of
every problem is kept in ``StowResult.problems``, which the view sends in the ``Warning`` header.
Stored instances are de-identified, so their UIDs differ from those sent: each
ReferencedSOPSequence item names the UID as sent, WarningReason 0xB000
(coercion of data elements) and the RetrieveURL of the stored instance.
"""
from __future__ import annotations

import mmap
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from django.conf import settings

from portal.imaging import dicomweb_json as dj
from portal.imaging import dicomweb_multipart as mp
from portal.imaging.ingest import IngestError, ingest_files, new_staging_dir, uid_map_key
from portal.imaging.models import Instance, ReidentificationEntry

FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_PROCESSING = 0x0110
FAILURE_STUDY_MISMATCH = 0xA900  # the instance does not belong to the study named in the URL
WARNING_COERCION = 0xB000


class StowRequestError(ValueError):
    """The request as a whole is unusable (answered with ``status`` and the message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class StowResult:
    status: int
    body: dict
    problems: list[str] = field(default_factory=list)


@dataclass
class _Part:
    index: int
    path: Path | None
    sop_class: str = ""
    sop_instance: str = ""
    study: str = ""
    problem: str | None = None
    reason: int = FAILURE_CANNOT_UNDERSTAND


def copy_body(stream, content_length: int | None) -> tempfile.SpooledTemporaryFile:
    """Copy the request body into a temporary file, refusing more than the upload limit."""
    limit = settings.CONTEXTRT_MAX_UPLOAD_BYTES
    if content_length is not None and content_length > limit:
        raise StowRequestError(413, f"request body of {content_length} bytes exceeds the upload limit of {limit} bytes")
    out = tempfile.TemporaryFile(dir=settings.CONTEXTRT_UPLOAD_TMP)
    total = 0
    while block := stream.read(1 << 20):
        total += len(block)
        if total > limit:
            out.close()
            raise StowRequestError(413, f"request body exceeds the upload limit of {limit} bytes")
        out.write(block)
    out.flush()
    return out


def _identify(part: _Part) -> None:
    try:
        ds = pydicom.dcmread(part.path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
        part.sop_class = str(ds.get("SOPClassUID", "") or "")
        part.sop_instance = str(ds.get("SOPInstanceUID", "") or "")
        part.study = str(ds.get("StudyInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - unreadable parts are reported by the ingest with the reason
        pass


WARNING_PROBLEMS = 20  # problems repeated in full in the Warning header


def warning_header(problems: list[str]) -> str:
    """The ``Warning`` header (RFC 7234 5.5, code 299) with the whole text of the first problems, one warning each."""
    items = []
    for problem in problems[:WARNING_PROBLEMS]:
        text = " ".join(problem.split())[:1000].replace("\\", "\\\\").replace('"', '\\"')  # cut before escaping
        items.append(f'299 ContextRT "{text}"')
    if len(problems) > WARNING_PROBLEMS:
        items.append(f'299 ContextRT "{len(problems) - WARNING_PROBLEMS} further problems not listed"')
    return ", ".join(items)


def _failed_item(part: _Part, reason: int, comment: str) -> dict:
    item = {"00081197": dj.element("US", reason), "00000902": dj.element("LO", dj.lo_text(comment))}
    if part.sop_class:
        item["00081150"] = dj.element("UI", part.sop_class)
    if part.sop_instance:
        item["00081155"] = dj.element("UI", part.sop_instance)
    return dj.sorted_dataset(item)


def store(body_file, content_type_header: str, *, site, user, base_url: str, study_uid: str | None = None) -> StowResult:
    try:
        boundary, part_type = mp.request_boundary(content_type_header or "")
    except mp.MultipartError as exc:
        raise StowRequestError(415, str(exc)) from None
    if part_type and part_type != "application/dicom":
        raise StowRequestError(415, f"only type=\"application/dicom\" parts are accepted, not {part_type!r}")
    body_file.seek(0, 2)
    if body_file.tell() == 0:
        raise StowRequestError(400, "the request body is empty")
    body_file.seek(0)
    staging = new_staging_dir()
    try:
        with mmap.mmap(body_file.fileno(), 0, access=mmap.ACCESS_READ) as body:
            try:
                raw_parts = mp.split_parts(body, boundary)
            except mp.MultipartError as exc:
                raise StowRequestError(400, str(exc)) from None
            if not raw_parts:
                raise StowRequestError(400, "the multipart body has no parts")
            parts = []
            for k, raw in enumerate(raw_parts):
                part = _Part(index=k, path=None)
                if raw.content_type not in ("", "application/dicom"):
                    part.problem = f"part {k + 1}: Content-Type {raw.content_type!r} is not application/dicom"
                    part.reason = 0x0122  # SOP class / media type not supported
                else:
                    part.path = staging / f"part{k:06d}.dcm"
                    with open(part.path, "wb") as fh:
                        fh.write(body[raw.start:raw.end])
                    _identify(part)
                parts.append(part)
        return _ingest(parts, staging, site=site, user=user, base_url=base_url, study_uid=study_uid)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ingest(parts: list[_Part], staging: Path, *, site, user, base_url: str, study_uid: str | None) -> StowResult:
    if study_uid is not None:
        for part in parts:
            if part.problem is None and part.study and part.study != study_uid:
                part.problem = (f"part {part.index + 1}: StudyInstanceUID {part.study} does not match the study "
                                f"{study_uid} named in the URL")
                part.reason = FAILURE_STUDY_MISMATCH
    if any(p.problem for p in parts):
        return _rejected(parts, [p.problem for p in parts if p.problem])
    names = [f"part {p.index + 1}" for p in parts]
    try:
        report = ingest_files([p.path for p in parts], site=site, user=user, names=names)
    except IngestError as exc:
        by_name = {}
        general = []
        for error in exc.errors:
            text = f"{error.get('file') or 'request'}: {error['problem']}"
            name = str(error.get("file") or "")
            if name in names:
                by_name.setdefault(names.index(name), []).append(text)
            else:
                general.append(text)
        for part in parts:
            if part.index in by_name:
                part.problem = "; ".join(by_name[part.index])
        return _rejected(parts, [t for ts in by_name.values() for t in ts] + general, general)
    # Map each sent SOP Instance UID to the stored (de-identified) one.
    keys = {uid_map_key(site, p.sop_instance): p for p in parts if p.sop_instance}
    stored = dict(ReidentificationEntry.objects.filter(kind="uid", original__in=list(keys)).values_list("original", "pseudonym"))
    locations = {sop: (study, series) for sop, study, series in Instance.objects.filter(sop_uid__in=list(stored.values()))
                 .values_list("sop_uid", "series__study__study_uid", "series__series_uid")}
    referenced, studies = [], set()
    for key, part in keys.items():
        item = {"00081150": dj.element("UI", part.sop_class), "00081155": dj.element("UI", part.sop_instance),
                "00081196": dj.element("US", WARNING_COERCION)}
        pseudo = stored.get(key)
        if pseudo in locations:
            st, se = locations[pseudo]
            studies.add(st)
            item["00081190"] = dj.element("UR", f"{base_url}/studies/{st}/series/{se}/instances/{pseudo}")
        referenced.append(dj.sorted_dataset(item))
    body = {"00081199": {"vr": "SQ", "Value": referenced}}
    if len(studies) == 1:
        body["00081190"] = dj.element("UR", f"{base_url}/studies/{studies.pop()}")
    warnings = [f"{w.get('file', '')}: {w['problem']}" for w in report.warnings]
    if warnings:
        body["00000902"] = dj.element("LO", *(dj.lo_text(w) for w in warnings[:50]))
    return StowResult(status=200, body=dj.sorted_dataset(body), problems=warnings)


def _rejected(parts: list[_Part], problems: list[str], general: list[str] | None = None) -> StowResult:
    failed = []
    for part in parts:
        if part.problem:
            failed.append(_failed_item(part, part.reason, part.problem))
        else:
            why = "not stored: another part was rejected (all or nothing)"
            if general:
                why = "not stored: " + "; ".join(general)
            failed.append(_failed_item(part, FAILURE_PROCESSING, why))
    body = {"00081198": {"vr": "SQ", "Value": failed}, "00000902": dj.element("LO", *(dj.lo_text(p) for p in problems[:50]))}
    return StowResult(status=409, body=dj.sorted_dataset(body), problems=problems)
