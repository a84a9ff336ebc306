"""The one validated, transactional DICOM ingest path (REST upload, zip, STOW-RS, import_dicom, loaders).

``ingest_files(paths, site=...)`` reads every file, validates the whole set
(modality, pixel data, one consistent geometry per CT series, RTSTRUCT
references, duplicate SOP Instance UIDs), rasterises each RTSTRUCT ROI onto its
CT grid, de-identifies (``portal.imaging.deid``), writes the files and masks to
a staging folder under CONTEXTRT_UPLOAD_TMP and only then, inside one database
transaction, creates the catalogue rows and moves the staged files into the
store. Any problem raises ``IngestError`` listing every problem found, and
leaves the database and the store as they were.
"""
from __future__ import annotations

import os
import shutil
import struct
import uuid
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pydicom
from django.conf import settings
from django.db import IntegrityError, transaction
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_rt.geometry import GeometryError, Grid
from dicom_rt.rasterise import StructureSetError, parse_structure_set, rasterise_roi
from portal.imaging import deid, storage
from portal.imaging.models import ROI, Instance, Patient, ReidentificationEntry, Series, StructureSet, Study
from portal.imaging.validation import IngestProblem, ParsedFile, parse_upload_file
from portal.imaging.volume import series_grid


class IngestError(Exception):
    """The upload was rejected; ``errors`` is a list of {"file", "problem", optional "tag"/"uid"} dicts."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        lines = "; ".join(f"{e.get('file', '?')}: {e['problem']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"upload rejected: {lines}{more}")


@dataclass
class IngestReport:
    patients: list[str] = field(default_factory=list)  # pseudonymous ids created
    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    instances: int = 0
    skipped_identical: int = 0
    structure_sets: list[int] = field(default_factory=list)  # StructureSet ids
    rois: list[int] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    series_uid_map: dict[str, str] = field(default_factory=dict)  # original -> stored (shown to the uploader only)

    def as_dict(self) -> dict:
        return {"patients": self.patients, "studies": self.studies, "series": self.series, "instances": self.instances,
                "skipped_identical": self.skipped_identical, "structure_sets": self.structure_sets, "rois": self.rois,
                "warnings": self.warnings}


# ---------------------------------------------------------------- upload staging and limits


def check_limits(count: int, total_bytes: int) -> None:
    errors = []
    if count == 0:
        errors.append({"file": "", "problem": "the upload contains no files"})
    if count > settings.CONTEXTRT_MAX_UPLOAD_FILES:
        errors.append({"file": "", "problem": f"{count} files exceed the limit of {settings.CONTEXTRT_MAX_UPLOAD_FILES} per upload"})
    if total_bytes > settings.CONTEXTRT_MAX_UPLOAD_BYTES:
        errors.append({"file": "", "problem": f"{total_bytes} bytes exceed the limit of {settings.CONTEXTRT_MAX_UPLOAD_BYTES} per upload"})
    if errors:
        raise IngestError(errors)


def new_staging_dir() -> Path:
    base = Path(settings.CONTEXTRT_UPLOAD_TMP)
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"ingest-{uuid.uuid4().hex}"
    path.mkdir()
    return path


def safe_zip_members(archive: zipfile.ZipFile, zip_name: str) -> list[zipfile.ZipInfo]:
    """Regular-file entries; any absolute path, drive letter or '..' component rejects the whole zip."""
    errors, members = [], []
    for info in archive.infolist():
        raw = info.filename
        parts = PurePosixPath(raw.replace("\\", "/")).parts
        if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":") or ".." in parts:
            errors.append({"file": f"{zip_name}:{raw}", "problem": "zip entry has an absolute path or '..' component"})
            continue
        if info.is_dir() or (info.external_attr >> 16) & 0o170000 == 0o120000:  # directories and symlinks
            continue
        if parts and parts[-1] in ("DICOMDIR", ".DS_Store") or any(p == "__MACOSX" for p in parts):
            continue
        members.append(info)
    if errors:
        raise IngestError(errors)
    return members


def extract_zip(zip_path: Path, into: Path, zip_name: str = "upload.zip") -> list[tuple[Path, str]]:
    """Extract a zip into ``into`` under generated names; returns (path, name inside the zip) pairs."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise IngestError([{"file": zip_name, "problem": "not a valid zip archive"}])
    with archive:
        members = safe_zip_members(archive, zip_name)
        check_limits(len(members), sum(m.file_size for m in members))
        out, written = [], 0
        for k, info in enumerate(members):
            target = into / f"z{k:06d}.dcm"
            with archive.open(info) as src, open(target, "wb") as dst:
                while block := src.read(1 << 20):
                    written += len(block)
                    if written > settings.CONTEXTRT_MAX_UPLOAD_BYTES:  # the declared sizes may lie
                        raise IngestError([{"file": zip_name, "problem": "uncompressed size exceeds the upload limit"}])
                    dst.write(block)
            out.append((target, f"{zip_name}:{info.filename}"))
    return out


