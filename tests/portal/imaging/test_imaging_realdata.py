"""Real sample data (shared/realdata): IBSI sarcoma GTVs, Eclipse breast RTSTRUCT, rt-utils phantom edge cases."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dicom_rt.geometry import Grid
from dicom_rt.rasterise import contour_plane_grid, parse_structure_set, rasterise_roi
from portal.accounts.models import Site
from portal.imaging.ingest import IngestError, ingest_files
from portal.imaging.models import ROI, Instance, ReidentificationEntry, Series, StructureSet
from portal.imaging.volume import load_ct_volume, roi_mask

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def store_snapshot(settings):
    root = Path(settings.CONTEXTRT_STORAGE)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    from portal.imaging import models

    counts = {m.__name__: m.objects.count() for m in (models.Patient, models.Study, models.Series, models.Instance,
                                                        models.StructureSet, models.ROI, models.ReidentificationEntry)}
    return files, counts


@pytest.fixture
def site():
    return Site.objects.create(code="ibsi", name="IBSI")


def nifti_mask_on_grid(nifti_path, grid):
    """Map a NIfTI mask (RAS affine) into the DICOM grid voxel by voxel through both affines."""
    img = nib.load(str(nifti_path))
    data = np.asarray(img.dataobj) > 0
    ijk = np.argwhere(data)
    ras = nib.affines.apply_affine(img.affine, ijk)
    lps = ras * np.array([-1, -1, 1])
    idx = np.rint(grid.patient_to_voxel(lps)).astype(int)
    out = np.zeros(grid.shape, bool)
    out[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return out


@pytest.mark.parametrize("patient,slices,matrix,voxels,volume_cc,contours", [
    ("STS_019", 47, (134, 136), 5564, 17.35, 15),
    ("STS_002", 48, (143, 161), 17090, 53.30, 16),
])
def test_ibsi_gtv_matches_reference_mask(realdata_dir, site, settings, patient, slices, matrix, voxels, volume_cc, contours):
    base = realdata_dir / "ibsi-sts" / "dicom" / patient / "CT"
    files = sorted((base / "image").glob("*.dcm")) + [base / "mask" / "RS.dcm"]
    report = ingest_files(files, site=site)
    assert report.instances == slices + 1
    ct = Series.objects.get(modality="CT")
    assert (ct.num_slices, ct.rows, ct.columns) == (slices, *matrix)
    positions = list(ct.instances.order_by("slice_index").values_list("position", flat=True))
    assert positions == sorted(positions)
    hu, grid = load_ct_volume(ct)
    assert hu.shape == (slices, *matrix) and hu.dtype == np.int16
    assert -1100 <= hu.min() and hu.max() <= 3100
    roi = ROI.objects.get()
    assert roi.name == "GTV_Mass_CT" and roi.interpreted_type == "GTV"
    mask = roi_mask(roi)
    assert roi.voxel_count == int(mask.sum()) == voxels
    assert abs(roi.volume_cc - volume_cc) / volume_cc < 0.01
    reference = nifti_mask_on_grid(realdata_dir / "ibsi-sts" / "nifti" / patient / "CT_mask.nii.gz", grid)
    dice = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    assert dice >= 0.99
    # The 15/16 contour references point at the uncropped TCIA instances: reported, not rejected.
    warning = next(w for w in report.warnings if "ContourImageSequence" in w["problem"])
    assert f"{contours} ContourImageSequence reference(s) do not resolve" in warning["problem"]
    rs = pydicom.dcmread(base / "mask" / "RS.dcm")
    first_ref = rs.ROIContourSequence[0].ContourSequence[0].ContourImageSequence[0].ReferencedSOPInstanceUID
    assert first_ref in warning["problem"]  # the uploader sees its own UIDs
    stored = StructureSet.objects.get().warnings
    assert any("do not resolve" in w for w in stored) and not any(first_ref in w for w in stored)  # stored pseudonymised


def test_ibsi_deidentified_and_references_resolve(realdata_dir, site):
    base = realdata_dir / "ibsi-sts" / "dicom" / "STS_019" / "CT"
    original = pydicom.dcmread(sorted((base / "image").glob("*.dcm"))[0])
    ingest_files(sorted((base / "image").glob("*.dcm")) + [base / "mask" / "RS.dcm"], site=site)
    ct = Series.objects.get(modality="CT")
    inst = ct.instances.order_by("slice_index").first()
    from portal.imaging import storage

    stored = pydicom.dcmread(storage.absolute(inst.file_path))
    assert stored.PatientID == ct.study.patient.pseudo_id != original.PatientID
    assert str(stored.PatientName) == ct.study.patient.pseudo_id
    assert stored.PatientIdentityRemoved == "YES"
    assert stored.SOPInstanceUID == inst.sop_uid != original.SOPInstanceUID
    assert stored.StudyInstanceUID != original.StudyInstanceUID and stored.FrameOfReferenceUID != original.FrameOfReferenceUID
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    if original.get("StudyDate"):
        assert stored.StudyDate != original.StudyDate
    # Frames can be served from the recorded offsets without parsing.
    with open(storage.absolute(inst.file_path), "rb") as fh:
        fh.seek(inst.pixel_offset)
        assert fh.read(inst.pixel_length) == stored.PixelData
    assert "7FE00010" not in inst.metadata and inst.metadata["0020000E"]["Value"] == [ct.series_uid]
    # References inside the RTSTRUCT were remapped with the same map.
    rs_inst = Instance.objects.get(series__modality="RTSTRUCT")
    rs = pydicom.dcmread(storage.absolute(rs_inst.file_path))
    ref_series = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == ct.series_uid
    assert rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == ct.frame_of_reference_uid
    assert ReidentificationEntry.objects.get(kind="uid", original=f"ibsi|{original.SOPInstanceUID}").pseudonym == stored.SOPInstanceUID


def test_identical_reupload_is_idempotent(realdata_dir, site, settings):
    base = realdata_dir / "ibsi-sts" / "dicom" / "STS_019" / "CT"
    files = sorted((base / "image").glob("*.dcm")) + [base / "mask" / "RS.dcm"]
    ingest_files(files, site=site)
    before = store_snapshot(settings)
    again = ingest_files(files, site=site)
    assert again.instances == 0 and again.skipped_identical == len(files)
    assert store_snapshot(settings) == before


def test_eclipse_breast_incomplete_series_rejected_and_parses_fully(realdata_dir, site, settings):
    folder = realdata_dir / "dicompyler-breast"
    before = store_snapshot(settings)
    with pytest.raises(IngestError) as info:
        ingest_files([folder / "ct.0.dcm", folder / "rtss.dcm"], site=site)
    (error,) = info.value.errors
    assert "is incomplete" in error["problem"] and "97 of 98 referenced CT images are missing" in error["problem"]
    assert error["tag"] == "ContourImageSequence" and error["file"].endswith("rtss.dcm")
    assert store_snapshot(settings) == before
    # The structure set itself parses fully: 10 ROIs, Areola empty, Lt Lung with holes.
    rs = pydicom.dcmread(folder / "rtss.dcm")
    rois = {r.name: r for r in parse_structure_set(rs)}
    assert len(rois) == 10 and rois["Areola"].contours == []
    assert rois["BODY"].interpreted_type == "EXTERNAL" and rois["Tumor Bed"].interpreted_type == "CTV"
    ct_grid, _ = Grid.from_datasets([pydicom.dcmread(folder / "ct.0.dcm")])
    grid = contour_plane_grid(ct_grid, list(rois.values()))
    assert grid.shape[0] == 98
    cc = grid.voxel_volume_mm3 / 1000
    heart = rasterise_roi(rois["Heart"], grid).mask.sum() * cc
    lung_roi = rois["Lt Lung"]
    lung = rasterise_roi(lung_roi, grid).mask.sum() * cc
    assert abs(heart - 439.66) / 439.66 < 0.01
    assert abs(lung - 2003.48) / 2003.48 < 0.01
    # Holes: filling every contour without XOR gives more lung than the even-odd rule.
    from dicom_rt.rasterise import RoiContours

    solid = sum(rasterise_roi(RoiContours(1, "c", "", None, "", [c]), grid).mask.sum() for c in lung_roi.contours) * cc
    assert solid > lung * 1.001
    # With allow_partial the one-slice CT is stored and BODY is its only non-empty ROI there.
    report = ingest_files([folder / "ct.0.dcm", folder / "rtss.dcm"], site=site, allow_partial=True)
    assert any("those contours were dropped" in w["problem"] for w in report.warnings)
    by_name = {r.name: r for r in ROI.objects.all()}
    assert len(by_name) == 10 and by_name["Areola"].empty
    assert [n for n, r in by_name.items() if not r.empty] == ["BODY"]
    assert abs(by_name["BODY"].volume_cc - 139.8) / 139.8 < 0.01


def test_rtplan_rejected_by_modality(realdata_dir, site):
    with pytest.raises(IngestError) as info:
        ingest_files([realdata_dir / "dicompyler-breast" / "rtplan.dcm"], site=site)
    assert "modality RTPLAN is not accepted" in info.value.errors[0]["problem"]


PHANTOM_DUP_UID = "2.16.840.1.114362.1.11940992.23790159890.563423606.667.93"


def phantom(realdata_dir, *names):
    return [realdata_dir / "rtutils-mim-phantom" / n for n in names]


def test_phantom_missing_slice_rejected_then_partial(realdata_dir, site, settings):
    before = store_snapshot(settings)
    with pytest.raises(IngestError) as info:
        ingest_files(phantom(realdata_dir, "ct_1.dcm", "ct_2.dcm", "invalid_reference_rt.dcm"), site=site)
    (error,) = info.value.errors
    assert "1 of 3 referenced CT images are missing" in error["problem"] and "70 mm" in error["problem"]
    assert error["uid"] and error["uid"] in error["problem"]
    assert store_snapshot(settings) == before
    ingest_files(phantom(realdata_dir, "ct_1.dcm", "ct_2.dcm", "invalid_reference_rt.dcm"), site=site, allow_partial=True)
    counts = {r.name: r.voxel_count for r in ROI.objects.all()}
    assert counts == {"ROI-1": 4976, "ROI-2": 3697, "ROI-3": 4519, "ROI-4": 6954}


def test_phantom_missing_study_sequence_found_by_frame_of_reference(realdata_dir, site):
    report = ingest_files(phantom(realdata_dir, "ct_1.dcm", "ct_2.dcm", "non_existent_reference_rt.dcm"), site=site,
                          allow_partial=True)
    assert any("RTReferencedStudySequence is missing" in w["problem"] for w in report.warnings)
    assert StructureSet.objects.get().ct_series.modality == "CT"


def test_phantom_frame_of_reference_mismatch_flagged(realdata_dir, site):
    report = ingest_files(phantom(realdata_dir, "ct_1.dcm", "ct_2.dcm", "rt.dcm"), site=site)
    ct_frame = pydicom.dcmread(realdata_dir / "rtutils-mim-phantom" / "ct_1.dcm").FrameOfReferenceUID
    warning = next(w["problem"] for w in report.warnings if "frame of reference mismatch" in w["problem"])
    assert "1.2.826.0.1.3680043.8.498.4132" in warning and ct_frame in warning
    assert ROI.objects.get().voxel_count == 1443


def test_phantom_duplicate_sop_uid_between_two_files(realdata_dir, site, settings):
    before = store_snapshot(settings)
    with pytest.raises(IngestError) as info:
        ingest_files(phantom(realdata_dir, "ct_1.dcm", "ct_2.dcm", "invalid_reference_rt.dcm", "non_existent_reference_rt.dcm"),
                     site=site, allow_partial=True)
    (error,) = info.value.errors
    assert error["uid"] == PHANTOM_DUP_UID and PHANTOM_DUP_UID in error["problem"]
    assert store_snapshot(settings) == before
    # The same clash against the store (second file in a later upload) is also an error naming the UID.
    ingest_files(phantom(realdata_dir, "ct_1.dcm", "ct_2.dcm", "invalid_reference_rt.dcm"), site=site, allow_partial=True)
    with pytest.raises(IngestError) as info:
        ingest_files(phantom(realdata_dir, "non_existent_reference_rt.dcm"), site=site, allow_partial=True)
    assert PHANTOM_DUP_UID in info.value.errors[0]["problem"] and "already stored" in info.value.errors[0]["problem"]


def test_no_identifier_left_in_stored_files(realdata_dir, site, settings):
    folder = realdata_dir / "dicompyler-breast"
    originals = [pydicom.dcmread(folder / n) for n in ("ct.0.dcm", "rtss.dcm")]
    ingest_files([folder / "ct.0.dcm", folder / "rtss.dcm"], site=site, allow_partial=True)
    secrets = {"boost", "123456"}
    for ds in originals:
        secrets |= {str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)}
        secrets |= {str(e.value) for e in ds.iterall() if e.VR == "PN" and e.value}
    secrets.discard("")
    stored = [p for p in Path(settings.CONTEXTRT_STORAGE).rglob("*.dcm")]
    assert len(stored) == 2
    for path in stored:
        raw = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in raw, (path.name, secret)
        ds = pydicom.dcmread(path)
        assert not any(e.tag.is_private for e in ds.iterall())
    for inst in Instance.objects.all():
        text = str(inst.metadata)
        assert not any(secret in text for secret in secrets)
