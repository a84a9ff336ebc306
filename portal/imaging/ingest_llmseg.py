"""Import of the LLMSeg dataset layout: ``<id>/data.nii.gz`` + ``<id>/label.nii.gz`` + a clinical table.

Each NIfTI CT volume is written as a DICOM CT series (geometry from the NIfTI
affine, RAS -> DICOM LPS) and stored through the one validated ingest path
(``portal.imaging.ingest.ingest_files``), so it is de-identified and indexed
like any upload. ``label.nii.gz`` becomes a ground-truth structure set/ROI on
that series, and the table row becomes a validated breast clinical context
(``clinical.validate_context``) on a new Case. Each patient is one transaction.
"""
from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from django.db import transaction
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

import clinical
from portal.imaging import ingest, storage
from portal.imaging.models import ROI, Series, StructureSet
from portal.imaging.volume import series_grid

TABLE_COLUMNS = ("Unit No", "Subsite 1", "Pathology", "icT", "icN", "icM", "pT", "pN", "pM", "Stage",
                 "Chemotherapy", "RT aim", "Remark")


class LLMSegError(ValueError):
    """A problem with the dataset layout or table; ``where`` names the file/row and ``field`` the column."""

    def __init__(self, where: str, problem: str, field: str | None = None):
        self.where, self.problem, self.field = where, problem, field
        super().__init__(f"{where}: {problem}" + (f" (column {field})" if field else ""))


@dataclass
class ImportedPatient:
    unit_no: str
    case_id: int
    series_uid: str
    roi_voxels: int
    context: dict
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- clinical table