def ingest_zip(zip_path: Path, *, site, user=None, zip_name: str = "upload.zip", **options) -> IngestReport:
    staging = new_staging_dir()
    try:
        members = extract_zip(Path(zip_path), staging, zip_name)
        return ingest_files([p for p, _ in members], site=site, user=user, names=[n for _, n in members], **options)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ingest_bytes(parts, *, site, user=None, names=None, **options) -> IngestReport:
    """Ingest in-memory DICOM parts (e.g. the application/dicom parts of a STOW-RS request)."""
    parts = list(parts)
    check_limits(len(parts), sum(len(p) for p in parts))
    staging = new_staging_dir()
    try:
        paths = []
        for k, data in enumerate(parts):
            path = staging / f"part{k:06d}.dcm"
            path.write_bytes(data)
            paths.append(path)
        names = list(names) if names is not None else [f"part {k + 1}" for k in range(len(parts))]
        return ingest_files(paths, site=site, user=user, names=names, **options)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- internal helpers


def uid_map_key(site, original_uid: str) -> str:
    """UID map entries are per site: the same files sent to two sites become two unrelated pseudonymous copies,
    so one site's upload never reveals or attaches to another site's data."""
    return f"{site.code}|{original_uid}"


def _stored_uid_map(site, originals: set[str]) -> dict[str, str]:
    """original UID -> stored pseudonym, for the originals this site has ingested before."""
    found = {}
    keys = [uid_map_key(site, u) for u in originals]
    prefix = len(uid_map_key(site, ""))
    for k in range(0, len(keys), 500):
        rows = ReidentificationEntry.objects.filter(kind="uid", original__in=keys[k:k + 500])
        found.update({original[prefix:]: pseudonym for original, pseudonym in rows.values_list("original", "pseudonym")})
    # UIDs that already are this site's pseudonyms (a file exported from the catalogue coming back) stay as they are.
    rest = [u for u in originals if u not in found]
    for k in range(0, len(rest), 500):
        rows = ReidentificationEntry.objects.filter(kind="uid", pseudonym__in=rest[k:k + 500],
                                                    original__startswith=uid_map_key(site, ""))
        found.update({p: p for p in rows.values_list("pseudonym", flat=True)})
    return found


def _patient_key(site, ds: Dataset) -> str:
    pid = str(ds.get("PatientID", "") or "").strip()
    return f"{site.code}:{pid}" if pid else f"{site.code}:study:{ds.StudyInstanceUID}"


def _dataset_from_metadata(instance: Instance) -> Dataset:
    ds = Dataset.from_json(instance.metadata)
    ds.SOPInstanceUID = instance.sop_uid
    return ds


def _pixel_location(path: Path) -> tuple[int, int]:
    """Byte offset and length of the (uncompressed) PixelData value in a stored explicit-VR LE file."""
    with open(path, "rb") as fh:
        pydicom.dcmread(fh, stop_before_pixels=True)
        start = fh.tell()
        header = fh.read(12)
    group, element = struct.unpack("<HH", header[:4])
    if (group, element) != (0x7FE0, 0x0010) or header[4:6] not in (b"OW", b"OB"):
        raise RuntimeError(f"PixelData not found where expected in {path.name}")
    (length,) = struct.unpack("<I", header[8:12])
    return start + 12, length


