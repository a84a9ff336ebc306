"""Export of ROI masks as RTSTRUCT / DICOM SEG / NIfTI, and the RTSTRUCT round trip through ingest."""
import gzip
import io

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dicom_rt import export as rt_export
from dicom_rt.rasterise import parse_structure_set, rasterise_roi
from portal.cases.exporting import ct_datasets
from portal.imaging.ingest import ingest_files
from portal.imaging.models import ROI
from portal.imaging.volume import roi_mask, series_grid

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

INT, EXT = "BR-INT-0000", "BR-EX1-0000"


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_rtstruct_export_rasterises_back_to_the_same_mask(cases, users, client_for):
    """The exported contours, read by the rasteriser the ingest uses, give the stored mask back."""
    case = cases[INT]
    for roi in (case.ground_truth, ROI.objects.get(structure_set=case.ground_truth.structure_set, name="Heart")):
        response = client_for(users["coord"]).get(f"/api/cases/{case.pk}/export/rtstruct/?roi={roi.pk}")
        ds = pydicom.dcmread(io.BytesIO(response.content))
        (parsed,) = parse_structure_set(ds)
        slice_uids = list(case.ct_series.instances.order_by("slice_index").values_list("sop_uid", flat=True))
        result = rasterise_roi(parsed, series_grid(case.ct_series), slice_uids)
        assert not result.unresolved_sop_uids  # every contour references a stored CT slice
        original = roi_mask(roi)
        assert original.any() and dice(result.mask, original) >= 0.98


def test_rtstruct_export_reimports_to_the_same_mask(cases, users, client_for, tmp_path):
    case = cases[INT]
    gt = case.ground_truth
    response = client_for(users["coord"]).get(f"/api/cases/{case.pk}/export/rtstruct/?roi={gt.pk}")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert f"roi-{gt.pk}" in response["Content-Disposition"]
    ds = pydicom.dcmread(io.BytesIO(response.content))
    assert ds.Modality == "RTSTRUCT"
    assert ds.FrameOfReferenceUID == case.ct_series.frame_of_reference_uid
    assert ds.StudyInstanceUID == case.ct_series.study.study_uid
    path = tmp_path / "export.dcm"
    path.write_bytes(response.content)
    report = ingest_files([path], site=case.site)
    (roi_id,) = [r for r in report.rois if ROI.objects.get(pk=r).name == gt.name]
    reimported = ROI.objects.get(pk=roi_id)
    assert reimported.structure_set.ct_series_id == case.ct_series_id
    original = roi_mask(gt)
    assert dice(roi_mask(reimported), original) >= 0.98


def test_seg_export_matches_the_mask_frame_by_frame(cases, users, client_for):
    case = cases[INT]
    gt = case.ground_truth
    response = client_for(users["admin"]).get(f"/api/cases/{case.pk}/export/seg/?roi={gt.pk}")
    assert response.status_code == 200
    seg = pydicom.dcmread(io.BytesIO(response.content))
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == gt.name
    cts = ct_datasets(case.ct_series, with_pixels=False)
    assert np.array_equal(rt_export.seg_to_mask(seg, cts), roi_mask(gt))


def test_nifti_export_has_ras_affine_and_same_voxels(cases, users, client_for):
    case = cases[INT]
    gt = case.ground_truth
    response = client_for(users["coord"]).get(f"/api/cases/{case.pk}/export/nifti/?roi={gt.pk}")
    assert response.status_code == 200
    mask, affine = rt_export.nifti_to_mask(response.content)
    assert np.array_equal(mask, roi_mask(gt))
    grid = series_grid(case.ct_series)
    # Voxel (column 3, row 5, slice 7) in RAS is the DICOM LPS position with x and y negated.
    lps = grid.voxel_to_patient([[7, 5, 3]])[0]
    ras = affine @ np.array([3, 5, 7, 1.0])
    assert np.allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-3)
    img = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    # An axial head-first-supine CT (row cosine +x, column cosine +y in LPS) is L-to-R flipped: axes L, P, S.
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1


def test_nifti_export_matches_the_cohort_label_file(cases, users, client_for, small_cohort):
    """fixtures.cohort writes label.nii.gz independently: same voxels, same affine."""
    case = cases[INT]
    response = client_for(users["coord"]).get(f"/api/cases/{case.pk}/export/nifti/?roi={case.ground_truth.pk}")
    exported = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    shipped = nib.load(str(small_cohort / "internal" / "breast" / INT / "label.nii.gz"))
    assert np.allclose(exported.affine, shipped.affine, atol=1e-3)
    assert dice(np.asarray(exported.dataobj) > 0, np.asarray(shipped.dataobj) > 0) >= 0.98


def test_export_input_errors_and_scoping(cases, users, client_for):
    case = cases[INT]
    client = client_for(users["coord"])
    gt = case.ground_truth
    assert client.get(f"/api/cases/{case.pk}/export/stl/?roi={gt.pk}").status_code == 400
    missing = client.get(f"/api/cases/{case.pk}/export/nifti/")
    assert missing.status_code == 400 and "roi" in missing.json()["errors"]
    both = client.get(f"/api/cases/{case.pk}/export/nifti/?roi={gt.pk}&job=1")
    assert both.status_code == 400
    assert client.get(f"/api/cases/{case.pk}/export/nifti/?roi=abc").status_code == 404
    assert client.get(f"/api/cases/{case.pk}/export/nifti/?job=99999").status_code == 404
    other = cases[EXT].ground_truth
    assert client.get(f"/api/cases/{case.pk}/export/nifti/?roi={other.pk}").status_code == 404
    assert client.get(f"/api/cases/{cases[EXT].pk}/export/nifti/?roi={other.pk}").status_code == 404
    assert client_for(users["rater"]).get(f"/api/cases/{case.pk}/export/nifti/?roi={gt.pk}").status_code == 404