def read_table(path: Path) -> list[dict]:
    """Rows of the clinical table (xlsx or csv) as {column: text}; the 13 LLMSeg columns are required."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        sheet = openpyxl.load_workbook(path, read_only=True, data_only=True).active
        raw = list(sheet.iter_rows(values_only=True))
        if not raw:
            raise LLMSegError(path.name, "the table is empty")
        header = [str(c).strip() if c is not None else "" for c in raw[0]]
        rows = [{h: ("" if v is None else str(v).strip()) for h, v in zip(header, r)} for r in raw[1:]]
    elif path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    else:
        raise LLMSegError(path.name, "the clinical table must be .xlsx or .csv")
    missing = [c for c in TABLE_COLUMNS if c not in header]
    if missing:
        raise LLMSegError(path.name, f"missing column(s): {', '.join(missing)}")
    return [r for r in rows if r.get("Unit No")]


def _stage(value: str, letter: str) -> str:
    """'2', 'T2', 'cT2', 'ypT1c', 'is' -> 'T2' / 'T1c' / 'Tis' (empty stays empty)."""
    text = re.sub(r"\s+", "", str(value or ""))
    if not text or text.lower() in ("nan", "none", "-"):
        return ""
    text = re.sub(r"^(yp|ic|c|p|y)", "", text, flags=re.IGNORECASE)
    if text[:1].upper() == letter:
        text = text[1:]
    return letter + text


def _pathology(value: str) -> str:
    text = str(value or "").upper()
    if not text.strip():
        return ""
    if "MIX" in text:
        return "mixed"
    if "DCIS" in text or "IN SITU" in text:
        return "DCIS"
    if "LOBULAR" in text or "ILC" in text:
        return "ILC"
    if "DUCTAL" in text or "IDC" in text or "NST" in text:
        return "IDC"
    return "other"


def _chemo(value: str):
    text = str(value or "").strip().lower()
    if not text:
        return None
    if "neo" in text:
        return True
    return False  # adjuvant only, none, no


def context_from_row(row: dict, where: str) -> dict:
    """A validated breast context (clinical/schema.py field names) from one table row."""
    subsite = row.get("Subsite 1", "").replace(" ", "").lower()
    remark = row.get("Remark", "").lower()
    data = {
        "laterality": "left" if "lt" in subsite or "left" in subsite else "right" if "rt" in subsite or "right" in subsite else "",
        "surgery": "mastectomy" if "mastectomy" in remark else "bcs" if "bcs" in remark else "",
        "cT": _stage(row.get("icT"), "T"), "cN": _stage(row.get("icN"), "N"), "cM": _stage(row.get("icM"), "M"),
        "pT": _stage(row.get("pT"), "T"), "pN": _stage(row.get("pN"), "N"), "pM": _stage(row.get("pM"), "M"),
        "pathology": _pathology(row.get("Pathology")),
    }
    chemo = _chemo(row.get("Chemotherapy"))
    if chemo is not None:
        data["neoadjuvant_chemo"] = chemo
    if not row.get("Subsite 1", "").lower().startswith("breast"):
        raise LLMSegError(where, f"Subsite 1 {row.get('Subsite 1')!r} is not 'Breast, Lt.' or 'Breast, Rt.'", "Subsite 1")
    try:
        return clinical.validate_context("breast", data)
    except clinical.ContextValidationError as exc:
        column = {"cT": "icT", "cN": "icN", "cM": "icM", "laterality": "Subsite 1", "surgery": "Remark"}
        first = next(iter(exc.errors))
        raise LLMSegError(where, f"{first}: {exc.errors[first]}", column.get(first, first))


# ---------------------------------------------------------------- NIfTI -> DICOM


def nifti_to_dicom_series(nifti_path: Path, out_dir: Path, *, patient_id: str) -> list[Path]:
    """Write one single-frame CT file per NIfTI k-slice (HU int16), geometry from the affine."""
    img = nib.load(str(nifti_path))
    if len(img.shape) != 3:
        raise LLMSegError(nifti_path.name, f"expected a 3-D volume, found shape {img.shape}")
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
    axes = affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    cosines = axes / spacing
    if not np.allclose(cosines.T @ cosines, np.eye(3), atol=1e-4):
        raise LLMSegError(nifti_path.name, "the affine is sheared (axes not orthogonal); cannot be a DICOM CT grid")
    data = np.asanyarray(img.dataobj)
    hu = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    ni, nj, nk = hu.shape
    for k in range(nk):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
        ds.PatientID = ds.PatientName = patient_id
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesDescription, ds.InstanceNumber, ds.SeriesNumber = "LLMSeg CT (from NIfTI)", k + 1, 1
        # DICOM columns run along NIfTI i, rows along NIfTI j.
        ds.ImageOrientationPatient = [float(v) for v in np.r_[cosines[:, 0], cosines[:, 1]]]
        ds.ImagePositionPatient = [float(v) for v in (affine @ np.array([0, 0, k, 1.0]))[:3]]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = nj, ni
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(hu[:, :, k].T).tobytes()  # [row=j, column=i]
        path = out_dir / f"slice{k:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def label_on_grid(label_path: Path, data_path: Path, grid) -> np.ndarray:
    """The label volume mapped voxel-for-voxel into the stored CT grid through the shared affine."""
    label, data = nib.load(str(label_path)), nib.load(str(data_path))
    if label.shape != data.shape or not np.allclose(label.affine, data.affine, atol=1e-3):
        raise LLMSegError(label_path.name, f"label shape/affine {label.shape} differ from data.nii.gz {data.shape}")
    values = np.asanyarray(label.dataobj)
    ijk = np.argwhere(values > 0)
    mask = np.zeros(grid.shape, dtype=bool)
    if len(ijk):
        lps = (np.diag([-1.0, -1.0, 1.0, 1.0]) @ label.affine @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
        idx = np.rint(grid.patient_to_voxel(lps)).astype(int)
        mask[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return mask


# ---------------------------------------------------------------- the import


def import_patient(folder: Path, row: dict, *, site, cohort: str = "train", user=None) -> ImportedPatient:
    from portal.cases.models import Case, ClinicalContextVersion

    unit_no = row["Unit No"]
    where = f"{folder.name} (table row Unit No {unit_no})"
    data_path, label_path = folder / "data.nii.gz", folder / "label.nii.gz"
    for path in (data_path, label_path):
        if not path.is_file():
            raise LLMSegError(where, f"{path.name} is missing")
    context = context_from_row(row, where)
    from portal.imaging.models import ReidentificationEntry

    known = ReidentificationEntry.objects.filter(kind="patient_id", original=f"{site.code}:{unit_no}").first()
    if known is not None and Case.objects.filter(site=site, label=known.pseudonym).exists():
        raise LLMSegError(where, f"already imported as case {known.pseudonym}", "Unit No")
    staging = ingest.new_staging_dir()
    report = None
    try:
        dicom_paths = nifti_to_dicom_series(data_path, staging / "dicom", patient_id=unit_no)
        with transaction.atomic():
            report = ingest.ingest_files(dicom_paths, site=site, user=user)
            series = Series.objects.get(series_uid=next(iter(report.series_uid_map.values())))
            grid = series_grid(series)
            mask = label_on_grid(label_path, data_path, grid)
            structure_set = StructureSet.objects.create(ct_series=series, label="LLMSeg label",
                                                        source=StructureSet.Source.GROUND_TRUTH)
            relpath = storage.mask_relpath(series.series_uid, f"llmseg:{structure_set.pk}:1")
            storage.save_mask(relpath, mask)
            count = int(mask.sum())
            roi = ROI.objects.create(structure_set=structure_set, number=1, name="CTV", interpreted_type="CTV",
                                     mask_path=relpath, voxel_count=count, volume_cc=count * grid.voxel_volume_mm3 / 1000,
                                     empty=count == 0)
            case = Case.objects.create(label=series.study.patient.pseudo_id, site=site, cancer_type="breast",
                                       ct_series=series, ground_truth=roi, cohort=cohort, tags=["llmseg"])
            ClinicalContextVersion.objects.create(case=case, version=1, data=context, author=user,
                                                  prompt_text=clinical.render_prompt("breast", context))
    except BaseException:
        if report is not None:  # the ingest had moved its files into the store before a later step failed
            for sid in report.series_uid_map.values():
                for path in storage.root().glob(f"dicom/*/{sid}"):
                    shutil.rmtree(path, ignore_errors=True)
                for path in storage.root().glob(f"masks/{sid}"):
                    shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    warnings = [] if count else ["label.nii.gz is empty"]
    return ImportedPatient(unit_no, case.pk, series.series_uid, count, context, warnings)


def import_llmseg(directory: Path, table: Path, *, site, cohort: str = "train", user=None) -> list[ImportedPatient]:
    """Import every table row that has a folder; rows without a folder and folders without a row are errors."""
    directory = Path(directory)
    rows = read_table(table)
    by_id = {r["Unit No"]: r for r in rows}
    folders = {p.name: p for p in directory.iterdir() if p.is_dir()}
    orphans = sorted(set(folders) - set(by_id))
    if orphans:
        raise LLMSegError(directory.name, f"folder(s) without a table row: {', '.join(orphans[:10])}", "Unit No")
    missing = sorted(set(by_id) - set(folders))
    if missing:
        raise LLMSegError(Path(table).name, f"row(s) without a folder: {', '.join(missing[:10])}", "Unit No")
    return [import_patient(folders[uid], by_id[uid], site=site, cohort=cohort, user=user) for uid in sorted(by_id)]