def _metadata_json(ds: Dataset) -> dict:
    """DICOM JSON of the dataset without PixelData (the DICOMweb layer adds its BulkDataURI)."""
    meta = Dataset()
    for tag in ds.keys():
        if tag != 0x7FE00010:
            meta.add(ds[tag])
    return meta.to_json_dict(bulk_data_threshold=1 << 30, bulk_data_element_handler=lambda e: "")


def _write_dicom(ds: Dataset, target: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, implicit_vr=False, little_endian=True, enforce_file_format=True)


def _float_or_none(value):
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _int_or_none(value):
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date_or_none(value):
    import datetime as dt

    try:
        return dt.datetime.strptime(str(value)[:8], "%Y%m%d").date() if value else None
    except ValueError:
        return None


@dataclass
class _CtSeriesPlan:
    original_uid: str
    files: list[ParsedFile]  # new files, sorted
    grid: Grid
    sop_order: list[str]  # original SOP UIDs of every slice in slice order (stored ones as their pseudonym)
    existing: Series | None = None


@dataclass
class _StructPlan:
    file: ParsedFile
    ct_original_uid: str | None  # CT series in this upload, by original UID
    ct_existing: Series | None  # or an already stored CT series
    grid: Grid
    masks: list[tuple] = field(default_factory=list)  # (RoiContours, mask)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the ingest


