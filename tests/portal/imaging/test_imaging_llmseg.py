"""LLMSeg layout import: NIfTI -> DICOM CT series through the ingest, label -> ground-truth ROI, table -> context."""
import csv

import nibabel as nib
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from portal.accounts.models import Site
from portal.cases.models import Case
from portal.imaging.ingest_llmseg import LLMSegError, context_from_row, import_llmseg
from portal.imaging.volume import load_ct_volume, roi_mask

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

ROW = {"Unit No": "U1001", "Subsite 1": "Breast, Lt.", "Pathology": "Invasive ductal carcinoma", "icT": "T2", "icN": "N1",
       "icM": "M0", "pT": "pT1c", "pN": "0", "pM": "", "Stage": "IIA", "Chemotherapy": "Neoadjuvant", "RT aim": "Adjuvant",
       "Remark": "BCS, boost"}


def make_patient(root, unit_no, flip=False):
    folder = root / unit_no
    folder.mkdir(parents=True)
    affine = np.diag([-0.9, -0.9, 2.5, 1.0])  # typical LPS-stored CT seen through a RAS affine
    if flip:
        affine = np.diag([0.9, 0.9, -2.5, 1.0])
    affine[:3, 3] = [120.0, 110.0, -40.0]
    data = (np.arange(20 * 18 * 7).reshape(20, 18, 7) % 400 - 200).astype(np.int16)
    label = np.zeros((20, 18, 7), np.uint8)
    label[5:12, 4:9, 2:5] = 1
    nib.save(nib.Nifti1Image(data, affine), folder / "data.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), folder / "label.nii.gz")
    return data, label


def write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ROW))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def site():
    return Site.objects.create(code="llmseg", name="LLMSeg")


def test_context_mapping():
    ctx = context_from_row(ROW, "row")
    assert ctx == {"laterality": "left", "surgery": "bcs", "cT": "T2", "cN": "N1", "cM": "M0", "pT": "T1c", "pN": "N0",
                   "pathology": "IDC", "neoadjuvant_chemo": True}
    right = context_from_row(dict(ROW, **{"Subsite 1": "Breast, Rt.", "Remark": "modified radical Mastectomy"}), "row")
    assert right["laterality"] == "right" and right["surgery"] == "mastectomy"
    with pytest.raises(LLMSegError) as info:
        context_from_row(dict(ROW, icT="T9"), "row 3")
    assert info.value.field == "icT" and "row 3" in str(info.value)


@pytest.mark.parametrize("flip", [False, True])
def test_import_creates_series_roi_and_case(site, tmp_path, flip):
    data, label = make_patient(tmp_path / "ds", "U1001", flip=flip)
    write_csv(tmp_path / "table.csv", [ROW])
    (item,) = import_llmseg(tmp_path / "ds", tmp_path / "table.csv", site=site)
    case = Case.objects.get(pk=item.case_id)
    assert case.cancer_type == "breast" and case.label != "U1001" and case.site == site
    assert case.current_context.data["laterality"] == "left" and "left" in case.current_context.prompt_text.lower()
    hu, grid = load_ct_volume(case.ct_series)
    assert hu.shape == (7, 18, 20) and case.ct_series.num_slices == 7
    assert np.isclose(grid.slice_spacing, 2.5) and np.allclose(grid.pixel_spacing, (0.9, 0.9))
    mask = roi_mask(case.ground_truth)
    assert mask.sum() == label.sum() == case.ground_truth.voxel_count
    # Voxel-for-voxel: the HU under the mask equals the NIfTI data under the label.
    assert sorted(hu[mask].tolist()) == sorted(data[label > 0].tolist())
    with pytest.raises(LLMSegError, match="already imported"):
        import_llmseg(tmp_path / "ds", tmp_path / "table.csv", site=site)


def test_xlsx_table_and_command(site, tmp_path):
    import openpyxl

    make_patient(tmp_path / "ds", "U1001")
    book = openpyxl.Workbook()
    book.active.append(list(ROW))
    book.active.append(list(ROW.values()))
    book.save(tmp_path / "table.xlsx")
    call_command("import_llmseg", str(tmp_path / "ds"), "--table", str(tmp_path / "table.xlsx"), "--site", "llmseg")
    assert Case.objects.count() == 1


def test_bad_layout_is_clear(site, tmp_path):
    make_patient(tmp_path / "ds", "U1001")
    write_csv(tmp_path / "t.csv", [dict(ROW, **{"Unit No": "U2"})])
    with pytest.raises(LLMSegError, match="without a table row: U1001"):
        import_llmseg(tmp_path / "ds", tmp_path / "t.csv", site=site)
    (tmp_path / "bad.csv").write_text("Unit No,Subsite 1\nU1001,Breast\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("import_llmseg", str(tmp_path / "ds"), "--table", str(tmp_path / "bad.csv"), "--site", "llmseg")
    assert Case.objects.count() == 0