def ingest_files(paths, *, site, user=None, names=None, allow_partial: bool = False,
                 skip_unsupported: bool = False) -> IngestReport:
    """Validate, de-identify and store CT series and RTSTRUCTs; all or nothing.

    ``names`` are the uploader's file names for messages (default: the paths).
    ``allow_partial`` accepts an RTSTRUCT whose contours lie on planes that the
    CT series lacks (those contours are dropped with a warning); by default
    such an incomplete series is an error. ``skip_unsupported`` turns other
    modalities (RTPLAN, RTDOSE, ...) and non-DICOM files (README, LICENSE) into
    warnings instead of errors.
    """
    paths = [Path(p) for p in paths]
    names = list(names) if names is not None else [str(p) for p in paths]
    check_limits(len(paths), sum(p.stat().st_size for p in paths if p.exists()))
    report = IngestReport()
    errors: list[dict] = []

    # 1. read and check every file on its own
    parsed: list[ParsedFile] = []
    for path, name in zip(paths, names):
        try:
            item = parse_upload_file(path, name, skip_unsupported=skip_unsupported)
        except IngestProblem as problem:
            if skip_unsupported and problem.problem.startswith("not a DICOM file"):
                report.warnings.append({"file": name, "problem": "not a DICOM file; skipped"})
            else:
                errors.append(problem.as_dict())
            continue
        if item is None:
            report.warnings.append({"file": name, "problem": "unsupported modality skipped (only CT and RTSTRUCT are ingested)"})
            continue
        parsed.append(item)
    if errors:
        raise IngestError(errors)

    # 2. duplicate SOP Instance UIDs: within the upload, then against the store
    by_uid: dict[str, ParsedFile] = {}
    unique: list[ParsedFile] = []
    for item in parsed:
        first = by_uid.get(item.sop_uid)
        if first is None:
            by_uid[item.sop_uid] = item
            unique.append(item)
        elif first.sha256 == item.sha256:
            report.warnings.append({"file": item.name, "uid": item.sop_uid, "problem": f"identical copy of {first.name}; ingested once"})
        else:
            errors.append({"file": item.name, "uid": item.sop_uid, "tag": "SOPInstanceUID",
                           "problem": f"SOPInstanceUID {item.sop_uid} is also used by {first.name} with different content"})
    all_uids: set[str] = set()
    for item in unique:
        deid.collect_uids(item.dataset, all_uids)
    stored_map = _stored_uid_map(site, all_uids)
    new_files: list[ParsedFile] = []
    for item in unique:
        pseudo = stored_map.get(item.sop_uid)
        existing = Instance.objects.filter(sop_uid=pseudo).first() if pseudo else None
        if existing is None:
            new_files.append(item)
        elif existing.source_sha256 == item.sha256:
            report.skipped_identical += 1
        else:
            errors.append({"file": item.name, "uid": item.sop_uid, "tag": "SOPInstanceUID",
                           "problem": f"an instance with SOPInstanceUID {item.sop_uid} is already stored with different content"})
    if errors:
        raise IngestError(errors)
    if report.skipped_identical:
        report.warnings.append({"file": "", "problem": f"{report.skipped_identical} file(s) already stored unchanged; skipped"})

    # 3. CT series: one consistent geometry each (including slices stored earlier)
    ct_groups: dict[str, list[ParsedFile]] = defaultdict(list)
    for item in new_files:
        if item.modality == "CT":
            ct_groups[str(item.dataset.SeriesInstanceUID)].append(item)
    ct_plans: dict[str, _CtSeriesPlan] = {}
    for series_uid, files in ct_groups.items():
        try:
            plan = _plan_ct_series(series_uid, files, stored_map)
        except IngestProblem as problem:
            errors.append(problem.as_dict())
            continue
        ct_plans[series_uid] = plan
    if errors:
        raise IngestError(errors)

    # 4. RTSTRUCT: referenced CT series, rasterisation
    struct_plans: list[_StructPlan] = []
    for item in new_files:
        if item.modality != "RTSTRUCT":
            continue
        try:
            struct_plans.append(_plan_structure_set(item, ct_plans, stored_map, allow_partial, report))
        except IngestProblem as problem:
            errors.append(problem.as_dict())
    if errors:
        raise IngestError(errors)

    # 5. de-identify, stage, then commit rows and move files in one transaction
    staging = new_staging_dir()
    moved: list[Path] = []
    try:
        with transaction.atomic():
            _commit(site, user, new_files, ct_plans, struct_plans, stored_map, staging, moved, report)
    except IntegrityError as exc:
        for path in moved:
            path.unlink(missing_ok=True)
        # Another upload stored the same patient/study/instance between our checks and our commit.
        raise IngestError([{"file": "", "problem": f"a concurrent upload stored some of these objects first; retry ({exc})"}])
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _plan_ct_series(series_uid: str, files: list[ParsedFile], stored_map: dict) -> _CtSeriesPlan:
    first = files[0]
    for item in files[1:]:
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
            if str(item.dataset.get(keyword, "")) != str(first.dataset.get(keyword, "")):
                raise IngestProblem(item.name, f"{keyword} differs within CT series {series_uid} (mixed series)",
                                    tag=keyword, uid=item.sop_uid)
    existing = Series.objects.filter(series_uid=stored_map.get(series_uid)).first() if series_uid in stored_map else None
    datasets = [f.dataset for f in files]
    if existing is not None:
        if existing.structure_sets.exists():
            raise IngestProblem(first.name, f"CT series {series_uid} is already stored with structure sets on its grid; "
                                            "slices cannot be added to it", uid=series_uid)
        datasets += [_dataset_from_metadata(inst) for inst in existing.instances.all()]
    try:
        grid, ordered = Grid.from_datasets(datasets)
    except GeometryError as exc:
        name = next((f.name for f in files if f.sop_uid == exc.uid), first.name)
        raise IngestProblem(name, f"CT series {series_uid} is not one consistent volume: {exc}", uid=exc.uid or series_uid)
    by_uid = {f.sop_uid: f for f in files}
    ordered_new = [by_uid[str(ds.SOPInstanceUID)] for ds in ordered if str(ds.SOPInstanceUID) in by_uid]
    return _CtSeriesPlan(original_uid=series_uid, files=ordered_new, grid=grid,
                         sop_order=[str(ds.SOPInstanceUID) for ds in ordered], existing=existing)


def _referenced_series(ds: Dataset) -> tuple[list[str], list[str], list[str]]:
    """(referenced series UIDs, referenced frames of reference, warnings) from ReferencedFrameOfReferenceSequence."""
    series, frames, warnings = [], [], []
    rfor = ds.get("ReferencedFrameOfReferenceSequence")
    if not rfor:
        warnings.append("ReferencedFrameOfReferenceSequence is missing; the CT series is found through the ROIs' frame of reference")
    for item in rfor or []:
        if item.get("FrameOfReferenceUID"):
            frames.append(str(item.FrameOfReferenceUID))
        studies = item.get("RTReferencedStudySequence")
        if not studies:
            warnings.append(f"RTReferencedStudySequence is missing under frame of reference {item.get('FrameOfReferenceUID', '?')}; "
                            "the CT series is found through the frame of reference only")
            continue
        for study in studies:
            for ser in study.get("RTReferencedSeriesSequence", []):
                if ser.get("SeriesInstanceUID"):
                    series.append(str(ser.SeriesInstanceUID))
    for roi in ds.get("StructureSetROISequence", []):
        if roi.get("ReferencedFrameOfReferenceUID"):
            frames.append(str(roi.ReferencedFrameOfReferenceUID))
    return list(dict.fromkeys(series)), list(dict.fromkeys(frames)), warnings


def _plan_structure_set(item: ParsedFile, ct_plans: dict, stored_map: dict, allow_partial: bool,
                        report: IngestReport) -> _StructPlan:
    ds = item.dataset
    try:
        rois = parse_structure_set(ds)
    except StructureSetError as exc:
        raise IngestProblem(item.name, str(exc), tag=exc.tag, uid=item.sop_uid)
    series_refs, frame_refs, warnings = _referenced_series(ds)
    ct_uid, ct_existing = None, None
    for ref in series_refs:
        if ref in ct_plans:
            ct_uid = ref
        elif ref in stored_map and Series.objects.filter(series_uid=stored_map[ref], modality="CT").exists():
            ct_existing = Series.objects.get(series_uid=stored_map[ref])
        if ct_uid or ct_existing:
            break
    if series_refs and not (ct_uid or ct_existing):
        raise IngestProblem(item.name, f"the RTSTRUCT references CT series {series_refs[0]} (RTReferencedSeriesSequence), "
                                       "which is neither in this upload nor stored; upload the CT series with it",
                            tag="RTReferencedSeriesSequence", uid=series_refs[0])
    if not series_refs:
        candidates = [uid for uid, plan in ct_plans.items()
                      if str(plan.files[0].dataset.FrameOfReferenceUID) in frame_refs]
        stored_frames = [stored_map[f] for f in frame_refs if f in stored_map]
        stored_candidates = list(Series.objects.filter(modality="CT", frame_of_reference_uid__in=stored_frames))
        if len(candidates) + len(stored_candidates) == 0:
            raise IngestProblem(item.name, "the RTSTRUCT names no referenced series and no CT series with its frame of reference "
                                           f"({', '.join(frame_refs) or 'none given'}) is in this upload or stored",
                                tag="ReferencedFrameOfReferenceSequence", uid=item.sop_uid)
        if len(candidates) + len(stored_candidates) > 1:
            raise IngestProblem(item.name, "the RTSTRUCT names no referenced series and several CT series share its frame "
                                           f"of reference {frame_refs[0]}; upload it with an RTReferencedSeriesSequence",
                                tag="RTReferencedStudySequence", uid=item.sop_uid)
        ct_uid = candidates[0] if candidates else None
        ct_existing = None if candidates else stored_candidates[0]
    if ct_uid:
        plan = ct_plans[ct_uid]
        grid, slice_uids = plan.grid, plan.sop_order
        ct_frame = str(plan.files[0].dataset.FrameOfReferenceUID)
        ct_label = ct_uid
    else:
        grid = series_grid(ct_existing)
        # Stored slices carry pseudonymous UIDs; translate the RTSTRUCT's references the same way to compare.
        reverse = {v: k for k, v in stored_map.items()}
        slice_uids = [reverse.get(u, u) for u in ct_existing.instances.order_by("slice_index").values_list("sop_uid", flat=True)]
        ct_frame = reverse.get(ct_existing.frame_of_reference_uid, ct_existing.frame_of_reference_uid)
        ct_label = reverse.get(ct_existing.series_uid, ct_existing.series_uid)
    rs_patient = str(ds.get("PatientID", "") or "")
    if ct_uid:
        ct_patient_ok = str(ct_plans[ct_uid].files[0].dataset.get("PatientID", "") or "") == rs_patient
    else:
        stored_patient = ct_existing.study.patient
        entry = ReidentificationEntry.objects.filter(kind="patient_id", original=f"{stored_patient.site.code}:{rs_patient}",
                                                     patient=stored_patient).exists()
        ct_patient_ok = entry or not rs_patient or rs_patient == stored_patient.pseudo_id
    if not ct_patient_ok:
        raise IngestProblem(item.name, f"the RTSTRUCT's PatientID differs from that of its CT series {ct_label}",
                            tag="PatientID", uid=item.sop_uid)
    mismatched = [f for f in frame_refs if f != ct_frame]
    if mismatched:
        warnings.append(f"frame of reference mismatch: the RTSTRUCT refers to FrameOfReferenceUID {mismatched[0]} but CT series "
                        f"{ct_label} has {ct_frame}; contours are placed on the CT because RTReferencedSeriesSequence names it")
    result = _StructPlan(file=item, ct_original_uid=ct_uid, ct_existing=ct_existing, grid=grid)
    unresolved: list[str] = []
    missing_planes: dict[float, list[str]] = {}
    for roi in rois:
        raster = rasterise_roi(roi, grid, slice_uids)
        for uid in raster.unresolved_sop_uids:
            if uid not in unresolved:
                unresolved.append(uid)
        for off in raster.off_grid_contours:
            missing_planes.setdefault(off["position_mm"], []).extend(off["sop_uids"])
        result.masks.append((roi, raster.mask))
        warnings.extend(raster.warnings)
    if missing_planes:
        planes = sorted(missing_planes)
        sops = list(dict.fromkeys(u for p in planes for u in missing_planes[p]))
        referenced = len(set(slice_uids) | set(unresolved))
        message = (f"CT series {ct_label} is incomplete for this RTSTRUCT: contours lie on {len(planes)} plane(s) with no CT slice "
                   f"(e.g. {planes[0]:g} mm, referenced SOP {sops[0] if sops else 'none'}); "
                   f"{len(unresolved)} of {referenced} referenced CT images are missing")
        if not allow_partial:
            raise IngestProblem(item.name, message + "; upload the complete series (or ingest with allow_partial to drop those contours)",
                                tag="ContourImageSequence", uid=sops[0] if sops else ct_label)
        warnings.insert(0, message + "; those contours were dropped")
    if unresolved:
        warnings.append(f"{len(unresolved)} ContourImageSequence reference(s) do not resolve to a slice of CT series {ct_label}; "
                        f"contours were matched by frame of reference and plane position. Unresolved SOP UIDs: {', '.join(unresolved)}")
    result.warnings = warnings
    report.warnings.extend({"file": item.name, "uid": item.sop_uid, "problem": w} for w in warnings)
    return result


def _commit(site, user, new_files, ct_plans, struct_plans, stored_map, staging, moved, report) -> None:
    plan = deid.DeidPlan(uid_map=dict(stored_map))
    patients: dict[str, tuple[Patient, deid.PatientPseudonym]] = {}

    def patient_for(ds: Dataset):
        key = _patient_key(site, ds)
        if key in patients:
            return patients[key]
        entry = ReidentificationEntry.objects.filter(kind="patient_id", original=key).select_related("patient").first()
        if entry is not None and entry.patient is not None:
            shift = ReidentificationEntry.objects.get(kind="date_shift", original=key)
            pseudo = deid.PatientPseudonym(entry.pseudonym, int(shift.pseudonym), is_new=False)
            patients[key] = (entry.patient, pseudo)
        elif (returning := Patient.objects.filter(site=site, pseudo_id=str(ds.get("PatientID", "") or "")).first()):
            # A file exported from the catalogue coming back: already pseudonymous, dates already shifted.
            patients[key] = (returning, deid.PatientPseudonym(returning.pseudo_id, 0, is_new=False))
        else:
            pseudo = deid.new_patient_pseudonym()
            patient = Patient.objects.create(pseudo_id=pseudo.pseudo_id, site=site)
            ReidentificationEntry.objects.bulk_create([
                ReidentificationEntry(kind="patient_id", original=key, pseudonym=pseudo.pseudo_id, patient=patient),
                ReidentificationEntry(kind="date_shift", original=key, pseudonym=str(pseudo.date_shift_days), patient=patient),
                ReidentificationEntry(kind="patient_name", original=f"{key}|{ds.get('PatientName', '')}"[:256],
                                      pseudonym=pseudo.pseudo_id, patient=patient),
            ])
            report.patients.append(pseudo.pseudo_id)
            patients[key] = (patient, pseudo)
        return patients[key]

    def study_for(ds: Dataset, patient: Patient) -> Study:
        uid = str(ds.StudyInstanceUID)  # already pseudonymous
        study = Study.objects.filter(study_uid=uid).first()
        if study is None:
            study = Study.objects.create(study_uid=ds.StudyInstanceUID, patient=patient, study_date=_date_or_none(ds.get("StudyDate")),
                                         study_time=str(ds.get("StudyTime", "") or "")[:16],
                                         accession_number=str(ds.get("AccessionNumber", "") or "")[:16],
                                         study_id=str(ds.get("StudyID", "") or "")[:16],
                                         description=str(ds.get("StudyDescription", "") or "")[:64])
            report.studies.append(study.study_uid)
        elif study.patient_id != patient.pk:
            raise IngestError([{"file": "", "uid": uid, "problem": "the study is already stored for another patient"}])
        return study

    def store_instance(item: ParsedFile, series: Series, slice_index=None, position=None) -> Instance:
        relpath = storage.instance_relpath(series.study.study_uid, series.series_uid, str(item.dataset.SOPInstanceUID))
        staged = staging / relpath
        _write_dicom(item.dataset, staged)
        offset = length = None
        if "PixelData" in item.dataset:
            offset, length = _pixel_location(staged)
        instance = Instance.objects.create(
            sop_uid=item.dataset.SOPInstanceUID, series=series, sop_class_uid=item.dataset.SOPClassUID,
            instance_number=_int_or_none(item.dataset.get("InstanceNumber")), slice_index=slice_index, position=position,
            transfer_syntax_uid=ExplicitVRLittleEndian, file_path=relpath, file_size=staged.stat().st_size,
            pixel_offset=offset, pixel_length=length, number_of_frames=1, metadata=_metadata_json(item.dataset),
            source_sha256=item.sha256)
        item.dataset.pop(0x7FE00010, None)  # written; free the pixels before the next file is loaded
        report.instances += 1
        return instance

    def series_for(ds: Dataset, study: Study, grid: Grid | None) -> Series:
        series = Series.objects.filter(series_uid=ds.SeriesInstanceUID).first()
        fields = dict(modality=str(ds.Modality).upper(), series_number=_int_or_none(ds.get("SeriesNumber")),
                      description=str(ds.get("SeriesDescription", "") or "")[:64],
                      frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
                      institution_name=str(ds.get("InstitutionName", "") or "")[:64],
                      manufacturer=str(ds.get("Manufacturer", "") or "")[:64],
                      manufacturer_model=str(ds.get("ManufacturerModelName", "") or "")[:64],
                      kvp=_float_or_none(ds.get("KVP")), convolution_kernel=str(ds.get("ConvolutionKernel", "") or "")[:64],
                      slice_thickness=_float_or_none(ds.get("SliceThickness")))
        if grid is not None:
            fields.update(rows=grid.shape[1], columns=grid.shape[2], pixel_spacing=list(grid.pixel_spacing),
                          image_orientation=list(grid.row_cosine) + list(grid.column_cosine), origin=list(grid.origin),
                          slice_spacing=grid.slice_spacing, num_slices=grid.shape[0])
        if series is None:
            series = Series.objects.create(series_uid=ds.SeriesInstanceUID, study=study, **fields)
            report.series.append(series.series_uid)
        elif grid is not None:
            for key, value in fields.items():
                setattr(series, key, value)
            series.save()
        return series

    # De-identify everything first so UIDs are mapped consistently across files.
    for item in new_files:
        _, pseudo = patient_for(item.dataset)
        deid.deidentify(item.dataset, plan, pseudo)
    ct_series_rows: dict[str, Series] = {}
    for original_uid, ct_plan in ct_plans.items():
        ds0 = ct_plan.files[0].dataset
        patient, _ = patient_for_pseudo(patients, ds0)
        study = study_for(ds0, patient)
        series = series_for(ds0, study, ct_plan.grid)
        report.series_uid_map[original_uid] = series.series_uid
        ct_series_rows[original_uid] = series
        positions = ct_plan.grid.slice_positions()
        new_originals = {f.sop_uid for f in ct_plan.files}  # the rest of sop_order are stored (pseudonymous) UIDs
        order = {(plan.uid(u) if u in new_originals else u): k for k, u in enumerate(ct_plan.sop_order)}
        for item in ct_plan.files:
            k = order[str(item.dataset.SOPInstanceUID)]
            store_instance(item, series, slice_index=k, position=float(positions[k]))
        if ct_plan.existing is not None:  # earlier slices may move in the order when new ones are added
            for inst in series.instances.all():
                k = order.get(inst.sop_uid)
                if k is not None and inst.slice_index != k:
                    inst.slice_index, inst.position = k, float(positions[k])
                    inst.save(update_fields=["slice_index", "position"])
    for sp in struct_plans:
        ds = sp.file.dataset
        patient, _ = patient_for_pseudo(patients, ds)
        study = study_for(ds, patient)
        series = series_for(ds, study, None)
        instance = store_instance(sp.file, series)
        ct_series = ct_series_rows[sp.ct_original_uid] if sp.ct_original_uid else sp.ct_existing
        stored_warnings = [_pseudonymise_text(w, plan.uid_map) for w in sp.warnings]
        label = str(ds.get("StructureSetLabel", "") or "")[:64]
        structure_set = StructureSet.objects.create(instance=instance, ct_series=ct_series, label=label,
                                                    source=StructureSet.Source.IMPORTED, warnings=stored_warnings)
        report.structure_sets.append(structure_set.pk)
        voxel_cc = sp.grid.voxel_volume_mm3 / 1000.0
        for roi, mask in sp.masks:
            relpath = storage.mask_relpath(ct_series.series_uid, f"roi:{instance.sop_uid}:{roi.number}")
            staged = staging / relpath
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(storage.encode_mask(mask))
            count = int(mask.sum())
            row = ROI.objects.create(structure_set=structure_set, number=roi.number, name=roi.name[:64],
                                     interpreted_type=roi.interpreted_type[:32], color=roi.color, mask_path=relpath,
                                     voxel_count=count, volume_cc=count * voxel_cc, empty=count == 0)
            report.rois.append(row.pk)
    ReidentificationEntry.objects.bulk_create(
        [ReidentificationEntry(kind="uid", original=uid_map_key(site, o), pseudonym=p) for o, p in plan.new_uids.items()])
    # Move staged files into the store last; the caller removes them again if anything fails.
    for staged in sorted(p for p in staging.rglob("*") if p.is_file()):
        relative = staged.relative_to(staging).as_posix()
        target = storage.absolute(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise IngestError([{"file": "", "problem": f"store already holds {relative}; refusing to overwrite"}])
        os.replace(staged, target)
        moved.append(target)


def patient_for_pseudo(patients: dict, ds: Dataset):
    """The (Patient, pseudonym) pair of an already de-identified dataset."""
    for patient, pseudo in patients.values():
        if pseudo.pseudo_id == str(ds.PatientID):
            return patient, pseudo
    raise KeyError(ds.PatientID)


def _pseudonymise_text(text: str, uid_map: dict[str, str]) -> str:
    """Replace every original UID quoted in a stored message by its pseudonym (longest first)."""
    for original in sorted((u for u in uid_map if u in text), key=len, reverse=True):
        text = text.replace(original, uid_map[original])
    return text
